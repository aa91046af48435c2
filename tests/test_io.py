"""NIfTI I/O that loses nothing (docs/decisions.md, D3, D6 and D7).

The output keeps the qform and sform codes, ``xyzt_units``, ``descrip``, intent, ``pixdim[4]``,
byte order, stored type and scaling, and writes qform and sform each moved by the same
voxel-space transform. Writes are atomic: a failure leaves neither the file nor a temporary.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import _fuzz
from _gzdamage import CORRUPTIONS
from conftest import CASES, file_endianness, make_affine, rotation, smooth_volume
from napari_resample import resampling
from napari_resample.engine.geometry import voxel_transform
from napari_resample.io import nifti as _io
from napari_resample.io.header import resampled_header
from napari_resample.io.names import nifti_suffix, strip_nifti_suffix
from napari_resample.io.nifti import load_nifti, save_nifti

NEW = (18, 4, 9)
ANISO = np.diag([0.5, 0.75, 2.5])
FIELDS = {
    "descrip": b"synthetic phantom, not patient data",
    "xyzt_units": 2 | 16,  # mm and ms
    "intent_code": 1002,  # NIFTI_INTENT_LABEL
    "intent_name": b"labels",
    "intent_p1": 1.5,
    "intent_p2": -2.0,
    "intent_p3": 3.25,
    "pixdim4": 2.2,
    "aux_file": b"aux.txt",
    "cal_min": 0.0,
    "cal_max": 900.0,
    "slice_code": 1,
    "slice_duration": 0.05,
    "toffset": 1.5,
    "dim_info": 57,
}


def resample_file(path: Path, anchor: str = "origin", size=NEW, **kwargs) -> Path:
    out_dir = path.parent / f"out_{anchor}"
    resampling(path, out_dir, size, anchor=anchor, **kwargs)
    return out_dir / (path.name[: -len(".nii.gz")] + "_resampled.nii.gz")


def header_value(hdr: nib.Nifti1Header, key: str):
    return hdr["pixdim"][4] if key == "pixdim4" else hdr[key]


# --------------------------------------------------------------------------- every case loads


@pytest.mark.parametrize("name", CASES)
def test_load_reads_every_case_as_written(nifti_case, name: str) -> None:
    # load_nifti gives back what make_nifti wrote: stored values, byte order, scaling, codes,
    # affine (which also guards the synthetic cases every other test relies on).
    path, case = nifti_case(name)
    vol = load_nifti(path)
    hdr = vol.header
    endianness = case.opts.get("endianness", "<")
    assert file_endianness(path) == hdr.endianness == endianness
    assert vol.data.dtype.str[0] in ("|", endianness)
    np.testing.assert_array_equal(vol.data, case.data)
    assert int(hdr["qform_code"]) == case.opts.get("qform_code", 2)
    assert int(hdr["sform_code"]) == case.opts.get("sform_code", 2)
    assert (vol.slope, vol.inter) == (case.opts.get("slope", 1.0), case.opts.get("inter", 0.0))
    if int(hdr["sform_code"]):
        np.testing.assert_allclose(vol.affine, case.affine, atol=1e-5)
    if name == "sheared":
        lin = vol.affine[:3, :3]
        assert not np.allclose(lin.T @ lin, np.diag(np.diag(lin.T @ lin)))  # really sheared
    if name == "qform_ne_sform":
        assert not np.allclose(hdr.get_qform(), hdr.get_sform())
        assert np.linalg.det(hdr.get_qform()[:3, :3]) < 0 < np.linalg.det(hdr.get_sform()[:3, :3])


# --------------------------------------------------------------------------- load / save units


def test_load_keeps_stored_type_byte_order_and_scaling(nifti_case) -> None:
    path, case = nifti_case("big_endian")
    vol = load_nifti(path)
    assert vol.data.dtype == np.dtype(">i2")
    np.testing.assert_array_equal(vol.data, case.data)
    path, case = nifti_case("scaled")
    vol = load_nifti(path)
    assert vol.data.dtype == np.int16  # not the float64 of get_fdata()
    assert (vol.slope, vol.inter) == (0.25, -40.0)
    assert vol.is_scaled
    np.testing.assert_allclose(vol.scaled_data(), case.data * 0.25 - 40.0, rtol=1e-6)
    np.testing.assert_allclose(vol.affine, nib.load(path).affine)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.nii\.gz"):
        load_nifti(tmp_path / "missing.nii.gz")
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file at all")
    with pytest.raises(ValueError, match=r"cannot read .*garbage\.nii\.gz"):
        load_nifti(bad)


def test_load_rejects_rgb(make_nifti) -> None:
    rgb = np.zeros((3, 3, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = make_nifti(rgb)
    with pytest.raises(ValueError, match="unsupported NIfTI data type"):
        load_nifti(path)


def test_suffix_helpers() -> None:
    assert nifti_suffix("a/b/scan.NII.GZ") == ".nii.gz"
    assert nifti_suffix("scan.nii") == ".nii"
    assert nifti_suffix("scan.gz") is None
    assert nifti_suffix("scan.nii.gz.bak") is None
    assert strip_nifti_suffix(Path("x/y/scan_042.nii.gz")) == "scan_042"
    assert strip_nifti_suffix("x/y/scan.v2.nii.gz") == "scan.v2"


@pytest.mark.parametrize("name", ["anisotropic", "big_endian", "scaled", "qform_ne_sform"])
def test_save_load_round_trip(nifti_case, tmp_path: Path, name: str) -> None:
    path, _ = nifti_case(name)
    vol = load_nifti(path)
    out = tmp_path / "copy.nii.gz"
    assert save_nifti(out, vol.data, vol.header, slope=vol.slope, inter=vol.inter) == str(out)
    again = load_nifti(out)
    np.testing.assert_array_equal(again.data, vol.data)
    assert again.data.dtype == vol.data.dtype
    assert (again.slope, again.inter) == (vol.slope, vol.inter)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-6)
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "descrip"):
        np.testing.assert_array_equal(again.header[key], vol.header[key])
    assert file_endianness(out) == file_endianness(path)


def test_save_rejects_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end with \.nii or \.nii\.gz, got .*out\.gz"):
        save_nifti(tmp_path / "out.gz", np.zeros((2, 2, 2), np.int16), nib.Nifti1Header())
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic(tmp_path: Path, monkeypatch) -> None:
    # docs/decisions.md, D7: written to a temporary file in the same folder, then renamed. A
    # failure in the middle of writing leaves neither the destination nor the temporary file, and
    # an older file at the destination is untouched.
    dest = tmp_path / "result.nii.gz"
    dest.write_bytes(b"previous result")
    from napari_resample.io import nifti as _io

    real_write = _io._write_image
    seen: list[str] = []

    def failing_write(img, filename, compress):
        seen.append(os.fspath(filename))
        real_write(img, filename, compress)  # a complete temporary file exists ...
        raise OSError("disk full")  # ... and then the write fails

    monkeypatch.setattr(_io, "_write_image", failing_write)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(dest, np.ones((3, 3, 3), np.int16), hdr)
    assert seen and Path(seen[0]).parent == tmp_path and seen[0] != str(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nii.gz"]
    assert dest.read_bytes() == b"previous result"


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "result.nii.gz"
    dest.write_bytes(b"previous result")
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    save_nifti(dest, np.full((2, 3, 4), 7, np.uint8), hdr)
    np.testing.assert_array_equal(np.asarray(nib.load(dest).dataobj), 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nii.gz"]


# --------------------------------------------------------------------------- resampled_header


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_resampled_header_moves_qform_and_sform_and_keeps_fields(make_nifti, anchor) -> None:
    qform = make_affine(rotation(0.0, 0.0, 0.2) @ np.diag([0.5, 0.75, -2.5]), (1.0, 2.0, 3.0))
    sform = make_affine(rotation(0.3, -0.2, 0.5) @ ANISO, (-12.0, 7.5, 30.0))
    path = make_nifti(
        np.zeros((9, 8, 6), np.int16),
        sform,
        qform=qform,
        qform_code=1,
        sform_code=4,
        fields=FIELDS,
    )
    hdr = nib.load(path).header
    before = hdr.copy()
    new = resampled_header(hdr, (9, 8, 6), NEW, anchor)
    t = voxel_transform((9, 8, 6), NEW, anchor)
    np.testing.assert_allclose(new.get_qform(), hdr.get_qform() @ t, atol=1e-5)
    np.testing.assert_allclose(new.get_sform(), hdr.get_sform() @ t, atol=1e-5)
    assert (int(new["qform_code"]), int(new["sform_code"])) == (1, 4)
    assert new.get_data_shape() == NEW
    np.testing.assert_allclose(
        new.get_zooms(), np.array(hdr.get_zooms()) * t.diagonal()[:3], rtol=1e-6
    )
    for key in FIELDS:
        np.testing.assert_array_equal(header_value(new, key), header_value(hdr, key))
    assert new["pixdim"][0] == hdr["pixdim"][0] == -1  # qfac of the z-flipped qform
    # The input header is not modified.
    for key in before:
        np.testing.assert_array_equal(hdr[key], before[key])


# --------------------------------------------------------------------------- through resampling()


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_header_fields_kept_through_resampling(make_nifti, anchor: str) -> None:
    data = np.round(smooth_volume((9, 8, 6))).astype(np.int16)
    path = make_nifti(
        data, make_affine(ANISO, (1, 2, 3)), qform_code=1, sform_code=3, fields=FIELDS
    )
    out = resample_file(path, anchor)
    src, dst = nib.load(path).header, nib.load(out).header
    for key in FIELDS:
        np.testing.assert_array_equal(header_value(dst, key), header_value(src, key))
    assert (int(dst["qform_code"]), int(dst["sform_code"])) == (1, 3)
    assert dst.get_data_shape() == NEW
    assert dst.get_xyzt_units() == ("mm", "msec")
    assert dst["pixdim"][4] == pytest.approx(2.2)


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize(
    "name",
    ["qform_ne_sform", "qform_only", "sform_only", "oblique", "flipped_las", "permuted_lsa"],
)
def test_qform_and_sform_both_moved(nifti_case, name: str, anchor: str) -> None:
    # docs/decisions.md, D6: each of qform and sform becomes old @ T (T: output voxel -> input
    # voxel), so both keep their meaning and their codes even when they disagreed in the source.
    path, case = nifti_case(name)
    out = resample_file(path, anchor)
    src, dst = nib.load(path).header, nib.load(out).header
    t = voxel_transform(case.data.shape[:3], NEW, anchor)
    np.testing.assert_allclose(dst.get_qform(), src.get_qform() @ t, atol=1e-4)
    np.testing.assert_allclose(dst.get_sform(), src.get_sform() @ t, atol=1e-4)
    assert int(dst["qform_code"]) == int(src["qform_code"])
    assert int(dst["sform_code"]) == int(src["sform_code"])


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("qform_zooms", ["sheared_sform", "different_zooms"])
def test_qform_moved_when_its_zooms_differ_from_sform(make_nifti, qform_zooms, anchor) -> None:
    from conftest import SHEAR

    if qform_zooms == "sheared_sform":
        sform = make_affine(rotation(0.1, 0.0, 0.2) @ SHEAR @ ANISO, (-1.0, 2.0, 3.0))
        qform = make_affine(rotation(0.1, 0.0, 0.2) @ ANISO, (-1.0, 2.0, 3.0))
    else:
        sform = make_affine(ANISO, (-1.0, 2.0, 3.0))
        qform = make_affine(np.eye(3), (4.0, 5.0, 6.0))
    path = make_nifti(np.ones((9, 8, 6), np.int16), sform, qform=qform, qform_code=1)
    out = resample_file(path, anchor)
    src, dst = nib.load(path).header, nib.load(out).header
    t = voxel_transform((9, 8, 6), NEW, anchor)
    np.testing.assert_allclose(dst.get_sform(), src.get_sform() @ t, atol=1e-4)
    # docs/decisions.md, D15 (upstream spec "Verifying Field of View Preservation") reads spacing
    # with header.get_zooms().
    np.testing.assert_allclose(
        np.array(dst.get_zooms()) * NEW, np.array(src.get_zooms()) * (9, 8, 6), rtol=1e-5
    )
    np.testing.assert_allclose(dst.get_qform(), src.get_qform() @ t, atol=1e-4)


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_codes_0_0_stay_0_0(nifti_case, anchor: str) -> None:
    # Without codes the file has no world origin: readers (nibabel) place the volume centre at
    # the world origin and use pixdim. Codes stay 0 (nothing is invented); pixdim is scaled, so
    # spacing and FOV follow the contract, and with anchor="center" (edges of the FOV kept) the
    # reader's affine is exactly old affine @ T. With anchor="origin" the first voxel centre
    # cannot be stored in such a file, so only spacing and direction are checked.
    path, case = nifti_case("codes_0_0")
    out = resample_file(path, anchor)
    src, dst = nib.load(path), nib.load(out)
    assert (int(dst.header["qform_code"]), int(dst.header["sform_code"])) == (0, 0)
    f = np.array(case.data.shape) / NEW
    np.testing.assert_allclose(
        dst.header.get_zooms(), np.array(src.header.get_zooms()) * f, rtol=1e-6
    )
    np.testing.assert_allclose(dst.affine[:3, :3], src.affine[:3, :3] * f, atol=1e-6)
    if anchor == "center":
        t = voxel_transform(case.data.shape, NEW, anchor)
        np.testing.assert_allclose(dst.affine, src.affine @ t, atol=1e-5)


@pytest.mark.parametrize("name", ["big_endian", "big_endian_float"])
def test_big_endian_stays_big_endian(nifti_case, name: str) -> None:
    path, case = nifti_case(name)
    out = resample_file(path)
    assert file_endianness(out) == ">"
    img = nib.load(out)
    assert img.header.endianness == ">"
    assert img.get_data_dtype() == case.data.dtype.newbyteorder(">")
    # Values are right, not byte-swapped garbage: within the input range.
    data = np.asarray(img.dataobj)
    assert data.min() >= case.data.min() and data.max() <= case.data.max()
    assert data.mean() == pytest.approx(case.data.mean(), rel=0.1)


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
def test_scaled_file_keeps_stored_type_and_valid_scaling(nifti_case, interpolation) -> None:
    # docs/decisions.md, D3: scl_slope / scl_inter files keep their stored type and a valid
    # scaling, and the scaled values are those of resampling the scaled volume.
    path, case = nifti_case("scaled")
    out = resample_file(path, interpolation=interpolation)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    slope, inter = img.dataobj.slope, img.dataobj.inter
    assert np.isfinite(slope) and slope != 0 and np.isfinite(inter)
    assert (slope, inter) == (0.25, -40.0)
    from napari_resample import resample_array

    expected, _ = resample_array(case.data * 0.25 - 40.0, NEW, interpolation=interpolation)
    # One stored integer step (the slope) of rounding is allowed.
    np.testing.assert_allclose(img.get_fdata(), expected, rtol=0, atol=0.25 / 2 + 1e-6)


def test_same_size_file_is_lossless(nifti_case) -> None:
    # docs/decisions.md, D3 at file level: same size -> same stored bytes, affine and scaling.
    for name in ["scaled", "big_endian_float", "sheared", "labels"]:
        path, case = nifti_case(name)
        out = resample_file(path, size=case.data.shape[:3])
        a, b = nib.load(path), nib.load(out)
        assert (
            np.asarray(b.dataobj.get_unscaled()).tobytes()
            == case.data.astype(a.get_data_dtype()).tobytes()
        )
        np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
        assert (b.dataobj.slope, b.dataobj.inter) == (a.dataobj.slope, a.dataobj.inter)


def test_disk_full_names_the_path_and_the_free_space(tmp_path: Path, monkeypatch) -> None:
    import errno

    from napari_resample.io import nifti as _io

    def full(img, filename, compress):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io, "_write_image", full)
    dest = tmp_path / "result.nii.gz"
    with pytest.raises(OSError, match=r"no space left to write .*result\.nii\.gz.*free in") as err:
        save_nifti(dest, np.ones((3, 3, 3), np.int16), nib.Nifti1Header())
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_output_is_compressed_as_it_is_written(small_filesystem: Path) -> None:
    # 8 MB of voxels that compress to a few KB fit on a 2 MiB file system: no uncompressed
    # stage is written first.
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    dest = small_filesystem / "result.nii.gz"
    save_nifti(dest, np.zeros((200, 200, 100), np.int16), hdr)
    assert nib.load(dest).shape == (200, 200, 100)
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["result.nii.gz"]


def test_a_real_full_disk_fails_cleanly(small_filesystem: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(-32768, 32767, (200, 200, 100)).astype(np.int16)  # incompressible
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    with pytest.raises(
        OSError, match=r"no space left to write .*result\.nii\.gz.: [0-9.]+ MiB free in"
    ):
        save_nifti(small_filesystem / "result.nii.gz", noise, hdr)
    assert list(small_filesystem.iterdir()) == []


# --------------------------------------------------------------------------- damaged gzip


@pytest.mark.parametrize("inflater", ["isal", "zlib", "nibabel"])
@pytest.mark.parametrize("damage", CORRUPTIONS)
def test_damaged_gzip_is_refused(gz_volume, monkeypatch, damage: str, inflater: str) -> None:
    # Python's gzip refuses each of these files; so must every read path (isal's and zlib's).
    from napari_resample.io import gzip as _gz
    from napari_resample.io import nifti as _io

    path, blob, _ = gz_volume
    corrupt, message = CORRUPTIONS[damage]
    path.write_bytes(corrupt(blob))
    with pytest.raises((OSError, EOFError)):  # the damage is real: gzip itself refuses it
        gzip.decompress(path.read_bytes())
    if inflater == "zlib":
        monkeypatch.setattr(_gz, "_isal", lambda: None)  # as without isal installed
    if inflater == "nibabel":  # a proxy the fast reader does not take: nibabel reads the voxels
        monkeypatch.setattr(_io, "_plain_proxy", lambda proxy: False)
    with pytest.raises(ValueError, match=rf"scan\.nii\.gz.*{message}"):
        load_nifti(path)
    with pytest.raises(ValueError, match=message):
        resampling(path, path.parent / "out", (15, 10, 5))
    assert not (path.parent / "out").exists()


@pytest.mark.parametrize("inflater", ["isal", "zlib"])
def test_multi_member_and_zero_padded_gzip_still_read(gz_volume, monkeypatch, inflater) -> None:
    # Several members (split inside the header and inside the voxel data, as bgzip does) and
    # zero padding after the last one are legal gzip: read like the one-member file.
    from napari_resample.io import gzip as _gz

    path, blob, data = gz_volume
    if inflater == "zlib":
        monkeypatch.setattr(_gz, "_isal", lambda: None)  # as without isal installed
    raw = gzip.decompress(blob)
    cuts = [0, 100, 5000, 5001, len(raw)]
    members = b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in itertools.pairwise(cuts))
    for variant in (members, members + b"\0" * 1000, blob + b"\0" * 7):
        path.write_bytes(variant)
        np.testing.assert_array_equal(load_nifti(path).data, data)


def test_gzip_header_fields_are_skipped(gz_volume) -> None:
    # A member header with a file name, a comment, an extra field and a header CRC.
    path, blob, data = gz_volume
    raw = gzip.decompress(blob)
    body = zlib.compress(raw, 6)[2:-4]  # raw deflate
    flags = 2 | 4 | 8 | 16
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    header += b"\x04\x00abcd" + b"name.nii\0" + b"a comment\0" + b"\0\0"
    trailer = struct.pack("<II", zlib.crc32(raw), len(raw))
    path.write_bytes(header + body + trailer)
    np.testing.assert_array_equal(load_nifti(path).data, data)


# --------------------------------------------------------------------------- broken headers


@pytest.fixture
def fuzz_source(tmp_path: Path):
    """``write(name, mutations, suffix)``: the fuzzer's valid source with *mutations* applied."""
    sources = _fuzz.source_files(tmp_path)

    def write(name: str, mutations, suffix: str = ".nii.gz") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        return Path(_fuzz.write_case(folder, suffix, sources[suffix], mutations))

    return write


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", sorted(_fuzz.BAD_HEADERS))
def test_impossible_header_is_refused_before_reading_voxels(
    fuzz_source, monkeypatch, case, suffix
):
    mutations, expected = _fuzz.BAD_HEADERS[case]
    path = fuzz_source(case, mutations, suffix)

    def no_read(*args):
        raise AssertionError("voxels were read")

    monkeypatch.setattr(_io, "_read_unscaled", no_read)
    with pytest.raises(ValueError, match=expected) as info:
        load_nifti(path)
    assert repr(str(path)) in str(info.value)


