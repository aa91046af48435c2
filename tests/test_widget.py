"""The "Resample volume" widget in a real napari viewer (Xvfb)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from _plugin_fixtures import (
    AFFINES,
    TIMEOUT_MS,
    _ct,
    _errors,
    _open,
    _run,
    _save,
    nifti_factory,
)
from napari_resample import resampling
from napari_resample.engine.geometry import resampled_affine
from napari_resample.plugin.layer_volume import METADATA_KEY
from napari_resample.plugin.layout import StorageOrder, nifti_from_napari
from napari_resample.plugin.widget.dock import ResampleWidget
from napari_resample.plugin.widget.model import PRESETS
from napari_resample.plugin.widget.run_row import RunRow

pytestmark = pytest.mark.gui


def test_docks_by_name_from_the_manifest_and_sits_in_layers_transform(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-resample", "Resample volume")
    assert isinstance(widget, ResampleWidget)
    names = [w.name for w in widget]
    for name in ("layer", "target_size", "interpolation", "anchor", "antialias"):
        assert name in names
    items = get_app_model().menus.get_menu("napari/layers/transform")
    assert "napari-resample.resample_widget" in [
        getattr(getattr(item, "command", None), "id", None) for item in items
    ]


def test_target_size_is_prefilled_in_file_voxel_order(viewer, widget, nifti_file):
    # LSA file: stored (i, j, k) = (7, 6, 5) but napari shows (S, A, R) = (6, 5, 7)
    layer = _open(viewer, nifti_file("lsa.nii.gz", "lsa_permuted"))
    assert layer.data.shape == (6, 5, 7)
    widget.layer.value = layer
    assert widget.target_size.value == (7, 6, 5)
    assert "7 x 6 x 5 voxels" in widget.summary.value


def test_read_out_and_size_follow_the_chosen_layer_only(viewer, widget, nifti_file):
    a = _open(viewer, nifti_file("a.nii.gz", "ras_anisotropic"))  # 7 x 6 x 5 of 0.5 x 0.8 x 2.5
    b = _open(viewer, nifti_file("b.nii.gz", "las"))
    widget.layer.value = a
    widget.target_size.value = (14, 12, 10)
    assert "spacing 0.5 x 0.8 x 2.5 mm" in widget.summary.value
    a.scale = [2 * s for s in a.scale]  # the user fixes a wrong spacing in napari
    assert "now: 7 x 6 x 5 voxels, spacing 1 x 1.6 x 5 mm" in widget.summary.value
    assert "new: 14 x 12 x 10 voxels, spacing 0.5 x 0.8 x 2.5 mm" in widget.summary.value
    assert "field of view (kept): 7 x 9.6 x 25 mm" in widget.summary.value
    a.data = a.data[:, :3]  # napari (S, A, R): a crop along A, the file's j
    assert widget.target_size.value == (14, 12, 10)  # the user's target is kept
    assert "now: 7 x 3 x 5 voxels" in widget.summary.value
    widget.layer.value = b
    text = widget.summary.value
    a.scale = [1.0, 1.0, 1.0]  # no longer the chosen layer: nothing changes
    assert widget.summary.value == text


def test_presets_fill_the_size_and_the_read_out_follows(viewer, widget, nifti_file):
    widget.layer.value = _open(viewer, nifti_file("v.nii.gz", "ras_anisotropic"))
    widget.preset.value = "224 x 224 x 128"
    assert widget.target_size.value == PRESETS["224 x 224 x 128"]
    text = widget.summary.value
    # 7 x 6 x 5 voxels of 0.5 x 0.8 x 2.5 mm -> FOV 3.5 x 4.8 x 12.5 mm, kept
    assert "field of view (kept): 3.5 x 4.8 x 12.5 mm" in text
    assert f"spacing {3.5 / 224:.3g} x {4.8 / 224:.3g} x {12.5 / 128:.3g} mm" in text
    assert f"{224 * 224 * 128 * 4 / 2**20:,.1f} MiB (float32)" in text
    widget.target_size.value = (10, 10, 10)
    assert widget.preset.value == "custom"


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_run_adds_a_layer_placed_over_the_original(qtbot, viewer, widget, nifti_file, anchor):
    src = nifti_file("ct.nii.gz", "las", data=_ct())
    layer = _open(viewer, src)
    widget.layer.value = layer
    widget.target_size.value = (12, 40, 5)
    widget.anchor.value = anchor
    result = _run(qtbot, widget)
    assert result is not None and result.name == "ct_resampled"
    assert result._type_string == "image" and result.data.dtype == np.int16
    assert result.data.shape == (5, 40, 12)  # napari (S, A, R) of file (12, 40, 5)
    expected = resampled_affine(AFFINES["las"], (24, 20, 10), (12, 40, 5), anchor)
    np.testing.assert_allclose(result.scale, np.abs(np.diag(expected)[:3])[::-1], rtol=1e-6)
    # every corner of the result lands where the resampled affine says it should
    info = result.metadata[METADATA_KEY]
    np.testing.assert_allclose(info["affine"], expected, atol=1e-5)
    assert info["shape"] == (12, 40, 5) and info["anchor"] == anchor
    assert info["resampled_from"]["shape"] == (24, 20, 10)
    stored_shape = np.array([12, 40, 5])
    for corner in np.ndindex(2, 2, 2):
        ijk = np.array(corner) * (stored_shape - 1)
        world = (expected @ np.append(ijk, 1.0))[:3]
        napari_index = _napari_index_of(result, ijk)
        np.testing.assert_allclose(
            np.asarray(result.data_to_world(napari_index))[::-1], world, atol=1e-5
        )
    # the field of view is the original's: outer edges coincide for "center"
    lo = np.asarray(layer.data_to_world(-0.5 * np.ones(3)))
    hi = np.asarray(layer.data_to_world(np.asarray(layer.data.shape) - 0.5))
    rlo = np.asarray(result.data_to_world(-0.5 * np.ones(3)))
    rhi = np.asarray(result.data_to_world(np.asarray(result.data.shape) - 0.5))
    np.testing.assert_allclose(np.abs(rhi - rlo), np.abs(hi - lo), atol=1e-5)
    if anchor == "center":
        np.testing.assert_allclose(rlo, lo, atol=1e-5)
        np.testing.assert_allclose(rhi, hi, atol=1e-5)


def _napari_index_of(layer, ijk):
    """napari index showing stored voxel *ijk*, found through the layer's own round trip."""
    storage = StorageOrder.from_dict(layer.metadata[METADATA_KEY]["storage"])
    index_grid = np.arange(layer.data.size).reshape(layer.data.shape)
    stored, _ = nifti_from_napari(index_grid, storage, {})
    return np.unravel_index(int(stored[tuple(ijk)]), layer.data.shape)


