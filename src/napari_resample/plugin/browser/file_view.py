"""The viewer side of the browser: one file's layers at a time, read in a worker thread.

The next file's voxels replace the shown file's in the same two layers (an input, an output)
as soon as they are read: the viewer holds one file, this process at most two (the one shown
and the one being read). One read runs at a time; requests made meanwhile collapse into the
latest, read when it ends, so holding PageDown reads no file in between.

Why the layers are kept rather than removed and added anew, and why the grid is off while
layers come and go: napari (0.9) rebuilds its grid of views whenever the number of layers
changes the grid's shape, and the views it drops stay referenced with what they showed:
removing two layers and adding two in grid mode kept about one file's voxels each time
(measured as tests/test_qc_browser.py measures). A layer is replaced only when its kind
changes (an image after a label map) or the user removed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from napari_resample.plugin.browser.load import Loaded, load_entry
from napari_resample.plugin.browser.model import Entry

#: The output's opacity when overlaid on the input (an image; a label map's output becomes
#: outlines instead).
OVERLAY_OPACITY = 0.5


@contextmanager
def grid_paused(viewer: Any) -> Iterator[None]:
    """napari's grid off while layers come and go, then as it was: a grid of the same shape is
    kept, not rebuilt (napari rebuilds it when the number of layers changes its shape, and
    the views it drops keep what they showed)."""
    enabled = viewer.canvas.grid.enabled
    viewer.canvas.grid.enabled = False
    try:
        yield
    finally:
        viewer.canvas.grid.enabled = enabled


def refill(layer: Any, data: Any, kwargs: dict[str, Any], kind: str) -> bool:
    """Give *layer* the data and every attribute the reader sets (its geometry, name,
    metadata, an image's contrast); False (nothing changed) when *layer* is not of *kind* or
    has another number of axes."""
    from napari.layers import Image, Labels

    if type(layer) is not {"image": Image, "labels": Labels}.get(kind) or layer.ndim != data.ndim:
        return False
    identity = np.eye(data.ndim)
    layer.data = data
    layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
    layer.rotate = kwargs.get("rotate", identity)
    layer.shear = kwargs.get("shear", identity)
    layer.units, layer.axis_labels = kwargs["units"], kwargs["axis_labels"]
    layer.name, layer.metadata = kwargs["name"], kwargs["metadata"]
    if kind == "image":  # as a new layer sets them: the data's range, or the reader's
        limits = kwargs.get("contrast_limits")
        if limits is None:
            layer.reset_contrast_limits(mode="data")
            limits = tuple(layer.contrast_limits)
        layer.contrast_limits_range = limits
        layer.contrast_limits = limits
    return True


class FileView:
    """Shows the input and the output of one file in *viewer*.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    on_loaded : callable
        ``on_loaded(loaded: Loaded)`` on the main thread once a file's layers are in the viewer
        (or it could not be read): the dock shows its problems.
    on_error : callable
        ``on_error(exc: Exception)``: the reading thread failed outside any one file.

    Attributes
    ----------
    layers : list of napari layers
        The layers of the file shown (input first).
    overlay : bool
        Overlaid (True) or side by side in napari's grid (False).
    worker : napari worker or None
        The read going on.
    """

    def __init__(
        self,
        viewer: Any,
        on_loaded: Callable[[Loaded], object],
        on_error: Callable[[Exception], object],
    ) -> None:
        self.viewer = viewer
        self.on_loaded = on_loaded
        self.on_error = on_error
        self.layers: list[Any] = []
        self.overlay = False
        self.worker: Any = None
        self.wanted: Entry | None = None
        self.detached = False
        self._pending: tuple[Entry, str] | None = None

    @property
    def loading(self) -> bool:
        """True while a file is read (or one waits to be)."""
        return self.worker is not None or self._pending is not None

    def request(self, entry: Entry, folder: str) -> None:
        """Show *entry* (paths relative to *folder* looked up there): its voxels replace the
        ones shown when read."""
        self.wanted = entry
        self._pending = (entry, folder)
        if self.worker is None:
            self._start_next()

    def clear(self) -> None:
        """Remove the layers of the file shown (those the user removed already are skipped);
        a file being read is not shown."""
        self.wanted, self._pending = None, None
        layers, self.layers = self.layers, []
        with grid_paused(self.viewer):
            for layer in layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)

    def _start_next(self) -> None:
        from napari.qt.threading import create_worker

        if self._pending is None or self.detached:
            return
        entry, folder = self._pending
        self._pending = None
        # errors reach _errored (shown in the dock), not napari's hook a second time
        worker = create_worker(load_entry, entry, folder, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.finished.connect(lambda: self._finished(worker))
        self.worker = worker
        worker.start()

    def _returned(self, loaded: Loaded) -> None:
        if self.detached or loaded.entry is not self.wanted:
            return  # another file (or folder) was asked for meanwhile: dropped unseen
        try:
            self.show(loaded)
            self.arrange(self.overlay)
            if self.layers:
                self.viewer.reset_view()
        except Exception as exc:  # a slot: reported in the dock, never raised into Qt
            self.on_error(exc)
            return
        self.on_loaded(loaded)

    def show(self, loaded: Loaded) -> None:
        """Put the layers of *loaded* in the viewer, in the shown file's layers where they fit
        (:func:`refill`); the shown file's layers left over are removed."""
        from napari.layers import Layer

        with grid_paused(self.viewer):
            self.layers = self._refill_or_replace(loaded, Layer.create)

    def _refill_or_replace(self, loaded: Loaded, create: Callable[..., Any]) -> list[Any]:
        shown: list[Any] = []
        old = [layer for layer in self.layers if layer in self.viewer.layers]
        for data, kwargs, kind in loaded.layers:
            layer = old.pop(0) if old else None
            if layer is not None and refill(layer, data, kwargs, kind):
                shown.append(layer)
                continue
            new = create(data, kwargs, kind)
            if layer is None:
                self.viewer.add_layer(new)
            else:  # in its place (napari's canvas follows insertions and removals only)
                self.viewer.layers.insert(self.viewer.layers.index(layer), new)
                self.viewer.layers.remove(layer)
            shown.append(new)
        for layer in old:
            self.viewer.layers.remove(layer)
        return shown

    def _errored(self, exc: Exception) -> None:
        if not self.detached:
            self.on_error(exc)

    def _finished(self, worker: Any) -> None:
        if self.worker is worker:
            self.worker = None
            self._start_next()

    def arrange(self, overlay: bool) -> None:
        """Side by side (napari's grid) or overlaid: the output half transparent, a label
        map's output as outlines over its input."""
        from napari.layers import Labels

        self.overlay = overlay
        self.viewer.canvas.grid.enabled = not overlay and len(self.layers) > 1
        for layer in self.layers[1:]:
            if isinstance(layer, Labels):
                layer.contour = 1 if overlay else 0
            else:
                layer.opacity = OVERLAY_OPACITY if overlay else 1.0

    def detach(self) -> None:
        """The dock goes: nothing read from now on is shown (the layers shown stay)."""
        self.detached = True
        self._pending = None
