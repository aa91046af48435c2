"""The "Resample volume" dock widget (menu Layers > Transform).

UI only: the target, the read-out, Run and Save. A layer becomes a NIfTI volume in the file's
voxel order (:func:`napari_resample.plugin.layout.volume_from_layer`) and is resampled in a
background thread to one of three targets:

size
    a voxel count per axis, by the core's one file pipeline
    (:func:`napari_resample.pipeline.run.resample_volume`); the result is ``<name>_resampled``;
spacing
    a voxel size in mm per axis, turned into the size that keeps the field of view
    (:func:`napari_resample.engine.grid.spacing_size`), then as "size";
match layer
    another open layer's grid (:func:`napari_resample.plugin.layout.grid_of_layer`), by
    :func:`napari_resample.pipeline.reference.resample_volume_to_grid`; the result,
    ``<name>_resampled_to_ref``, takes that layer's data order and transforms, so it lies on
    it voxel for voxel. The read-out shows how much of that layer the source covers, and
    refuses pairs that do not overlap.

The result is added through the reader's conversion. Saving goes through the plugin's writer,
in a background thread too.

While a run goes, the Resample button is Cancel (the engine stops between two slabs) and the
widget's progress bar and napari's activity dock follow the engine slab by slab. The read-out
shows the peak memory the run will need (the engine's own estimate,
:func:`napari_resample.engine.resample.estimate_memory`); a run that does not fit
in the memory available now is refused before it starts. Every slot reports its failures as a
napari notification naming what failed: none escapes to Qt.
"""

from __future__ import annotations

import functools
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

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

from napari_resample.engine import memory as _memory
from napari_resample.engine.geometry import resampled_affine
from napari_resample.engine.grid import (
    Grid,
    format_bounds,
    overlap_fraction,
    spacing_size,
    voxel_spacing,
    world_bounds,
)
from napari_resample.engine.options import (
    ANCHORS,
    INTERPOLATIONS,
    Anchor,
    Interpolation,
    validate_size,
)
from napari_resample.engine.progress import ResamplingCancelled
from napari_resample.engine.resample import estimate_memory
from napari_resample.io.names import OUTPUT_SUFFIX, REFERENCE_SUFFIX, output_name
from napari_resample.io.nifti import NiftiVolume
from napari_resample.pipeline.reference import LOW_OVERLAP, resample_volume_to_grid
from napari_resample.pipeline.rules import interpolation_for_layer
from napari_resample.pipeline.run import resample_volume
from napari_resample.plugin.layout import (
    METADATA_KEY,
    StorageOrder,
    grid_of_layer,
    napari_from_stored,
    nifti_affine_from_napari,
    stored_shape,
    volume_from_layer,
)
from napari_resample.plugin.reader import layer_data_from_volume

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
Target = Literal["size", "spacing", "match layer"]
#: What the result's grid is given by: a voxel count, a voxel size, or another layer's grid.
TARGETS: tuple[str, ...] = get_args(Target)
SIZE, SPACING, MATCH = TARGETS
#: Bounds of the target spacing fields (mm); the smallest is also their precision (3 decimals).
MIN_SPACING, MAX_SPACING = 1e-3, 1e4
#: Colours of the read-out's refusals (Run disabled) and warnings.
RED, ORANGE = "color: red", "color: #e08000"
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
    target: str = SIZE
    spacing: tuple[float, float, float] | None = None  # asked, for target "spacing"
    grid: Grid | None = None  # for target "match layer"
    reference: dict[str, Any] | None = None  # the matched layer's name, storage and transforms


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


