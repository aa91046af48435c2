"""NRRD, MetaImage and DICOM input through every front door but ``resampling()``: NIfTI out.

The world positions of a result are checked against what SimpleITK reports for the input (its
LPS points, x and y negated), never against our own conversions; DICOM series are pydicom's
real test files and NRRD / MetaImage files are written by SimpleITK with an oblique,
anisotropic geometry (see tests/test_formats.py, whose helpers these are). Every result from a
non-NIfTI input is NIfTI-1 with qform and sform code 1 (scanner).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _datasets import write_image
from _formats import CT, FLIP, OBLIQUE, OBLIQUE_MR, SEVERAL, read_series_with_sitk, write_sitk
from _plugin_fixtures import coded_volume
from napari_resample import resample_to_reference, resample_to_spacing, resampling
from napari_resample.cli import main
from napari_resample.dataset.manifest import MANIFEST_NAME, file_sha256, input_fingerprint
from napari_resample.dataset.plan import plan_dataset
from napari_resample.dataset.run import verify_dataset
from napari_resample.io.formats import list_dicom_series, load_volume
from napari_resample.pipeline.run import resample_volume

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")

#: World positions of a result agree with SimpleITK's within this (NIfTI-1 stores float32).
WORLD_MM = 1e-4


def fov_points(shape) -> list[tuple[float, float, float]]:
    """Continuous indices of the 8 outer corners of a grid's field of view and its centre."""
    lo, hi = [-0.5] * 3, [n - 0.5 for n in shape]
    corners = [(a, b, c) for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    return [*corners, tuple((n - 1) / 2 for n in shape)]


def sitk_ras(image, index) -> np.ndarray:
    """SimpleITK's world point of a continuous index, LPS flipped to RAS."""
    point = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index])
    return np.array(point) * FLIP


def through(affine: np.ndarray, index) -> np.ndarray:
    return (affine @ np.append(np.asarray(index, dtype=float), 1.0))[:3]


def assert_same_fov(img: nib.Nifti1Image, image) -> None:
    """The NIfTI result covers SimpleITK's field of view (corners and centre): through its
    qform and its sform, as nibabel reads them, and as SimpleITK itself reads the result."""
    ours = sitk.ReadImage(img.get_filename())
    for ours_index, theirs_index in zip(
        fov_points(img.shape), fov_points(image.GetSize()), strict=True
    ):
        expected = sitk_ras(image, theirs_index)
        for affine in (img.header.get_qform(), img.header.get_sform()):
            np.testing.assert_allclose(through(affine, ours_index), expected, atol=WORLD_MM)
        np.testing.assert_allclose(sitk_ras(ours, ours_index), expected, atol=WORLD_MM)


def assert_scanner_codes(img: nib.Nifti1Image) -> None:
    assert isinstance(img, nib.Nifti1Image) and not isinstance(img, nib.Nifti2Image)
    assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (1, 1)
    assert img.header.get_xyzt_units()[0] == "mm"


def itk_file(path: Path, shape=(9, 7, 5)) -> Path:
    """A SimpleITK-written file with the oblique anisotropic geometry, storing
    ``i + 100 j + 10000 k - 20000`` (linear: any linear interpolation of it is exact)."""
    return write_sitk(path, (coded_volume(shape) - 20000).astype(np.int16), *OBLIQUE)


def copy_series(folder: Path, name: str = "ct_series") -> Path:
    return Path(shutil.copytree(CT, folder / name))


# ----------------------------------------------------------------------- the command line


@pytest.mark.parametrize("series", [CT, OBLIQUE_MR], ids=["ct", "oblique_mr"])
@pytest.mark.parametrize(
    "target",
    [["--size", "7", "9", "11"], ["--spacing", "0.9", "1.3", "1.7"]],
    ids=["size", "spacing"],
)
def test_cli_on_a_dicom_folder_keeps_simpleitk_s_field_of_view(tmp_path, series, target):
    out_dir = tmp_path / "out"
    assert main([str(series), str(out_dir), *target, "--anchor", "center", "--quiet"]) == 0
    assert sorted(os.listdir(out_dir)) == [f"{series.name}_resampled.nii.gz"]
    img = nib.load(out_dir / f"{series.name}_resampled.nii.gz")
    assert_scanner_codes(img)
    if target[0] == "--size":
        assert img.shape == (7, 9, 11)
    assert_same_fov(img, read_series_with_sitk(series))


