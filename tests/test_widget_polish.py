"""The widget's details as a user sees them: Run disabled for every refusal, no empty rows, a
read-out that fits the dock, a status that follows the inputs, save errors in one sentence."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import napari_resample.plugin.widget.job as job_module
import napari_resample.plugin.widget.save_row as save_row_module
from _plugin_fixtures import TIMEOUT_MS, _ct, _errors, _held, _run, _save
from napari_resample.engine import memory as _memory
from napari_resample.engine import threads as _threads

pytestmark = pytest.mark.gui

#: Layer names as BIDS datasets make them: one word a label cannot wrap.
LONG = "sub-01_ses-baseline_acq-highres_T1w_space-MNI152NLin2009cAsym_desc-preproc"


def _shown(widget, part) -> bool:
    """Whether *part* (a magicgui widget of the dock) shows when the dock shows."""
    return part.native.isVisibleTo(widget.native)


def _name_labels(widget) -> list[str]:
    """The texts of the name labels the dock shows beside its fields."""
    from qtpy.QtWidgets import QLabel

    parts = {part.native for part in widget}
    return [
        label.text()
        for label in widget.native.findChildren(QLabel)
        if label not in parts and label.isVisibleTo(widget.native)
    ]


# ------------------------------------------------------------------------ Run disabled


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda v: v.add_image(np.zeros((2, 6, 5, 4), np.float32), name="series"),
        lambda v: v.add_image(np.zeros((4, 5, 6, 3), np.uint8), rgb=True, name="rgb"),
    ],
    ids=["4d", "rgb"],
)
def test_resample_is_disabled_for_a_refused_layer(viewer, widget, make_layer):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    assert widget.run_button.enabled
    widget.layer.value = make_layer(viewer)
    assert "resample" in widget.summary.value or "3D" in widget.summary.value
    assert not widget.run_button.enabled
    assert widget.run() is None and "Cannot resample" in widget.status.value


def test_resample_is_disabled_without_a_layer(viewer, widget):
    assert widget.layer.value is None and "Open a volume" in widget.summary.value
    assert not widget.run_button.enabled


# --------------------------------------------------------------------- no empty rows


def test_rows_show_only_when_they_say_something(qtbot, viewer, widget, monkeypatch):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    assert not _shown(widget, widget.target_warning) and not _shown(widget, widget.memory_warning)
    assert not _shown(widget, widget.progress_bar)  # nothing runs
    labels = _name_labels(widget)
    assert "layer" in labels and "target" in labels  # the fields keep their names
    for name in ("summary", "target warning", "memory warning", "progress bar"):
        assert name not in labels
    monkeypatch.setattr(_memory, "available_memory", lambda: 10 * 2**20)
    widget.target_size.value = (2000, 2000, 2000)
    assert _shown(widget, widget.memory_warning) and "Too big" in widget.memory_warning.value
    widget.target_size.value = (20, 20, 20)
    assert not _shown(widget, widget.memory_warning)
    seen: list[float] = []
    real = job_module.resample_volume
    monkeypatch.setattr(job_module, "resample_volume", _held(real, seen))
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    assert widget.run() is not None
    assert _shown(widget, widget.progress_bar)  # while it runs
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert not _shown(widget, widget.progress_bar)  # a cancelled run leaves no bar
    monkeypatch.setattr(job_module, "resample_volume", real)
    _run(qtbot, widget)
    assert _shown(widget, widget.progress_bar) and widget.progress_bar.value == 100


# ----------------------------------------------------------------- the read-out fits


def _clipped(label) -> str | None:
    """What of *label*'s wrapped text does not fit its rectangle (None: all of it fits)."""
    from qtpy.QtCore import QRect, Qt

    native = label.native
    room = native.contentsRect()
    needs = native.fontMetrics().boundingRect(
        QRect(0, 0, room.width(), 100_000), int(Qt.TextFlag.TextWordWrap), native.text()
    )
    if needs.width() > room.width() or needs.height() > room.height():
        return f"{native.text()!r} needs {needs.size()}, has {room.size()}"
    return None


