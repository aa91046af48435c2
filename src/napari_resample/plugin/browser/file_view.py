"""The viewer side of the browser: one file's layers at a time, read in a worker thread.

A request removes the layers of the file shown before anything of the next is read, so the
viewer and this process hold the voxels of one file at a time (plus the one being read). One
read runs at a time; requests made meanwhile collapse into the latest, read when it ends, so
holding PageDown reads no file in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_resample.plugin.browser.load import Loaded, load_entry
from napari_resample.plugin.browser.model import Entry

#: The output's opacity when overlaid on the input (an image; a label map's output becomes
#: outlines instead).
OVERLAY_OPACITY = 0.5


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
        self.detached = False
        self._pending: tuple[Entry, str] | None = None

    @property
    def loading(self) -> bool:
        """True while a file is read (or one waits to be)."""
        return self.worker is not None or self._pending is not None

    def request(self, entry: Entry, folder: str) -> None:
        """Show *entry* (paths relative to *folder* looked up there): the layers shown go now,
        the new ones come when read."""
        self.clear()
        self._pending = (entry, folder)
        if self.worker is None:
            self._start_next()

    def clear(self) -> None:
        """Remove the layers of the file shown (those the user removed already are skipped)."""
        layers, self.layers = self.layers, []
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
        if self.detached or self._pending is not None:
            return  # another file was asked for meanwhile: this one is dropped unseen
        from napari.layers import Layer

        try:
            self.clear()
            self.layers = [Layer.create(*data) for data in loaded.layers]
            for layer in self.layers:
                self.viewer.add_layer(layer)
            self.arrange(self.overlay)
            if self.layers:
                self.viewer.reset_view()
        except Exception as exc:  # a slot: reported in the dock, never raised into Qt
            self.on_error(exc)
            return
        self.on_loaded(loaded)

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