def test_cli_on_a_dicom_folder_at_its_own_size_keeps_every_voxel(tmp_path, capsys):
    image = read_series_with_sitk(CT)
    size = [str(n) for n in image.GetSize()]
    assert main([str(CT), str(tmp_path), "--size", *size, "--interpolation", "linear"]) == 0
    printed = capsys.readouterr().out
    assert f"{CT} -> {tmp_path / 'CT5N_resampled.nii.gz'}" in printed
    assert "(16, 16, 5) @ 0.4883x0.4883x2.5 mm" in printed  # the geometry line
    img = nib.load(tmp_path / "CT5N_resampled.nii.gz")
    np.testing.assert_array_equal(
        np.asarray(img.dataobj), sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    )
    assert_same_fov(img, image)


def test_cli_series_picks_one_of_several(tmp_path, capsys):
    uid = next(s.uid for s in list_dicom_series(SEVERAL) if s.n_files == 1)
    assert main([str(SEVERAL), str(tmp_path / "none"), "--size", "4", "4", "1"]) == 1
    error = capsys.readouterr().err
    assert "holds 3 DICOM series" in error
    for s in list_dicom_series(SEVERAL):
        assert s.uid in error
    assert not (tmp_path / "none").exists()
    out_dir = tmp_path / "out"
    args = [str(SEVERAL), str(out_dir), "--series", uid, "--size", "4", "4", "1"]
    assert main([*args, "--anchor", "center"]) == 0
    img = nib.load(out_dir / "MR2_resampled.nii.gz")
    assert img.shape == (4, 4, 1)
    assert_same_fov(img, read_series_with_sitk(SEVERAL, uid))


def test_cli_series_with_a_file_is_refused(tmp_path, capsys):
    src = itk_file(tmp_path / "a.nrrd")
    assert main([str(src), str(tmp_path / "out"), "--size", "2", "2", "2", "--series", "1"]) == 2
    assert "applies to folders of DICOM files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_nrrd_like_a_nifti_reference(tmp_path):
    src = itk_file(tmp_path / "head.nrrd")
    image = sitk.ReadImage(str(src))
    centre = sitk_ras(image, [(n - 1) / 2 for n in image.GetSize()])
    ref_affine = np.diag([0.8, 0.6, 1.1, 1.0])
    ref_affine[:3, 3] = centre - np.array([2.0, 1.5, 2.75])  # a 6 x 6 x 6 box about the centre
    ref = nib.Nifti1Image(np.zeros((6, 6, 6), np.uint8), ref_affine)
    ref.header.set_qform(ref_affine, code=2)
    ref.header.set_sform(ref_affine, code=3)
    nib.save(ref, tmp_path / "ref.nii.gz")
    out_dir = tmp_path / "out"
    args = [str(src), str(out_dir), "--like", str(tmp_path / "ref.nii.gz")]
    assert main([*args, "--interpolation", "linear", "--quiet"]) == 0
    img = nib.load(out_dir / "head_resampled_to_ref.nii.gz")
    # On the reference's grid, with its codes (the output lies on its world).
    assert img.shape == (6, 6, 6)
    assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (2, 3)
    np.testing.assert_allclose(img.affine, ref_affine, atol=1e-6)
    # Each voxel holds the input's linear code at SimpleITK's continuous index of its world.
    data = np.asarray(img.dataobj)
    inside = 0
    for ijk in np.ndindex(img.shape):
        lps = through(ref_affine, ijk) * FLIP
        index = np.array(image.TransformPhysicalPointToContinuousIndex(lps.tolist()))
        if np.all(index >= 0) and np.all(index <= np.array(image.GetSize()) - 1):
            inside += 1
            expected = index[0] + 100 * index[1] + 10000 * index[2] - 20000
            assert abs(data[ijk] - expected) <= 1.0, (ijk, data[ijk], expected)
    assert inside > data.size // 2  # the check saw most of the grid