def _geometry_copy(layer: Any) -> dict[str, Any]:
    """The layer's name, storage order, transforms, units and axis labels now: what a result
    laid on it takes (copied, so that moving the layer during a run does not move the result)."""
    return {
        "name": layer.name,
        "storage": StorageOrder.from_dict(_info(layer).get("storage")),
        "scale": tuple(float(v) for v in layer.scale),
        "translate": tuple(float(v) for v in layer.translate),
        "rotate": np.array(layer.rotate, dtype=np.float64),
        "shear": np.array(layer.shear, dtype=np.float64),
        "affine": np.array(layer.affine.affine_matrix, dtype=np.float64),
        "units": tuple(layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }


def _resample_to_grid(volume: NiftiVolume, grid: Grid, **kwargs: Any) -> tuple[NiftiVolume, float]:
    """:func:`resample_volume_to_grid` in the worker, without its low-overlap warning: the
    read-out showed it before the run and the status reports the overlap after it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* covers only ", category=UserWarning)
        return resample_volume_to_grid(volume, grid, **kwargs)


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


def _percent(fraction: float) -> str:
    """A fraction as a percentage, never rounded to 0 % or 100 % when it is not.

    Examples
    --------
    >>> _percent(0.25), _percent(1e-5), _percent(0.99999), _percent(1.0)
    ('25.0%', '<0.1%', '>99.9%', '100%')
    """
    if fraction >= 1.0:
        return "100%"
    if 0.0 < fraction < 0.001:
        return "<0.1%"
    if 0.999 < fraction < 1.0:
        return ">99.9%"
    return f"{100 * fraction:.1f}%"


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


def _fit_height(native: Any) -> None:
    """A word-wrapped QLabel's minimum height: what its text takes at its current width."""
    native.setMinimumHeight(max(0, native.heightForWidth(max(native.width(), 1))))


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
    """Resample an Image or Labels layer to a target size or spacing, keeping its field of
    view, or onto another layer's grid.

    The target size, preset and spacing are the user's: they follow the chosen layer only until
    the user sets them (the "current size" button goes back to the layer's size). With "match
    layer", the read-out shows how much of the other layer the source covers; a pair that does
    not overlap is refused (Run disabled). Resample runs in a background thread (Cancel stops it
    between two slabs, adding nothing); Save writes in a background thread too. Layers that
    cannot be resampled (RGB, multiscale, not 3D) are refused with one sentence in the read-out.

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
        self.target = ComboBox(
            name="target",
            label="target",
            choices=list(TARGETS),
            value=SIZE,
            tooltip=(
                "size: voxels per axis; spacing: voxel size in mm per axis (both keep the "
                "field of view); match layer: another layer's grid, voxel for voxel."
            ),
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
        self.target_spacing = TupleEdit(
            name="target_spacing",
            label="spacing mm (X, Y, Z)",
            value=(1.0, 1.0, 1.0),
            # the step sets the decimals shown (3); the arrows then step by 0.1 mm
            options={"min": MIN_SPACING, "max": MAX_SPACING, "step": MIN_SPACING},
            tooltip=(
                "Voxel size in mm along the file's i, j, k axes (the order of the target "
                "size). The size is rounded so that the field of view is kept."
            ),
        )
        for field in self.target_spacing:
            cast(Any, field).step = 0.1
        self.reference = ComboBox(
            name="reference",
            label="match layer",
            choices=self._reference_choices,
            tooltip=(
                "The layer whose grid the result takes, voxel for voxel: its shape, spacing, "
                "origin and orientation (another open 3D Image or Labels layer)."
            ),
        )
        self.interpolation = ComboBox(
            name="interpolation",
            label="interpolation",
            choices=[AUTO, *INTERPOLATIONS],
            tooltip=("auto: label voting for Labels layers, cubic B-spline for images."),
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
        self.target_warning = Label(name="target_warning", label="")
        self.target_warning.tooltip = (
            "Why the target cannot be run (red), or how little of the matched layer the "
            "source covers (orange)."
        )
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
        self.status = Label(name="status", label="")
        self.status.tooltip = "What happened last."
        super().__init__(
            widgets=[
                self.layer,
                self.target,
                self.preset,
                self.target_size,
                self.current_size,
                self.target_spacing,
                self.reference,
                self.interpolation,
                self.anchor,
                self.antialias,
                self.summary,
                self.target_warning,
                self.memory_warning,
                self.run_button,
                self.progress_bar,
                self.output_dir,
                self.save_button,
                self.status,
            ]
        )
        for label in (self.summary, self.target_warning, self.memory_warning, self.status):
            self._never_widen(label)
        self.memory_warning.native.setStyleSheet(RED)
        self._worker: Any = None
        self._cancel: threading.Event | None = None
        self._saver: Any = None
        self.saved_path: Path | None = None
        self._progress: Any = None
        self._next_activity = 0.0
        self._result: Any = None
        self._result_base = ""
        self._result_suffix = OUTPUT_SUFFIX
        self._syncing = False
        self._watched: Any = None
        self._watched_reference: Any = None
        self._too_big = False
        self._refusal: str | None = None  # why the target cannot run now (Run disabled)
        self._picked_dir = False  # the user chose "save to": keep it when the layer changes
        self._picked_size = False  # the user chose the target: keep it when the layer changes
        self._picked_spacing = False  # the same for the target spacing

        self.layer.changed.connect(self._on_layer)
        self.target.changed.connect(self._on_target)
        self.preset.changed.connect(self._on_preset)
        self.target_size.changed.connect(self._on_size)
        self.current_size.changed.connect(self._on_current_size)
        self.target_spacing.changed.connect(self._on_spacing)
        self.reference.changed.connect(self._on_reference)
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
        self._show_target_fields()
        self._on_layer()
        self._offer_default_reader()

    @_reported("Offering NIfTI Resample as the default reader")
    def _offer_default_reader(self) -> None:
        from napari_resample.plugin.default_reader import offer_default_reader

        offer_default_reader()

    @staticmethod
    def _never_widen(label: Label) -> None:
        """A read-out label that wraps its lines and never asks the dock for more width, but
        as much height as its wrapped lines take (napari's dock, a scroll area, does not ask
        labels their height for a width: the label sets its own minimum on each resize and
        on each new text)."""
        from qtpy.QtCore import QEvent, QObject
        from qtpy.QtWidgets import QSizePolicy

        native = label.native
        native.setWordWrap(True)
        policy = native.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        native.setSizePolicy(policy)

        class FitHeight(QObject):
            def eventFilter(self, obj: Any, event: Any) -> bool:
                if event.type() == QEvent.Type.Resize:
                    _fit_height(obj)
                return False

        native.installEventFilter(FitHeight(native))  # parented: lives as long as the label
        label.changed.connect(lambda *_: _fit_height(native))

    # ------------------------------------------------------------------ read-out

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels

        return [(lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image | Labels)]

    def _reference_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        """The layers whose grid the source can be matched to: the other 3D volumes."""
        source = self.layer.value if hasattr(self, "layer") else None
        return [
            (name, lay)
            for name, lay in self._layer_choices()
            if lay is not source and _unusable(lay) is None
        ]

    @_reported("Updating the layer list")
    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer lists; when a chosen layer went, follow the new choice (or none)."""
        super().reset_choices(*args)
        if not hasattr(self, "_watched_reference"):
            return
        if self.layer.value is not self._watched:
            self._on_layer()
        elif self.reference.value is not self._watched_reference:
            self._on_reference()

    def _file_view(self, layer: Any) -> tuple[tuple[int, ...], np.ndarray] | None:
        """File voxel order size and affine of *layer*, or None if it is not one volume."""
        if layer is None or _unusable(layer) is not None:
            return None
        storage = StorageOrder.from_dict(_info(layer).get("storage"))
        affine = nifti_affine_from_napari(layer.data.shape, storage, _layer_state(layer))
        return stored_shape(layer.data.shape, storage), affine

    def _watch(self, layer: Any) -> None:
        """Follow *layer*'s geometry and data (only that layer's) so the read-out stays true."""
        if layer is not self._watched:
            self._follow(self._watched, layer, self._update_summary, self._on_data)
            self._watched = layer

    def _watch_reference(self, layer: Any) -> None:
        """Follow the matched layer's geometry and data too: they are the target grid."""
        if layer is not self._watched_reference:
            on_change = self._on_reference_change
            self._follow(self._watched_reference, layer, on_change, on_change)
            self._watched_reference = layer

    @staticmethod
    def _follow(
        old: Any, new: Any, on_geometry: Callable[..., Any], on_data: Callable[..., Any]
    ) -> None:
        """Move the connections from *old*'s events to *new*'s. The source and the matched
        layer have slots of their own: the layer the source was matched to may become the
        source, and dropping one role must not drop the other's connections."""
        if old is not None:
            for name in _GEOMETRY_EVENTS:
                getattr(old.events, name).disconnect(on_geometry)
            old.events.data.disconnect(on_data)
        if new is not None:
            for name in _GEOMETRY_EVENTS:
                getattr(new.events, name).connect(on_geometry)
            new.events.data.connect(on_data)

    def _on_reference_change(self, *_: Any) -> None:
        """The matched layer moved or changed its data: the read-out follows (when matching)."""
        if self.target.value == MATCH:
            self._update_summary()

    @_reported("Choosing the target")
    def _on_target(self, *_: Any) -> None:
        self._show_target_fields()
        self._update_summary()

    def _show_target_fields(self) -> None:
        """Only the fields of the chosen target; anchor and antialias do not apply to a grid
        taken from a layer."""
        target = self.target.value
        for widget in (self.preset, self.target_size, self.current_size):
            widget.visible = target == SIZE
        self.target_spacing.visible = target == SPACING
        self.reference.visible = target == MATCH
        self.anchor.visible = self.antialias.visible = target != MATCH

    @_reported("Choosing the layer to match")
    def _on_reference(self, *_: Any) -> None:
        self._watch_reference(self.reference.value)
        self._on_reference_change()

    @_reported("Choosing the layer")
    def _on_layer(self, *_: Any) -> None:
        layer = self.layer.value
        self._watch(layer)
        self.reference.reset_choices()  # the source is not a grid to match
        self._watch_reference(self.reference.value)
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
        if not self._picked_spacing:
            self._set_spacing_to_layer()
        self._update_summary()

    def _set_spacing_to_layer(self) -> None:
        view = self._file_view(self.layer.value)
        if view is not None:
            spacing = np.clip(voxel_spacing(view[1]), MIN_SPACING, MAX_SPACING)
            self._syncing = True
            try:
                self.target_spacing.value = tuple(float(v) for v in spacing)
            finally:
                self._syncing = False

    @_reported("Setting the spacing")
    def _on_spacing(self, *_: Any) -> None:
        if not self._syncing:
            self._picked_spacing = True
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

        # the layer type the user sees decides "auto", by the pipeline's rule (every target)
        return interpolation_for_layer(self.interpolation.value, isinstance(layer, Labels))

    def _new_size(
        self, size: tuple[int, ...], affine: np.ndarray
    ) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """The target size and the spacing it gives, for the "size" and "spacing" targets."""
        if self.target.value == SPACING:
            return spacing_size(size, affine, tuple(self.target_spacing.value))
        new = validate_size(tuple(int(n) for n in self.target_size.value))
        spacing = voxel_spacing(resampled_affine(affine, size, new, self.anchor.value))
        return new, (float(spacing[0]), float(spacing[1]), float(spacing[2]))

    def _reference_grid(self) -> Grid:
        """The grid of the layer to match, or ValueError naming why there is none."""
        reference = self.reference.value
        if reference is None:
            raise ValueError("open another 3D Image or Labels layer to match its grid")
        problem = _unusable(reference)
        if problem is not None:
            raise ValueError(problem)
        return grid_of_layer(reference.data.shape, _layer_state(reference), reference.name)

    def _overlap(self, layer: Any, size: tuple[int, ...], affine: np.ndarray, grid: Grid) -> float:
        """The fraction of *grid* inside the layer's field of view; sets the read-out's
        refusal (none) or warning (little)."""
        fraction = overlap_fraction(size, affine, grid.shape, grid.affine)
        if fraction == 0.0:
            self._refuse(
                f"No overlap (0%): {layer.name!r} and {grid.name!r} do not overlap. "
                f"{layer.name!r} spans {format_bounds(world_bounds(size, affine))}; "
                f"{grid.name!r} spans {format_bounds(world_bounds(grid.shape, grid.affine))}."
            )
        elif fraction < LOW_OVERLAP:
            self.target_warning.value = (
                f"Low overlap: {layer.name!r} covers only {_percent(fraction)} of "
                f"{grid.name!r}; the rest of the result will be 0."
            )
            self.target_warning.native.setStyleSheet(ORANGE)
        return fraction

    def _refuse(self, sentence: str) -> None:
        """Disable Run for the chosen target, saying why in red."""
        self._refusal = sentence
        self.target_warning.value = sentence
        self.target_warning.native.setStyleSheet(RED)

    def _memory_problem(self, layer: Any, size: tuple[int, ...], new: tuple[int, int, int]) -> str:
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
        self._too_big = False
        self._refusal = None
        self.memory_warning.value = ""
        self.target_warning.value = ""
        try:
            self.summary.value = "\n".join(self._read_out(self.layer.value))
        finally:
            self._sync_buttons()

    def _read_out(self, layer: Any) -> list[str]:
        """The lines of the read-out for *layer* and the chosen target; sets the refusal and
        warning labels on the way."""
        if layer is None:
            return ["Open a volume (File > Open Sample > NIfTI Resample) to start."]
        problem = _unusable(layer)
        view = self._file_view(layer)
        if problem is not None or view is None:
            return [problem or f"{layer.name!r} cannot be resampled."]
        size, affine = view
        spacing = voxel_spacing(affine)
        lines = [f"now: {_fmt(size, 6)} voxels, spacing {_fmt(spacing)} mm"]
        if self.target.value == MATCH:
            try:
                grid = self._reference_grid()
            except ValueError as exc:
                self._refuse(f"Cannot match: {exc}.")
                return [*lines, "new: no layer to match"]
            new = grid.shape
            overlap = self._overlap(layer, size, affine, grid)
            lines += [
                f"new: {_fmt(new, 6)} voxels, spacing {_fmt(voxel_spacing(grid.affine))} mm"
                f" (the grid of {grid.name!r})",
                f"overlap: {layer.name!r} covers {_percent(overlap)} of {grid.name!r}",
            ]
        else:
            new, new_spacing = self._new_size(size, affine)
            asked = ""
            if self.target.value == SPACING:
                asked = f" (asked {_fmt(self.target_spacing.value, 4)} mm)"
            lines += [
                f"new: {_fmt(new, 6)} voxels, spacing {_fmt(new_spacing)} mm{asked}",
                f"field of view (kept): {_fmt(np.asarray(size) * spacing, 4)} mm",
            ]
        itemsize = np.dtype(layer.data.dtype).itemsize
        return [
            *lines,
            f"output: {_mib(np.prod(new, dtype=np.float64) * itemsize)} ({layer.data.dtype})",
            self._memory_problem(layer, size, new),
        ]

    def _sync_buttons(self) -> None:
        """Run: Cancel while running, else Resample (disabled while saving, when too big, or
        when the target is refused); Save: disabled while saving."""
        if self.running:
            self.run_button.text, self.run_button.enabled = CANCEL_TEXT, True
        else:
            self.run_button.text = RUN_TEXT
            self.run_button.enabled = (
                not self.saving and not self._too_big and self._refusal is None
            )
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
        view = self._file_view(layer)
        if view is None:
            raise ValueError(f"{layer.name!r} cannot be resampled")
        target = self.target.value
        spacing, grid, reference = None, None, None
        if target == MATCH:
            grid = self._reference_grid()
            if overlap_fraction(view[0], view[1], grid.shape, grid.affine) == 0.0:
                raise ValueError(f"{layer.name!r} and {grid.name!r} do not overlap")
            size = grid.shape
            reference = _geometry_copy(self.reference.value)
        elif target == SPACING:
            spacing = tuple(float(v) for v in self.target_spacing.value)
            size = spacing_size(view[0], view[1], spacing)[0]
        else:
            size = validate_size(tuple(self.target_size.value))
        interpolation = self._interpolation_for(layer)
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
            layer,
            layer_type,
            volume,
            size,
            interpolation,
            self.anchor.value,
            self.antialias.value,
            target,
            cast("tuple[float, float, float] | None", spacing),
            grid,
            reference,
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

        # errors are reported by _on_error below, not re-raised a second time
        common = {"progress": on_progress, "cancel": cancel, "_start_thread": False}
        if job.grid is None:
            worker = create_worker(
                resample_volume,
                job.volume,
                job.size,
                interpolation=job.interpolation,
                anchor=job.anchor,
                antialias=job.antialias,
                _ignore_errors=True,
                **common,
            )
            where = f"to {_fmt(job.size, 6)}"
        else:
            worker = create_worker(
                _resample_to_grid,
                job.volume,
                job.grid,
                interpolation=job.interpolation,
                _ignore_errors=True,
                **common,
            )
            where = f"onto the grid of {job.grid.name}"
        worker.returned.connect(lambda result: self._add_result(job, result, cancel))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._cancel = cancel
        self._sync_buttons()
        self.status.value = _elide_middle(f"Resampling {job.layer.name} {where}...")
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
    def _add_result(
        self, job: _Job, result: NiftiVolume | tuple[NiftiVolume, float], cancel: threading.Event
    ) -> None:
        # A Qt slot: an exception escaping it would abort a viewer run without napari's hook.
        if cancel.is_set():  # cancelled after the last slab: the user said no, nothing is added
            self._report("Resampling cancelled: nothing was added.", "info")
            return
        try:
            self._on_done(job, result)
        except Exception as exc:
            self._report(f"Could not add the resampled layer: {exc}", "error")

    def _on_done(self, job: _Job, outcome: NiftiVolume | tuple[NiftiVolume, float]) -> None:
        from napari.layers import Layer

        source = job.layer
        result, overlap = outcome if isinstance(outcome, tuple) else (outcome, None)
        suffix = OUTPUT_SUFFIX if job.reference is None else REFERENCE_SUFFIX
        data, kwargs, _ = layer_data_from_volume(
            replace(result, path=job.volume.path),
            name=source.name + suffix.removesuffix(".nii.gz"),
            layer_type=job.layer_type,
        )
        info = kwargs["metadata"][METADATA_KEY]
        info.update(
            shape=job.size,
            spacing=tuple(float(v) for v in voxel_spacing(result.affine)),
            resampled_from={
                "layer": source.name,
                "shape": tuple(int(n) for n in job.volume.data.shape),
                "spacing": tuple(float(v) for v in voxel_spacing(job.volume.affine)),
                "affine": job.volume.affine,
            },
            interpolation=job.interpolation,
        )
        if job.reference is None:
            info.update(anchor=job.anchor, antialias=job.antialias)
            if job.spacing is not None:
                info.update(target_spacing=job.spacing)
        else:
            values = result.scaled_data() if job.layer_type == "image" else result.data
            data = self._lay_on(job.reference, values, kwargs)
            info["resampled_to"] = {"layer": job.reference["name"], "overlap": overlap}
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
        self._result_suffix = suffix
        done = f"Added {layer.name!r}: {_fmt(job.size, 6)} voxels"
        if job.reference is not None and overlap is not None:
            done += f" on the grid of {job.reference['name']!r}, {_percent(overlap)} covered"
        self._report(done + ".", "info")

    @staticmethod
    def _lay_on(reference: dict[str, Any], values: np.ndarray, kwargs: dict[str, Any]) -> Any:
        """The result's napari data (from its stored-order *values*) in the matched layer's
        data order, and that layer's own transforms (units, axis labels) in *kwargs*: the two
        then map every voxel index to the same world point.

        The reader's conversion would reorder the axes by the grid's orientation, which for a
        layer rotated in napari need not be that layer's order.
        """
        storage = StorageOrder(reference["storage"].ornt, 3)
        for key in ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels"):
            kwargs[key] = reference[key]
        kwargs["metadata"][METADATA_KEY]["storage"] = storage.to_dict()
        return napari_from_stored(values, storage)

    # --------------------------------------------------------------------- save

    @_reported("The Save button")
    def _on_save_button(self, *_: Any) -> None:
        self.save()

    @_reported("Saving")
    def save(self, *_: Any) -> Any:
        """Write the last result as ``<name>_resampled.nii.gz`` (``<name>_resampled_to_ref.nii.gz``
        for a matched layer) into the chosen folder, in a background thread; return the worker.

        Returns None (nothing to save, folder missing, overwrite declined, a save already
        running). When the worker finished, :attr:`saved_path` is the file written (None if the
        write failed, reported).
        """
        from napari.qt.threading import create_worker

        from napari_resample.plugin.writer import write_nifti

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
        path = folder / output_name(self._result_base, self._result_suffix)
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
