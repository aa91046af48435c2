"""The "Resample volume" dock widget (menu Layers > Transform).

UI only: the target, the read-out, Run and Save. A layer becomes a NIfTI volume in the file's
voxel order (:func:`napari_resample._layout.volume_from_layer`), the core's one file pipeline
(:func:`napari_resample._pipeline.resample_volume`) resamples it in a background thread, and the
result is added as ``<name>_resampled`` through the reader's conversion. Saving goes through the
plugin's writer, in a background thread too.

While a run goes, the Resample button is Cancel (the engine stops between two slabs) and the
widget's progress bar and napari's activity dock follow the engine slab by slab. The read-out
shows the peak memory the run will need (the engine's own estimate,
:func:`napari_resample._resample.estimate_memory`); a run that does not fit
in the memory available now is refused before it starts. Every slot reports its failures as a
napari notification naming what failed: none escapes to Qt.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    TupleEdit,
)
from nibabel.affines import voxel_sizes

from napari_resample import _memory
from napari_resample._geometry import resampled_affine
from napari_resample._io import NiftiVolume
from napari_resample._layout import (
    METADATA_KEY,
    StorageOrder,
    nifti_affine_from_napari,
    stored_shape,
    volume_from_layer,
)
from napari_resample._names import output_name
from napari_resample._options import ANCHORS, INTERPOLATIONS, Anchor, Interpolation, validate_size
from napari_resample._pipeline import resample_volume
from napari_resample._reader import layer_data_from_volume
from napari_resample._resample import ResamplingCancelled, estimate_memory

if TYPE_CHECKING:
    import napari

#: The specification's common target sizes (X, Y, Z).
PRESETS: dict[str, tuple[int, int, int]] = {
    "128 x 128 x 128": (128, 128, 128),
    "224 x 224 x 128": (224, 224, 128),
    "256 x 256 x 256": (256, 256, 256),
    "512 x 512 x 256": (512, 512, 256),
}
#: Layer events after which the read-out (spacing, field of view) is recomputed.
_GEOMETRY_EVENTS = ("scale", "translate", "rotate", "shear", "affine")
CUSTOM = "custom"
AUTO = "auto"
MAX_SIZE = 8192
RUN_TEXT, CANCEL_TEXT = "Resample", "Cancel"
#: Characters of a status message shown before its middle is elided (the full text is the
#: status' tooltip and the notification's).
STATUS_CHARS = 90
#: Seconds between two updates of napari's activity-dock bar (the widget's own bar: every 1 %).
ACTIVITY_INTERVAL = 0.25


@dataclass(frozen=True)
class _Job:
    """Everything a run needs, captured on the main thread before the worker starts."""

    layer: Any
    layer_type: str
    volume: NiftiVolume  # the layer's volume in file voxel order (I, J, K)
    size: tuple[int, int, int]
    interpolation: Interpolation
    anchor: Anchor
    antialias: bool


def _layer_state(layer: Any) -> dict[str, Any]:
    """The geometry attributes of a napari layer, as writers receive them."""
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": layer.affine.affine_matrix,
        "metadata": layer.metadata,
    }


def _info(layer: Any) -> dict[str, Any]:
    return dict(layer.metadata.get(METADATA_KEY) or {})


def _fmt(values, digits: int = 3) -> str:
    return " x ".join(f"{v:.{digits}g}" for v in values)


def _mib(nbytes: float) -> str:
    """A size in MiB, or KiB under 1 MiB.

    Examples
    --------
    >>> _mib(3 * 2**20), _mib(1536)
    ('3.0 MiB', '1.5 KiB')
    """
    if nbytes < 2**20:
        return f"{nbytes / 2**10:,.1f} KiB"
    return f"{nbytes / 2**20:,.1f} MiB"


def _elide_middle(text: str, limit: int = STATUS_CHARS) -> str:
    """*text* cut to *limit* characters by an ellipsis in its middle (its end says the most).

    Examples
    --------
    >>> _elide_middle("Saved /a/very/long/path/scan_resampled.nii.gz", 30)
    'Saved /a/v…an_resampled.nii.gz'
    """
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}…{text[len(text) - (limit - head - 1) :]}"


def _unusable(layer: Any) -> str | None:
    """One sentence saying why *layer* cannot be resampled, or None when it can."""
    if getattr(layer, "multiscale", False):
        return f"{layer.name!r} is a multiscale image: only single-resolution volumes resample."
    if getattr(layer, "rgb", False):
        return f"{layer.name!r} is an RGB image: only single-channel volumes resample."
    if layer.ndim != 3:
        return f"{layer.name!r} is not a single 3D volume (shape {layer.data.shape})."
    return None


def _reported(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Qt slot of the widget: an exception becomes a notification
    ``"<what> failed: <exception>"`` (and the status line) instead of reaching Qt."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def slot(self: ResampleWidget, *args: Any) -> Any:
            try:
                return method(self, *args)
            except Exception as exc:
                self._report(f"{what} failed: {exc}", "error")
                return None

        return slot

    return decorate


def _ask_overwrite(path: Path) -> bool:
    """Default confirmation: a Qt question box."""
    from qtpy.QtWidgets import QMessageBox

    buttons = QMessageBox.StandardButton  # the scoped enum: Qt6 has no QMessageBox.Yes
    answer = QMessageBox.question(
        None,
        "Overwrite file?",
        f"{path} already exists. Overwrite it?",
        buttons.Yes | buttons.No,
        buttons.No,
    )
    return answer == buttons.Yes


class ResampleWidget(Container):
    """Resample an Image or Labels layer to a target size, keeping its field of view.

    The target size and preset are the user's: they follow the chosen layer's size only until
    the user sets them (the "current size" button goes back to the layer's size). Resample runs
    in a background thread (Cancel stops it between two slabs, adding nothing); Save writes in
    a background thread too. Layers that cannot be resampled (RGB, multiscale, not 3D) are
    refused with one sentence in the read-out.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    confirm_overwrite : callable, optional
        ``confirm_overwrite(path) -> bool``, asked before an existing file is replaced; a Qt
        question box by default. Also settable as the attribute of the same name.

    Attributes
    ----------
    saved_path : pathlib.Path or None
        The file the last finished save wrote (None before, and while a save runs).
    """

    def __init__(
        self,
        napari_viewer: napari.viewer.Viewer,
        confirm_overwrite: Callable[[Path], bool] | None = None,
    ) -> None:
        self.viewer = napari_viewer
        self.confirm_overwrite = confirm_overwrite or _ask_overwrite
        self.layer = ComboBox(
            name="layer",
            label="layer",
            choices=self._layer_choices,
            tooltip="The Image or Labels layer to resample (one 3D volume).",
        )
        self.preset = ComboBox(
            name="preset",
            label="preset",
            choices=[CUSTOM, *PRESETS],
            value=CUSTOM,
            tooltip="Common target sizes (X, Y, Z); 'custom' for your own.",
        )
        self.target_size = TupleEdit(
            name="target_size",
            label="target size (X, Y, Z)",
            value=(1, 1, 1),
            options={"min": 1, "max": MAX_SIZE},
            tooltip="Voxels along the file's i, j, k axes: the order of desired_volume.",
        )
        self.current_size = PushButton(
            name="current_size",
            text="current size",
            tooltip="Set the target size back to the chosen layer's own size.",
        )
        self.interpolation = ComboBox(
            name="interpolation",
            label="interpolation",
            choices=[AUTO, *INTERPOLATIONS],
            tooltip="auto: label voting for Labels layers, cubic B-spline for images.",
        )
        self.anchor = ComboBox(
            name="anchor",
            label="anchor",
            choices=list(ANCHORS),
            tooltip="origin: the first voxel's centre stays; center: the outer edges stay.",
        )
        self.antialias = CheckBox(
            name="antialias",
            label="antialias",
            value=False,
            tooltip="Smooth downsampled axes with a Gaussian first so fine patterns do not alias.",
        )
        self.summary = Label(name="summary", label="")
        self.summary.tooltip = "The chosen layer now, the result, and the memory a run needs."
        self.memory_warning = Label(name="memory_warning", label="")
        self.memory_warning.tooltip = "Shown when a run would need more memory than is free now."
        self.run_button = PushButton(
            name="run_button",
            text=RUN_TEXT,
            tooltip="Resample in the background; while it runs, this button cancels it.",
        )
        self.progress_bar = ProgressBar(
            name="progress_bar", label="", value=0, min=0, max=100, tooltip="Resampling progress."
        )
        self.output_dir = FileEdit(
            name="output_dir",
            label="save to",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            tooltip="Folder for <name>_resampled.nii.gz (the source file's folder by default).",
        )
        self.save_button = PushButton(
            name="save_button",
            text="Save resampled",
            tooltip="Write the last result as <name>_resampled.nii.gz into the folder above.",
        )
        self.status = Label(name="status", label="")
        self.status.tooltip = "What happened last."
        super().__init__(
            widgets=[
                self.layer,
                self.preset,
                self.target_size,
                self.current_size,
                self.interpolation,
                self.anchor,
                self.antialias,
                self.summary,
                self.memory_warning,
                self.run_button,
                self.progress_bar,
                self.output_dir,
                self.save_button,
                self.status,
            ]
        )
        for label in (self.summary, self.memory_warning, self.status):
            self._never_widen(label)
        self.memory_warning.native.setStyleSheet("color: red")
        self._worker: Any = None
        self._cancel: threading.Event | None = None
        self._saver: Any = None
        self.saved_path: Path | None = None
        self._progress: Any = None
        self._next_activity = 0.0
        self._result: Any = None
        self._result_base = ""
        self._syncing = False
        self._watched: Any = None
        self._too_big = False
        self._picked_dir = False  # the user chose "save to": keep it when the layer changes
        self._picked_size = False  # the user chose the target: keep it when the layer changes

        self.layer.changed.connect(self._on_layer)
        self.preset.changed.connect(self._on_preset)
        self.target_size.changed.connect(self._on_size)
        self.current_size.changed.connect(self._on_current_size)
        for widget in (self.interpolation, self.anchor, self.antialias):
            widget.changed.connect(self._update_summary)
        self.run_button.changed.connect(self._on_run_button)
        self.save_button.changed.connect(self._on_save_button)
        self.output_dir.changed.connect(self._on_output_dir)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)
        self.reset_choices()
        active = self.viewer.layers.selection.active
        if any(active is layer for _, layer in self._layer_choices()):
            self.layer.value = active
        self._on_layer()
        self._offer_default_reader()

    @_reported("Offering NIfTI Resample as the default reader")
    def _offer_default_reader(self) -> None:
        from napari_resample._default_reader import offer_default_reader

        offer_default_reader()

    @staticmethod
    def _never_widen(label: Label) -> None:
        """A read-out label that wraps its lines and never asks the dock for more width."""
        from qtpy.QtWidgets import QSizePolicy

        native = label.native
        native.setWordWrap(True)
        policy = native.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        native.setSizePolicy(policy)

    # ------------------------------------------------------------------ read-out

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels

        return [(lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image | Labels)]

    @_reported("Updating the layer list")
    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer list; when the chosen layer went, follow the new choice (or none)."""
        super().reset_choices(*args)
        if hasattr(self, "_watched") and self.layer.value is not self._watched:
            self._on_layer()

    def _file_view(self, layer: Any) -> tuple[tuple[int, ...], np.ndarray] | None:
        """File voxel order size and affine of *layer*, or None if it is not one volume."""
        if layer is None or _unusable(layer) is not None:
            return None
        storage = StorageOrder.from_dict(_info(layer).get("storage"))
        affine = nifti_affine_from_napari(layer.data.shape, storage, _layer_state(layer))
        return stored_shape(layer.data.shape, storage), affine

    def _watch(self, layer: Any) -> None:
        """Follow *layer*'s geometry and data (only that layer's) so the read-out stays true."""
        if layer is self._watched:
            return
        if self._watched is not None:
            for name in _GEOMETRY_EVENTS:
                getattr(self._watched.events, name).disconnect(self._update_summary)
            self._watched.events.data.disconnect(self._on_data)
        self._watched = layer
        if layer is not None:
            for name in _GEOMETRY_EVENTS:
                getattr(layer.events, name).connect(self._update_summary)
            layer.events.data.connect(self._on_data)

    @_reported("Choosing the layer")
    def _on_layer(self, *_: Any) -> None:
        layer = self.layer.value
        self._watch(layer)
        if not self._picked_dir:
            source = _info(layer).get("source_path") if layer is not None else None
            self._syncing = True
            try:
                self.output_dir.value = Path(source).parent if source else Path.cwd()
            finally:
                self._syncing = False
            self.output_dir.tooltip = str(self.output_dir.value)
        self._on_data()

    @_reported("Choosing the folder")
    def _on_output_dir(self, *_: Any) -> None:
        self.output_dir.tooltip = str(self.output_dir.value)
        if not self._syncing:
            self._picked_dir = True

    @_reported("Reading the layer's size")
    def _on_data(self, *_: Any) -> None:
        """Prefill the target with the layer's size (until the user sets one), then refresh the
        read-out."""
        if not self._picked_size:
            self._set_size_to_layer()
        self._update_summary()

    def _set_size_to_layer(self) -> None:
        view = self._file_view(self.layer.value)
        if view is not None:
            self._syncing = True
            try:
                self.target_size.value = view[0]
                self.preset.value = CUSTOM
            finally:
                self._syncing = False

    @_reported("Restoring the current size")
    def _on_current_size(self, *_: Any) -> None:
        """The target back to the chosen layer's size, and following the layer again."""
        self._picked_size = False
        self._set_size_to_layer()
        self._update_summary()

    @_reported("Choosing the preset")
    def _on_preset(self, value: str) -> None:
        if self._syncing or value == CUSTOM:
            return
        self._picked_size = True
        self._syncing = True
        try:
            self.target_size.value = PRESETS[value]
        finally:
            self._syncing = False
        self._update_summary()

    @_reported("Setting the size")
    def _on_size(self, value: tuple[int, ...]) -> None:
        if not self._syncing:
            self._picked_size = True
            match = [name for name, size in PRESETS.items() if size == tuple(value)]
            self._syncing = True
            try:
                self.preset.value = match[0] if match else CUSTOM
            finally:
                self._syncing = False
        self._update_summary()

    def _interpolation_for(self, layer: Any) -> Interpolation:
        from napari.layers import Labels

        interpolation = self.interpolation.value
        if interpolation == AUTO:  # the layer type the user sees decides
            interpolation = "label" if isinstance(layer, Labels) else "bspline"
        return cast(Interpolation, interpolation)

    def _memory_problem(self, layer: Any, size: tuple[int, ...], new: tuple[int, ...]) -> str:
        """The peak-memory line of the read-out, and sets :attr:`_too_big`."""
        peak = estimate_memory(size, layer.data.dtype, new, self._interpolation_for(layer))
        free = _memory.available_memory()
        self._too_big = free is not None and peak > free
        if self._too_big:
            self.memory_warning.value = (
                f"Too big: the run needs {_mib(peak)} at its peak but only {_mib(free or 0)} "
                "is available now. Choose a smaller size."
            )
        else:
            self.memory_warning.value = ""
        return f"peak memory: {_mib(peak)}" + (f" of {_mib(free)} available" if free else "")

    @_reported("Updating the read-out")
    def _update_summary(self, *_: Any) -> None:
        layer = self.layer.value
        self._too_big = False
        self.memory_warning.value = ""
        try:
            if layer is None:
                self.summary.value = (
                    "Open a volume (File > Open Sample > NIfTI Resample) to start."
                )
                return
            problem = _unusable(layer)
            view = self._file_view(layer)
            if problem is not None or view is None:
                self.summary.value = problem or f"{layer.name!r} cannot be resampled."
                return
            size, affine = view
            new = tuple(int(n) for n in self.target_size.value)
            spacing = voxel_sizes(affine)
            new_spacing = voxel_sizes(resampled_affine(affine, size, new, self.anchor.value))
            fov = np.asarray(size) * spacing
            itemsize = np.dtype(layer.data.dtype).itemsize
            self.summary.value = "\n".join(
                [
                    f"now: {_fmt(size, 6)} voxels, spacing {_fmt(spacing)} mm",
                    f"new: {_fmt(new, 6)} voxels, spacing {_fmt(new_spacing)} mm",
                    f"field of view (kept): {_fmt(fov, 4)} mm",
                    f"output: {_mib(np.prod(new, dtype=np.float64) * itemsize)}"
                    f" ({layer.data.dtype})",
                    self._memory_problem(layer, size, new),
                ]
            )
        finally:
            self._sync_buttons()

    def _sync_buttons(self) -> None:
        """Run: Cancel while running, else Resample (disabled while saving or when too big);
        Save: disabled while saving."""
        if self.running:
            self.run_button.text, self.run_button.enabled = CANCEL_TEXT, True
        else:
            self.run_button.text = RUN_TEXT
            self.run_button.enabled = not self.saving and not self._too_big
        self.save_button.enabled = not self.saving

    # ---------------------------------------------------------------------- run

    @property
    def running(self) -> bool:
        """True while a resampling runs in the background."""
        return self._worker is not None

    @property
    def saving(self) -> bool:
        """True while a save runs in the background."""
        return self._saver is not None

    @property
    def result_layer(self) -> Any:
        """The layer added by the last finished run (None before)."""
        return self._result

    def _prepare(self) -> _Job:
        from napari.layers import Labels

        layer = self.layer.value
        if layer is None:
            raise ValueError("choose an Image or Labels layer to resample")
        if getattr(layer, "multiscale", False):
            raise ValueError(f"cannot resample the multiscale layer {layer.name!r}")
        if getattr(layer, "rgb", False):
            raise ValueError(f"cannot resample the RGB layer {layer.name!r}: one channel only")
        if layer.ndim != 3:
            raise ValueError(
                f"resampling needs a 3D layer; {layer.name!r} has shape {layer.data.shape}"
            )
        size = validate_size(tuple(self.target_size.value))
        view = self._file_view(layer)
        interpolation = self._interpolation_for(layer)
        if view is not None:
            peak = estimate_memory(view[0], layer.data.dtype, size, interpolation)
            free = _memory.available_memory()
            if free is not None and peak > free:
                raise ValueError(
                    f"the run needs {_mib(peak)} at its peak but only {_mib(free)} is available"
                )
        # ndim 3: a 2D or single-volume 4D file is resampled (and saved) as the 3D volume shown
        volume = volume_from_layer(layer.data, _layer_state(layer), 3)
        layer_type = "labels" if isinstance(layer, Labels) else "image"
        if layer_type == "labels" and np.shares_memory(volume.data, layer.data):
            # painting during the run must not reach the worker
            volume = replace(volume, data=volume.data.copy())
        return _Job(
            layer, layer_type, volume, size, interpolation, self.anchor.value, self.antialias.value
        )

    @_reported("The Resample button")
    def _on_run_button(self, *_: Any) -> None:
        if self.running:
            self.cancel()
        else:
            self.run()

    @_reported("Cancelling")
    def cancel(self, *_: Any) -> bool:
        """Stop the running resampling (within one slab); True if one was running.

        Nothing is added; the status says the run was cancelled once the worker stopped.
        """
        if self._cancel is None or not self.running:
            return False
        self._cancel.set()
        self.status.value = "Cancelling..."
        return True

    @_reported("Starting the resampling")
    def run(self, *_: Any) -> Any:
        """Start resampling the chosen layer in a background thread; return the worker.

        Refused (returns None, with a warning) while a previous run is still going, and (with
        an error) for a layer that cannot be resampled or a run that does not fit in memory.
        """
        from napari.qt.threading import create_worker
        from qtpy.QtCore import QTimer
        from superqt.utils import ensure_main_thread

        if self._worker is not None:
            self._report("A resampling is already running; wait for it to finish.", "warning")
            return None
        try:
            job = self._prepare()
        except ValueError as exc:
            self._report(f"Cannot resample: {exc}", "error")
            return None

        cancel = threading.Event()
        self.progress_bar.value = 0
        to_main = ensure_main_thread(self._on_progress)
        posted = [0]

        def on_progress(fraction: float) -> None:  # in the worker: post whole percents only
            percent = round(min(max(fraction, 0.0), 1.0) * 100)
            if percent > posted[0]:
                posted[0] = percent
                to_main(percent / 100)

        worker = create_worker(
            resample_volume,
            job.volume,
            job.size,
            interpolation=job.interpolation,
            anchor=job.anchor,
            antialias=job.antialias,
            progress=on_progress,
            cancel=cancel,
            _start_thread=False,
            _ignore_errors=True,  # reported by _on_error below, not re-raised a second time
        )
        worker.returned.connect(lambda result: self._add_result(job, result, cancel))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._cancel = cancel
        self._sync_buttons()
        self.status.value = f"Resampling {job.layer.name} to {_fmt(job.size, 6)}..."
        worker.start()
        # napari's activity dock builds its bar in ~0.1 s: in an event of its own, so that the
        # event loop never stalls for that plus the start of the run
        QTimer.singleShot(0, lambda: self._open_activity(worker, job))
        return worker

    @_reported("Showing the run in the activity dock")
    def _open_activity(self, worker: Any, job: _Job) -> None:
        from napari.utils import progress

        if self._worker is worker and self._progress is None:
            bar = progress(total=100, desc=f"Resampling {job.layer.name}")
            if self._worker is not worker:  # finished while napari built the bar (it processes
                bar.close()  # events meanwhile)
                return
            self._progress = bar
            bar.update(int(self.progress_bar.value))

    @_reported("Showing progress")
    def _on_progress(self, fraction: float) -> None:
        """Show *fraction* in the widget's bar and the activity dock's; never backwards (Qt may
        deliver queued calls out of order)."""
        target = round(min(max(fraction, 0.0), 1.0) * 100)
        if self.running:
            self.progress_bar.value = max(int(self.progress_bar.value), target)
        bar = self._progress
        now = time.monotonic()
        # napari's activity bar repaints the viewer on each update (30-50 ms): a few a second
        if bar is not None and target > bar.n and (target == 100 or now >= self._next_activity):
            self._next_activity = now + ACTIVITY_INTERVAL
            bar.update(target - bar.n)

    @_reported("Reporting the resampling's failure")
    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, ResamplingCancelled):
            self._report("Resampling cancelled: nothing was added.", "info")
        else:
            self._report(f"Resampling failed: {exc}", "error")

    @_reported("Finishing the resampling")
    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        cancelled = self._cancel is not None and self._cancel.is_set()
        self._worker = None
        self._cancel = None
        if cancelled:
            self.progress_bar.value = 0
        self._sync_buttons()

    @_reported("Adding the resampled layer")
    def _add_result(self, job: _Job, result: NiftiVolume, cancel: threading.Event) -> None:
        # A Qt slot: an exception escaping it would abort a viewer run without napari's hook.
        if cancel.is_set():  # cancelled after the last slab: the user said no, nothing is added
            self._report("Resampling cancelled: nothing was added.", "info")
            return
        try:
            self._on_done(job, result)
        except Exception as exc:
            self._report(f"Could not add the resampled layer: {exc}", "error")

    def _on_done(self, job: _Job, result: NiftiVolume) -> None:
        from napari.layers import Layer

        source = job.layer
        data, kwargs, _ = layer_data_from_volume(
            replace(result, path=job.volume.path),
            name=f"{source.name}_resampled",
            layer_type=job.layer_type,
        )
        kwargs["metadata"][METADATA_KEY].update(
            shape=job.size,
            spacing=tuple(float(v) for v in voxel_sizes(result.affine)),
            resampled_from={
                "layer": source.name,
                "shape": tuple(int(n) for n in job.volume.data.shape),
                "spacing": tuple(float(v) for v in voxel_sizes(job.volume.affine)),
                "affine": job.volume.affine,
            },
            interpolation=job.interpolation,
            anchor=job.anchor,
            antialias=job.antialias,
        )
        kwargs["metadata"] = {**source.metadata, **kwargs["metadata"]}
        kwargs.update(opacity=source.opacity, blending=source.blending)
        if job.layer_type == "image":
            kwargs.update(
                colormap=source.colormap,
                contrast_limits=source.contrast_limits,
                gamma=source.gamma,
            )
        layer = Layer.create(data, kwargs, job.layer_type)
        self.progress_bar.value = 100
        self.viewer.add_layer(layer)
        self._result = layer
        self._result_base = source.name
        self._report(f"Added {layer.name!r}: {_fmt(job.size, 6)} voxels.", "info")

    # --------------------------------------------------------------------- save

    @_reported("The Save button")
    def _on_save_button(self, *_: Any) -> None:
        self.save()

    @_reported("Saving")
    def save(self, *_: Any) -> Any:
        """Write the last result as ``<name>_resampled.nii.gz`` into the chosen folder, in a
        background thread; return the worker.

        Returns None (nothing to save, folder missing, overwrite declined, a save already
        running). When the worker finished, :attr:`saved_path` is the file written (None if the
        write failed, reported).
        """
        from napari.qt.threading import create_worker

        from napari_resample._writer import write_nifti

        if self._saver is not None:
            self._report("A save is already running; wait for it to finish.", "warning")
            return None
        self.saved_path = None
        layer = self._result
        if layer is None or layer not in self.viewer.layers:
            self._report("Nothing to save: run Resample first.", "error")
            return None
        folder = Path(cast(str, self.output_dir.value or "")).expanduser()
        if not folder.is_dir():
            self._report(f"Cannot save: folder {str(folder)!r} does not exist.", "error")
            return None
        path = folder / output_name(self._result_base)
        if path.exists() and not self.confirm_overwrite(path):
            self._report(f"Not saved: {path} exists and was kept.", "info")
            return None
        data, state, _ = layer.as_layer_data_tuple()
        worker = create_worker(
            write_nifti, str(path), data, state, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(self._on_saved)
        worker.errored.connect(lambda exc: self._report(f"Could not save {path}: {exc}", "error"))
        worker.finished.connect(self._on_save_finished)
        self._saver = worker
        self._sync_buttons()
        self.status.value = _elide_middle(f"Saving {path}...")
        self.status.tooltip = f"Saving {path}..."
        worker.start()
        return worker

    @_reported("Reporting the save")
    def _on_saved(self, written: list[str]) -> None:
        self.saved_path = Path(written[0])
        self._report(f"Saved {written[0]}", "info")

    @_reported("Finishing the save")
    def _on_save_finished(self) -> None:
        self._saver = None
        self._sync_buttons()

    def _report(self, message: str, level: str) -> None:
        """*message* in the status line (its middle elided when long; the full text as the
        tooltip) and as a napari notification of *level*."""
        from napari.utils.notifications import show_error, show_info, show_warning

        self.status.value = _elide_middle(message)
        self.status.tooltip = message
        {"info": show_info, "warning": show_warning, "error": show_error}[level](message)
