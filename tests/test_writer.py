"""The napari writer: reader -> writer -> nibabel round trips, current geometry, plain layers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from _plugin_fixtures import (
    AFFINES,
    coded_volume,
)
from napari_resample.plugin.reader import read_nifti
from napari_resample.plugin.writer import write_nifti


def _open(path):
    from napari.layers import Layer

    (ld,) = read_nifti(str(path))
    return Layer.create(*ld)


def _save(layer, path) -> str:
    data, state, _ = layer.as_layer_data_tuple()
    (written,) = write_nifti(str(path), data, state)
    return written


def _assert_same_file(original, written, *, atol=1e-5):
    a, b = nib.load(original), nib.load(written)
    ha, hb = a.header, b.header
    assert b.shape == a.shape
    assert hb.get_data_dtype() == ha.get_data_dtype()
    assert np.array_equal(
        np.asarray(b.dataobj.get_unscaled()), np.asarray(a.dataobj.get_unscaled())
    )
    assert (b.dataobj.slope, b.dataobj.inter) == (a.dataobj.slope, a.dataobj.inter)
    np.testing.assert_allclose(b.affine, a.affine, atol=atol)
    for field in ("qform_code", "sform_code", "xyzt_units", "descrip", "intent_code"):
        assert hb[field] == ha[field], field
    assert hb["pixdim"][4] == ha["pixdim"][4]


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # napari, oblique 2D
@pytest.mark.parametrize("key", sorted(AFFINES))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_round_trip_is_identical(nifti_file, tmp_path, key, suffix):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    src = nifti_file(f"src{suffix}", key, data=data, descrip=b"round trip", intent_code=0)
    out = _save(_open(src), tmp_path / f"out{suffix}")
    assert out.endswith(suffix)
    _assert_same_file(src, out)


def test_round_trip_keeps_big_endian_storage(nifti_file, tmp_path):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    src = nifti_file("be.nii.gz", "lps", data=data, big_endian=True)
    out = _save(_open(src), tmp_path / "be_out.nii.gz")
    _assert_same_file(src, out)
    assert nib.load(out).get_data_dtype() == np.dtype(">i2")


def test_round_trip_keeps_scaling_and_stored_type(nifti_file, tmp_path):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    src = nifti_file("scaled.nii.gz", "las", data=data, slope=0.25, inter=-100.0)
    layer = _open(src)
    assert layer.data.dtype == np.float32
    _assert_same_file(src, _save(layer, tmp_path / "scaled_out.nii.gz"))


def test_edited_scaled_values_are_written_as_float_not_truncated(nifti_file, tmp_path):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    src = nifti_file("scaled.nii.gz", data=data, slope=0.25, inter=-100.0)
    layer = _open(src)
    layer.data = layer.data + np.float32(0.1)
    out = nib.load(_save(layer, tmp_path / "edited.nii.gz"))
    assert out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.get_fdata(), data * 0.25 - 100.0 + 0.1, atol=1e-3)


def test_nifti2_round_trip_stays_nifti2(tmp_path):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    nib.save(nib.Nifti2Image(data, AFFINES["las"]), tmp_path / "n2.nii.gz")
    out = _save(_open(tmp_path / "n2.nii.gz"), tmp_path / "n2_out.nii.gz")
    assert isinstance(nib.load(out), nib.Nifti2Image)
    _assert_same_file(tmp_path / "n2.nii.gz", out)


GEOMETRY_FIELDS = (
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
    "pixdim",
)


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # napari, oblique 2D
@pytest.mark.parametrize("name", ["qform_ne_sform", "codes_0_0", "sheared", "qform_only"])
def test_round_trip_keeps_every_geometry_field(nifti_case, tmp_path, name):
    # qform != sform, codes 0/0 and a sheared sform's qform zooms cannot be rebuilt from the
    # layer's affine: an unchanged geometry is written back as the file had it.
    src, _ = nifti_case(name)
    out = _save(_open(src), tmp_path / "out.nii.gz")
    a, b = nib.load(src).header, nib.load(out).header
    for field in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(b[field], a[field], err_msg=field)
    assert bytes(b.binaryblock) == bytes(a.binaryblock)


def test_a_changed_geometry_of_a_file_without_codes_is_written_with_codes(nifti_case, tmp_path):
    src, _ = nifti_case("codes_0_0")
    layer = _open(src)
    layer.scale = [2 * s for s in layer.scale]
    out = nib.load(_save(layer, tmp_path / "out.nii.gz"))
    assert out.header["qform_code"] > 0 and out.header["sform_code"] > 0
    np.testing.assert_allclose(
        out.header.get_zooms(), 2 * np.asarray(nib.load(src).header.get_zooms())
    )


def test_labels_round_trip(nifti_file, tmp_path):
    data = (np.arange(12 * 10 * 6).reshape(12, 10, 6) % 9).astype(np.uint8)
    src = nifti_file("seg.nii.gz", "lsa_permuted", data=data, intent_code=1002)
    layer = _open(src)
    assert layer._type_string == "labels"
    _assert_same_file(src, _save(layer, tmp_path / "seg_out.nii.gz"))


def test_four_d_round_trip_keeps_time_step(nifti_file, tmp_path):
    data = np.stack([coded_volume() + t for t in range(3)], axis=-1)
    src = nifti_file("fmri.nii.gz", "pir_permuted", data=data, time_step=1.5, units=("mm", "msec"))
    _assert_same_file(src, _save(_open(src), tmp_path / "fmri_out.nii.gz"))


def test_four_d_layer_time_scale_is_the_written_time_step(nifti_file, tmp_path):
    # The writer takes pixdim[4] from the layer's time scale (the first of (T, Z, Y, X)).
    from napari.layers import Image

    data = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    plain = Image(data, scale=(2.5, 2.0, 1.0, 0.5))
    out = nib.load(_save(plain, tmp_path / "plain4d.nii.gz"))
    assert out.shape == (6, 5, 4, 3)
    assert out.header["pixdim"][4] == 2.5
    np.testing.assert_allclose(out.header.get_zooms(), (0.5, 1.0, 2.0, 2.5))

    # A file read with TR 3.0 and written back unchanged keeps 3.0 ...
    volumes = np.stack([coded_volume() + t for t in range(3)], axis=-1)
    src = nifti_file("tr3.nii.gz", "las", data=volumes, time_step=3.0)
    layer = _open(src)
    assert layer.scale[0] == 3.0
    kept = nib.load(_save(layer, tmp_path / "tr3_out.nii.gz"))
    assert kept.header["pixdim"][4] == 3.0
    # ... and with its time scale changed to 2.5 is written with 2.5, not the file's 3.0.
    layer.scale = [2.5, *layer.scale[1:]]
    changed = nib.load(_save(layer, tmp_path / "tr25_out.nii.gz"))
    assert changed.header["pixdim"][4] == 2.5
    np.testing.assert_allclose(changed.affine, nib.load(src).affine)


@pytest.mark.parametrize("shape", [(7, 6, 5, 1), (7, 6)])
def test_singleton_and_2d_files_keep_their_axes(nifti_file, tmp_path, shape):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    src = nifti_file("odd.nii.gz", "las", data=data)
    _assert_same_file(src, _save(_open(src), tmp_path / "odd_out.nii.gz"))


def test_current_scale_and_translate_win_over_what_was_read(nifti_file, tmp_path):
    src = nifti_file("v.nii.gz", "las")
    layer = _open(src)
    layer.scale = [2 * s for s in layer.scale]
    layer.translate = [t + 10.0 for t in layer.translate]
    out = nib.load(_save(layer, tmp_path / "rescaled.nii.gz"))
    a = AFFINES["las"]
    # RAS grid of the layer, then stored order: i is flipped (L), so origin moves with it.
    np.testing.assert_allclose(np.diag(out.affine)[:3], 2 * np.diag(a)[:3], atol=1e-6)
    first_ras = a[:3, 3] + a[:3, :3] @ [6, 0, 0]  # the R-most voxel, napari's index 0
    expected_origin = first_ras + 10.0 - 2 * a[:3, :3] @ [6, 0, 0]
    np.testing.assert_allclose(out.affine[:3, 3], expected_origin, atol=1e-5)
    assert np.array_equal(np.asarray(out.dataobj), coded_volume())


def test_layer_not_from_nifti_saves_scale_as_spacing(tmp_path):
    from napari.layers import Labels

    data = np.zeros((4, 5, 6), dtype=np.int32)
    data[1, 2, 3] = 5
    layer = Labels(data, scale=(3.0, 2.0, 0.5), translate=(30.0, -20.0, 10.0))
    out = nib.load(_save(layer, tmp_path / "plain"))
    assert out.get_filename().endswith("plain.nii.gz")
    expected = np.diag([0.5, 2.0, 3.0, 1.0])
    expected[:3, 3] = [10.0, -20.0, 30.0]
    np.testing.assert_allclose(out.affine, expected)
    assert out.shape == (6, 5, 4) and out.get_data_dtype() == np.int32
    assert np.asarray(out.dataobj)[3, 2, 1] == 5
    assert out.header.get_xyzt_units() == ("mm", "sec")
    assert out.header["qform_code"] > 0 and out.header["sform_code"] > 0


def test_boolean_data_is_written_as_uint8(tmp_path):
    from napari.layers import Image

    out = nib.load(_save(Image(np.ones((2, 3, 4), dtype=bool)), tmp_path / "mask.nii"))
    assert out.get_data_dtype() == np.uint8


def test_half_float_and_boolean_layers_are_written_in_a_nifti_type(tmp_path):
    from napari.layers import Image

    values = np.linspace(0, 2, 24).reshape(2, 3, 4)
    half = Image(values.astype(np.float16))
    out = nib.load(_save(half, tmp_path / "half.nii.gz"))
    assert out.get_data_dtype() == np.float32  # NIfTI has no float16; float32 holds it exactly
    np.testing.assert_array_equal(
        np.asarray(out.dataobj), values.astype(np.float16).astype(np.float32).transpose(2, 1, 0)
    )
    # a widget result of a boolean layer: its metadata names bool as the stored type
    mask = Image(values > 1, metadata={"napari_resample": {"stored_dtype": "|b1"}})
    mask.metadata["napari_resample"]["header"] = nib.Nifti1Header()
    out = nib.load(_save(mask, tmp_path / "mask.nii.gz"))
    assert out.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(out.dataobj), (values > 1).transpose(2, 1, 0))


def test_refuses_multiscale_and_2d_with_the_shape(tmp_path):
    with pytest.raises(ValueError, match="multiscale layer as NIfTI \\(2 levels\\)"):
        write_nifti(str(tmp_path / "m.nii.gz"), [np.zeros((4, 4, 4)), np.zeros((2, 2, 2))], {})
    with pytest.raises(ValueError, match=r"3D or 4D layer, got shape \(4, 4\)"):
        write_nifti(str(tmp_path / "m.nii.gz"), np.zeros((4, 4)), {})


def test_napari_save_layers_finds_our_writer_for_nii_gz(nifti_file, tmp_path):
    from napari.plugins.io import save_layers
    from npe2 import PluginManager

    PluginManager.instance().discover()  # what a napari viewer does at start-up
    src = nifti_file("v.nii.gz", "lsa_permuted")
    written = save_layers(
        str(tmp_path / "via_napari.nii.gz"), [_open(src)], plugin="napari-resample"
    )
    assert written == [str(tmp_path / "via_napari.nii.gz")]
    _assert_same_file(src, written[0])
