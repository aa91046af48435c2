"""NRRD, MetaImage and DICOM input, NRRD / MetaImage output (napari_resample.io.formats).

DICOM tests use real series that pydicom ships as test data (dicomdirtests: a 5-slice CT, a
4-slice CT with a gap, a folder holding three MR series, and the 7 projections of MR700 made
one oblique volume by tests/_dicom_series.py); their geometry is checked against what
SimpleITK reports and against the raw DICOM tags read by pydicom. NRRD tests also read files
written by pynrrd, a writer independent of SimpleITK, in both LPS and RAS spaces. No package
ships a small NRRD or MetaImage file, so the round trips start from files SimpleITK writes
with an oblique direction and anisotropic spacing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _formats import (
    CT,
    DICOM,
    FLIP,
    OBLIQUE,
    OBLIQUE_MR,
    SEVERAL,
    UNEVEN,
    read_series_with_sitk,
    write_sitk,
)
from _plugin_fixtures import coded_volume, rotation
from napari_resample.io.atomic import remove_stale_temps
from napari_resample.io.formats import (
    describe_series,
    is_dicom_series_folder,
    is_volume_input,
    list_dicom_series,
    load_volume,
    save_itk,
)
from napari_resample.io.header import XFORM_SCANNER, header_for_affine

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")


def ras_of(volume, ijk) -> np.ndarray:
    return (volume.affine @ np.append(np.asarray(ijk, dtype=float), 1.0))[:3]


def sample_indices(shape) -> list[tuple[int, int, int]]:
    """Corners, the centre and an off-centre voxel of a grid of *shape*."""
    last = [n - 1 for n in shape]
    corners = [(a, b, c) for a in (0, last[0]) for b in (0, last[1]) for c in (0, last[2])]
    return [*corners, tuple(n // 2 for n in shape), (1 % shape[0], 2 % shape[1], last[2] // 2)]


def assert_matches_sitk(volume, image) -> None:
    """Same voxels at the same world positions as SimpleITK's image (LPS flipped to RAS)."""
    assert volume.data.shape == image.GetSize()
    assert volume.data.dtype == sitk.GetArrayViewFromImage(image).dtype
    for ijk in sample_indices(volume.data.shape):
        lps = np.array(image.TransformIndexToPhysicalPoint([int(n) for n in ijk]))
        np.testing.assert_allclose(ras_of(volume, ijk), lps * FLIP, atol=1e-6)
        assert volume.data[ijk] == image.GetPixel(*[int(n) for n in ijk])


@pytest.fixture
def oblique_file(tmp_path):
    def make(suffix: str, data: np.ndarray | None = None) -> Path:
        data = (coded_volume((9, 7, 5)) - 20000).astype(np.int16) if data is None else data
        return write_sitk(tmp_path / f"src{suffix}", data, *OBLIQUE)

    return make


# ------------------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("folder", [CT, OBLIQUE_MR], ids=["ct", "oblique_mr"])
def test_dicom_series_has_simpleitks_world_coordinates(folder):
    volume = load_volume(folder)
    assert_matches_sitk(volume, read_series_with_sitk(folder))
    assert volume.header is None and volume.xform_code == XFORM_SCANNER
    assert (volume.slope, volume.inter) == (1.0, 0.0)
    assert volume.path == str(folder)


def test_dicom_geometry_and_hounsfield_units_match_the_raw_tags():
    # Independent of SimpleITK: each file's ImagePositionPatient / ImageOrientationPatient /
    # PixelSpacing (LPS) and its pixels rescaled by pydicom.
    volume = load_volume(CT)
    origins = {}
    for path in CT.iterdir():
        ds = pydicom.dcmread(path)
        row, col = (
            np.array(ds.ImageOrientationPatient[:3]),
            np.array(ds.ImageOrientationPatient[3:]),
        )
        dr, dc = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
        np.testing.assert_allclose(volume.affine[:3, 0] * FLIP, row * dc, atol=1e-6)
        np.testing.assert_allclose(volume.affine[:3, 1] * FLIP, col * dr, atol=1e-6)
        origins[float(ds.ImagePositionPatient[2])] = ds
    for k, z in enumerate(sorted(origins)):
        ds = origins[z]
        np.testing.assert_allclose(ras_of(volume, (0, 0, k)) * FLIP, ds.ImagePositionPatient)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert float(ds.RescaleIntercept) != 0  # the rescale is really exercised
        np.testing.assert_array_equal(volume.data[:, :, k], hu.T)  # pixel_array is (row, col)