@pytest.mark.parametrize("case", sorted(_fuzz.BAD_HEADERS))
def test_impossible_header_leaves_no_output(fuzz_source, tmp_path: Path, case):
    path = fuzz_source(case, _fuzz.BAD_HEADERS[case][0])
    with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
        resampling(path, tmp_path / "out", (3, 3, 3))
    assert not (tmp_path / "out").exists()


def test_nifti2_vox_offset_inside_its_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.nii"
    nib.save(nib.Nifti2Image(np.ones((4, 4, 4), np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[168:176] = np.array([400], "<i8").tobytes()  # vox_offset, int64 in NIfTI-2
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"vox_offset must be at least 544 .*two\.nii.*got 400"):
        load_nifti(path)


@pytest.mark.parametrize("case", sorted(_fuzz.ODD_HEADERS))
def test_odd_but_usable_header_opens_resamples_and_says_what_was_ignored(
    fuzz_source, tmp_path: Path, case
):
    mutations, expected = _fuzz.ODD_HEADERS[case]
    path = fuzz_source(case, mutations)
    volume = load_nifti(path)
    assert np.all(np.isfinite(volume.affine))
    assert len(volume.ignored) == 1 and re.search(expected, volume.ignored[0]), volume.ignored
    assert repr(str(path)) in volume.ignored[0]
    assert _fuzz.run_case(str(path), str(tmp_path / "out")) == "valid"


@pytest.mark.parametrize(
    "error", [OverflowError("int too large"), zlib.error("invalid block type"), KeyError(7)]
)
def test_any_reading_error_becomes_a_value_error_naming_the_file(
    nifti_case, monkeypatch, error
) -> None:
    path, _ = nifti_case("anisotropic")

    def failing(*args):
        raise error

    monkeypatch.setattr(_io, "_read_unscaled", failing)
    with pytest.raises(
        ValueError, match=rf"cannot read .*{re.escape(path.name)}.*{type(error).__name__}"
    ):
        load_nifti(path)


def test_out_of_memory_names_the_file_and_the_sizes(nifti_case, monkeypatch) -> None:
    path, _ = nifti_case("anisotropic")

    def failing(*args):
        raise MemoryError  # what a failed allocation deep in a library may raise: no message

    monkeypatch.setattr(_io, "_read_unscaled", failing)
    with pytest.raises(MemoryError, match=rf"{re.escape(path.name)}.*\(\d+, \d+, \d+\).*bytes"):
        load_nifti(path)


def test_interrupts_are_not_wrapped(nifti_case, monkeypatch) -> None:
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io, "_read_unscaled", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_nifti(nifti_case("anisotropic")[0])


@pytest.mark.parametrize("isal", [True, False])
def test_gzip_bytes_depend_on_neither_threads_nor_how_the_data_arrives(monkeypatch, isal) -> None:
    # Blocks compressed on several threads must still give one file for one volume: the
    # dataset's resume and --verify compare bytes, whatever the worker and thread counts.
    import io as _pyio

    from napari_resample.io import gzip as _gz
    from napari_resample.io import gzip_write as _gzw

    if not isal:
        monkeypatch.setattr(_gz, "_isal", lambda: None)  # as without isal installed
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 300, 700_000).astype(np.int16)).tobytes()  # several GZIP_BLOCKs
    assert len(data) > 4 * _gzw.GZIP_BLOCK
    outputs = set()
    for threads, cuts in [
        (1, [len(data)]),
        (2, [1, 348, 99_999, 3 * _gzw.GZIP_BLOCK + 5]),
        (3, list(range(7919, len(data), 7919))),
    ]:
        packed = _pyio.BytesIO()
        with _gzw.GzipWriter(packed, threads) as stream:
            start = 0
            for end in [*cuts, len(data)]:
                assert stream.write(data[start:end]) == end - start
                start = end
            assert stream.tell() == len(data)
        assert gzip.decompress(packed.getvalue()) == data
        outputs.add(packed.getvalue())
    assert len(outputs) == 1
    with _gzw.GzipWriter(_pyio.BytesIO()) as stream:
        stream.write(b"abc")
        with pytest.raises(OSError, match=r"cannot seek \(at 3, to 0\)"):
            stream.seek(0)
