"""Hardening of the pipeline and the engine, round two: each case was reproduced on the code
before it and fails there.

- a result larger than the free space of its folder is refused before any work, with the
  numbers, unless the caller says otherwise (``check_disk=False``, ``--no-disk-check``);
- a single-voxel axis that the target makes longer warns (the output repeats one slice);
- big-endian input onto an oblique grid (SimpleITK takes native types only), and SimpleITK's
  failures worded as documented exceptions naming the file;
- the no-overlap error gives the count that decided, not only two boxes that may overlap;
- ``resample_array(out=)`` of a type that cannot hold the result is refused;
- ``max_memory=10**400`` and headers NIfTI-1 cannot store are ``ValueError``;
- the in-memory fallbacks of the file pipeline keep ``max_memory``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from conftest import make_affine, rotation, smooth_volume
from napari_resample import (
    resample_array,
    resample_to_reference,
    resample_to_spacing,
    resampling,
)
from napari_resample.cli import main
from napari_resample.engine.grid import world_bounds
from napari_resample.engine.memory import parse_bytes
from napari_resample.io.nifti import NiftiVolume
from napari_resample.pipeline import oblique as _oblique
from napari_resample.pipeline import streamed as _streamed
from napari_resample.pipeline.run import resample_volume


def _small_disk(monkeypatch, free: int) -> list[str]:
    """``shutil.disk_usage`` reporting *free* bytes everywhere; returns the folders asked."""
    asked: list[str] = []

    def usage(path):
        asked.append(os.fspath(path))
        return SimpleNamespace(total=10 * free + 1, used=9 * free + 1, free=free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return asked


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def small_scan(make_nifti) -> Path:
    data = np.round(smooth_volume((12, 10, 8))).astype(np.int16)
    return make_nifti(data, np.diag([1.0, 1.0, 2.0, 1.0]), name="scan.nii.gz")


# --------------------------------------------------------------------------- disk space


def _doors(small_scan: Path, tmp_path: Path):
    ref = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((60, 50, 40), np.int16), np.diag([0.2, 0.2, 0.4, 1])), ref)
    return {
        "resampling": lambda out, **kw: resampling(small_scan, out, (60, 50, 40), **kw),
        "spacing": lambda out, **kw: resample_to_spacing(small_scan, out, (0.2, 0.2, 0.4), **kw),
        "reference": lambda out, **kw: resample_to_reference(small_scan, ref, out, **kw),
    }


@pytest.mark.parametrize("door", ["resampling", "spacing", "reference"])
def test_a_result_over_the_free_space_is_refused_before_any_work(
    small_scan, tmp_path, monkeypatch, door
) -> None:
    run = _doors(small_scan, tmp_path)[door]
    out = tmp_path / "out"
    asked = _small_disk(monkeypatch, free=100_000)  # the result: 60x50x40 int16, 240 KB

    def no_work(*args, **kwargs):
        raise AssertionError("the resampling started")

    monkeypatch.setattr(_streamed, "stream_file", no_work)
    with pytest.raises(OSError, match=r"needs up to 234\.7 KiB \(240352 bytes") as info:
        run(out)
    message = str(info.value)
    assert "97.7 KiB (100000 bytes) free" in message
    assert repr(str(out)) in message and "check_disk=False" in message
    assert asked == [str(out)]
    assert _files(out) == []
    monkeypatch.undo()
    _small_disk(monkeypatch, free=100_000)
    run(out, check_disk=False)  # the caller says otherwise: written
    assert len(_files(out)) == 1


def test_a_result_that_fits_the_free_space_is_written(small_scan, tmp_path, monkeypatch) -> None:
    _small_disk(monkeypatch, free=240_352)  # exactly the bound
    resampling(small_scan, tmp_path / "out", (60, 50, 40))
    assert _files(tmp_path / "out") == ["scan_resampled.nii.gz"]


def test_the_disk_check_bounds_other_formats_too(tmp_path, monkeypatch) -> None:
    import SimpleITK as sitk

    src = tmp_path / "scan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(src))
    _small_disk(monkeypatch, free=1000)
    with pytest.raises(OSError, match=r"1x1x1 float32|free"):  # any size over 1000 bytes
        resample_to_spacing(src, tmp_path / "out", (0.05, 1, 1))
    assert _files(tmp_path / "out") == []


def test_the_command_line_refuses_and_no_disk_check_writes(
    small_scan, tmp_path, monkeypatch, capsys
) -> None:
    _small_disk(monkeypatch, free=50_000)
    out = tmp_path / "out"
    assert main([str(small_scan), str(out), "--size", "60", "50", "40"]) == 1
    err = capsys.readouterr().err
    assert "needs up to 234.7 KiB" in err and "--no-disk-check" in err
    assert _files(out) == []
    assert main([str(small_scan), str(out), "--size", "60", "50", "40", "--no-disk-check"]) == 0
    assert _files(out) == ["scan_resampled.nii.gz"]


def test_a_dataset_records_the_refusal_and_goes_on(small_scan, tmp_path, monkeypatch) -> None:
    import json

    folder = tmp_path / "in"  # scan.nii.gz is there
    _small_disk(monkeypatch, free=50_000)
    out = tmp_path / "out"
    assert main([str(folder), str(out), "--size", "60", "50", "40", "--quiet"]) == 1
    (record,) = [json.loads(line) for line in (out / "resampling_manifest.jsonl").open()]
    assert record["status"] == "failed" and "free" in record["error"]


def test_resampling_dataset_skips_the_disk_check_on_request(small_scan, tmp_path, monkeypatch):
    from napari_resample import resampling_dataset

    _small_disk(monkeypatch, free=50_000)
    kwargs = {"desired_volume": (60, 50, 40), "progress": False, "workers": 1}
    assert resampling_dataset(tmp_path / "in", tmp_path / "a", **kwargs) == []
    done = resampling_dataset(tmp_path / "in", tmp_path / "b", check_disk=False, **kwargs)
    assert [Path(p).name for p in done] == ["scan_resampled.nii.gz"]


# --------------------------------------------------------------------------- one voxel


def _single_slice(make_nifti) -> Path:
    data = np.round(smooth_volume((16, 16, 1))).astype(np.int16)
    return make_nifti(data, np.diag([1.0, 1.0, 3.0, 1.0]), name="slice.nii.gz")


def test_a_single_slice_made_longer_warns_naming_the_file_and_axis(make_nifti, tmp_path) -> None:
    src = _single_slice(make_nifti)
    with pytest.warns(UserWarning, match=r"slice\.nii\.gz.*single voxel along axis k") as seen:
        resampling(src, tmp_path / "a", (16, 16, 8))
    assert sum("single voxel" in str(w.message) for w in seen) == 1  # once, streamed or not
    assert "8 voxels along it" in str(seen[0].message)


def test_a_single_slice_kept_single_does_not_warn(make_nifti, tmp_path) -> None:
    src = _single_slice(make_nifti)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resampling(src, tmp_path / "a", (32, 8, 1))
        resample_to_spacing(src, tmp_path / "b", (0.5, 0.5, 3.0))


def test_a_single_slice_onto_a_thicker_sampled_reference_warns(make_nifti, tmp_path) -> None:
    src = _single_slice(make_nifti)  # 3 mm thick at z = 0
    ref = tmp_path / "ref.nii.gz"
    affine = np.diag([1.0, 1.0, 0.5, 1.0])
    affine[2, 3] = -2.0  # 0.5 mm slices from z = -2: 7 centres within the slice's 3 mm
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 10), np.int16), affine), ref)
    with pytest.warns(UserWarning, match=r"axis k and the output holds 7 voxels along it"):
        resample_to_reference(src, ref, tmp_path / "out", "linear")
    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 1), np.int16), np.diag([2.0, 2.0, 3.0, 1.0])), one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resample_to_reference(src, one, tmp_path / "out1", "linear")


@pytest.mark.filterwarnings("ignore:.*covers only:UserWarning")  # a slice in a volume
def test_a_single_slice_onto_an_oblique_volume_warns(make_nifti, tmp_path) -> None:
    src = _single_slice(make_nifti)
    ref = tmp_path / "ref.nii.gz"
    affine = make_affine(rotation(0.0, 0.2, 0.3), (0.0, 0.0, -4.0))  # 1 mm, tilted
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.int16), affine), ref)
    with pytest.warns(UserWarning, match=r"single voxel along axis k and the oblique grid"):
        resample_to_reference(src, ref, tmp_path / "out", "linear")


def test_the_volume_door_warns_too() -> None:
    volume = NiftiVolume(np.ones((4, 1, 4), np.float32), np.eye(4), None)
    with pytest.warns(UserWarning, match="single voxel along axis j"):
        resample_volume(volume, (4, 3, 4))


# --------------------------------------------------------------------------- big-endian


def _oblique_reference(tmp_path: Path, center, step: float) -> Path:
    """A 20 x 20 x 16 grid of *step* mm, oblique, centred on *center* (RAS mm)."""
    ref = tmp_path / "oblique_ref.nii.gz"
    affine = make_affine(rotation(0.25, -0.15, 0.4) * step, (0.0, 0.0, 0.0))
    affine[:3, 3] = np.asarray(center) - affine[:3, :3] @ np.array([9.5, 9.5, 7.5])
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 16), np.int16), affine), ref)
    return ref


def _nibabel_anatomical() -> Path | None:
    from nibabel.testing import data_path

    path = Path(data_path) / "anatomical.nii"
    return path if path.is_file() else None


@pytest.mark.parametrize("mode", ["auto", "bspline", "linear", "nearest", "label"])
def test_nibabels_big_endian_anatomical_onto_an_oblique_grid(tmp_path, mode) -> None:
    src = _nibabel_anatomical()
    if src is None:
        pytest.skip("nibabel's test data is not installed")
    image = nib.load(src)
    assert image.get_data_dtype().byteorder == ">"
    center = image.affine[:3, :3] @ (np.asarray(image.shape) - 1) / 2 + image.affine[:3, 3]
    ref = _oblique_reference(tmp_path, center, 2.0)
    little = tmp_path / "little" / "anatomical.nii"
    little.parent.mkdir()
    data = np.asarray(image.dataobj).astype("<i2")
    nib.save(nib.Nifti1Image(data, image.affine, image.header), little)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few labels: the label-map warning for bspline
        got = resample_to_reference(src, ref, tmp_path / "big", mode)
        want = resample_to_reference(little, ref, tmp_path / "want", mode)
    assert np.array_equal(np.asarray(nib.load(got).dataobj), np.asarray(nib.load(want).dataobj))


@pytest.mark.parametrize("dtype", [">i2", ">f4"])
@pytest.mark.parametrize("mode", ["auto", "linear", "nearest"])
def test_synthetic_big_endian_onto_an_oblique_grid(make_nifti, tmp_path, dtype, mode) -> None:
    data = smooth_volume((14, 12, 10)).astype(np.dtype(dtype).newbyteorder("="))
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    big = make_nifti(data, affine, name="big.nii.gz", endianness=">")
    little = make_nifti(data, affine, name="little.nii.gz", folder="little")
    assert nib.load(big).get_data_dtype().str == dtype
    ref = _oblique_reference(tmp_path, (10.0, 8.0, 9.0), 0.7)
    got = resample_to_reference(big, ref, tmp_path / "big", mode)
    want = resample_to_reference(little, ref, tmp_path / "little_out", mode)
    assert np.array_equal(np.asarray(nib.load(got).dataobj), np.asarray(nib.load(want).dataobj))
    # the command line too (--like)
    assert main([str(big), str(tmp_path / "cli"), "--like", str(ref), "--quiet"]) == 0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            RuntimeError("Exception in X: /build/sitk.hxx:12:\nsitk::ERROR: no memory"),
            RuntimeError,
        ),
        (TypeError("dtype: >i2 is not supported."), ValueError),
    ],
)
def test_simpleitk_failures_are_worded_with_the_file(
    small_scan, tmp_path, monkeypatch, raised, expected
) -> None:
    ref = _oblique_reference(tmp_path, (5.5, 4.5, 7.0), 0.4)

    def failing(*args, **kwargs):
        raise raised

    monkeypatch.setattr(_oblique, "_itk_run", failing)
    with pytest.raises(expected, match=r"SimpleITK could not resample '.*scan\.nii\.gz'") as info:
        resample_to_reference(small_scan, ref, tmp_path / "out", "linear")
    assert "/build/" not in str(info.value)
    assert str(info.value).endswith(("no memory", "is not supported."))
    assert _files(tmp_path / "out") == []


# --------------------------------------------------------------------------- no overlap


def test_no_overlap_of_oblique_grids_gives_the_count_not_only_the_boxes(
    make_nifti, tmp_path
) -> None:
    # a thin slab along the diagonal x = y; the reference sits in the corner of its box
    slab = make_affine(rotation(0.0, 0.0, np.pi / 4), (0.0, 0.0, 0.0))
    src = make_nifti(np.ones((30, 2, 10), np.int16), slab, name="slab.nii.gz")
    ref = tmp_path / "corner.nii.gz"
    corner = np.eye(4)
    corner[:3, 3] = (14.0, 2.0, 2.0)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), corner), ref)
    boxes = [world_bounds(shape, a) for shape, a in (((30, 2, 10), slab), ((4, 4, 4), corner))]
    assert np.all(boxes[0][0] < boxes[1][0]) and np.all(boxes[1][1] < boxes[0][1])  # inside
    with pytest.raises(ValueError, match="do not overlap") as info:
        resample_to_reference(src, ref, tmp_path / "out")
    message = str(info.value)
    assert "0 of 64 reference voxel centres fall inside the input" in message
    assert "bounds" in message


# --------------------------------------------------------------------------- out= dtype


def test_out_of_a_narrower_type_is_refused_naming_both() -> None:
    data = (np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2) - 10) * 100
    for narrow in (np.uint8, np.int8, np.float16):
        out = np.zeros((4, 4, 2), narrow)
        with pytest.raises(ValueError, match=rf"out has dtype {np.dtype(narrow)}.*int16"):
            resample_array(data, (4, 4, 2), out=out)
    wide = np.zeros((4, 4, 2), np.float32)
    got, _ = resample_array(data, (4, 4, 2), out=wide)
    assert got is wide and np.array_equal(wide, data)
    with pytest.raises(ValueError, match=r"out has dtype float32.*float64"):
        resample_array(data.astype(np.float64), (4, 4, 2), out=wide)


# --------------------------------------------------------------------------- API exceptions


def test_an_enormous_max_memory_is_a_value_error(small_scan, tmp_path) -> None:
    for call in (
        lambda: parse_bytes(10**400),
        lambda: resampling(small_scan, tmp_path / "a", (4, 4, 4), max_memory=10**400),
        lambda: resample_array(np.zeros((2, 2, 2)), (3, 3, 3), max_memory=10**400),
        lambda: parse_bytes(2**63),
    ):
        with pytest.raises(ValueError, match=r"max_memory must be a positive size.*got 1000|922"):
            call()
    assert parse_bytes(2**63 - 1) == 2**63 - 1
    assert _files(tmp_path / "a") == []


def test_a_size_nifti_cannot_store_is_a_value_error_naming_the_file(tmp_path) -> None:
    import SimpleITK as sitk

    src = tmp_path / "scan.nrrd"  # no NIfTI header to move: one is made for the result
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 4, 4), np.int16)), str(src))
    with pytest.raises(ValueError, match=r"NIfTI header .*scan\.nrrd.*does not fit"):
        resample_to_spacing(src, tmp_path / "out", (1e-4, 1.0, 1.0))
    ref = tmp_path / "long.nrrd"  # a reference grid NIfTI-1 cannot hold
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 40000), np.uint8)), str(ref))
    with pytest.raises(ValueError, match=r"long\.nrrd.*cannot be a NIfTI-1 header"):
        resample_to_reference(src, ref, tmp_path / "out")
    volume = NiftiVolume(np.zeros((4, 4, 2), np.int16), np.eye(4), None)
    with pytest.raises(ValueError, match="NIfTI header of the result"):
        resample_volume(volume, (40000, 2, 2))


# --------------------------------------------------------------------------- in-memory budget


def _nan_volume(make_nifti, with_nan: bool = True) -> Path:
    data = smooth_volume((64, 64, 64)).astype(np.float32)
    if with_nan:
        data[10, 20, 30] = np.nan
    return make_nifti(data, np.eye(4), name=f"f{int(with_nan)}.nii.gz")


def test_nan_floats_fall_back_within_max_memory_or_are_refused(make_nifti, tmp_path) -> None:
    clean = _nan_volume(make_nifti, with_nan=False)
    resampling(clean, tmp_path / "clean", (96, 96, 96), max_memory="4M")  # streamed within
    src = _nan_volume(make_nifti)
    with pytest.raises(MemoryError, match=r"needs \d+\.\d MiB in memory .*NaN or Inf") as info:
        resampling(src, tmp_path / "nan", (96, 96, 96), max_memory="4M")
    assert "over the budget of 4.0 MiB" in str(info.value) and "f1.nii.gz" in str(info.value)
    assert _files(tmp_path / "nan") == []
    resampling(src, tmp_path / "nan", (96, 96, 96), max_memory="64M")  # fits: in memory
    assert _files(tmp_path / "nan") == ["f1_resampled.nii.gz"]


def test_an_oblique_grid_is_resampled_within_max_memory(small_scan, tmp_path) -> None:
    ref = _oblique_reference(tmp_path, (5.5, 4.5, 7.0), 0.4)
    with pytest.raises(MemoryError, match=r"oblique .* over the budget of 1\.0 KiB"):
        resample_to_reference(small_scan, ref, tmp_path / "out", max_memory="1K")
    assert _files(tmp_path / "out") == []
    resample_to_reference(small_scan, ref, tmp_path / "out", max_memory="64M")
