"""The widget as napari users expect it: progress, Cancel, no internal errors, saving in the
background, memory refusal, the user's choices kept (docs/decisions.md, D18)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import napari_resample.plugin.widget.job as job_module
import napari_resample.plugin.widget.model as model_module
from _plugin_fixtures import TIMEOUT_MS, _ct, _errors, _held, _run, _save
from napari_resample.engine import memory as _memory
from napari_resample.engine import threads as _threads
from napari_resample.plugin.widget.run_row import RunRow

pytestmark = pytest.mark.gui


def _spy_progress(monkeypatch, widget):
    seen: list[tuple[float, int]] = []
    original = RunRow.show_progress

    def spy(self, fraction):
        original(self, fraction)
        seen.append((fraction, int(self.progress_bar.value)))

    monkeypatch.setattr(RunRow, "show_progress", spy)
    return seen


# ------------------------------------------------------------------- progress and Cancel


def test_progress_moves_slab_by_slab_in_the_widget_and_the_activity_dock(
    qtbot, viewer, widget, monkeypatch
):
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)  # one index per slab: many slabs
    seen = _spy_progress(monkeypatch, widget)
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (30, 40, 24)  # the engine ticks once per output plane
    _run(qtbot, widget)
    assert len(seen) >= 20, seen  # one call per whole percent the engine passed
    bar_values = [v for _, v in seen]
    assert all(b >= a for a, b in itertools.pairwise(bar_values)), bar_values
    assert len(set(bar_values)) >= 2 and bar_values[0] < 100  # the widget's own bar moved
    assert widget.progress_bar.value == 100
    assert widget.result_layer is not None


def test_cancel_stops_the_run_adds_no_layer_and_the_widget_is_ready(
    qtbot, viewer, widget, monkeypatch, tmp_path
):
    real = job_module.resample_volume
    seen = []  # the real engine, held after each slab until the user cancels
    monkeypatch.setattr(job_module, "resample_volume", _held(real, seen))
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.output_dir.value = tmp_path
    widget.target_size.value = (30, 40, 16)
    before = len(_errors())
    assert widget.run() is not None
    assert widget.run_button.text == "Cancel" and widget.run_button.enabled
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT_MS)
    widget.run_button.native.click()  # the user clicks Cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert len(seen) <= 2 * _threads.engine_threads()  # stopped within a slab per thread
    assert [lay.name for lay in viewer.layers] == ["ct"] and widget.result_layer is None
    assert list(tmp_path.iterdir()) == []
    assert "cancelled" in widget.status.value
    assert widget.run_button.text == "Resample" and widget.run_button.enabled
    assert widget.progress_bar.value == 0
    assert _errors()[before:] == []  # a cancel is not an error
    # and ready again: the next run goes through
    monkeypatch.setattr(job_module, "resample_volume", real)
    assert _run(qtbot, widget).name == "ct_resampled"


# ------------------------------------------------------------- never an internal error


@pytest.mark.parametrize(
    ("make_layer", "words"),
    [
        (lambda v: v.add_image(np.zeros((4, 5, 6, 3), np.uint8), rgb=True, name="rgb"), "RGB"),
        (
            lambda v: v.add_image(
                [np.zeros((8, 8, 8)), np.zeros((4, 4, 4))], multiscale=True, name="pyramid"
            ),
            "multiscale",
        ),
        (lambda v: v.add_image(np.zeros((8, 8)), name="flat"), "not a single 3D volume"),
    ],
    ids=["rgb", "multiscale", "2d"],
)
def test_layers_that_cannot_be_resampled_are_refused_in_one_sentence(
    viewer, widget, make_layer, words
):
    before = len(_errors())
    widget.layer.value = make_layer(viewer)  # raised from _layout for RGB before
    assert words in widget.summary.value and widget.summary.value.count(".") <= 2
    assert len(_errors()) == before  # choosing is not an error
    assert widget.run() is None
    assert "Cannot resample" in widget.status.value


def test_the_read_out_empties_when_its_layer_goes(viewer, widget):
    layer = viewer.add_image(_ct(), name="ct")
    widget.layer.value = layer
    assert "now: 10 x 20 x 24 voxels" in widget.summary.value
    viewer.layers.remove(layer)
    assert widget.layer.value is None
    assert "now:" not in widget.summary.value and "Open a volume" in widget.summary.value
    layer.scale = (2, 2, 2)  # no longer followed
    assert "now:" not in widget.summary.value


def test_an_exception_in_a_slot_becomes_a_notification(viewer, widget, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    widget.layer.value = viewer.add_image(_ct(), name="ct")
    monkeypatch.setattr(model_module, "resampled_affine", broken)
    before = len(_errors())
    widget.target_size.value = (5, 5, 5)  # raised out of the slot into Qt before
    assert any("Updating the read-out failed: boom" in m for m in _errors()[before:])
    assert "failed: boom" in widget.status.value


# ------------------------------------------------------------------- saving in a worker


def test_save_runs_in_a_worker_with_the_buttons_disabled(qtbot, viewer, widget, tmp_path):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (12, 10, 5)
    _run(qtbot, widget)
    widget.output_dir.value = tmp_path
    worker = widget.save()
    assert worker is not None and widget.saving  # returned while the file is written
    assert not widget.save_button.enabled and not widget.run_button.enabled
    assert "Saving" in widget.status.value
    qtbot.waitUntil(lambda: not widget.saving, timeout=TIMEOUT_MS)
    assert widget.saved_path == tmp_path / "ct_resampled.nii.gz"
    assert widget.saved_path.is_file() and "Saved" in widget.status.value
    assert widget.save_button.enabled and widget.run_button.enabled


def test_a_failing_save_is_reported_from_the_worker(qtbot, viewer, widget, tmp_path, monkeypatch):
    import napari_resample.plugin.writer as writer

    def broken(*args, **kwargs):
        raise OSError("disk full")

    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (6, 5, 5)
    _run(qtbot, widget)
    monkeypatch.setattr(writer, "write_nifti", broken)
    widget.output_dir.value = tmp_path
    before = len(_errors())
    assert _save(qtbot, widget) is None
    assert any("disk full" in m for m in _errors()[before:])
    assert widget.save_button.enabled


# ----------------------------------------------------------------------- memory refusal


def test_a_run_that_cannot_fit_is_refused_before_it_starts(viewer, widget, monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda: 10 * 2**20)
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (20, 20, 20)
    assert "peak memory" in widget.summary.value and widget.memory_warning.value == ""
    assert widget.run_button.enabled
    widget.target_size.value = (2000, 2000, 2000)
    assert "Too big" in widget.memory_warning.value and "available" in widget.memory_warning.value
    assert "red" in widget.memory_warning.native.styleSheet()
    assert not widget.run_button.enabled
    assert widget.run() is None and "available" in widget.status.value
    assert len(viewer.layers) == 1
    widget.target_size.value = (20, 20, 20)
    assert widget.memory_warning.value == "" and widget.run_button.enabled


# --------------------------------------------------------------- the user's choices kept


def test_target_and_preset_stay_when_switching_layers(viewer, widget):
    a = viewer.add_image(_ct(), name="a")
    b = viewer.add_image(_ct((8, 6, 4)), name="b")
    widget.layer.value = a
    assert widget.target_size.value == (10, 20, 24)  # not chosen yet: the layer's size
    widget.preset.value = "224 x 224 x 128"
    widget.layer.value = b
    assert widget.target_size.value == (224, 224, 128)
    assert widget.preset.value == "224 x 224 x 128"
    assert "now: 4 x 6 x 8 voxels" in widget.summary.value
    widget.current_size.native.click()
    assert widget.target_size.value == (4, 6, 8) and widget.preset.value == "custom"


def test_small_sizes_show_in_bytes_and_every_field_has_a_tooltip(viewer, widget):
    widget.layer.value = viewer.add_image(np.zeros((4, 5, 6), np.uint8), name="tiny")
    assert "output: 120 bytes (uint8)" in widget.summary.value
    for field in widget:
        assert field.tooltip, field.name


def test_a_long_saved_path_does_not_widen_the_dock(qtbot, viewer, widget, tmp_path):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (6, 5, 5)
    _run(qtbot, widget)
    folder = tmp_path
    while len(str(folder)) < 300:
        folder = folder / "a_deeply_nested_folder"
    folder.mkdir(parents=True)
    width = widget.native.sizeHint().width()
    widget.output_dir.value = folder
    path = _save(qtbot, widget)
    assert path is not None and path.is_file()
    qtbot.wait(50)
    assert widget.native.sizeHint().width() <= width + 4
    assert len(widget.status.value) < 100 and "…" in widget.status.value
    assert widget.status.tooltip == f"Saved {path}" and widget.output_dir.tooltip == str(folder)
