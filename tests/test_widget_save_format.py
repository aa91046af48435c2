"""The widget's save format: ``.nii.gz`` (the default) or a ``.nii.zarr`` folder holding the same
voxels, affine and header, named as every front door names a result.

Both saves of one result are read back by the library's one reader
(:func:`napari_resample.io.formats.load_volume`) and compared with each other, and a matched
layer's result with what ``resample_to_reference`` writes for the same files.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from _plugin_fixtures import AFFINES, _ct, _open, _run, _save
from napari_resample import resample_to_reference
from napari_resample.io.formats import load_volume

pytestmark = [
    pytest.mark.gui,
    # napari's 2D slicing of an oblique layer; not ours (docs: GEOMETRY.md)
    pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning"),
]


def _same_volume(a, b) -> None:
    """*a* and *b* (NiftiVolume) hold the same stored voxels, affine, header and scaling."""
    assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.header.binaryblock == b.header.binaryblock
    assert (a.slope, a.inter) == (b.slope, b.inter)


def test_format_box_defaults_to_nii_gz_and_tooltips_name_the_chosen_suffix(widget):
    assert widget.output_format.value == "nii.gz"
    box = widget.output_format.native
    assert [box.itemText(i) for i in range(box.count())] == [".nii.gz", ".nii.zarr"]
    assert widget.output_format.choices == ("nii.gz", "nii.zarr")
    assert ".nii.gz:" in widget.output_format.tooltip
    assert ".nii.zarr: a NIfTI-Zarr folder" in widget.output_format.tooltip
    assert "<name>_resampled.nii.gz (<name>_resampled_to_ref.nii.gz" in widget.save_button.tooltip
    widget.output_format.value = "nii.zarr"
    tooltip = widget.save_button.tooltip
    assert "<name>_resampled.nii.zarr (<name>_resampled_to_ref.nii.zarr" in tooltip
    assert ".nii.gz" not in tooltip


def test_nii_zarr_save_holds_what_the_default_nii_gz_save_holds(
    qtbot, viewer, widget, nifti_file, tmp_path
):
    src = nifti_file("scan_042.nii.gz", "oblique", data=_ct(), slope=0.5, inter=-10.0)
    widget.layer.value = _open(viewer, src)
    widget.target_size.value = (70, 12, 9)  # over 64 along i: the folder has a pyramid
    _run(qtbot, widget)
    out = tmp_path / "out"
    out.mkdir()
    widget.output_dir.value = out
    gz = _save(qtbot, widget)  # the default format
    assert gz == out / "scan_042_resampled.nii.gz" and gz.is_file()

    widget.output_format.value = "nii.zarr"
    folder = _save(qtbot, widget)
    assert folder == out / "scan_042_resampled.nii.zarr" and folder.is_dir()
    assert widget.status.tooltip == f"Saved {folder}"
    assert sorted(p.name for p in out.iterdir()) == [gz.name, folder.name]  # no temporary
    assert sorted(zarr.open_group(str(folder), mode="r").array_keys()) == ["0", "1", "nifti"]
    zr, plain = load_volume(folder), load_volume(gz)
    assert zr.data.shape == (70, 12, 9) and (zr.slope, zr.inter) == (0.5, -10.0)
    _same_volume(zr, plain)


def test_an_existing_nii_zarr_is_replaced_only_when_the_user_confirms(
    qtbot, viewer, widget, tmp_path
):
    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (12, 10, 5)
    _run(qtbot, widget)
    widget.output_format.value = "nii.zarr"
    widget.output_dir.value = tmp_path
    folder = _save(qtbot, widget)
    assert folder == tmp_path / "ct_resampled.nii.zarr"
    first = load_volume(folder)
    marker = folder / "keep me"
    marker.write_text("the user's")
    asked = []
    widget.confirm_overwrite = lambda path: asked.append(path) or False
    assert widget.save() is None
    assert asked == [folder] and marker.is_file()
    assert widget.status.tooltip == f"Not saved: {folder} exists and was kept."
    widget.confirm_overwrite = lambda path: asked.append(path) or True
    assert _save(qtbot, widget) == folder
    assert asked == [folder, folder] and not marker.exists()  # replaced whole
    _same_volume(load_volume(folder), first)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # nothing set aside is left


def test_matched_layer_saves_to_ref_in_the_chosen_format_as_the_api_does(
    qtbot, viewer, widget, nifti_file, tmp_path
):
    ref_path = nifti_file("t1.nii.gz", "las", data=_ct((80, 20, 10)))
    seg = np.zeros((40, 18, 8), np.uint8)  # (i, j, k)
    seg[4:36, 3:15, 1:7] = 3
    seg[10:25, 6:12, 2:6] = 5
    seg_affine = AFFINES["las"].copy()
    seg_affine[:3, :3] = np.diag([-1.4, 1.0, 2.5])
    seg_path = nifti_file("seg.nii.gz", seg_affine, data=seg)
    api = resample_to_reference(
        seg_path, ref_path, tmp_path / "api", "label", output_format="nii.zarr"
    )

    image, labels = _open(viewer, ref_path), _open(viewer, seg_path)
    assert labels._type_string == "labels"
    widget.layer.value = labels
    widget.target.value = "match layer"
    widget.reference.value = image
    _run(qtbot, widget)
    out = tmp_path / "out"
    out.mkdir()
    widget.output_dir.value = out
    widget.output_format.value = "nii.zarr"
    folder = _save(qtbot, widget)
    assert folder == out / "seg_resampled_to_ref.nii.zarr" and folder.is_dir()
    saved = load_volume(folder)
    expected = load_volume(api)
    assert saved.data.shape == (80, 20, 10) and saved.data.dtype == np.uint8
    assert np.array_equal(saved.data, expected.data)
    np.testing.assert_allclose(saved.affine, load_volume(ref_path).affine, atol=1e-6)
    # a Labels layer's pyramid is voted: averaging 0, 3 and 5 would invent other values
    level1 = np.asarray(zarr.open_group(str(folder), mode="r")["1"][:])
    assert set(np.unique(level1).tolist()) <= {0, 3, 5} and 5 in level1

    widget.output_format.value = "nii.gz"
    gz = _save(qtbot, widget)
    assert gz == out / "seg_resampled_to_ref.nii.gz" and gz.is_file()
    _same_volume(saved, load_volume(gz))


def test_a_refused_nii_zarr_save_names_the_folder_and_leaves_nothing(
    qtbot, viewer, widget, tmp_path, monkeypatch
):
    import napari_resample.io.niizarr_write as niizarr_write

    def refused(self, *args, **kwargs):
        # what the OS says names the temporary folder, which the user never asked for
        raise PermissionError(13, "Permission denied", f"{self._tmp}/0")

    widget.layer.value = viewer.add_image(_ct(), name="ct")
    widget.target_size.value = (6, 5, 5)
    _run(qtbot, widget)
    monkeypatch.setattr(niizarr_write.ZarrPlaneWriter, "_new_level", refused)
    widget.output_format.value = "nii.zarr"
    widget.output_dir.value = tmp_path
    assert _save(qtbot, widget) is None
    message = widget.status.tooltip
    assert message.startswith(f"Could not save {tmp_path / 'ct_resampled.nii.zarr'}: ")
    assert "permission denied" in message and str(tmp_path) in message
    assert ".tmp" not in message and "Errno" not in message
    assert list(tmp_path.iterdir()) == []  # the temporary folder went with the failure
    assert widget.save_button.enabled
