"""The napari reader and writers for NRRD, MetaImage and DICOM folders.

World coordinates of every layer must be the RAS world SimpleITK reports (LPS flipped), exactly
as for NIfTI: ``layer.data_to_world(index)[::-1]``. DICOM series are pydicom's real test data
(see tests/test_formats.py).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _formats import CT, DICOM, FLIP, OBLIQUE_MR, SEVERAL
from _plugin_fixtures import coded_volume, rotation
from napari_resample.plugin.reader import get_reader, read_nifti, read_volume
from napari_resample.plugin.writer import write_mha, write_nifti, write_nrrd

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")


def _layers(layer_data):
    from napari.layers import Layer

    return [Layer.create(*ld) for ld in layer_data]


def _series_image(folder: Path, uid: str | None = None):
    uid = uid or sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def assert_layer_world_is_sitk_ras(layer, image) -> None:
    """ITK voxel (i, j, k) is shown at its RAS world (SimpleITK's LPS point, x and y negated).

    The layer holds the grid reordered and flipped towards RAS (a sagittal series is
    permuted), so the data index showing a voxel is found from its world point, then checked
    to map back to that point exactly and to hold that voxel's value.
    """
    size = image.GetSize()
    assert sorted(layer.data.shape) == sorted(size)
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    for ijk in [(0, 0, 0), tuple(n - 1 for n in size), tuple(n // 2 for n in size), (1, 2, 0)]:
        ras = np.array(image.TransformIndexToPhysicalPoint([int(n) for n in ijk])) * FLIP
        index = np.rint(layer.world_to_data(ras[::-1])).astype(int)
        np.testing.assert_allclose(np.asarray(layer.data_to_world(index))[::-1], ras, atol=1e-6)
        assert layer.data[tuple(index)] == array[ijk[::-1]]


def _itk_file(path: Path) -> Path:
    data = (coded_volume((9, 7, 5)) - 20000).astype(np.int16)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing((0.7, 1.3, 2.9))
    image.SetOrigin((-12.5, 40.25, 7.0))
    image.SetDirection((rotation("x", 23.0) @ rotation("z", -11.0)).ravel().tolist())
    sitk.WriteImage(image, str(path))
    return path


def test_get_reader_routes_each_format(tmp_path, nifti_file):
    assert get_reader(str(nifti_file("a.nii.gz"))) is read_nifti
    for suffix in (".nrrd", ".nhdr", ".mha", ".mhd"):
        assert get_reader(str(_itk_file(tmp_path / f"a{suffix}"))) is read_volume
    assert get_reader(str(CT)) is read_volume
    assert get_reader([str(SEVERAL)]) is read_volume


def test_get_reader_leaves_other_folders_to_other_readers(tmp_path, nifti_file):
    nifti_file("a.nii.gz")
    assert get_reader(str(tmp_path)) is None  # a folder of NIfTI files
    assert get_reader(str(DICOM)) is None  # DICOMDIR indexes only: no series here
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert get_reader(str(tmp_path / "fake")) is None  # the marker but no image series
    assert get_reader(str(tmp_path / "missing.nrrd")) is None


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # napari, oblique 2D
@pytest.mark.parametrize("folder", [CT, OBLIQUE_MR], ids=["ct", "oblique_mr"])
def test_dicom_series_world_is_ras(folder):
    (layer,) = _layers(read_volume(str(folder)))
    assert layer.name == folder.name
    assert_layer_world_is_sitk_ras(layer, _series_image(folder))


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_file_world_is_ras(tmp_path, suffix):
    path = _itk_file(tmp_path / f"vol{suffix}")
    (layer,) = _layers(read_volume(str(path)))
    assert layer.name == "vol"
    assert layer.data.dtype == np.int16
    assert_layer_world_is_sitk_ras(layer, sitk.ReadImage(str(path)))


def test_several_series_ask_which(monkeypatch):
    import napari_resample.plugin.reader as reader

    asked = []

    def choose(folder, found):
        asked.append((folder, [s.description for s in found]))
        return next(s for s in found if s.description == "FAST LOCALIZER")

    monkeypatch.setattr(reader, "choose_series", choose)
    (layer,) = _layers(read_volume(str(SEVERAL)))
    assert asked and sorted(asked[0][1])[0] == "FAST LOCALIZER"
    assert layer.name == "MR2 FAST LOCALIZER"
    uid = next(s for s in reader.list_dicom_series(SEVERAL) if s.n_files == 1).uid
    assert_layer_world_is_sitk_ras(layer, _series_image(SEVERAL, uid))


def test_cancelled_choice_opens_nothing(monkeypatch):
    import napari_resample.plugin.reader as reader

    monkeypatch.setattr(reader, "choose_series", lambda folder, found: None)
    assert read_volume(str(SEVERAL)) == [(None,)]


def test_unreadable_file_is_an_error_notification(tmp_path):
    from napari.utils.notifications import notification_manager

    (tmp_path / "junk.mha").write_bytes(b"garbage")
    assert read_volume(str(tmp_path / "junk.mha")) == [(None,)]
    assert any("junk.mha" in n.message for n in notification_manager.records)


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
@pytest.mark.parametrize("write, suffix", [(write_nrrd, ".nrrd"), (write_mha, ".mha")])
def test_writer_keeps_voxels_and_world(tmp_path, write, suffix):
    (layer,) = _layers(read_volume(str(OBLIQUE_MR)))
    data, state, _ = layer.as_layer_data_tuple()
    (out,) = write(str(tmp_path / "mr"), data, state)
    assert out == str(tmp_path / f"mr{suffix}")
    written, source = sitk.ReadImage(out), _series_image(OBLIQUE_MR)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-9)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-9)


def test_writer_uses_the_layers_current_geometry(tmp_path):
    (layer,) = _layers(read_volume(str(CT)))
    layer.translate = np.add(layer.translate, [10.0, 0.0, 0.0])  # 10 mm superior
    data, state, _ = layer.as_layer_data_tuple()
    (out,) = write_nrrd(str(tmp_path / "moved.nrrd"), data, state)
    np.testing.assert_allclose(
        np.array(sitk.ReadImage(out).GetOrigin()) - _series_image(CT).GetOrigin(), [0, 0, 10]
    )


def test_nifti_from_dicom_has_scanner_codes_and_the_same_world(tmp_path):
    (layer,) = _layers(read_volume(str(CT)))
    data, state, _ = layer.as_layer_data_tuple()
    (out,) = write_nifti(str(tmp_path / "ct.nii.gz"), data, state)
    img = nib.load(out)
    assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (1, 1)
    image = _series_image(CT)
    for ijk in [(0, 0, 0), (15, 15, 4), (3, 9, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        index = np.rint(nib.affines.apply_affine(np.linalg.inv(img.affine), lps * FLIP))
        assert np.asarray(img.dataobj)[tuple(index.astype(int))] == image.GetPixel(*ijk)


def test_labels_layer_writes_its_labels(tmp_path):
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 2:4, 1:5] = 7
    from napari.layers import Labels

    layer = Labels(labels, scale=(2.0, 1.0, 0.5), translate=(5.0, 0.0, -3.0))
    data, state, _ = layer.as_layer_data_tuple()
    (out,) = write_mha(str(tmp_path / "seg.mha"), data, state)
    (back,) = _layers(read_volume(out))
    assert back._type_string == "labels"
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.scale, layer.scale)
    np.testing.assert_allclose(back.translate, layer.translate)


@pytest.mark.gui
def test_viewer_opens_a_dicom_folder(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(CT), plugin="napari-resample")
    assert_layer_world_is_sitk_ras(layer, _series_image(CT))


def test_uneven_dicom_slices_are_one_warning_notification(recwarn):
    # load_volume warns (Python users see it) and notes it in the volume: napari shows it once.
    from napari.utils.notifications import notification_manager

    from _formats import UNEVEN

    before = len(notification_manager.records)
    assert len(_layers(read_volume(str(UNEVEN)))) == 1
    shown = [n.message for n in notification_manager.records[before:]]
    assert len([m for m in shown if "CT2" in m]) == 1, shown
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