def test_run_is_in_the_background_and_a_second_run_is_refused(qtbot, viewer, widget, nifti_file):
    widget.layer.value = _open(viewer, nifti_file("ct.nii.gz", data=_ct()))
    widget.target_size.value = (30, 30, 30)
    first = widget.run()
    # the result is only added from the event loop, so the call returned while work goes on
    assert first is not None and widget.running and widget.result_layer is None
    assert widget.run_button.text == "Cancel" and widget.run_button.enabled
    before = len(_errors())
    assert widget.run() is None
    assert "already running" in widget.status.value
    assert any("already running" in m for m in _errors()[before:])
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.run_button.enabled and widget.run_button.text == "Resample"
    assert [lay.name for lay in viewer.layers].count("ct_resampled") == 1


def test_progress_reaches_the_activity_dock(qtbot, viewer, widget, nifti_file, monkeypatch):
    seen: list[float] = []
    original = RunRow.show_progress

    def spy(self, fraction):
        seen.append(fraction)
        original(self, fraction)

    monkeypatch.setattr(RunRow, "show_progress", spy)
    import time

    import napari_resample.plugin.widget.job as job_module

    real = job_module.resample_volume

    def after_the_bar(*args, **kwargs):  # the bar is built in an event of its own: wait for it
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while widget.run_row.activity is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(job_module, "resample_volume", after_the_bar)
    widget.layer.value = _open(viewer, nifti_file("ct.nii.gz", data=_ct()))
    widget.target_size.value = (16, 16, 16)
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.run_row.activity is not None, timeout=TIMEOUT_MS)
    bar = widget.run_row.activity
    assert bar.total == 100 and "ct" in bar.desc
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert worker is not None and seen and max(seen) == pytest.approx(1.0)
    assert widget.run_row.activity is None  # closed at the end