def test_uneven_slices_are_noted_and_warned():
    with pytest.warns(UserWarning, match="not evenly spaced") as caught:
        volume = load_volume(UNEVEN)
    (note,) = volume.ignored
    assert str(caught[0].message) == note
    assert str(UNEVEN) in note and "a step of 202.5 mm" in note
    assert "the typical step is 1.25 mm" in note
    assert load_volume(CT).ignored == () and load_volume(OBLIQUE_MR).ignored == ()


def test_several_series_are_listed_and_one_is_picked():
    found = list_dicom_series(SEVERAL)
    assert sorted(s.n_files for s in found) == [1, 3, 3]
    assert sorted(s.description for s in found) == [
        "FAST LOCALIZER",
        "T/S/C RF FAST PILOT",
        "T/S/C RF FAST PILOT",
    ]
    with pytest.raises(ValueError, match="holds 3 DICOM series; choose one with series=UID") as e:
        load_volume(SEVERAL)
    for s in found:
        assert f"{s.uid} {s.description!r} ({s.n_files} file" in str(e.value)
    for s in found:
        if s.n_files == 3:  # a tri-plane localizer: axial, sagittal and coronal slices
            with pytest.raises(ValueError, match="have different orientations"):
                load_volume(SEVERAL, series=s.uid)
            continue
        volume = load_volume(SEVERAL, series=s.uid)
        assert volume.data.shape[2] == s.n_files
        assert_matches_sitk(volume, read_series_with_sitk(SEVERAL, s.uid))


def test_unknown_series_names_it_and_those_present():
    with pytest.raises(ValueError, match=r"no DICOM series '1\.2\.3' in the folder") as e:
        load_volume(SEVERAL, series="1.2.3")
    assert describe_series(list_dicom_series(SEVERAL)) in str(e.value)
    with pytest.raises(ValueError, match="applies to a folder of DICOM files"):
        load_volume(next(CT.iterdir()), series="1.2.3")


def test_rgb_dicom_is_refused(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    shutil.copy(
        pydicom.data.get_testdata_file("SC_rgb_rle.dcm", download=False), folder / "rgb.dcm"
    )
    with pytest.raises(ValueError, match=r"holds 3 components per voxel \(an RGB"):
        load_volume(folder)


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no DICOM series found in the folder"):
        load_volume(tmp_path)


def test_dicom_folders_are_recognised_cheaply(tmp_path, nifti_file):
    assert is_volume_input(CT) and is_volume_input(SEVERAL)
    assert is_dicom_series_folder(CT)
    assert not is_volume_input(DICOM)  # only DICOMDIR indexes and sub-folders
    nifti_file("a.nii.gz")
    assert not is_volume_input(tmp_path)  # a folder of NIfTI files is a dataset
    assert not is_volume_input(tmp_path / "missing.nrrd")
    assert is_volume_input(nifti_file("b.nii"))


# ---------------------------------------------------------------------- NRRD and MetaImage


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_itk_files_open_with_their_world_and_stored_type(oblique_file, suffix):
    path = oblique_file(suffix)
    volume = load_volume(path)
    assert_matches_sitk(volume, sitk.ReadImage(str(path)))
    assert volume.data.dtype == np.int16
    spacing, origin, direction = OBLIQUE
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0), spacing)
    np.testing.assert_allclose(volume.affine[:3, 3], np.array(origin) * FLIP)
    np.testing.assert_allclose(volume.affine[:3, :3] / spacing, FLIP[:, None] * direction)


