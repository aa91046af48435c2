"""Following one napari layer's geometry and data at a time, so that the read-out stays true;
and the widget's own end (:func:`watch_closing`)."""

from __future__ import annotations

import weakref
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


class ViewerWatch:
    """Connects the viewer's layer-list events: *on_change* to every change of the list,
    *on_removed* (with the layer) to each removal; :meth:`stop` disconnects them all."""

    def __init__(
        self, events: Any, on_change: Callable[..., Any], on_removed: Callable[[Any], Any]
    ) -> None:
        self.events = events
        self.on_change = on_change
        self.on_removed = on_removed
        events.removed.connect(self._removed)
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(on_change)

    def _removed(self, event: Any) -> None:
        self.on_removed(event.value)

    def stop(self) -> None:
        """Follow the viewer no more (the widget went)."""
        self.events.removed.disconnect(self._removed)
        for event in (self.events.inserted, self.events.removed, self.events.reordered):
            event.disconnect(self.on_change)


def watch_closing(native: Any, on_close: Callable[[], None]) -> None:
    """Call *on_close* (a bound method, held weakly) once when the Qt widget *native* goes:
    taken out of its dock (napari's close button sets its parent to None) or deleted (the
    viewer closed).

    Both come before any of its children is used again from a queued call, so that *on_close*
    can stop what would still reach them.
    """
    from qtpy.QtCore import QEvent, QObject

    done: list[bool] = []
    # weak: a widget that is never docked and is garbage collected deletes *native* on the
    # way; its method must not be called then on a half-collected object
    method = weakref.WeakMethod(on_close)

    def close_once(*_: Any) -> None:
        call = method()
        if not done and call is not None:
            done.append(True)
            call()

    class OnUndock(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
                close_once()
            return False

    native.installEventFilter(OnUndock(native))  # parented: lives as long as the widget
    native.destroyed.connect(close_once)
