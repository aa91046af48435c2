"""The save row: the folder, the format and the Save button, writing through the plugin's NIfTI
writer in a background thread.

The formats are the file front doors' (:data:`napari_resample.io.names.OUTPUT_FORMATS`):
``.nii.gz`` (the default) or ``.nii.zarr``, a NIfTI-Zarr folder, written by the writers of
napari's File > Save (:mod:`napari_resample.plugin.writer`; a Labels layer's pyramid voted) and
named as every front door names a result (:func:`napari_resample.io.names.output_suffix`).

A folder that cannot take the result is refused before the write with one sentence naming it
and the reason (missing, a file, not writable); a write the OS refuses is reported the same way,
without the temporary file's (or folder's) name the OS error carries. An existing result, file
or ``.nii.zarr`` folder, is replaced only when the user confirms, and then only once the new one
is complete.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, FileEdit, PushButton, Widget

from napari_resample.io.names import (
    OUTPUT_FORMATS,
    OutputFormat,
    check_output_format,
    output_name,
    output_suffix,
)
from napari_resample.plugin.widget.status import StatusLine, reported

#: What each format writes, for the format box's tooltip.
FORMAT_NOTES: dict[str, str] = {
    "nii.gz": "one gzip-compressed NIfTI file, which every NIfTI tool reads",
    "nii.zarr": (
        "a NIfTI-Zarr folder: the same NIfTI header, the voxels in compressed chunks and a "
        "multiscale pyramid, opened lazily by napari-resample"
    ),
}


class SaveRow:
    """Where and how the last result is saved.

    Parameters
    ----------
    status_line : StatusLine
    on_idle : callable
        Called (without arguments) when a save starts or has finished: the buttons follow.

    Attributes
    ----------
    output_dir : magicgui.widgets.FileEdit
        The folder; the source file's folder until the user picks one.
    output_format : magicgui.widgets.ComboBox
        ``"nii.gz"`` (the default) or ``"nii.zarr"``, shown as the suffix.
    save_button : magicgui.widgets.PushButton
    saved_path : pathlib.Path or None
        The file (or ``.nii.zarr`` folder) the last finished save wrote (None before, and
        while a save runs).
    """

    def __init__(self, status_line: StatusLine, on_idle: Callable[[], None]) -> None:
        self.status_line = status_line
        self.on_idle = on_idle
        self.output_dir = FileEdit(
            name="output_dir",
            label="save to",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            tooltip="Folder to save the result into (the source file's folder by default).",
        )
        self.output_format = ComboBox(
            name="output_format",
            label="format",
            choices=[("." + name, name) for name in OUTPUT_FORMATS],
            value=OUTPUT_FORMATS[0],
            tooltip="\n".join(f".{name}: {FORMAT_NOTES[name]}." for name in OUTPUT_FORMATS),
        )
        self.save_button = PushButton(name="save_button", text="Save resampled")
        self.saved_path: Path | None = None
        self.saver: Any = None
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._syncing = False
        self._picked_dir = False  # the user chose the folder: keep it when the layer changes
        self._result_name, self._result_to_ref = "", False  # see name_result
        self.output_dir.changed.connect(self._on_output_dir)
        self.output_format.changed.connect(self._on_output_format)
        self._on_output_format()

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The row's widgets, in their order in the dock."""
        return (self.output_dir, self.output_format, self.save_button)

    @property
    def chosen_format(self) -> OutputFormat:
        """The chosen format, ``"nii.gz"`` or ``"nii.zarr"``."""
        return check_output_format(self.output_format.value)

    def file_name(self, name: str, to_ref: bool = False) -> str:
        """What the result of the layer *name* is saved as: ``<name>_resampled`` (or, after
        matching a layer, ``<name>_resampled_to_ref``) and the chosen format's suffix, the
        name's own volume suffix dropped as every front door does (``ct.nii.gz`` matched, in
        ``.nii.zarr``: ``ct_resampled_to_ref.nii.zarr``)."""
        return output_name(name, output_suffix(to_ref, self.chosen_format))

    @property
    def saving(self) -> bool:
        """True while a save runs in the background."""
        return self.saver is not None

    def sync(self) -> None:
        """Save: disabled while saving."""
        self.save_button.enabled = not self.saving

    def follow(self, source_path: str | None) -> None:
        """The folder of the chosen layer's file (the current folder for a layer from no
        file), until the user picks one."""
        if not self._picked_dir:
            self._syncing = True
            try:
                self.output_dir.value = Path(source_path).parent if source_path else Path.cwd()
            finally:
                self._syncing = False
            self.output_dir.tooltip = str(self.output_dir.value)

    @reported("Choosing the format")
    def _on_output_format(self, *_: Any) -> None:
        """Save's tooltip names the files the chosen format writes."""
        self.save_button.tooltip = (
            f"Write the last result as {self.file_name('<name>')} "
            f"({self.file_name('<name>', to_ref=True)} after matching a layer) into the folder "
            "above."
        )

    @reported("Choosing the folder")
    def _on_output_dir(self, *_: Any) -> None:
        self.output_dir.tooltip = str(self.output_dir.value)
        if not self._syncing:
            self._picked_dir = True

    def name_result(self, name: str, *, to_ref: bool = False) -> None:
        """A run of the layer *name* (onto a matched layer's grid: *to_ref*) added the result
        that Save writes next (:meth:`file_name`)."""
        self._result_name, self._result_to_ref = name, to_ref

    def save(self, layer: Any, confirm_overwrite: Callable[[Path], bool]) -> Any:
        """Write *layer* (None: no result in the viewer), the result :meth:`name_result` named,
        in the chosen format into the chosen folder, in a background thread; return the worker,
        or None (a save already running, nothing to save, folder missing, overwrite declined),
        reported.

        An existing file or folder of that name is replaced only if *confirm_overwrite* says
        yes, and only when the new one is complete (the writers' atomic rename).
        """
        from napari.qt.threading import create_worker

        from napari_resample.plugin.writer import write_nifti, write_nifti_labels

        if self.saving:
            self.status_line.report("A save is already running; wait for it to finish.", "warning")
            return None
        self.saved_path = None
        if layer is None:
            self.status_line.report("Nothing to save: run Resample first.", "error")
            return None
        folder = Path(cast(str, self.output_dir.value or "")).expanduser()
        problem = folder_problem(folder)
        if problem is not None:
            self.status_line.report(f"Cannot save: {problem}.", "error")
            return None
        path = folder / self.file_name(self._result_name, self._result_to_ref)
        # a .nii.zarr is a folder: exists() sees it too, and the writer replaces it whole
        if path.exists() and not confirm_overwrite(path):
            self.status_line.report(f"Not saved: {path} exists and was kept.", "info")
            return None
        data, state, kind = layer.as_layer_data_tuple()
        write = write_nifti_labels if kind == "labels" else write_nifti
        worker = create_worker(
            write, str(path), data, state, _start_thread=False, _ignore_errors=True
        )
        self._connections = [
            (worker.returned, self._on_saved),
            (worker.errored, lambda exc: self._on_save_error(path, exc)),
            (worker.finished, self._on_save_finished),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self.saver = worker
        self.on_idle()
        self.status_line.say(f"Saving {path}...")
        worker.start()
        return worker

    def detach(self) -> None:
        """The widget goes: a save going on still writes its file, but reports to no one."""
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []
        self.saver = None

    @reported("Reporting the save's failure")
    def _on_save_error(self, path: Path, exc: BaseException) -> None:
        self.status_line.report(f"Could not save {path}: {os_reason(exc, path.parent)}", "error")

    @reported("Reporting the save")
    def _on_saved(self, written: list[str]) -> None:
        self.saved_path = Path(written[0])
        self.status_line.report(f"Saved {written[0]}", "info")

    @reported("Finishing the save")
    def _on_save_finished(self) -> None:
        self.saver = None
        self._connections = []
        self.on_idle()


def folder_problem(folder: Path) -> str | None:
    """Why *folder* cannot take a saved file, as the end of a sentence naming it, or None.

    Examples
    --------
    >>> folder_problem(Path("/no/such/folder"))
    'the folder /no/such/folder does not exist'
    """
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"no permission to write into {folder}"
        return None
    if folder.exists():
        return f"{folder} is a file, not a folder"
    return f"the folder {folder} does not exist"


def os_reason(exc: BaseException, folder: Path) -> str:
    """What a failed write says to the user: for an OS error its reason about *folder* (the
    OS's text names the temporary file written first, which the user never asked for), else
    the exception's own text.

    Examples
    --------
    >>> os_reason(PermissionError(13, "Permission denied", "/d/.x.nii.gz.12.tmp"), Path("/d"))
    'no permission to write into /d'
    >>> os_reason(OSError(30, "Read-only file system", "/d/.x.tmp"), Path("/d"))
    'read-only file system (/d)'
    """
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write into {folder}"
    return f"{exc.strerror[:1].lower()}{exc.strerror[1:]} ({folder})"
