"""Target spacing and reference grids: sizes, geometry, header, overlap, both engines.

The world-coordinate checks are independent of the code under test: marker voxels are placed
at known world positions and must land on the output voxel whose centre is nearest, and the
oblique path is compared with SimpleITK resampling the two files as physical images (LPS, read
by SimpleITK itself: NiDataset's way).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import make_affine, rotation, smooth_volume
from napari_resample import resample_to_reference, resample_to_spacing
from napari_resample.engine.grid import (
    Grid,
    aligned_positions,
    overlap_fraction,
    spacing_size,
    voxel_map,
    world_bounds,
)
from napari_resample.io.nifti import NiftiVolume
from napari_resample.pipeline.reference import resample_volume_to_grid

# --------------------------------------------------------------------------- target spacing


@pytest.mark.parametrize(
    ("shape", "spacing", "target"),
    [
        ((512, 512, 300), (0.7, 0.7, 1.0), (1.0, 1.0, 1.0)),
        ((20, 30, 7), (1.0, 0.5, 5.0), (1.3, 2.0, 0.9)),
        ((3, 3, 3), (1.0, 1.0, 1.0), (100.0, 100.0, 100.0)),  # at least 1 voxel
    ],
)
def test_spacing_size_keeps_the_field_of_view(shape, spacing, target) -> None:
    affine = make_affine(rotation(0.3, -0.2, 0.1) @ np.diag(spacing), (4.0, -2.0, 7.0))
    size, achieved = spacing_size(shape, affine, target)
    fov = np.asarray(shape) * np.asarray(spacing)
    np.testing.assert_allclose(np.asarray(size) * np.asarray(achieved), fov, rtol=1e-12)
    # the size nearest the request: within half a voxel over the field of view
    for n, f, want in zip(size, fov, target, strict=True):
        assert n == 1 or abs(f / want - n) <= 0.5
    expected = [max(1, round(f / t)) for f, t in zip(fov, target, strict=True)]
    assert list(size) == expected


@pytest.mark.parametrize(
    "bad",
    [(1, 1), (1, 1, 1, 1), (1, 0, 1), (1, -2, 1), (1, float("nan"), 1), "1 1 1", (1, True, 1)],
)
def test_spacing_must_be_three_positive_finite_numbers(bad) -> None:
    with pytest.raises(ValueError, match="spacing must hold exactly 3 positive finite numbers"):
        spacing_size((4, 4, 4), np.eye(4), bad)


def test_resample_to_spacing_writes_and_reports(make_nifti, tmp_path: Path, capsys) -> None:
    affine = make_affine(np.diag([0.8, 0.8, 2.5]), (10.0, 20.0, -30.0))
    src = make_nifti(smooth_volume((30, 25, 8)).astype(np.int16), affine, name="ct.nii.gz")
    out = resample_to_spacing(src, tmp_path / "iso", (1.0, 1.0, 1.0), debug=True)
    assert out == os.path.join(tmp_path / "iso", "ct_resampled.nii.gz")
    img = nib.load(out)
    assert img.shape == (24, 20, 20)
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(img.affine[:3, 3], (10.0, 20.0, -30.0))  # first voxel centre kept
    assert img.get_data_dtype() == np.int16
    printed = capsys.readouterr().out
    assert f"Resampled image saved at: '{out}'" in printed
    assert "Spacing requested (1, 1, 1) mm, achieved (1, 1, 1) mm, size (24, 20, 20)" in printed


def test_resample_to_spacing_says_what_it_achieved(make_nifti, tmp_path: Path, capsys) -> None:
    src = make_nifti(np.zeros((10, 10, 10), np.uint8), np.diag([0.7, 0.7, 0.7, 1.0]))
    resample_to_spacing(src, tmp_path / "o", (1.0, 1.0, 1.0), debug=True)
    assert "achieved (1, 1, 1)" in capsys.readouterr().out  # 7 mm / 7 voxels
    resample_to_spacing(src, tmp_path / "p", (0.9, 0.9, 0.9), debug=True)
    assert "Spacing requested (0.9, 0.9, 0.9) mm, achieved (0.875, 0.875, 0.875) mm" in (
        capsys.readouterr().out
    )


def test_resample_to_spacing_refuses_bad_spacing_before_writing(make_nifti, tmp_path) -> None:
    src = make_nifti(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"got \(1, 0, 1\)"):
        resample_to_spacing(src, tmp_path / "never", (1, 0, 1))
    assert not (tmp_path / "never").exists()


# --------------------------------------------------------------------------- reference grids

SHAPE = (24, 20, 12)


def _input_affine() -> np.ndarray:
    return make_affine(np.diag([1.0, 1.2, 2.0]), (-12.0, -10.0, -11.0))


REFERENCES = {
    # name: (linear part, origin, shape): all within the input's field of view
    "same": (np.diag([1.0, 1.2, 2.0]), (-12.0, -10.0, -11.0), SHAPE),
    "finer_shifted": (np.diag([0.5, 0.6, 1.0]), (-8.25, -7.1, -6.5), (30, 25, 14)),
    "flipped_permuted": (
        np.array([[0.0, -0.9, 0.0], [1.1, 0.0, 0.0], [0.0, 0.0, -1.5]]),
        (8.0, -8.0, 9.0),
        (14, 17, 10),
    ),
    "oblique": (
        rotation(0.35, -0.35, 0.0) @ np.diag([1.1, 1.1, 1.6]),
        (-2.0, -3.0, -4.0),
        (9, 9, 7),
    ),
}


@pytest.fixture
def image_file(make_nifti):
    data = (smooth_volume(SHAPE, seed=3, lo=-200, hi=800)).astype(np.int16)
    return make_nifti(
        data,
        _input_affine(),
        name="t1.nii.gz",
        fields={"descrip": b"input header", "intent_code": 0, "pixdim4": 2.5},
    ), data


def _reference_file(make_nifti, key: str, *, qform_code=1, sform_code=4) -> Path:
    linear, origin, shape = REFERENCES[key]
    affine = make_affine(linear, origin)
    return make_nifti(
        np.zeros(shape, np.float32),
        affine,
        name=f"ref_{key}.nii.gz",
        folder="refs",
        qform_code=qform_code,
        sform_code=sform_code,
        fields={"descrip": b"reference header"},
    )


@pytest.mark.parametrize("key", list(REFERENCES))
def test_result_lies_on_the_reference_grid_with_the_input_s_header(
    make_nifti, image_file, tmp_path: Path, key: str
) -> None:
    src, _ = image_file
    ref_path = _reference_file(make_nifti, key)
    out = resample_to_reference(src, ref_path, tmp_path / "out")
    assert os.path.basename(out) == "t1_resampled_to_ref.nii.gz"
    got, ref = nib.load(out), nib.load(ref_path)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got.affine, ref.affine)
    for field in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d"):
        assert got.header[field] == ref.header[field], field
    for field in ("srow_x", "srow_y", "srow_z"):
        np.testing.assert_array_equal(got.header[field], ref.header[field])
    np.testing.assert_array_equal(got.header["pixdim"][:4], ref.header["pixdim"][:4])
    assert got.header["descrip"] == b"input header"
    assert got.header["pixdim"][4] == 2.5
    assert got.get_data_dtype() == np.int16


@pytest.mark.parametrize(
    ("key", "method"),
    [
        (key, method)
        for key in ("finer_shifted", "flipped_permuted", "oblique")
        for method in ("auto", "separable", "itk")
        if (key, method) != ("oblique", "separable")  # refused: tested below
    ],
)
def test_markers_land_where_their_world_position_says(key: str, method: str) -> None:
    """Distinct labels at distinct input voxels; by plain numpy on the two affines (not the
    code under test), each output voxel whose centre lies in a marker's input voxel (within
    half a voxel of its centre) must hold that marker, and a marker appears nowhere else."""
    linear, origin, shape = REFERENCES[key]
    ref_affine = make_affine(linear, origin)
    a_in = _input_affine()
    centres = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = centres @ ref_affine[:3, :3].T + ref_affine[:3, 3]
    in_index = (world - a_in[:3, 3]) @ np.linalg.inv(a_in[:3, :3]).T
    # marker voxels: input voxels that some output voxel centre falls in, well inside
    covered = np.unique(np.rint(in_index.reshape(-1, 3)).astype(int), axis=0)
    covered = covered[np.all((covered >= 1) & (covered < np.asarray(SHAPE) - 1), axis=1)]
    rng = np.random.default_rng(1)
    markers = covered[rng.choice(len(covered), size=8, replace=False)]
    data = np.zeros(SHAPE, np.int16)
    for n, v in enumerate(markers, start=1):
        data[tuple(v)] = n
    out, _ = resample_volume_to_grid(
        NiftiVolume(data, a_in, None),
        Grid(shape, ref_affine),
        interpolation="nearest",
        method=method,
    )
    for n, v in enumerate(markers, start=1):
        distance = np.abs(in_index - v).max(axis=-1)
        assert np.all(out.data[distance < 0.5 - 1e-6] == n), f"marker {n} missing"
        assert np.all(distance[out.data == n] <= 0.5 + 1e-6), f"marker {n} misplaced"
        assert (out.data == n).any()


@pytest.mark.parametrize("mode", ["linear", "bspline", "nearest"])
@pytest.mark.parametrize("key", ["finer_shifted", "flipped_permuted"])
def test_both_engines_agree_on_axis_aligned_grids(key: str, mode: str) -> None:
    linear, origin, shape = REFERENCES[key]
    data = smooth_volume(SHAPE, seed=5).astype(np.float32)
    volume = NiftiVolume(data, _input_affine(), None)
    grid = Grid(shape, make_affine(linear, origin))
    assert aligned_positions(SHAPE, voxel_map(volume.affine, grid.affine), shape) is not None
    a, _ = resample_volume_to_grid(volume, grid, interpolation=mode, method="separable")
    b, _ = resample_volume_to_grid(volume, grid, interpolation=mode, method="itk")
    np.testing.assert_allclose(a.data, b.data, rtol=0, atol=1e-6 * 800)


def test_both_engines_agree_on_label_maps_up_to_ties() -> None:
    """Label voting: the same label wherever the vote is not a tie (the tie-break may differ)."""
    linear, origin, shape = REFERENCES["finer_shifted"]
    labels = (smooth_volume(SHAPE, seed=2) // 150).astype(np.uint8)
    volume = NiftiVolume(labels, _input_affine(), None)
    grid = Grid(shape, make_affine(linear, origin))
    a, _ = resample_volume_to_grid(volume, grid, interpolation="label", method="separable")
    b, _ = resample_volume_to_grid(volume, grid, interpolation="label", method="itk")
    differ = np.argwhere(a.data != b.data)
    assert len(differ) <= 0.01 * a.data.size
    # where they differ, both labels get the same linear weight: a tie
    for label_a, label_b, v in ((a.data[tuple(v)], b.data[tuple(v)], v) for v in differ):
        wa, _ = resample_volume_to_grid(
            NiftiVolume((labels == label_a).astype(np.float64), volume.affine, None),
            grid,
            method="separable",
        )
        wb, _ = resample_volume_to_grid(
            NiftiVolume((labels == label_b).astype(np.float64), volume.affine, None),
            grid,
            method="separable",
        )
        assert wa.data[tuple(v)] == pytest.approx(wb.data[tuple(v)], abs=1e-9)


def test_the_separable_engine_refuses_an_oblique_grid() -> None:
    linear, origin, shape = REFERENCES["oblique"]
    volume = NiftiVolume(np.zeros(SHAPE, np.float32), _input_affine(), None)
    with pytest.raises(ValueError, match="oblique"):
        resample_volume_to_grid(
            volume, Grid(shape, make_affine(linear, origin), name="o"), method="separable"
        )


@pytest.mark.parametrize("mode", ["linear", "bspline"])
def test_oblique_grid_matches_simpleitk_on_the_two_files(
    make_nifti, image_file, tmp_path: Path, mode: str
) -> None:
    """NiDataset's way, independent of our geometry code: SimpleITK reads both files (LPS) and
    resamples the input onto the reference with ``Resample(moving, reference)``."""
    sitk = pytest.importorskip("SimpleITK")
    src, _ = image_file
    ref_path = _reference_file(make_nifti, "oblique", qform_code=1, sform_code=1)
    out = resample_to_reference(src, ref_path, tmp_path / "out", interpolation=mode)
    ours = np.asarray(nib.load(out).dataobj)
    interpolator = sitk.sitkLinear if mode == "linear" else sitk.sitkBSpline
    moving = sitk.Cast(sitk.ReadImage(str(src)), sitk.sitkFloat64)
    theirs = sitk.Resample(
        moving,
        sitk.ReadImage(str(ref_path)),
        sitk.Transform(),
        interpolator,
        0.0,
        sitk.sitkFloat64,
    )
    theirs = sitk.GetArrayFromImage(theirs).transpose(2, 1, 0)
    lo, hi = (
        float(sitk.GetArrayViewFromImage(moving).min()),
        float(sitk.GetArrayViewFromImage(moving).max()),
    )
    expected = np.rint(np.clip(theirs, lo, hi))
    assert np.abs(ours - expected).max() <= 1


# --------------------------------------------------------------------------- overlap


def test_no_overlap_is_refused_naming_both_files_and_boxes(
    make_nifti, image_file, tmp_path
) -> None:
    src, _ = image_file
    far = make_affine(np.eye(3), (500.0, 0.0, 0.0))
    ref_path = make_nifti(np.zeros((5, 5, 5), np.uint8), far, name="far.nii.gz", folder="refs")
    with pytest.raises(ValueError, match="do not overlap") as info:
        resample_to_reference(src, ref_path, tmp_path / "never")
    message = str(info.value)
    assert str(src) in message and str(ref_path) in message
    assert "x [-12.5, 11.5]" in message  # the input's box
    assert "x [499.5, 504.5]" in message  # the reference's box
    assert not (tmp_path / "never").exists()


def test_partial_overlap_warns_with_the_percentage_and_fills_outside(
    make_nifti, image_file, tmp_path
) -> None:
    src, data = image_file
    # the input spans x in [-12.5, 11.5]; a reference starting at x = 2 has its voxels 0..9
    # inside (centres up to x = 11): 10 of 24 = 41.7%
    shifted = _input_affine()
    shifted[0, 3] = 2.0
    ref_path = make_nifti(np.zeros(SHAPE, np.uint8), shifted, name="part.nii.gz", folder="refs")
    with pytest.warns(UserWarning, match=r"covers only 41\.7% of the field of view"):
        out = resample_to_reference(src, ref_path, tmp_path / "out", fill_value=-1000)
    got = np.asarray(nib.load(out).dataobj)
    np.testing.assert_array_equal(got[:10], data[14:24])  # same voxel centres: values kept
    assert np.all(got[10:] == -1000)  # no edge extrapolation over the rest


def test_overlap_fraction_is_exact_for_an_oblique_grid() -> None:
    """Counted against a brute-force test of every reference voxel centre."""
    a_in = _input_affine()
    linear, _, shape = REFERENCES["oblique"]
    a_ref = make_affine(linear * 3, (0.0, 0.0, 0.0))  # big voxels: part outside
    centres = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(
        -1, 3
    )
    m = voxel_map(a_in, a_ref)
    idx = centres @ m[:3, :3].T + m[:3, 3]
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(SHAPE) - 0.5), axis=1)
    assert 0 < inside.mean() < 1
    assert overlap_fraction(SHAPE, a_in, shape, a_ref) == pytest.approx(inside.mean(), abs=1e-12)


def test_world_bounds_are_the_voxel_edges() -> None:
    box = world_bounds(SHAPE, _input_affine())
    np.testing.assert_allclose(box, [[-12.5, -10.6, -12.0], [11.5, 13.4, 12.0]])


def test_label_map_onto_a_reference_keeps_its_labels(make_nifti, tmp_path) -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:12, 5:15, 2:9] = 7
    labels[14:20, 3:9, 4:10] = 2
    src = make_nifti(labels, _input_affine(), name="seg.nii.gz", fields={"intent_code": 1002})
    ref_path = _reference_file(make_nifti, "oblique")
    out = resample_to_reference(src, ref_path, tmp_path / "out", interpolation="label")
    got = np.asarray(nib.load(out).dataobj)
    assert set(np.unique(got)) <= {0, 2, 7}
    assert {2, 7} <= set(np.unique(got))
    assert nib.load(out).header["intent_code"] == 1002


def test_fill_value_the_data_type_cannot_hold_is_refused(make_nifti, image_file, tmp_path) -> None:
    src, _ = image_file
    ref_path = _reference_file(make_nifti, "same")
    with pytest.raises(ValueError, match=r"fill_value 0\.5 cannot be stored in .* int16"):
        resample_to_reference(src, ref_path, tmp_path / "never", fill_value=0.5)
    with pytest.raises(ValueError, match=r"fill_value 40000(\.0)? cannot be stored"):
        resample_to_reference(src, ref_path, tmp_path / "never", fill_value=40000)
    assert not (tmp_path / "never").exists()


def test_missing_reference_is_named(image_file, tmp_path) -> None:
    src, _ = image_file
    with pytest.raises(FileNotFoundError, match=r"nowhere\.nii\.gz"):
        resample_to_reference(src, tmp_path / "nowhere.nii.gz", tmp_path / "never")


def test_the_reference_s_voxels_are_not_read(make_nifti, image_file, tmp_path) -> None:
    """Only the header counts: a reference whose voxel data is cut short still works."""
    src, _ = image_file
    ref_path = _reference_file(make_nifti, "finer_shifted")
    raw = tmp_path / "refs" / "cut.nii"
    img = nib.load(ref_path)
    nib.save(img, raw)
    with open(raw, "r+b") as fh:
        fh.truncate(352 + 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = resample_to_reference(src, raw, tmp_path / "out")
    assert nib.load(out).shape == img.shape