def test_labels_stay_labels_with_their_label_set(qtbot, viewer, widget):
    from napari_resample.plugin.sample_data import make_sample_data

    for ld in make_sample_data():
        viewer._add_layer_from_data(*ld)
    labels = viewer.layers["phantom_labels"]
    widget.layer.value = labels
    assert widget.interpolation.value == "auto"
    widget.target_size.value = (80, 96, 48)
    result = _run(qtbot, widget)
    assert result._type_string == "labels" and result.data.dtype == labels.data.dtype
    assert result.metadata[METADATA_KEY]["interpolation"] == "label"
    assert set(np.unique(result.data).tolist()) == set(np.unique(labels.data).tolist())


def test_save_writes_the_file_asks_before_overwriting_and_reports(
    qtbot, viewer, widget, nifti_file, tmp_path
):
    src = nifti_file("scan_042.nii.gz", "lps", data=_ct())
    widget.layer.value = _open(viewer, src)
    assert widget.output_dir.value == src.parent  # default: the source file's folder
    widget.target_size.value = (12, 10, 20)
    _run(qtbot, widget)
    out_dir = tmp_path / "chosen"
    out_dir.mkdir()
    widget.output_dir.value = out_dir
    path = _save(qtbot, widget)
    assert path == out_dir / "scan_042_resampled.nii.gz" and path.is_file()
    assert str(path) in widget.status.tooltip
    assert nib.load(path).shape == (12, 10, 20)
    # exists: the injected confirmation says no, then yes
    path.write_bytes(b"keep me")
    widget.answers.append(False)
    assert widget.save() is None
    assert path.read_bytes() == b"keep me" and "kept" in widget.status.value
    widget.answers.append(True)
    assert _save(qtbot, widget) == path
    assert nib.load(path).shape == (12, 10, 20)
    assert widget.answers == []


def test_widget_and_resampling_agree(qtbot, viewer, widget, nifti_file, tmp_path):
    src = nifti_file("agree.nii.gz", "lsa_permuted", data=_ct())
    size = (13, 7, 17)
    ref_dir = tmp_path / "reference"
    resampling(src, ref_dir, size, interpolation="bspline", anchor="center", antialias=True)
    reference = nib.load(ref_dir / "agree_resampled.nii.gz")

    layer = _open(viewer, src)
    widget.layer.value = layer
    widget.target_size.value = size
    widget.anchor.value = "center"
    widget.antialias.value = True
    result = _run(qtbot, widget)
    # the layer itself, back in file order
    info = result.metadata[METADATA_KEY]
    stored, affine = nifti_from_napari(
        result.data, StorageOrder.from_dict(info["storage"]), result.as_layer_data_tuple()[1]
    )
    assert stored.dtype == np.asarray(reference.dataobj).dtype
    assert np.array_equal(stored, np.asarray(reference.dataobj))
    np.testing.assert_allclose(affine, reference.affine, atol=1e-5)
    # and the file the Save action writes
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(reference.dataobj))
    assert saved.get_data_dtype() == reference.get_data_dtype()
    np.testing.assert_allclose(saved.affine, reference.affine, atol=1e-5)
    for field in ("qform_code", "sform_code", "xyzt_units", "descrip"):
        assert saved.header[field] == reference.header[field]


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # napari, oblique 2D
@pytest.mark.parametrize("name", ["codes_0_0", "qform_ne_sform", "sheared"])
@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_widget_and_resampling_write_the_same_header(
    qtbot, viewer, widget, nifti_case, tmp_path, name, anchor
):
    # codes 0/0 (no stored origin), a qform that disagrees with the sform, a sheared sform
    src, _ = nifti_case(name)
    size = (5, 11, 9)
    resampling(src, tmp_path / "ref", size, anchor=anchor)
    reference = nib.load(tmp_path / "ref" / "scan_resampled.nii.gz")
    widget.layer.value = _open(viewer, src)
    widget.target_size.value = size
    widget.interpolation.value = "bspline"  # resampling()'s default, whatever the layer type
    widget.anchor.value = anchor
    result = _run(qtbot, widget)
    np.testing.assert_allclose(result.metadata[METADATA_KEY]["affine"], reference.affine)
    corner = np.asarray(result.data_to_world((0, 0, 0)))[::-1]
    storage = StorageOrder.from_dict(result.metadata[METADATA_KEY]["storage"])
    ijk = nifti_from_napari(np.arange(result.data.size).reshape(result.data.shape), storage, {})
    first = np.argwhere(ijk[0] == 0)[0]  # stored index shown at napari (0, 0, 0)
    np.testing.assert_allclose(corner, (reference.affine @ np.append(first, 1.0))[:3], atol=1e-5)
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(reference.dataobj))
    np.testing.assert_allclose(saved.affine, reference.affine, atol=1e-5)
    assert bytes(saved.header.binaryblock) == bytes(reference.header.binaryblock)


