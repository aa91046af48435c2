"""The target chooser: size (with presets), spacing, or another layer's grid.

The target size, preset and spacing are the user's: they follow the chosen layer only until the
user sets them (the "current size" button goes back to the layer's size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from magicgui.widgets import ComboBox, PushButton, TupleEdit, Widget

from napari_resample.engine.grid import Grid, voxel_spacing
from napari_resample.engine.options import Anchor
from napari_resample.plugin.widget.model import (
    CUSTOM,
    MATCH,
    MAX_SIZE,
    MAX_SPACING,
    MIN_SPACING,
    PRESETS,
    SIZE,
    SPACING,
    TARGETS,
    Source,
    Target,
)
from napari_resample.plugin.widget.status import StatusLine, reported


class TargetPanel:
    """The fields saying what grid the result gets, and how they follow the chosen layer.

    Parameters
    ----------
    status_line : StatusLine
        Where a failing slot reports.
    reference_choices : callable
        The layers whose grid the source can be matched to, as ``(name, layer)`` pairs.
    on_change : callable
        Called (without arguments) after every change of the target.

    Attributes
    ----------
    target, preset, target_size, current_size, target_spacing, reference : magicgui widgets
    """

    def __init__(
        self,
        status_line: StatusLine,
        reference_choices: Callable[..., list[tuple[str, Any]]],
        on_change: Callable[[], None],
    ) -> None:
        self.status_line = status_line
        self.on_change = on_change
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
            choices=reference_choices,
            tooltip=(
                "The layer whose grid the result takes, voxel for voxel: its shape, spacing, "
                "origin and orientation (another open 3D Image or Labels layer)."
            ),
        )
        self._source: Source | None = None
        self._syncing = False
        self._picked_size = False  # the user chose the size: keep it when the layer changes
        self._picked_spacing = False  # the same for the spacing
        self.target.changed.connect(self._on_target)
        self.preset.changed.connect(self._on_preset)
        self.target_size.changed.connect(self._on_size)
        self.current_size.changed.connect(self._on_current_size)
        self.target_spacing.changed.connect(self._on_spacing)

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The panel's widgets, in their order in the dock."""
        return (
            self.target,
            self.preset,
            self.target_size,
            self.current_size,
            self.target_spacing,
            self.reference,
        )

    def value(self, anchor: Anchor, grid: Grid | None, no_grid: str = "") -> Target:
        """The target the fields say, with *anchor* and the grid of the layer to match (or
        why there is none)."""
        return Target(
            self.target.value,
            tuple(int(n) for n in self.target_size.value),
            tuple(float(v) for v in self.target_spacing.value),
            anchor,
            grid,
            no_grid or Target.no_grid,
        )

    def follow(self, source: Source | None) -> None:
        """Prefill the size and spacing with *source*'s (the chosen layer's), each until the
        user sets it."""
        self._source = source
        if not self._picked_size:
            self._set_size_to_source()
        if not self._picked_spacing and source is not None:
            spacing = np.clip(voxel_spacing(source.affine), MIN_SPACING, MAX_SPACING)
            self._set(self.target_spacing, tuple(float(v) for v in spacing))

    def show_fields(self) -> None:
        """Only the fields of the chosen target."""
        target = self.target.value
        for widget in (self.preset, self.target_size, self.current_size):
            widget.visible = target == SIZE
        self.target_spacing.visible = target == SPACING
        self.reference.visible = target == MATCH

    def _set(self, widget: Widget, value: Any) -> None:
        """Set a field from the layer or a preset: not the user's choice."""
        self._syncing = True
        try:
            cast(Any, widget).value = value
        finally:
            self._syncing = False

    def _set_size_to_source(self) -> None:
        if self._source is not None:
            self._set(self.target_size, self._source.size)
            self._set(self.preset, CUSTOM)

    @reported("Choosing the target")
    def _on_target(self, *_: Any) -> None:
        self.show_fields()
        self.on_change()

    @reported("Restoring the current size")
    def _on_current_size(self, *_: Any) -> None:
        """The target back to the chosen layer's size, and following the layer again."""
        self._picked_size = False
        self._set_size_to_source()
        self.on_change()

    @reported("Choosing the preset")
    def _on_preset(self, value: str) -> None:
        if self._syncing or value == CUSTOM:
            return
        self._picked_size = True
        self._set(self.target_size, PRESETS[value])
        self.on_change()

    @reported("Setting the size")
    def _on_size(self, value: tuple[int, ...]) -> None:
        if not self._syncing:
            self._picked_size = True
            match = [name for name, size in PRESETS.items() if size == tuple(value)]
            self._set(self.preset, match[0] if match else CUSTOM)
        self.on_change()

    @reported("Setting the spacing")
    def _on_spacing(self, *_: Any) -> None:
        if not self._syncing:
            self._picked_spacing = True
        self.on_change()
