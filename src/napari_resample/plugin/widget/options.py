"""The options of a run: interpolation, anchor, antialias.

``interpolation="auto"`` is not decided here: the pipeline's rule
(:func:`napari_resample.pipeline.rules.resolve_for_layer`) resolves it on the volume the
chosen layer holds, as it does for every other front door and on every target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from magicgui.widgets import CheckBox, ComboBox, Widget

from napari_resample.engine.options import ANCHORS, INTERPOLATIONS, Interpolation
from napari_resample.pipeline.rules import resolve_for_layer
from napari_resample.plugin.layer_volume import volume_from_layer
from napari_resample.plugin.widget.model import MATCH, layer_state

AUTO = "auto"


class OptionsPanel:
    """The option fields.

    Parameters
    ----------
    on_change : callable
        Called (with the new value) after every change of an option.

    Attributes
    ----------
    interpolation, anchor : magicgui.widgets.ComboBox
    antialias : magicgui.widgets.CheckBox
    """

    def __init__(self, on_change: Callable[..., Any]) -> None:
        self.interpolation = ComboBox(
            name="interpolation",
            label="interpolation",
            choices=[AUTO, *INTERPOLATIONS],
            tooltip=(
                "auto: label voting for label maps (integer volumes with a label intent or few "
                "values, whatever the layer type), cubic B-spline for everything else."
            ),
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
        self._resolved: tuple[int, int, Interpolation] | None = None
        for widget in (self.interpolation, self.anchor, self.antialias):
            widget.changed.connect(on_change)

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The panel's widgets, in their order in the dock."""
        return (self.interpolation, self.anchor, self.antialias)

    def show_for(self, target: str) -> None:
        """Anchor and antialias do not apply to a grid taken from a layer."""
        self.anchor.visible = self.antialias.visible = target != MATCH

    def forget(self) -> None:
        """The chosen layer or its data changed: resolve ``auto`` again."""
        self._resolved = None

    def resolved(self, layer: Any) -> Interpolation:
        """The interpolation chosen; ``"auto"`` as the pipeline resolves it for *layer*'s volume
        (kept until the layer or its data change: the read-out follows every keystroke).

        An explicit choice is returned as it is: the pipeline checks it (and warns about it)
        once, when the run starts, not on every read-out.
        """
        choice = self.interpolation.value
        if choice != AUTO:
            return cast(Interpolation, choice)
        key = (id(layer), id(layer.data))
        if self._resolved is None or self._resolved[:2] != key:
            volume = volume_from_layer(layer.data, layer_state(layer), 3)
            labels = type(layer).__name__ == "Labels"
            self._resolved = (*key, resolve_for_layer(choice, volume, labels, warn=False))
        return self._resolved[2]