def test_single_volume_4d_file_agrees_with_resampling(qtbot, viewer, widget, nifti_file, tmp_path):
    src = nifti_file("one.nii.gz", "lps", data=_ct()[..., np.newaxis])
    resampling(src, tmp_path / "ref", (12, 10, 20))
    reference = nib.load(tmp_path / "ref" / "one_resampled.nii.gz")
    widget.layer.value = _open(viewer, src)
    assert widget.target_size.value == (24, 20, 10)
    widget.target_size.value = (12, 10, 20)
    _run(qtbot, widget)
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert saved.shape == reference.shape
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(reference.dataobj))
    np.testing.assert_allclose(saved.affine, reference.affine, atol=1e-5)


def test_scaled_file_agrees_with_resampling_too(qtbot, viewer, widget, nifti_file, tmp_path):
    src = nifti_file("scaled.nii.gz", "las", data=_ct(), slope=0.5, inter=-10.0)
    resampling(src, tmp_path / "ref", (12, 10, 20))
    reference = nib.load(tmp_path / "ref" / "scaled_resampled.nii.gz")
    widget.layer.value = _open(viewer, src)
    widget.target_size.value = (12, 10, 20)
    result = _run(qtbot, widget)
    assert result.data.dtype == np.float32
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert saved.get_data_dtype() == reference.get_data_dtype()
    assert np.array_equal(saved.dataobj.get_unscaled(), reference.dataobj.get_unscaled())
    assert (saved.dataobj.slope, saved.dataobj.inter) == (0.5, -10.0)


@pytest.mark.parametrize(
    ("make_layer", "message"),
    [
        (lambda v: v.add_image(np.zeros((8, 8)), name="flat"), "needs a 3D layer; 'flat'"),
        (lambda v: v.add_image(np.zeros((2, 4, 4, 4)), name="movie"), "needs a 3D layer; 'movie'"),
    ],
    ids=["2d", "4d"],
)
def test_errors_are_reported(viewer, widget, make_layer, message):
    widget.layer.value = make_layer(viewer)
    assert "not a single 3D volume" in widget.summary.value
    before = len(_errors())
    assert widget.run() is None
    assert message in widget.status.value
    assert any(message in m for m in _errors()[before:])


def test_a_failure_in_the_worker_is_reported(qtbot, viewer, widget, nifti_file, monkeypatch):

    def broken(*args, **kwargs):
        raise MemoryError("cannot allocate 4.0 GiB")

    monkeypatch.setattr("napari_resample.pipeline.run.resample_array", broken)
    widget.layer.value = _open(viewer, nifti_file("v.nii.gz", data=_ct()))
    before = len(_errors())
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.result_layer is None and len(viewer.layers) == 1
    assert "Resampling failed: cannot allocate 4.0 GiB" in widget.status.value
    assert any("cannot allocate" in m for m in _errors()[before:])
    assert widget.run_button.enabled
    assert widget.progress_bar.native.isHidden()  # a failed run leaves no bar behind


@pytest.mark.parametrize("dtype", [np.float16, np.bool_])
def test_layers_of_types_nifti_lacks_resample_and_save(qtbot, viewer, widget, tmp_path, dtype):
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3).astype(dtype)
    widget.layer.value = viewer.add_image(data, name="mask")
    widget.target_size.value = (8, 8, 8)
    result = _run(qtbot, widget)
    assert result is not None and result.data.shape == (8, 8, 8), widget.status.value
    assert result.data.dtype == dtype  # shown as computed; NIfTI's type is chosen on save
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert saved.get_data_dtype() == (np.float32 if dtype == np.float16 else np.uint8)
    assert np.array_equal(np.asarray(saved.dataobj), result.data.transpose(2, 1, 0))


