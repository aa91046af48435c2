"""The "Resample volume" dock widget (menu Layers > Transform), composed of its parts.

A layer becomes a NIfTI volume in the file's voxel order
(:func:`napari_resample.plugin.layer_volume.volume_from_layer`) and is resampled in a background
thread to one of three targets:

size
    a voxel count per axis, by the core's one file pipeline
    (:func:`napari_resample.pipeline.run.resample_volume`); the result is ``<name>_resampled``;
spacing
    a voxel size in mm per axis, turned into the size that keeps the field of view
    (:func:`napari_resample.engine.grid.spacing_size`), then as "size";
match layer
    another open layer's grid (:func:`napari_resample.plugin.layer_volume.grid_of_layer`), by
    :func:`napari_resample.pipeline.reference.resample_volume_to_grid`; the result,
    ``<name>_resampled_to_ref``, takes that layer's data order and transforms, so it lies on
    it voxel for voxel. The read-out shows how much of that layer the source covers, and
    refuses pairs that do not overlap.

``interpolation="auto"`` is the pipeline's rule (:mod:`napari_resample.pipeline.rules`), on every
target. The parts: the target chooser (:mod:`.targets`), the options (:mod:`.options`), the
read-out (:mod:`.readout`, showing what the Qt-free :mod:`.model` computes), the run row
(:mod:`.run_row`, Resample / Cancel and progress), the save row (:mod:`.save_row`: folder,
format ``.nii.gz`` or ``.nii.zarr``, Save) and the status line (:mod:`.status`). They share one
label column: the dock lays their widgets out in one container. Every slot reports its failures
as a napari notification naming what failed: none escapes to Qt.

When the widget goes (the viewer closed, the dock closed) it cancels a run going on and
disconnects from the worker, the viewer and the layers it followed; removing the layer being
resampled cancels its run (:meth:`ResampleWidget.detach`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container

from napari_resample.engine import memory
from napari_resample.io.nifti import NiftiVolume
from napari_resample.plugin.layer_volume import grid_of_layer, plugin_info
from napari_resample.plugin.widget.job import Job, prepare_job, result_layer_data
from napari_resample.plugin.widget.model import (
    MATCH,
    ReadOut,
    Source,
    Target,
    layer_state,
    read_out,
    source_of,
    unusable,
)
from napari_resample.plugin.widget.options import OptionsPanel
from napari_resample.plugin.widget.readout import ReadOutPanel
from napari_resample.plugin.widget.run_row import RunRow
from napari_resample.plugin.widget.save_row import SaveRow
from napari_resample.plugin.widget.status import (
    StatusLine,
    ask_overwrite,
    narrow_choices,
    never_widen,
    reported,
)
from napari_resample.plugin.widget.targets import TargetPanel
from napari_resample.plugin.widget.watch import LayerWatch, ViewerWatch, watch_closing

if TYPE_CHECKING:
    import napari


class ResampleWidget(Container):
    """Resample an Image or Labels layer to a target size or spacing, keeping its field of
    view, or onto another layer's grid.

    The target size, preset and spacing are the user's: they follow the chosen layer only until
    the user sets them (the "current size" button goes back to the layer's size). With "match
    layer", the read-out shows how much of the other layer the source covers; a pair that does
    not overlap is refused (Run disabled). Resample runs in a background thread (Cancel stops it
    between two slabs, adding nothing); Save writes in a background thread too (``.nii.gz`` or
    a ``.nii.zarr`` folder). Layers that cannot be resampled (RGB, multiscale, not 3D) are
    refused with one sentence in the read-out.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    confirm_overwrite : callable, optional
        ``confirm_overwrite(path) -> bool``, asked before an existing output (a file or a
        ``.nii.zarr`` folder) is replaced; a Qt question box by default. Also settable as the
        attribute of the same name.
    """

    def __init__(
        self,
        napari_viewer: napari.viewer.Viewer,
        confirm_overwrite: Callable[[Path], bool] | None = None,
    ) -> None:
        self.viewer = napari_viewer
        self.confirm_overwrite = confirm_overwrite or ask_overwrite
        self.status_line = StatusLine()
        self.layer = ComboBox(
            name="layer",
            label="layer",
            choices=self._layer_choices,
            tooltip="The Image or Labels layer to resample (one 3D volume).",
        )
        self.targets = TargetPanel(self.status_line, self._reference_choices, self._update_summary)
        self.run_options = OptionsPanel(self._update_summary)
        self.read_out_panel = ReadOutPanel()
        self.run_row = RunRow(self.status_line, self._sync_buttons)
        self.save_row = SaveRow(self.status_line, self._sync_buttons)
        self._name_parts()
        super().__init__(
            widgets=[
                self.layer,
                *self.targets.widgets,
                *self.run_options.widgets,
                *self.read_out_panel.widgets,
                *self.run_row.widgets,
                *self.save_row.widgets,
                self.status,
            ]
        )
        self.read_out_panel.fit_to_dock()
        self.run_row.fit_to_dock()
        never_widen(self.status)
        narrow_choices(self.layer)
        narrow_choices(self.reference)
        self._result: Any = None
        self._source_watch = LayerWatch(self._update_summary, self._on_data)
        self._reference_watch = LayerWatch(self._on_reference_change, self._on_reference_change)
        self._connect()
        self.reset_choices()
        active = self.viewer.layers.selection.active
        if any(active is layer for _, layer in self._layer_choices()):
            self.layer.value = active
        self.targets.show_fields()
        self.run_options.show_for(self.target.value)
        self._on_layer()
        self._offer_default_reader()
        watch_closing(self.native, self.detach)

    def _name_parts(self) -> None:
        """The parts' widgets as the dock's own attributes: its public face."""
        targets, panel = self.targets, self.read_out_panel
        self.target, self.preset = targets.target, targets.preset
        self.reference, self.current_size = targets.reference, targets.current_size
        self.target_size, self.target_spacing = targets.target_size, targets.target_spacing
        options = self.run_options  # not self.options: a magicgui Widget's own attribute
        self.interpolation, self.anchor = options.interpolation, options.anchor
        self.antialias = options.antialias
        self.summary, self.target_warning = panel.summary, panel.target_warning
        self.memory_warning = panel.memory_warning
        self.run_button, self.progress_bar = self.run_row.run_button, self.run_row.progress_bar
        self.output_dir, self.save_button = self.save_row.output_dir, self.save_row.save_button
        self.output_format = self.save_row.output_format
        self.status = self.status_line.label

    def _connect(self) -> None:
        self.layer.changed.connect(self._on_layer)
        self.target.changed.connect(self._on_target)
        self.reference.changed.connect(self._on_reference)
        self.run_button.changed.connect(self._on_run_button)
        self.save_button.changed.connect(self.save)
        events = self.viewer.layers.events
        self._viewer_watch = ViewerWatch(events, self.reset_choices, self.run_row.layer_removed)

    def detach(self) -> None:
        """The widget goes (viewer or dock closed): cancel a run going on, drop what its worker
        still sends, follow the viewer and its layers no more (nothing reaches deleted Qt)."""
        self.run_row.detach()
        self.save_row.detach()
        self._viewer_watch.stop()
        self._source_watch.follow(None)
        self._reference_watch.follow(None)

    @reported("Offering NIfTI Resample as the default reader")
    def _offer_default_reader(self) -> None:
        from napari_resample.plugin.default_reader import offer_default_reader

        offer_default_reader()

    # ------------------------------------------------------------------ choices

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels

        return [(lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image | Labels)]

    def _reference_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        """The layers whose grid the source can be matched to: the other 3D volumes."""
        source = self.layer.value
        return [
            (name, lay)
            for name, lay in self._layer_choices()
            if lay is not source and unusable(lay) is None
        ]

    @reported("Updating the layer list")
    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer lists; when a chosen layer went, follow the new choice (or none)."""
        super().reset_choices(*args)
        if not hasattr(self, "_reference_watch"):
            return
        if self.layer.value is not self._source_watch.layer:
            self._on_layer()
        elif self.reference.value is not self._reference_watch.layer:
            self._on_reference()

    @reported("Choosing the layer")
    def _on_layer(self, *_: Any) -> None:
        layer = self.layer.value
        self._source_watch.follow(layer)
        self.reference.reset_choices()  # the source is not a grid to match
        self._reference_watch.follow(self.reference.value)
        info = plugin_info(layer.metadata) if layer is not None else {}
        self.save_row.follow(info.get("source_path"))
        self._on_data()

    @reported("Reading the layer's size")
    def _on_data(self, *_: Any) -> None:
        """Prefill the target with the layer's size (until the user sets one), then refresh the
        read-out."""
        self.run_options.forget()
        source = source_of(self.layer.value)
        self.targets.follow(source if isinstance(source, Source) else None)
        self._update_summary()

    @reported("Choosing the target")
    def _on_target(self, *_: Any) -> None:
        self.run_options.show_for(self.target.value)

    @reported("Choosing the layer to match")
    def _on_reference(self, *_: Any) -> None:
        self._reference_watch.follow(self.reference.value)
        self._on_reference_change()

    def _on_reference_change(self, *_: Any) -> None:
        """The matched layer moved or changed its data: the read-out follows (when matching)."""
        if self.target.value == MATCH:
            self._update_summary()

    # ------------------------------------------------------------------ read-out

    def _target(self) -> Target:
        """The target the fields say, with the grid of the layer to match when matching."""
        grid, no_grid = None, ""
        reference = self.reference.value
        if self.target.value == MATCH and reference is not None:
            no_grid = unusable(reference) or ""
            if not no_grid:
                state = layer_state(reference)
                grid = grid_of_layer(reference.data.shape, state, reference.name)
        return self.targets.value(self.anchor.value, grid, no_grid)

    def _read_out(self) -> ReadOut:
        layer = self.layer.value
        source = source_of(layer)
        if isinstance(source, str):
            return read_out(source, self._target(), None, None)
        free = memory.available_memory()
        return read_out(source, self._target(), self.run_options.resolved(layer), free)

    @reported("Updating the read-out")
    def _update_summary(self, *_: Any) -> None:
        self.status_line.forget_problem()  # it was about the inputs before this change
        self.read_out_panel.clear()
        try:
            self.read_out_panel.show(self._read_out())
        finally:
            self._sync_buttons()

    def _sync_buttons(self) -> None:
        """Run: Cancel while running, else Resample (disabled while saving, when too big, or
        when the target is refused); Save: disabled while saving."""
        self.run_row.sync(not self.saving and self.read_out_panel.shown.can_run)
        self.save_row.sync()

    # ---------------------------------------------------------------------- run

    @property
    def running(self) -> bool:
        """True while a resampling runs in the background."""
        return self.run_row.running

    @property
    def saving(self) -> bool:
        """True while a save runs in the background."""
        return self.save_row.saving

    @property
    def result_layer(self) -> Any:
        """The layer added by the last finished run (None before)."""
        return self._result

    @property
    def saved_path(self) -> Path | None:
        """The file or folder the last finished save wrote (None before, while a save runs)."""
        return self.save_row.saved_path

    @reported("The Resample button")
    def _on_run_button(self, *_: Any) -> None:
        if self.running:
            self.cancel()
        else:
            self.run()

    @reported("Cancelling")
    def cancel(self, *_: Any) -> bool:
        """Stop the running resampling (within one slab); True if one was running.

        Nothing is added; the status says the run was cancelled once the worker stopped.
        """
        return self.run_row.cancel()

    @reported("Starting the resampling")
    def run(self, *_: Any) -> Any:
        """Start resampling the chosen layer in a background thread; return the worker.

        Refused (returns None, with a warning) while a previous run is still going, and (with
        an error) for a layer that cannot be resampled or a run that does not fit in memory.
        """
        if self.running:
            self.status_line.report(
                "A resampling is already running; wait for it to finish.", "warning"
            )
            return None
        try:
            job = self._prepare()
        except ValueError as exc:
            self.status_line.report(f"Cannot resample: {exc}", "error")
            return None
        return self.run_row.start(job, self._add_result)

    def _prepare(self) -> Job:
        from napari.layers import Labels

        layer = self.layer.value
        layer_type = "labels" if isinstance(layer, Labels) else "image"
        target = self._target()
        reference = self.reference.value
        return prepare_job(
            layer, layer_type, target, self.interpolation.value, self.antialias.value, reference
        )

    def _add_result(self, job: Job, outcome: NiftiVolume | tuple[NiftiVolume, float]) -> None:
        from napari.layers import Layer

        (data, kwargs, layer_type), detail = result_layer_data(job, outcome)
        layer = Layer.create(data, kwargs, layer_type)
        self.viewer.add_layer(layer)
        self._result = layer
        self.save_row.name_result(job.layer.name, to_ref=job.reference is not None)
        self.status_line.report(f"Added {layer.name!r}: {detail}.", "info")

    # --------------------------------------------------------------------- save

    @reported("Saving")
    def save(self, *_: Any) -> Any:
        """Write the last result as ``<name>_resampled.nii.gz`` (``<name>_resampled_to_ref.nii.gz``
        for a matched layer; ``.nii.zarr`` if chosen) into the chosen folder, in a background
        thread; return the worker.

        Returns None (nothing to save, folder missing, overwrite declined, a save already
        running). When the worker finished, :attr:`saved_path` is the file (or folder) written
        (None if the write failed, reported).
        """
        layer = self._result
        if layer is not None and layer not in self.viewer.layers:
            layer = None  # the user removed it
        return self.save_row.save(layer, self.confirm_overwrite)