@pytest.mark.parametrize("source", [".nrrd", ".mha", ".nhdr"])
@pytest.mark.parametrize("target", [".nrrd", ".mha"])
def test_round_trip_keeps_voxels_spacing_origin_and_direction(
    oblique_file, tmp_path, source, target
):
    src = oblique_file(source)
    out = save_itk(tmp_path / f"out{target}", load_volume(src))
    assert out == str(tmp_path / f"out{target}")
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(out)
    assert b.GetPixelID() == a.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), sitk.GetArrayFromImage(a))
    np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), rtol=1e-12)
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_dicom_to_nrrd_keeps_world_coordinates(tmp_path):
    out = save_itk(tmp_path / "mr.nrrd", load_volume(OBLIQUE_MR))
    assert_matches_sitk(load_volume(out), read_series_with_sitk(OBLIQUE_MR))


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_written_by_pynrrd_opens_in_ras(tmp_path, space):
    nrrd = pytest.importorskip("nrrd")
    data = coded_volume((6, 5, 4)).astype(np.float32)
    directions = rotation("y", 31.0) @ np.diag([0.4, 1.1, 3.0])  # columns: axes i, j, k
    origin = np.array([3.0, -8.0, 21.0])
    header = {"space": space, "space directions": directions.T, "space origin": origin}
    nrrd.write(str(tmp_path / "p.nrrd"), data, header, index_order="F")
    volume = load_volume(tmp_path / "p.nrrd")
    to_ras = FLIP if space.startswith("left") else np.ones(3)
    np.testing.assert_allclose(volume.affine[:3, :3], to_ras[:, None] * directions, atol=1e-9)
    np.testing.assert_allclose(volume.affine[:3, 3], to_ras * origin, atol=1e-9)
    np.testing.assert_array_equal(volume.data, data)


