"""How long the napari event loop stalls while the "Resample volume" widget works.

Run under a virtual display (the widget needs a viewer)::

    xvfb-run -a python benchmarks/gui_stalls.py
    xvfb-run -a python benchmarks/gui_stalls.py --shape 256,256,150   # a smaller, quicker run

A 10 ms ``QTimer`` records when each of its ticks arrives; the longest gap between two ticks is
the longest time napari could not repaint or react to a click. Three actions, each started from
the event loop as a click would: (a) resampling a 512 x 512 x 300 int16 volume to
224 x 224 x 128, (b) to 512 x 512 x 512, (c) saving the 512^3 result. napari's own insertion of
the result layer (``viewer.add_layer``: building the layer, its thumbnail, the first slice)
and the creation of its activity-dock bar (``napari.utils.progress``, in an event of its own)
are timed directly and reported apart: gaps that overlap them are not counted against the
widget. A warm-up run comes first (one-time imports are not what a user waits for each run).
Budget: the widget's longest gap stays under 100 ms. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

BUDGET_MS = 100.0


class Ticks:
    """A 10 ms timer's arrivals, and the longest gap between them outside excluded spans."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def longest_gap(self, excluded: list[tuple[float, float]]) -> tuple[float, float]:
        """(length, start) of the longest gap that does not overlap an *excluded* span."""
        gaps = [(float("nan"), float("nan"))]
        for a, b in zip(self.times, self.times[1:], strict=False):
            if not any(a < x1 and b > x0 for x0, x1 in excluded):
                gaps.append((b - a, a))
        return max(gaps[1:], default=gaps[0])


def _wait(app, done) -> None:
    from qtpy.QtCore import QEventLoop

    while not done():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)


def measure(action, done, app, add_spans, activity_spans) -> tuple[float, ...]:
    """(longest gap outside napari's spans, when it began after the start, add_layer seconds,
    activity-bar seconds, wall seconds) of *action*."""
    from qtpy.QtCore import QTimer

    ticks = Ticks()
    add_spans.clear()
    activity_spans.clear()
    ticks.timer.start()
    _wait(app, lambda: len(ticks.times) >= 5)  # the timer runs before the action starts
    start = time.perf_counter()
    started = []
    QTimer.singleShot(0, lambda: started.append(action()))
    _wait(app, lambda: bool(started) and done())
    wall = time.perf_counter() - start
    _wait(app, lambda: len(ticks.times) >= 2 and time.perf_counter() - ticks.times[-1] < 0.02)
    ticks.timer.stop()
    gap, at = ticks.longest_gap(add_spans + activity_spans)
    add = sum(b - a for a, b in add_spans)
    return gap, at - start, add, sum(b - a for a, b in activity_spans), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="512,512,300", help="input X,Y,Z (int16)")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    big = tuple(max(shape[:2]) for _ in range(3))

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_resample.plugin.widget.dock import ResampleWidget

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    widget = ResampleWidget(viewer, confirm_overwrite=lambda path: True)
    viewer.window.add_dock_widget(widget, name="Resample volume")

    add_spans: list[tuple[float, float]] = []
    real_add = type(viewer).add_layer

    def timed_add(self, layer):
        t0 = time.perf_counter()
        try:
            return real_add(self, layer)
        finally:
            add_spans.append((t0, time.perf_counter()))

    type(viewer).add_layer = timed_add  # napari's own insertion, timed apart
    activity_spans: list[tuple[float, float]] = []
    real_open = ResampleWidget._open_activity

    def timed_open(self, *args):
        t0 = time.perf_counter()
        try:
            return real_open(self, *args)
        finally:
            activity_spans.append((t0, time.perf_counter()))

    ResampleWidget._open_activity = timed_open  # napari's activity-dock bar, timed apart

    # warm-up: the engine's first run imports scipy modules (holding the GIL for ~0.2 s)
    warm = viewer.add_image(np.zeros((16, 16, 16), np.int16), name="warm-up")
    widget.layer.value = warm
    widget.target_size.value = (8, 8, 8)
    measure(widget.run, lambda: not widget.running, app, add_spans, activity_spans)
    viewer.layers.remove(widget.result_layer)
    viewer.layers.remove(warm)

    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2000, size=shape[::-1], dtype=np.int16)  # napari (Z, Y, X)
    widget.layer.value = viewer.add_image(data, name="ct")
    rows = []
    for label, size in (
        (f"(a) resample {_x(shape)} -> 224 x 224 x 128", (224, 224, 128)),
        (f"(b) resample {_x(shape)} -> {_x(big)}", big),
    ):
        widget.layer.value = viewer.layers["ct"]
        widget.target_size.value = size
        widget._result = None
        gap, at, add, bar, wall = measure(
            widget.run, lambda: not widget.running, app, add_spans, activity_spans
        )
        if widget.result_layer is None:
            raise SystemExit(f"{label}: {widget.status.value}")
        rows.append((label, gap, at, add, bar, wall))
    with tempfile.TemporaryDirectory() as folder:
        widget.output_dir.value = Path(folder)
        gap, at, add, bar, wall = measure(
            widget.save, lambda: not widget.saving, app, add_spans, activity_spans
        )
        if widget.saved_path is None:
            raise SystemExit(f"save: {widget.status.value}")
        rows.append((f"(c) save the {_x(big)} result (.nii.gz)", gap, at, add, bar, wall))

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"{platform.platform()}, {os.cpu_count()} cores, load average {load}, "
        f"napari {napari.__version__}, budget {BUDGET_MS:.0f} ms\n"
    )
    print(
        "| action | longest event-loop gap (began at) | napari add_layer (apart) "
        "| napari activity bar (apart) | wall time | budget |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for label, gap, at, add, bar, wall in rows:
        verdict = "ok" if gap * 1e3 < BUDGET_MS else "over"
        add_text = f"{add * 1e3:.0f} ms" if add else "-"
        bar_text = f"{bar * 1e3:.0f} ms" if bar else "-"
        print(
            f"| {label} | {gap * 1e3:.0f} ms ({at:.2f} s) | {add_text} | {bar_text} "
            f"| {wall:.1f} s | {verdict} |"
        )
    viewer.close()


def _x(size) -> str:
    return " x ".join(str(n) for n in size)


if __name__ == "__main__":
    main()
