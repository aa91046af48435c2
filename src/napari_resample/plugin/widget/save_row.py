"""The save row: the folder and the Save button, writing through the plugin's NIfTI writer in a
background thread.

A folder that cannot take the file is refused before the write with one sentence naming it and
the reason (missing, a file, not writable); a write the OS refuses is reported the same way,
without the temporary file's name the OS error carries.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from magicgui.types import FileDialogMode
from magicgui.widgets import FileEdit, PushButton, Widget

from napari_resample.plugin.widget.status import StatusLine, reported


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
    save_button : magicgui.widgets.PushButton
    saved_path : pathlib.Path or None
        The file the last finished save wrote (None before, and while a save runs).
    """

    def __init__(self, status_line: StatusLine, on_idle: Callable[[], None]) -> None:
        self.status_line = status_line
        self.on_idle = on_idle
        self.output_dir = FileEdit(
            name="output_dir",
            label="save to",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            tooltip=(
                "Folder for <name>_resampled.nii.gz, or <name>_resampled_to_ref.nii.gz after "
                "matching a layer (the source file's folder by default)."
            ),
        )
        self.save_button = PushButton(
            name="save_button",
            text="Save resampled",
            tooltip=(
                "Write the last result as <name>_resampled.nii.gz (<name>_resampled_to_ref"
                ".nii.gz after matching a layer) into the folder above."
            ),
        )
        self.saved_path: Path | None = None
        self.saver: Any = None
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._syncing = False
        self._picked_dir = False  # the user chose the folder: keep it when the layer changes
        self.output_dir.changed.connect(self._on_output_dir)

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The row's widgets, in their order in the dock."""
        return (self.output_dir, self.save_button)

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

    @reported("Choosing the folder")
    def _on_output_dir(self, *_: Any) -> None:
        self.output_dir.tooltip = str(self.output_dir.value)
        if not self._syncing:
            self._picked_dir = True

    def save(self, layer: Any, file_name: str, confirm_overwrite: Callable[[Path], bool]) -> Any:
        """Write *layer* (None: no result in the viewer) as *file_name* in the chosen folder,
        in a background thread; return the worker, or None (a save already running, nothing to
        save, folder missing, overwrite declined), reported."""
        from napari.qt.threading import create_worker

        from napari_resample.plugin.writer import write_nifti

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
        path = folder / file_name
        if path.exists() and not confirm_overwrite(path):
            self.status_line.report(f"Not saved: {path} exists and was kept.", "info")
            return None
        data, state, _ = layer.as_layer_data_tuple()
        worker = create_worker(
            write_nifti, str(path), data, state, _start_thread=False, _ignore_errors=True
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