def test_the_match_layer_read_out_fits_the_dock_at_the_default_size(qtbot, viewer, widget):
    widget.layer.value = viewer.add_image(_ct(), name="ct", scale=(2.5, 0.8, 0.8))
    viewer.window.show()  # napari's default window size
    qtbot.waitUntil(lambda: widget.summary.native.isVisible(), timeout=TIMEOUT_MS)
    qtbot.wait(200)
    width, window = widget.native.width(), widget.native.window().width()
    source = viewer.add_image(_ct(), name=LONG, scale=(2.5, 0.8, 0.8))
    reference = viewer.add_image(
        np.zeros((30, 40, 16), np.int16), name=LONG + "_reference", scale=(0.3, 0.5, 0.8)
    )
    widget.layer.value = source
    widget.target.value = "match layer"
    widget.reference.value = reference
    # a low overlap (an orange warning), then none (the longest refusal, names and bounds)
    for shift, words in ((5, "Low overlap"), (30, "No overlap")):
        reference.translate = (0, 0, shift)
        qtbot.wait(200)  # the layout settles
        assert words in widget.target_warning.value
        # long names widen neither the dock nor napari's window (the screen would clip them)
        assert widget.native.width() <= width and widget.native.window().width() <= window
        for label in (widget.summary, widget.target_warning):
            assert _clipped(label) is None
            assert label.native.width() <= widget.native.width()


# ------------------------------------------------------------ the status follows inputs


def test_an_error_in_the_status_goes_when_the_inputs_change(qtbot, viewer, widget, monkeypatch):
    a = viewer.add_image(_ct(), name="a")
    b = viewer.add_image(_ct((8, 6, 4)), name="b")
    widget.layer.value = a
    monkeypatch.setattr(_memory, "available_memory", lambda: 10 * 2**20)
    widget.target_size.value = (2000, 2000, 2000)
    assert widget.run() is None and "Cannot resample" in widget.status.value
    widget.layer.value = b
    widget.target_size.value = (8, 6, 4)
    assert widget.status.value == "" and widget.status.tooltip == "What happened last."
    monkeypatch.setattr(_memory, "available_memory", lambda: None)
    _run(qtbot, widget)  # what was done stays, though adding the layer refreshes the lists
    assert widget.status.value.startswith("Added 'b_resampled'")


# --------------------------------------------------------- save errors in one sentence


def _result(qtbot, viewer, widget):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (6, 5, 5)
    assert _run(qtbot, widget) is not None


def test_a_file_named_as_the_folder_is_said_to_be_a_file(qtbot, viewer, widget, tmp_path):
    _result(qtbot, viewer, widget)
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    widget.output_dir.value = afile
    assert _save(qtbot, widget) is None
    assert widget.status.tooltip == f"Cannot save: {afile} is a file, not a folder."
    assert "does not exist" not in widget.status.tooltip
    widget.output_dir.value = tmp_path / "missing"
    assert _save(qtbot, widget) is None
    assert (
        widget.status.tooltip == f"Cannot save: the folder {tmp_path / 'missing'} does not exist."
    )


def test_a_folder_without_write_permission_is_named(qtbot, viewer, widget, tmp_path, monkeypatch):
    _result(qtbot, viewer, widget)
    # root may write anywhere: the answer of the OS is what is faked
    monkeypatch.setattr(save_row_module.os, "access", lambda path, mode: False)
    widget.output_dir.value = tmp_path
    assert _save(qtbot, widget) is None
    assert widget.status.tooltip == f"Cannot save: no permission to write into {tmp_path}."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EACCES, "no permission to write into {folder}"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_an_os_error_while_saving_names_the_folder_not_a_temporary_file(
    qtbot, viewer, widget, tmp_path, monkeypatch, code, reason
):
    import napari_resample.plugin.writer as writer

    def refused(path, *args, **kwargs):
        raise OSError(
            code, os_text[code], f"{tmp_path}/.ct_resampled.nii.gz.vm-8327-1a2b.tmp.nii.gz"
        )

    os_text = {errno.EACCES: "Permission denied", errno.EROFS: "Read-only file system"}
    _result(qtbot, viewer, widget)
    monkeypatch.setattr(writer, "write_nifti", refused)
    widget.output_dir.value = tmp_path
    before = len(_errors())
    assert _save(qtbot, widget) is None
    message = widget.status.tooltip
    assert message.startswith(f"Could not save {tmp_path / 'ct_resampled.nii.gz'}: ")
    assert reason.format(folder=tmp_path) in message and str(tmp_path) in message
    assert ".tmp" not in message and "Errno" not in message
    assert _errors()[before:] == [message]
