"""The "Resample volume" dock widget (menu Layers > Transform).

UI only: the target, the read-out, Run and Save. A layer becomes a NIfTI volume in the file's
voxel order (:func:`napari_resample._layout.volume_from_layer`), the core's one file pipeline
(:func:`napari_resample._pipeline.resample_volume`) resamples it in a background thread, and the
result is added as ``<name>_resampled`` through the reader's conversion. Saving goes through the
plugin's writer.
"""

from __future__ import annotations

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
    PushButton,
    TupleEdit,
)
from nibabel.affines import voxel_sizes

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
    return f"{nbytes / 2**20:,.1f} MiB"


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

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    confirm_overwrite : callable, optional
        ``confirm_overwrite(path) -> bool``, asked before an existing file is replaced; a Qt
        question box by default. Also settable as the attribute of the same name.
    """

    def __init__(
        self,
        napari_viewer: napari.viewer.Viewer,
        confirm_overwrite: Callable[[Path], bool] | None = None,
    ) -> None:
        self.viewer = napari_viewer
        self.confirm_overwrite = confirm_overwrite or _ask_overwrite
        self.layer = ComboBox(name="layer", label="layer", choices=self._layer_choices)
        self.preset = ComboBox(
            name="preset", label="preset", choices=[CUSTOM, *PRESETS], value=CUSTOM
        )
        self.target_size = TupleEdit(
            name="target_size",
            label="target size (X, Y, Z)",
            value=(1, 1, 1),
            options={"min": 1, "max": MAX_SIZE},
            tooltip="Voxels along the file's i, j, k axes: the order of desired_volume.",
        )
        self.interpolation = ComboBox(
            name="interpolation", label="interpolation", choices=[AUTO, *INTERPOLATIONS]
        )
        self.anchor = ComboBox(name="anchor", label="anchor", choices=list(ANCHORS))
        self.antialias = CheckBox(name="antialias", label="antialias", value=False)
        self.summary = Label(name="summary", label="")
        self.run_button = PushButton(name="run_button", text="Resample")
        self.output_dir = FileEdit(
            name="output_dir", label="save to", mode=FileDialogMode.EXISTING_DIRECTORY
        )
        self.save_button = PushButton(name="save_button", text="Save resampled")
        self.status = Label(name="status", label="")
        super().__init__(
            widgets=[
                self.layer,
                self.preset,
                self.target_size,
                self.interpolation,
                self.anchor,
                self.antialias,
                self.summary,
                self.run_button,
                self.output_dir,
                self.save_button,
                self.status,
            ]
        )
        self._worker: Any = None
        self._progress: Any = None
        self._result: Any = None
        self._result_base = ""
        self._syncing = False
        self._watched: Any = None
        self._picked_dir = False  # the user chose "save to": keep it when the layer changes

        self.layer.changed.connect(self._on_layer)
        self.preset.changed.connect(self._on_preset)
        self.target_size.changed.connect(self._on_size)
        for widget in (self.interpolation, self.anchor, self.antialias):
            widget.changed.connect(self._update_summary)
        self.run_button.changed.connect(self.run)
        self.save_button.changed.connect(self.save)
        self.output_dir.changed.connect(self._on_output_dir)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)
        self.reset_choices()
        active = self.viewer.layers.selection.active
        if any(active is layer for _, layer in self._layer_choices()):
            self.layer.value = active
        self._on_layer()

    # ------------------------------------------------------------------ read-out

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels

        return [(lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image | Labels)]

    def _file_view(self, layer: Any) -> tuple[tuple[int, ...], np.ndarray] | None:
        """File voxel order size and affine of *layer*, or None if it is not one volume."""
        if layer is None or layer.multiscale or layer.ndim != 3:
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
        self._on_data()

    def _on_output_dir(self, *_: Any) -> None:
        if not self._syncing:
            self._picked_dir = True

    def _on_data(self, *_: Any) -> None:
        """Prefill the target size with the layer's current size, then refresh the read-out."""
        view = self._file_view(self.layer.value)
        if view is not None:
            self._syncing = True
            try:
                self.target_size.value = view[0]
                self.preset.value = CUSTOM
            finally:
                self._syncing = False
        self._update_summary()

    def _on_preset(self, value: str) -> None:
        if self._syncing or value == CUSTOM:
            return
        self._syncing = True
        try:
            self.target_size.value = PRESETS[value]
        finally:
            self._syncing = False
        self._update_summary()

    def _on_size(self, value: tuple[int, ...]) -> None:
        if not self._syncing:
            match = [name for name, size in PRESETS.items() if size == tuple(value)]
            self._syncing = True
            try:
                self.preset.value = match[0] if match else CUSTOM
            finally:
                self._syncing = False
        self._update_summary()

    def _update_summary(self, *_: Any) -> None:
        layer = self.layer.value
        view = self._file_view(layer)
        if layer is None:
            self.summary.value = "Open a volume (File > Open Sample > NIfTI Resample) to start."
            return
        if view is None:
            self.summary.value = (
                f"{layer.name!r} is not a single 3D volume (shape {layer.data.shape})."
            )
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
                f"output: {_mib(np.prod(new, dtype=np.float64) * itemsize)} ({layer.data.dtype})",
            ]
        )

    # ---------------------------------------------------------------------- run

    @property
    def running(self) -> bool:
        """True while a resampling runs in the background."""
        return self._worker is not None

    @property
    def result_layer(self) -> Any:
        """The layer added by the last finished run (None before)."""
        return self._result

    def _prepare(self) -> _Job:
        from napari.layers import Labels

        layer = self.layer.value
        if layer is None:
            raise ValueError("choose an Image or Labels layer to resample")
        if layer.multiscale:
            raise ValueError(f"cannot resample the multiscale layer {layer.name!r}")
        if layer.ndim != 3:
            raise ValueError(
                f"resampling needs a 3D layer; {layer.name!r} has shape {layer.data.shape}"
            )
        size = validate_size(tuple(self.target_size.value))
        # ndim 3: a 2D or single-volume 4D file is resampled (and saved) as the 3D volume shown
        volume = volume_from_layer(layer.data, _layer_state(layer), 3)
        layer_type = "labels" if isinstance(layer, Labels) else "image"
        if layer_type == "labels" and np.shares_memory(volume.data, layer.data):
            # painting during the run must not reach the worker
            volume = replace(volume, data=volume.data.copy())
        interpolation = self.interpolation.value
        if interpolation == AUTO:  # the layer type the user sees decides
            interpolation = "label" if layer_type == "labels" else "bspline"
        return _Job(
            layer, layer_type, volume, size, interpolation, self.anchor.value, self.antialias.value
        )

    def run(self, *_: Any) -> Any:
        """Start resampling the chosen layer in a background thread; return the worker.

        Refused (returns None, with a warning) while a previous run is still going.
        """
        from napari.qt.threading import create_worker
        from napari.utils import progress
        from superqt.utils import ensure_main_thread

        if self._worker is not None:
            self._report("A resampling is already running; wait for it to finish.", "warning")
            return None
        try:
            job = self._prepare()
        except ValueError as exc:
            self._report(f"Cannot resample: {exc}", "error")
            return None

        self._progress = progress(total=100, desc=f"Resampling {job.layer.name}")
        on_progress = ensure_main_thread(self._on_progress)
        worker = create_worker(
            resample_volume,
            job.volume,
            job.size,
            interpolation=job.interpolation,
            anchor=job.anchor,
            antialias=job.antialias,
            progress=on_progress,
            _start_thread=False,
            _ignore_errors=True,  # reported by _report below, not re-raised a second time
        )
        worker.returned.connect(lambda result: self._add_result(job, result))
        worker.errored.connect(lambda exc: self._report(f"Resampling failed: {exc}", "error"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.status.value = f"Resampling {job.layer.name} to {_fmt(job.size, 6)}..."
        worker.start()
        return worker

    def _on_progress(self, fraction: float) -> None:
        bar = self._progress
        if bar is not None:
            target = round(min(max(fraction, 0.0), 1.0) * 100)
            if target > bar.n:
                bar.update(target - bar.n)

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._worker = None
        self.run_button.enabled = True

    def _add_result(self, job: _Job, result: NiftiVolume) -> None:
        # A Qt slot: an exception escaping it would abort a viewer run without napari's hook.
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
        self.viewer.add_layer(layer)
        self._result = layer
        self._result_base = source.name
        self._report(f"Added {layer.name!r}: {_fmt(job.size, 6)} voxels.", "info")

    # --------------------------------------------------------------------- save

    def save(self, *_: Any) -> Path | None:
        """Write the last result as ``<name>_resampled.nii.gz`` into the chosen folder.

        Returns the path written, or None (nothing to save, folder missing, overwrite declined).
        """
        from napari_resample._writer import write_nifti

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
        try:
            written = write_nifti(str(path), data, state)[0]
        except Exception as exc:  # reported, never raised out of a button's slot
            self._report(f"Could not save {path}: {exc}", "error")
            return None
        self._report(f"Saved {written}", "info")
        return Path(written)

    def _report(self, message: str, level: str) -> None:
        from napari.utils.notifications import show_error, show_info, show_warning

        self.status.value = message
        {"info": show_info, "warning": show_warning, "error": show_error}[level](message)
