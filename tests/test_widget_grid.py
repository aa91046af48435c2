"""The widget's target choice: size, spacing, or another layer's grid ("match layer").

A result matched to a layer must lie on it voxel for voxel: the same data shape and the same
``data_to_world`` for every index. Values are checked against napari's own transforms of the
source (``world_to_data``), not against the code under test.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import napari_resample.plugin.widget.job as job_module
import napari_resample.plugin.widget.model as model_module
from _plugin_fixtures import (
    AFFINES,
    TIMEOUT_MS,
    _ct,
    _errors,
    _held,
    _open,
    _run,
    _save,
    rotation,
    stored_world,
)
from napari_resample import resample_to_reference, resample_to_spacing
from napari_resample.engine import memory as _memory
from napari_resample.engine import threads as _threads
from napari_resample.plugin.widget.readout import ORANGE, RED

pytestmark = [
    pytest.mark.gui,
    # napari's 2D slicing of a rotated layer; not ours (docs: GEOMETRY.md)
    pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning"),
]


def _shown(widget, field) -> bool:
    return field.native.isVisibleTo(widget.native)


def _segmentation() -> np.ndarray:
    """uint8 labels in napari (z, y, x) order: 0 around, 1 inside, blocks of 2 and 7."""
    seg = np.zeros((12, 14, 16), np.uint8)
    seg[2:10, 2:12, 2:14] = 1
    seg[3:9, 3:7, 3:8] = 2
    seg[3:9, 8:11, 9:13] = 7
    return seg


def _labels_over(viewer, affine, shape, name="seg", shift=(0.0, 0.0, 0.0)):
    """An axis-aligned Labels layer (no file) centred on the grid (*affine*, *shape*)."""
    seg = _segmentation()
    scale = np.array([1.5, 0.9, 0.8])
    centre = stored_world(affine, (np.asarray(shape) - 1) / 2)[::-1] + np.asarray(shift)
    translate = centre - (np.asarray(seg.shape) - 1) / 2 * scale
    return viewer.add_labels(seg, name=name, scale=scale, translate=translate)


def _voxels(shape, count=150, seed=0):
    """Corners, the centre and random voxel indices of *shape*."""
    rng = np.random.default_rng(seed)
    corners = [
        tuple(c * (n - 1) for c, n in zip(x, shape, strict=True)) for x in np.ndindex(2, 2, 2)
    ]
    centre = [tuple(n // 2 for n in shape)]
    picked = [tuple(int(rng.integers(n)) for n in shape) for _ in range(count)]
    return corners + centre + picked


def _assert_on_the_same_voxels(result, reference):
    assert result.data.shape == reference.data.shape
    for index in _voxels(reference.data.shape):
        np.testing.assert_allclose(
            result.data_to_world(index), reference.data_to_world(index), atol=1e-9
        )


def _match(widget, reference):
    widget.target.value = "match layer"
    widget.reference.value = reference


# ------------------------------------------------------------------------- match layer


def test_a_segmentation_matched_to_an_oblique_image_lies_on_it(qtbot, viewer, widget, nifti_file):
    image = _open(viewer, nifti_file("t1.nii.gz", "oblique", data=_ct()))
    assert not np.allclose(image.rotate, np.eye(3))  # really oblique in napari
    labels = _labels_over(viewer, AFFINES["oblique"], (24, 20, 10))
    widget.layer.value = labels
    _match(widget, image)
    assert widget.reference.choices == (image,)  # never the source itself
    assert "overlap: 'seg' covers" in widget.summary.value and widget.run_button.enabled
    result = _run(qtbot, widget)
    assert result is not None, widget.status.value
    assert result.name == "seg_resampled_to_ref" and result._type_string == "labels"
    assert result.data.dtype == labels.data.dtype
    assert result.metadata["napari_resample"]["interpolation"] == "label"
    _assert_on_the_same_voxels(result, image)
    assert set(np.unique(result.data).tolist()) == {0, 1, 2, 7}
    # every output voxel whose interpolation cell in the labels is one label holds that label
    checked = 0
    for index in _voxels(result.data.shape, count=600, seed=1):
        m = np.asarray(labels.world_to_data(result.data_to_world(index)))
        lo = np.floor(m).astype(int)
        if np.any(lo < 0) or np.any(lo + 1 >= labels.data.shape):
            continue
        cell = labels.data[lo[0] : lo[0] + 2, lo[1] : lo[1] + 2, lo[2] : lo[2] + 2]
        if np.all(cell == cell.flat[0]):
            assert result.data[index] == cell.flat[0], (index, m)
            checked += 1
    assert checked >= 100


def test_a_layer_rotated_in_napari_is_matched_voxel_for_voxel(qtbot, viewer, widget, nifti_file):
    source = _open(viewer, nifti_file("src.nii.gz", "ras_anisotropic"))  # coded values
    shape = np.array([9, 8, 10])
    scale = np.array([1.1, 0.5, 0.35])
    # past 45 degrees: the grid is closest to another axis order than the layer's own
    rotate = rotation("x", 70.0) @ rotation("y", -10.0)
    centre = stored_world(AFFINES["ras_anisotropic"], (np.array([7, 6, 5]) - 1) / 2)[::-1]
    translate = centre - rotate @ ((shape - 1) / 2 * scale)
    target = viewer.add_image(
        np.zeros(shape, np.float32),
        name="rotated",
        scale=scale,
        translate=translate,
        rotate=rotate,
    )
    widget.layer.value = source
    _match(widget, target)
    widget.interpolation.value = "nearest"
    result = _run(qtbot, widget)
    assert result.name == "src_resampled_to_ref" and result._type_string == "image"
    _assert_on_the_same_voxels(result, target)
    inside = outside = 0
    for index in np.ndindex(result.data.shape):
        m = np.asarray(source.world_to_data(result.data_to_world(index)))
        n = np.asarray(source.data.shape)
        if np.all(m > -0.5 + 1e-3) and np.all(m < n - 0.5 - 1e-3):
            if np.all(np.abs(m - np.floor(m) - 0.5) > 1e-3):  # no tie for nearest
                assert result.data[index] == source.data[tuple(np.rint(m).astype(int))]
                inside += 1
        elif np.any(m < -0.5 - 1e-3) or np.any(m > n - 0.5 + 1e-3):
            assert result.data[index] == 0  # the fill value outside the source
            outside += 1
    assert inside >= 50 and outside >= 50


def test_match_layer_saves_the_reference_grid_and_agrees_with_the_api(
    qtbot, viewer, widget, nifti_file, tmp_path
):
    ref_path = nifti_file("t1.nii.gz", "oblique", data=_ct())
    seg = np.zeros((24, 20, 10), np.uint8)  # (i, j, k), on an axis-aligned grid
    seg[4:20, 3:17, 2:8] = 3
    seg[8:14, 6:12, 3:7] = 5
    seg_affine = AFFINES["oblique"].copy()
    seg_affine[:3, :3] = np.diag([0.65, 0.75, 2.2])
    seg_path = nifti_file("seg.nii.gz", seg_affine, data=seg)
    expected_dir = tmp_path / "api"
    resample_to_reference(seg_path, ref_path, expected_dir, "label")
    expected = nib.load(expected_dir / "seg_resampled_to_ref.nii.gz")

    image = _open(viewer, ref_path)
    labels = _open(viewer, seg_path)
    assert labels._type_string == "labels"
    widget.layer.value = labels
    _match(widget, image)
    _run(qtbot, widget)
    out = tmp_path / "out"
    out.mkdir()
    widget.output_dir.value = out
    path = _save(qtbot, widget)
    assert path == out / "seg_resampled_to_ref.nii.gz"
    saved = nib.load(path)
    reference = nib.load(ref_path)
    assert saved.shape == reference.shape
    np.testing.assert_allclose(saved.affine, reference.affine, atol=1e-6)
    for field in ("qform_code", "sform_code"):
        assert saved.header[field] == reference.header[field]
    assert saved.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(expected.dataobj))


def test_no_overlap_is_refused_and_moving_the_layer_back_allows_the_run(viewer, widget):
    image = viewer.add_image(_ct(), name="ct")
    labels = viewer.add_labels(_segmentation(), name="seg", translate=(0, 0, 500))
    widget.layer.value = labels
    _match(widget, image)
    assert not widget.run_button.enabled
    warning = widget.target_warning.value
    assert "No overlap (0%)" in warning and "'seg' and 'ct' do not overlap" in warning
    assert "mm (RAS)" in warning and widget.target_warning.native.styleSheet() == RED
    assert widget.run() is None and "do not overlap" in widget.status.value
    labels.translate = (0, 0, 0)  # the source is followed: the refusal goes
    assert "No overlap" not in widget.target_warning.value and widget.run_button.enabled
    assert "overlap: 'seg' covers 35.0% of 'ct'" in widget.summary.value
    image.translate = (0, 0, 500)  # and so is the matched layer
    assert "No overlap (0%)" in widget.target_warning.value and not widget.run_button.enabled


def test_low_overlap_is_a_warning_and_the_run_reports_it(qtbot, viewer, widget):
    source = viewer.add_image(np.ones((10, 10, 10), np.float32), name="src")
    target = viewer.add_image(np.ones((10, 10, 10), np.float32), name="ref", translate=(0, 0, 7))
    widget.layer.value = source
    _match(widget, target)
    assert "covers only 30.0% of 'ref'" in widget.target_warning.value
    assert widget.target_warning.native.styleSheet() == ORANGE
    assert "overlap: 'src' covers 30.0% of 'ref'" in widget.summary.value
    assert widget.run_button.enabled
    before = len(_errors())
    result = _run(qtbot, widget)
    assert "30.0% covered" in widget.status.value
    assert result.data[:, :, :3].min() == 1 and result.data[:, :, 3:].max() == 0
    assert _errors()[before:] == []  # not a second time as a warning from the worker


def test_cancel_stops_a_match_layer_run(qtbot, viewer, widget, monkeypatch):
    seen = []
    held = _held(job_module.resample_volume_to_grid, seen)
    monkeypatch.setattr(job_module, "resample_volume_to_grid", held)
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    source = viewer.add_image(_ct(), name="ct")
    target = viewer.add_image(np.zeros((30, 40, 16), np.int16), name="fine", scale=(0.3, 0.5, 0.8))
    widget.layer.value = source
    _match(widget, target)
    before = len(_errors())
    assert widget.run() is not None
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT_MS)
    assert 0 < seen[0] < 1  # the separable engine, slab by slab: the pair is axis-aligned
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert [lay.name for lay in viewer.layers] == ["ct", "fine"] and widget.result_layer is None
    assert "cancelled" in widget.status.value and _errors()[before:] == []
    assert widget.run_button.text == "Resample" and widget.run_button.enabled


def test_auto_is_the_pipeline_rule_on_every_target_unless_chosen(qtbot, viewer, widget):
    source = viewer.add_image(_ct(), name="ct")
    target = viewer.add_image(np.zeros((8, 8, 8), np.float32), name="ref", scale=(3, 3, 3))
    widget.layer.value = source
    _match(widget, target)
    # "auto" is B-spline for an image on every target (docs/decisions.md, D22)
    assert _run(qtbot, widget).metadata["napari_resample"]["interpolation"] == "bspline"
    widget.target.value = "size"
    widget.target_size.value = (6, 5, 5)
    assert _run(qtbot, widget).metadata["napari_resample"]["interpolation"] == "bspline"
    # an Image layer holding a label map: the rule looks at the voxels, not the layer type
    widget.layer.value = viewer.add_image(_segmentation(), name="seg", scale=(2.5, 0.8, 0.5))
    widget.target_size.value = (8, 7, 6)
    assert _run(qtbot, widget).metadata["napari_resample"]["interpolation"] == "label"
    widget.layer.value = source
    widget.interpolation.value = "nearest"  # an explicit choice is kept for every target
    _match(widget, target)
    assert _run(qtbot, widget).metadata["napari_resample"]["interpolation"] == "nearest"


def test_the_layer_to_match_is_another_3d_layer(viewer, widget):
    a = viewer.add_image(_ct(), name="a")
    b = viewer.add_labels(_segmentation(), name="b")
    viewer.add_image(np.zeros((8, 8)), name="flat")
    widget.layer.value = a
    _match(widget, b)
    assert widget.reference.choices == (b,)
    widget.layer.value = b  # the matched layer becomes the source: the other one is matched
    assert widget.reference.value is a and widget.reference.choices == (a,)
    viewer.layers.remove(a)
    assert widget.reference.value is None and not widget.run_button.enabled
    assert "Cannot match: open another 3D Image or Labels layer" in widget.target_warning.value


def test_only_the_chosen_targets_fields_show(viewer, widget):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    size_fields = (widget.preset, widget.target_size, widget.current_size)
    for target, shown in [
        ("size", {*size_fields, widget.anchor, widget.antialias}),
        ("spacing", {widget.target_spacing, widget.anchor, widget.antialias}),
        ("match layer", {widget.reference}),
    ]:
        widget.target.value = target
        for field in (*size_fields, widget.target_spacing, widget.reference, widget.anchor):
            assert _shown(widget, field) == (field in shown), (target, field.name)
        assert _shown(widget, widget.interpolation)


# ----------------------------------------------------------------------------- spacing


def test_spacing_target_reads_out_the_size_and_agrees_with_the_api(
    qtbot, viewer, widget, nifti_file, tmp_path
):
    src = nifti_file("ct.nii.gz", "las", data=_ct())  # 24 x 20 x 10 of 0.7 x 0.9 x 2 mm
    layer = _open(viewer, src)
    widget.layer.value = layer
    widget.target.value = "spacing"
    assert widget.target_spacing.value == pytest.approx((0.7, 0.9, 2.0))  # the layer's
    assert "new: 24 x 20 x 10 voxels" in widget.summary.value
    widget.target_spacing.value = (1.0, 1.0, 1.0)
    text = widget.summary.value
    assert f"new: 17 x 18 x 20 voxels, spacing {16.8 / 17:.3g} x 1 x 1 mm" in text
    assert "(asked 1 x 1 x 1 mm)" in text and "field of view (kept): 16.8 x 18 x 20 mm" in text
    result = _run(qtbot, widget)
    assert result.name == "ct_resampled"
    info = result.metadata["napari_resample"]
    assert info["shape"] == (17, 18, 20) and info["target_spacing"] == (1.0, 1.0, 1.0)
    resample_to_spacing(src, tmp_path / "api", (1.0, 1.0, 1.0))
    expected = nib.load(tmp_path / "api" / "ct_resampled.nii.gz")
    widget.output_dir.value = tmp_path
    saved = nib.load(_save(qtbot, widget))
    assert saved.shape == (17, 18, 20)
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(expected.dataobj))
    np.testing.assert_allclose(saved.affine, expected.affine, atol=1e-5)


def test_a_chosen_spacing_is_kept_across_layers(viewer, widget, nifti_file):
    a = _open(viewer, nifti_file("a.nii.gz", "ras_anisotropic"))
    b = _open(viewer, nifti_file("b.nii.gz", "lps"))
    widget.layer.value = a
    widget.target.value = "spacing"
    assert widget.target_spacing.value == pytest.approx((0.5, 0.8, 2.5))
    widget.layer.value = b  # not chosen yet: follows the layer
    assert widget.target_spacing.value == pytest.approx((1.1, 0.6, 3.0))
    widget.target_spacing.value = (0.25, 0.25, 0.5)
    widget.layer.value = a
    assert widget.target_spacing.value == pytest.approx((0.25, 0.25, 0.5))
    assert "new: 14 x 19 x 25 voxels" in widget.summary.value  # 3.5, 4.8, 12.5 mm of FOV


def test_the_memory_estimate_covers_every_target(viewer, widget, monkeypatch):
    calls = []
    real = model_module.estimate_memory

    def spy(in_shape, dtype, out_shape, mode, **kwargs):
        calls.append((tuple(in_shape), tuple(out_shape), mode))
        return real(in_shape, dtype, out_shape, mode, **kwargs)

    monkeypatch.setattr(model_module, "estimate_memory", spy)
    monkeypatch.setattr(_memory, "available_memory", lambda: 10 * 2**20)
    source = viewer.add_image(_ct(), name="ct")  # napari (24, 20, 10): file (10, 20, 24)
    target = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="ref", scale=(6, 4, 2))
    widget.layer.value = source
    widget.target.value = "spacing"
    widget.target_spacing.value = (0.5, 0.5, 0.5)
    assert calls[-1] == ((10, 20, 24), (20, 40, 48), "bspline")
    widget.target_spacing.value = (0.01, 0.01, 0.01)
    assert "Too big" in widget.memory_warning.value and not widget.run_button.enabled
    _match(widget, target)
    assert calls[-1] == ((10, 20, 24), (6, 5, 4), "bspline")
    assert widget.memory_warning.value == "" and widget.run_button.enabled