def test_cli_nifti_like_an_mha_reference_gets_scanner_codes(tmp_path, make_nifti):
    ref = itk_file(tmp_path / "ref.mha", shape=(5, 4, 3))
    image = sitk.ReadImage(str(ref))
    centre = sitk_ras(image, [(n - 1) / 2 for n in image.GetSize()])
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = centre - 8.0  # a 32 mm cube about the reference
    src = make_nifti(coded_volume((33, 33, 33)), affine, name="t1.nii.gz")  # codes 2
    out_dir = tmp_path / "out"
    args = [str(src), str(out_dir), "--like", str(ref), "--interpolation", "linear", "--quiet"]
    assert main(args) == 0
    img = nib.load(out_dir / "t1_resampled_to_ref.nii.gz")
    assert img.shape == image.GetSize()
    assert_scanner_codes(img)
    assert_same_fov(img, image)
    # The values are the input's at those world positions (its code is linear in i, j, k).
    data = np.asarray(img.dataobj)
    to_input = np.linalg.inv(affine) @ img.affine
    for ijk in np.ndindex(img.shape):
        i, j, k = through(to_input, ijk)
        assert data[ijk] == pytest.approx(i + 100 * j + 10000 * k, abs=0.05)


def test_cli_dataset_mixing_formats_resumes_and_verifies(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz", shape=(12, 10, 6))
    itk_file(src / "b.nrrd")
    itk_file(src / "c.mha")
    series = copy_series(src)
    (src / "notes.txt").write_text("not a volume")
    out_dir = tmp_path / "out"
    run = [str(src), str(out_dir), "--size", "6", "5", "4", "--workers", "2"]
    assert main(run) == 0
    assert "4 files: 4 resampled, 0 skipped" in capsys.readouterr().out
    names = ["a", "b", "c", "ct_series"]
    assert sorted(os.listdir(out_dir)) == sorted(
        [f"{n}_resampled.nii.gz" for n in names] + [MANIFEST_NAME]
    )
    codes = {
        n: int(nib.load(out_dir / f"{n}_resampled.nii.gz").header["sform_code"]) for n in names
    }
    assert codes == {"a": 2, "b": 1, "c": 1, "ct_series": 1}  # a NIfTI input keeps its own
    for n in ("b", "c", "ct_series"):
        assert_scanner_codes(nib.load(out_dir / f"{n}_resampled.nii.gz"))

    assert main(run) == 0
    assert "4 files: 0 resampled, 4 skipped as already done" in capsys.readouterr().out
    assert main([str(src), str(out_dir), "--verify"]) == 0
    capsys.readouterr()

    # One slice's pixels change, size and modification time restored: only sampled content
    # can tell.
    slice_path = sorted(series.iterdir())[2]
    stat = slice_path.stat()
    raw = bytearray(slice_path.read_bytes())
    raw[-2:] = bytes([raw[-2] ^ 0x5A, raw[-1] ^ 0x3C])
    slice_path.write_bytes(bytes(raw))
    os.utime(slice_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert slice_path.stat().st_mtime_ns == stat.st_mtime_ns

    assert main([str(src), str(out_dir), "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"input changed since it was resampled: {series}" in err
    assert err.count("mismatch") == 1
    assert main(run) == 0
    assert "4 files: 1 resampled, 3 skipped as already done" in capsys.readouterr().out
    assert main([str(src), str(out_dir), "--verify"]) == 0


# --------------------------------------------------------------------------- the Python API


def test_resample_to_spacing_on_an_mha(tmp_path):
    src = itk_file(tmp_path / "head.mha")
    out = resample_to_spacing(src, tmp_path / "out", (1.0, 1.0, 1.0), anchor="center")
    assert out == str(tmp_path / "out" / "head_resampled.nii.gz")
    img = nib.load(out)
    assert_scanner_codes(img)
    assert img.shape == (6, 9, 15)  # round(9 * 0.7), round(7 * 1.3), round(5 * 2.9)
    assert img.get_data_dtype() == np.int16
    assert_same_fov(img, sitk.ReadImage(str(src)))


def test_resample_to_spacing_on_a_dicom_folder_with_a_series(tmp_path):
    uid = next(s.uid for s in list_dicom_series(SEVERAL) if s.n_files == 1)
    with pytest.raises(ValueError, match="holds 3 DICOM series; choose one"):
        resample_to_spacing(SEVERAL, tmp_path / "never", (2.0, 2.0, 2.0))
    assert not (tmp_path / "never").exists()
    out = resample_to_spacing(SEVERAL, tmp_path, (2.0, 2.0, 50.0), series=uid, anchor="center")
    assert out == str(tmp_path / "MR2_resampled.nii.gz")
    assert_same_fov(nib.load(out), read_series_with_sitk(SEVERAL, uid))


def test_resample_to_reference_onto_a_dicom_series(tmp_path, make_nifti):
    image = read_series_with_sitk(CT)
    grid = load_volume(CT)
    src = make_nifti(coded_volume((20, 20, 8)), grid.affine, name="seg.nii.gz")
    out = resample_to_reference(src, CT, tmp_path / "out", "nearest")
    img = nib.load(out)
    assert Path(out).name == "seg_resampled_to_ref.nii.gz"
    assert img.shape == image.GetSize()
    assert_scanner_codes(img)
    assert_same_fov(img, image)
    # Same grid as the input's first voxels: nearest neighbour copies them.
    np.testing.assert_array_equal(np.asarray(img.dataobj), coded_volume((16, 16, 5)))


def test_inputs_the_api_refuses(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no DICOM file"):
        resample_to_spacing(tmp_path / "empty", tmp_path / "out", (1, 1, 1))
    with pytest.raises(FileNotFoundError, match=r"input does not exist: .*missing\.nrrd"):
        resample_to_spacing(tmp_path / "missing.nrrd", tmp_path / "out", (1, 1, 1))
    (tmp_path / "a.png").write_bytes(b"png")
    with pytest.raises(ValueError, match=r"input must be a file ending in \.nii\.gz.*a\.png"):
        resample_to_reference(tmp_path / "a.png", CT, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resampling_still_takes_only_nii_gz(tmp_path):
    src = itk_file(tmp_path / "head.nrrd")
    with pytest.raises(ValueError, match=r"input must be a \.nii\.gz file, got .*head\.nrrd"):
        resampling(src, tmp_path / "out", (4, 4, 4))
    with pytest.raises(ValueError, match="nii_path must be a NIfTI file, got a folder"):
        resampling(CT, tmp_path / "out", (4, 4, 4))
    assert not (tmp_path / "out").exists()


def test_pipeline_keeps_the_scanner_code(tmp_path):
    volume = load_volume(itk_file(tmp_path / "a.nrrd"))
    result = resample_volume(volume, (3, 3, 3))
    assert result.xform_code == 1
    assert (int(result.header["qform_code"]), int(result.header["sform_code"])) == (1, 1)
    np.testing.assert_allclose(result.header.get_best_affine(), result.affine, atol=1e-5)


# ----------------------------------------------------------------------------- datasets


def test_plan_lists_volumes_and_dicom_folders(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    write_image(root / "a.nii.gz", shape=(4, 4, 4))
    itk_file(root / "b.nrrd")
    itk_file(root / "c.mha")
    series = copy_series(root, "ct")
    (root / "notes.txt").write_text("no")
    (root / "sub").mkdir()
    itk_file(root / "sub" / "d.mha")
    copy_series(root / "sub", "deep")

    def planned(**kwargs):
        jobs, _ = plan_dataset(root, tmp_path / "out", (2, 2, 2), **kwargs)
        return [os.path.relpath(job.shown, tmp_path / "out") for job in jobs]

    assert planned(saving_mode="folder") == [
        "a_resampled.nii.gz",
        "b_resampled.nii.gz",
        "c_resampled.nii.gz",
        "ct_resampled.nii.gz",
    ]
    assert planned(saving_mode="case", recursive=True) == [
        os.path.join("a", "a_resampled.nii.gz"),
        os.path.join("b", "b_resampled.nii.gz"),
        os.path.join("c", "c_resampled.nii.gz"),
        os.path.join("ct", "ct_resampled.nii.gz"),
        os.path.join("sub", "d", "d_resampled.nii.gz"),
        os.path.join("sub", "deep", "deep_resampled.nii.gz"),
    ]
    # A DICOM folder given as the dataset is its one input.
    jobs, _ = plan_dataset(series, tmp_path / "out", (2, 2, 2))
    assert [job.input for job in jobs] == [str(series)]


def test_explicit_lists_take_files_and_dicom_folders(tmp_path):
    nrrd = itk_file(tmp_path / "b.nrrd")
    jobs, _ = plan_dataset([nrrd, CT], tmp_path / "out", (2, 2, 2), "folder")
    assert [Path(job.output).name for job in jobs] == [
        "b_resampled.nii.gz",
        "CT5N_resampled.nii.gz",
    ]
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match=r"input must be a file ending in .*plain"):
        plan_dataset([tmp_path / "plain"], tmp_path / "out", (2, 2, 2))
    with pytest.raises(FileNotFoundError, match=r"input does not exist: .*gone"):
        plan_dataset([tmp_path / "gone"], tmp_path / "out", (2, 2, 2))


def test_a_folder_and_a_file_of_one_name_clash(tmp_path):
    copy_series(tmp_path / "in", "ct")
    itk_file(tmp_path / "in" / "ct.nrrd")
    with pytest.raises(ValueError, match="two inputs would write the same output") as e:
        plan_dataset(tmp_path / "in", tmp_path / "out", (2, 2, 2), "folder")
    assert str(tmp_path / "in" / "ct") in str(e.value)
    assert str(tmp_path / "in" / "ct.nrrd") in str(e.value)
    assert not (tmp_path / "out").exists()


def test_series_is_a_parameter_of_folders_only(tmp_path):
    uid = next(s.uid for s in list_dicom_series(SEVERAL) if s.n_files == 1)
    nrrd = itk_file(tmp_path / "b.nrrd")
    jobs, _ = plan_dataset([nrrd, SEVERAL], tmp_path / "out", (2, 2, 1), series=uid)
    assert [job.series for job in jobs] == [None, uid]
    assert "series" not in jobs[0].params and jobs[1].params["series"] == uid
    with pytest.raises(ValueError, match="none of the 1 input"):
        plan_dataset([nrrd], tmp_path / "out", (2, 2, 1), series=uid)


def test_dataset_reads_the_series_asked_for(tmp_path):
    from napari_resample import resampling_dataset

    uid = next(s.uid for s in list_dicom_series(SEVERAL) if s.n_files == 1)
    done = resampling_dataset(
        [SEVERAL], tmp_path, (4, 4, 1), "folder", series=uid, workers=1, progress=False
    )
    assert done == [str(tmp_path / "MR2_resampled.nii.gz")]
    (record,) = [json.loads(line) for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert record["params"]["series"] == uid and record["before"]["shape"][2] == 1


def test_folder_fingerprint_and_digest_follow_its_files(tmp_path):
    series = copy_series(tmp_path)
    first, digest = input_fingerprint(str(series)), file_sha256(str(series))
    assert first["size"] == sum(p.stat().st_size for p in series.iterdir())
    # Files that cannot be part of a series do not count.
    (series / ".DS_Store").write_bytes(b"x")
    write_image(series / "out_resampled.nii.gz", shape=(2, 2, 2))
    assert input_fingerprint(str(series)) == first and file_sha256(str(series)) == digest
    # A renamed slice counts.
    victim = sorted(p for p in series.iterdir() if p.suffix != ".gz" and p.name[0] != ".")[0]
    victim.rename(series / "renamed")
    assert input_fingerprint(str(series))["sample_hash"] != first["sample_hash"]
    assert file_sha256(str(series)) != digest
    (series / "renamed").rename(victim)
    assert file_sha256(str(series)) == digest


def test_verify_names_a_dicom_folder_that_is_gone(tmp_path):
    series = copy_series(tmp_path / "in")
    out_dir = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out_dir), "--size", "4", "4", "2", "--quiet"]) == 0
    shutil.rmtree(series)
    assert verify_dataset(out_dir) == [f"input missing: {series}"]
