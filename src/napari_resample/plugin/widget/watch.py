"""Following one napari layer's geometry and data at a time, so that the read-out stays true."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Layer events after which the read-out (spacing, field of view) is recomputed.
GEOMETRY_EVENTS = ("scale", "translate", "rotate", "shear", "affine")


class LayerWatch:
    """Connects *on_geometry* and *on_data* to the events of the layer followed, and only that
    layer's.

    The source and the matched layer have a watch each: the layer the source was matched to may
    become the source, and dropping one role must not drop the other's connections.

    Attributes
    ----------
    layer : napari layer or None
        The layer followed.
    """

    def __init__(self, on_geometry: Callable[..., Any], on_data: Callable[..., Any]) -> None:
        self.on_geometry = on_geometry
        self.on_data = on_data
        self.layer: Any = None

    def follow(self, layer: Any) -> None:
        """Move the connections from the layer followed to *layer* (None: follow none)."""
        if layer is self.layer:
            return
        if self.layer is not None:
            for name in GEOMETRY_EVENTS:
                getattr(self.layer.events, name).disconnect(self.on_geometry)
            self.layer.events.data.disconnect(self.on_data)
        if layer is not None:
            for name in GEOMETRY_EVENTS:
                getattr(layer.events, name).connect(self.on_geometry)
            layer.events.data.connect(self.on_data)
        self.layer = layer
