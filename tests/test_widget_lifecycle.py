"""The widget through napari's lifecycle: the viewer or the dock closed, the source layer removed
while a resampling runs; nothing reaches the console."""

from __future__ import annotations

import sys

import pytest

import napari_resample.plugin.widget.job as job_module
from _plugin_fixtures import TIMEOUT_MS, _ct, _errors, _held
from napari_resample.engine import threads as _threads

pytestmark = pytest.mark.gui


@pytest.fixture
def escaped(monkeypatch):
    """The exceptions that reach ``sys.excepthook`` (where PyQt sends a slot's exception)."""
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: seen.append(exc))
    return seen


def _start_held(qtbot, viewer, widget, monkeypatch):
    """A run held in the engine after its first slab: its worker and the fractions seen."""
    seen: list[float] = []
    monkeypatch.setattr(job_module, "resample_volume", _held(job_module.resample_volume, seen))
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (30, 40, 16)
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT_MS)
    return worker, seen


def _finished(qtbot, worker):
    """Wait for *worker* to end, processing events meanwhile (as napari's loop goes on)."""
    done: list[bool] = []
    worker.finished.connect(lambda: done.append(True))
    # a cancelled run ends within a slab; held, an uncancelled one would wait TIMEOUT_MS a slab
    qtbot.waitUntil(lambda: bool(done) or not worker.is_running, timeout=30_000)
    qtbot.wait(300)  # what was queued before the close is delivered too


def test_closing_the_viewer_mid_run_cancels_it_quietly(
    qtbot, viewer, widget, monkeypatch, escaped, capsys
):
    worker, seen = _start_held(qtbot, viewer, widget, monkeypatch)
    before = len(_errors())
    viewer.close()
    _finished(qtbot, worker)
    assert widget.run_row.cancel_event is None or widget.run_row.cancel_event.is_set()
    assert not worker.is_running
    assert len(seen) <= 2 * _threads.engine_threads()  # stopped, not run to its end
    assert escaped == []
    assert _errors()[before:] == []
    assert "Traceback" not in capsys.readouterr().err


def test_closing_the_dock_mid_run_cancels_it_quietly(
    qtbot, viewer, widget, monkeypatch, escaped, capsys
):
    worker, seen = _start_held(qtbot, viewer, widget, monkeypatch)
    before = len(_errors())
    dock = widget.native.parent()
    dock.title.close_button.click()  # napari's "x" on the dock's title bar
    assert widget.native.parent() is None
    _finished(qtbot, worker)
    assert not worker.is_running and len(seen) <= 2 * _threads.engine_threads()
    assert [layer.name for layer in viewer.layers] == ["ct"]
    viewer.add_image(_ct(), name="later")  # the viewer's events no longer reach the widget
    viewer.layers.clear()
    qtbot.wait(100)
    assert escaped == [] and _errors()[before:] == []
    assert "Traceback" not in capsys.readouterr().err


def test_removing_the_source_layer_cancels_its_run(qtbot, viewer, widget, monkeypatch, escaped):
    worker, seen = _start_held(qtbot, viewer, widget, monkeypatch)
    before = len(_errors())
    viewer.layers.remove("ct")
    _finished(qtbot, worker)
    assert not worker.is_running and len(seen) <= 2 * _threads.engine_threads()
    assert len(viewer.layers) == 0 and widget.result_layer is None
    assert "cancelled" in widget.status.value
    assert escaped == [] and _errors()[before:] == []
    assert widget.run_button.text == "Resample" and not widget.run_button.enabled  # no layer
