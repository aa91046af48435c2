"""Make ``docs/screenshot.png``: napari with the phantom, its resampled copy and the widget
caught in the middle of a second run (its progress bar and the Cancel button showing).

Run under a display (``xvfb-run -a python docs/make_screenshot.py``); the test suite calls
:func:`make_screenshot` too and checks that the picture is not blank.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("screenshot.png")


def make_screenshot(path: str | Path = DEFAULT_PATH, viewer=None, timeout: float = 120.0) -> Path:
    """Open the sample, resample it to 128^3 with the widget, and save a window screenshot.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    viewer : napari.Viewer, optional
        A shown viewer to use (tests pass their own); a new one is made and closed otherwise.
    timeout : float
        Seconds to wait for the background resampling before giving up.
    """
    import napari
    from qtpy.QtWidgets import QApplication, QWidget

    own = viewer is None
    if own:
        viewer = napari.Viewer(show=True)
    try:
        viewer.window.resize(1500, 900)
        viewer.open_sample("napari-resample", "phantom")
        viewer.layers.remove("phantom_labels")
        _, widget = viewer.window.add_plugin_dock_widget("napari-resample", "Resample volume")
        widget.layer.value = viewer.layers["phantom"]
        widget.preset.value = "128 x 128 x 128"
        if widget.run() is None:
            raise RuntimeError(f"the widget refused to run: {widget.status.value}")
        deadline = time.monotonic() + timeout
        while widget.running:
            if time.monotonic() > deadline:
                raise TimeoutError(f"resampling did not finish within {timeout} s")
            QApplication.processEvents()
            time.sleep(0.01)
        # Coronal slice through the centre, superior up: shows the 2.5 mm slices of the
        # original next to the 1.25 mm slices of the 128^3 copy, both at true aspect ratio.
        viewer.canvas.grid.enabled = True
        viewer.canvas.grid.shape = (1, 2)
        viewer.dims.order = (1, 0, 2)
        viewer.dims.set_point(1, 0.0)
        viewer.scene.camera.orientation2d = ("up", "right")
        viewer.reset_view()
        QApplication.processEvents()
        # A second, larger run, caught half-way: the widget shows its progress and Cancel.
        # "save to" shows a neutral folder, not one of the machine that made the picture.
        widget.output_dir.value = Path("~/scans")
        widget.output_dir.line_edit.native.setText("~/scans")  # shown as typed, not expanded
        widget.preset.value = "512 x 512 x 256"
        from napari_resample.engine import progress as _progress
        from napari_resample.engine import threads as _threads

        # The run is held at a third of its slabs until the picture is taken (then cancelled):
        # caught half-way however fast or loaded the machine is.
        chunk, step_done = _threads.SLAB_ELEMENTS, _progress.Ticker.step_done
        gate = threading.Event()

        def held_step_done(ticker, steps: int = 1) -> None:
            step_done(ticker, steps)
            if ticker.done >= ticker.total / 3:
                gate.wait(timeout)

        _threads.SLAB_ELEMENTS = 1 << 13  # many small slabs: a smooth progress bar
        _progress.Ticker.step_done = held_step_done
        try:
            if widget.run() is None:
                raise RuntimeError(f"the widget refused to run: {widget.status.value}")
            while widget.running and widget.progress_bar.value < 30:
                if time.monotonic() > deadline + timeout:
                    raise TimeoutError("the second run did not reach a third of its work")
                QApplication.processEvents()
                time.sleep(0.002)
            QApplication.processEvents()
            for toast in viewer.window._qt_window.findChildren(QWidget):
                if type(toast).__name__ == "NapariQtNotification":  # toasts hide the canvas
                    toast.hide()
            QApplication.processEvents()
            path = Path(path)
            viewer.screenshot(str(path), canvas_only=False)
            widget.cancel()
        finally:
            gate.set()
            _threads.SLAB_ELEMENTS = chunk
            _progress.Ticker.step_done = step_done
        while widget.running and time.monotonic() < deadline + 2 * timeout:
            QApplication.processEvents()
            time.sleep(0.01)
        return path
    finally:
        if own:
            viewer.close()


if __name__ == "__main__":
    out = make_screenshot(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)
    print(f"wrote {out}")