def test_pynrrd_reads_our_nrrd_in_lps(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    volume = load_volume(OBLIQUE_MR)
    data, header = nrrd.read(save_itk(tmp_path / "mr.nrrd", volume), index_order="F")
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space directions"].T, FLIP[:, None] * volume.affine[:3, :3])
    np.testing.assert_allclose(header["space origin"], FLIP * volume.affine[:3, 3])
    np.testing.assert_array_equal(data, volume.data)
    assert header["encoding"] == "gzip"


def test_save_itk_from_an_array_and_affine(tmp_path):
    affine = np.diag([-0.5, 0.75, 2.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 6.0]
    data = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    volume = load_volume(save_itk(tmp_path / "a.mha", data, affine))
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine)
    bools = load_volume(save_itk(tmp_path / "b.nrrd", data > 30, affine))
    assert bools.data.dtype == np.uint8


def test_scaled_nifti_is_written_with_its_values(nifti_file, tmp_path):
    src = nifti_file("s.nii.gz", "las", data=coded_volume().astype(np.int16), slope=0.5, inter=3)
    out = load_volume(save_itk(tmp_path / "s.nrrd", load_volume(src)))
    np.testing.assert_array_equal(out.data, nib.load(src).get_fdata().astype(np.float32))
    np.testing.assert_allclose(out.affine, nib.load(src).affine, atol=1e-6)


def test_save_itk_refusals(tmp_path):
    data = np.zeros((4, 4, 4), np.int16)
    sheared = np.array([[1.0, 0.4, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="has shear"):
        save_itk(tmp_path / "s.nrrd", data, sheared)
    with pytest.raises(ValueError, match=r"writes \.nrrd or \.mha files, got .*s\.nhdr"):
        save_itk(tmp_path / "s.nhdr", data, np.eye(4))
    with pytest.raises(ValueError, match="needs its affine"):
        save_itk(tmp_path / "s.nrrd", data)
    with pytest.raises(
        ValueError, match=r"must be a 3D volume, got an image of shape \(4, 4, 4, 2\)"
    ):
        save_itk(tmp_path / "s.nrrd", np.zeros((4, 4, 4, 2)), np.eye(4))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_temporary_files_of_itk_writes_are_recognised(tmp_path):
    from napari_resample.io.atomic import temp_name

    dead = temp_name("x.nrrd", ".nrrd").replace(f"-{os.getpid()}-", "-999999999-")
    stale = tmp_path / dead
    stale.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [str(stale)]


# ----------------------------------------------------------------------------------- errors


def test_rgb_file_is_refused(tmp_path):
    image = sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(image, str(tmp_path / "rgb.mha"))
    with pytest.raises(ValueError, match=r"'.*rgb\.mha' holds 3 components per voxel"):
        load_volume(tmp_path / "rgb.mha")


def test_2d_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.Image([8, 6], sitk.sitkInt16), str(tmp_path / "flat.nrrd"))
    with pytest.raises(ValueError, match=r"must be a 3D volume, got a 2D image of size \(8, 6\)"):
        load_volume(tmp_path / "flat.nrrd")


def test_4d_image_holding_one_volume_is_accepted_and_more_refused(tmp_path):
    one = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(1, 3, 4, 5), isVector=False)
    one.SetSpacing((0.5, 1.5, 2.5, 1.0))
    sitk.WriteImage(one, str(tmp_path / "one.nrrd"))
    volume = load_volume(tmp_path / "one.nrrd")
    assert volume.data.shape == (5, 4, 3)
    np.testing.assert_allclose(np.abs(np.diag(volume.affine)), [0.5, 1.5, 2.5, 1.0])
    sitk.WriteImage(sitk.Image([3, 3, 3, 2], sitk.sitkInt16), str(tmp_path / "two.nrrd"))
    with pytest.raises(ValueError, match=r"got a 4D image of size \(3, 3, 3, 2\)"):
        load_volume(tmp_path / "two.nrrd")


def test_missing_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.nrrd"):
        load_volume(tmp_path / "missing.nrrd")
    (tmp_path / "junk.nrrd").write_bytes(b"this is not a NRRD file\n" * 4)
    with pytest.raises(ValueError, match=r"cannot read '.*junk\.nrrd' as NRRD"):
        load_volume(tmp_path / "junk.nrrd")
    (tmp_path / "lost.mhd").write_text(
        "NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = lost.raw\n"
    )
    with pytest.raises(ValueError, match=r"'ElementDataFile' in '.*lost\.mhd' names 'lost\.raw'"):
        load_volume(tmp_path / "lost.mhd")
    (tmp_path / "a.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read '.*a\.tif': expected a file ending in"):
        load_volume(tmp_path / "a.tif")


# ------------------------------------------------------------------ NIfTI output of these


def test_nifti_input_is_unchanged(nifti_file):
    path = nifti_file("n.nii.gz", "oblique")
    volume = load_volume(path)
    assert volume.header is not None and volume.xform_code == 2
    np.testing.assert_allclose(volume.affine, nib.load(path).affine)


def test_non_nifti_volumes_get_scanner_codes(oblique_file):
    volume = load_volume(oblique_file(".nrrd"))
    header = header_for_affine(
        volume.affine, volume.data.shape, volume.header, code=volume.xform_code
    )
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1)
    np.testing.assert_allclose(header.get_best_affine(), volume.affine, atol=1e-5)
    default = header_for_affine(volume.affine, volume.data.shape)
    assert (int(default["qform_code"]), int(default["sform_code"])) == (2, 2)


def test_one_stray_dicom_file_does_not_make_a_folder_a_series_at_any_door(tmp_path, nifti_file):
    # The rule of DICOM folders is one (io.dicom): the file functions, napari's reader and
    # datasets agree that NIfTI files beside a stray .dcm are a dataset folder, not a series.
    from napari_resample.plugin.reader import get_reader

    nifti_file("a.nii.gz")
    (tmp_path / "scout.dcm").write_bytes((CT / sorted(os.listdir(CT))[0]).read_bytes())
    assert not is_dicom_series_folder(tmp_path)
    assert not is_volume_input(tmp_path)
    assert get_reader(str(tmp_path)) is None
    os.remove(tmp_path / "a.nii.gz")
    assert is_dicom_series_folder(tmp_path) and is_volume_input(tmp_path)