def test_a_failure_adding_the_result_is_reported(qtbot, viewer, widget, monkeypatch):
    import napari_resample.plugin.widget.job as job_module

    def broken(*args, **kwargs):
        raise ValueError("no room for another layer")

    monkeypatch.setattr(job_module, "layer_data_from_volume", broken)
    widget.layer.value = viewer.add_image(np.ones((4, 5, 6), dtype=np.float32), name="v")
    widget.target_size.value = (3, 3, 3)
    before = len(_errors())
    _run(qtbot, widget)
    assert widget.result_layer is None and len(viewer.layers) == 1
    assert "no room for another layer" in widget.status.value
    assert any("no room" in m for m in _errors()[before:])
    assert widget.run_button.enabled


def test_labels_are_copied_so_painting_cannot_reach_the_worker(viewer, widget):
    labels = viewer.add_labels(np.zeros((4, 5, 6), dtype=np.uint8), name="seg")
    widget.layer.value = labels
    job = widget._prepare()
    assert job.volume.data.shape == (6, 5, 4)
    assert not np.shares_memory(job.volume.data, labels.data)


def test_save_problems_are_reported(qtbot, viewer, widget, nifti_file, tmp_path):
    widget.layer.value = _open(viewer, nifti_file("v.nii.gz", data=_ct()))
    before = len(_errors())
    assert widget.save() is None
    assert "run Resample first" in widget.status.value
    widget.target_size.value = (5, 5, 5)
    _run(qtbot, widget)
    widget.output_dir.value = tmp_path / "missing"
    assert widget.save() is None
    assert "does not exist" in widget.status.value and "missing" in widget.status.value
    assert len(_errors()) == before + 2
    assert not (tmp_path / "missing").exists()


def test_layer_choices_follow_the_viewer(viewer, widget):
    assert widget.layer.choices == ()
    image = viewer.add_image(np.zeros((4, 4, 4)), name="a")
    viewer.add_points(np.zeros((1, 3)), name="points")
    assert widget.layer.choices == (image,)
    viewer.layers.remove(image)
    assert widget.layer.choices == ()


def test_layer_not_from_a_file_saves_with_scale_as_spacing(qtbot, viewer, widget, tmp_path):
    layer = viewer.add_image(_ct().transpose(2, 1, 0), name="plain", scale=(2.5, 0.8, 0.5))
    widget.layer.value = layer
    assert widget.target_size.value == (24, 20, 10)
    assert os.path.samefile(widget.output_dir.value, os.getcwd())
    widget.target_size.value = (12, 10, 5)
    _run(qtbot, widget)
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    np.testing.assert_allclose(np.diag(saved.affine)[:3], [1.0, 1.6, 5.0], atol=1e-6)


def test_screenshot_script_makes_a_non_blank_picture(make_napari_viewer, tmp_path):
    import importlib.util
    from pathlib import Path

    import imageio.v3 as iio

    script = Path(__file__).resolve().parents[1] / "docs" / "make_screenshot.py"
    spec = importlib.util.spec_from_file_location("make_screenshot", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    viewer = make_napari_viewer(show=True)
    path = module.make_screenshot(tmp_path / "shot.png", viewer=viewer)
    assert [lay.name for lay in viewer.layers] == ["phantom", "phantom_resampled"]
    pixels = iio.imread(path)[..., :3].astype(float)
    height, width = pixels.shape[:2]
    assert height >= 400 and width >= 600
    grey = pixels.mean(axis=2)
    assert grey.std() > 20, "screenshot is (nearly) uniform"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
    # the canvas (left of the dock) shows the phantom: bright skull next to dark air
    band = grey[height // 4 : 3 * height // 4, int(0.3 * width) : int(0.55 * width)]
    assert band.max() > 200 and band.min() < 40


def test_save_folder_follows_the_layer_until_the_user_picks_one(viewer, widget, tmp_path):
    first = nifti_factory(tmp_path / "a")
    second = nifti_factory(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    layer_a = _open(viewer, first("one.nii.gz", data=_ct()))
    layer_b = _open(viewer, second("two.nii.gz", data=_ct()))
    widget.layer.value = layer_a
    assert widget.output_dir.value == tmp_path / "a"
    widget.layer.value = layer_b
    assert widget.output_dir.value == tmp_path / "b"  # not picked yet: the source's folder
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    widget.output_dir.value = chosen
    widget.layer.value = layer_a
    assert widget.output_dir.value == chosen  # a folder the user picked is kept
