"""The file contract ``resampling()`` (docs/decisions.md, D15; D1-D3, D6-D8).

Each test names the decision it checks (and, for D15, the upstream specification's section).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import napari_resample
from _affine import direction_of, spacing_of
from conftest import CASES, file_endianness, make_affine, rotation, smooth_volume
from napari_resample import resampling
from napari_resample.engine.geometry import voxel_transform

SIZE = (18, 4, 9)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def scan(make_nifti) -> Path:
    """``in/scan_042.nii.gz``: int16, anisotropic 0.5 x 0.75 x 2.5 mm, oblique, 9 x 8 x 6."""
    data = np.round(smooth_volume((9, 8, 6))).astype(np.int16)
    affine = make_affine(rotation(0.3, -0.2, 0.5) @ np.diag([0.5, 0.75, 2.5]), (-12, 7.5, 30))
    return make_nifti(data, affine, name="scan_042.nii.gz")


# --------------------------------------------------------------------------- output file


def test_output_name_and_only_that_file(scan: Path, tmp_path: Path) -> None:
    # docs/decisions.md, D15 (upstream spec "Output File"): scan_042.nii.gz ->
    # scan_042_resampled.nii.gz; nothing else is left.
    assert resampling(str(scan), str(tmp_path / "out"), SIZE) is None
    assert tree(tmp_path / "out") == ["scan_042_resampled.nii.gz"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan.v2.nii.gz", "scan.v2_resampled.nii.gz"),
        ("SCAN.NII.GZ", "SCAN_resampled.nii.gz"),
        ("a_resampled.nii.gz", "a_resampled_resampled.nii.gz"),
        ("with space.nii.gz", "with space_resampled.nii.gz"),
    ],
)
def test_output_name_prefix(make_nifti, tmp_path: Path, name: str, expected: str) -> None:
    path = make_nifti(np.zeros((4, 4, 4), np.uint8), name=name)
    resampling(path, tmp_path / "out", (2, 2, 2))
    assert tree(tmp_path / "out") == [expected]


def test_output_folder_created_with_parents(scan: Path, tmp_path: Path) -> None:
    # docs/decisions.md, D15 (upstream spec): "Created automatically if it doesn't exist."
    out = tmp_path / "a" / "b" / "c"
    resampling(scan, out, SIZE)
    assert (out / "scan_042_resampled.nii.gz").is_file()


def test_existing_output_folder_is_used(scan: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.txt").write_text("keep me")
    resampling(scan, out, SIZE)
    assert tree(out) == ["other.txt", "scan_042_resampled.nii.gz"]
    assert (out / "other.txt").read_text() == "keep me"


def test_existing_output_is_replaced(scan: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    resampling(scan, out, SIZE)
    resampling(scan, out, (3, 3, 3))
    assert nib.load(out / "scan_042_resampled.nii.gz").shape == (3, 3, 3)
    assert tree(out) == ["scan_042_resampled.nii.gz"]


@pytest.mark.parametrize("kind", ["str", "path"])
def test_str_and_pathlike_accepted(scan: Path, tmp_path: Path, kind: str) -> None:
    conv = str if kind == "str" else Path
    resampling(conv(scan), conv(tmp_path / "out"), SIZE)
    assert nib.load(tmp_path / "out" / "scan_042_resampled.nii.gz").shape == SIZE


def test_input_file_unchanged(scan: Path, tmp_path: Path) -> None:
    digest, stat = sha256(scan), scan.stat()
    resampling(scan, scan.parent, SIZE)  # output next to the input
    assert sha256(scan) == digest
    assert scan.stat().st_mtime_ns == stat.st_mtime_ns
    assert tree(scan.parent) == ["scan_042.nii.gz", "scan_042_resampled.nii.gz"]


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_refuses_to_overwrite_input(scan: Path, tmp_path: Path, link: str) -> None:
    # docs/decisions.md, D7: an output path that would overwrite the input file is refused.
    out = tmp_path / "out"
    out.mkdir()
    target = out / "scan_042_resampled.nii.gz"
    (os.symlink if link == "symlink" else os.link)(scan, target)
    digest = sha256(scan)
    with pytest.raises(ValueError, match=r"overwrite the input file.*scan_042_resampled"):
        resampling(scan, out, SIZE)
    assert sha256(scan) == digest
    assert tree(out) == ["scan_042_resampled.nii.gz"]


# --------------------------------------------------------------------------- exceptions


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.nii.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(missing)))):
        resampling(missing, tmp_path / "out", SIZE)
    assert tree(tmp_path) == []


@pytest.mark.parametrize("name", ["scan.nii", "scan.gz", "scan.nii.gz.bak", "scan.txt", "scan"])
def test_not_nii_gz_raises_value_error(tmp_path: Path, name: str) -> None:
    # docs/decisions.md, D15 (upstream spec "Exceptions"): ValueError if the file is not in .nii.gz
    # format.
    path = tmp_path / name
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    nib.save(img, tmp_path / "real.nii")
    path.write_bytes((tmp_path / "real.nii").read_bytes())
    with pytest.raises(ValueError, match=r"\.nii\.gz.*" + re.escape(name)):
        resampling(path, tmp_path / "out", SIZE)
    assert not (tmp_path / "out").exists()


def test_folder_as_input_raises(tmp_path: Path) -> None:
    folder = tmp_path / "dir.nii.gz"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"folder.*dir\.nii\.gz"):
        resampling(folder, tmp_path / "out", SIZE)
    assert not (tmp_path / "out").exists()


BAD_SIZES = [
    (2, 2),
    (2, 2, 2, 2),
    (),
    (True, 2, 2),
    (2, False, 2),
    (0, 2, 2),
    (2, -3, 2),
    (2.5, 2, 2),
    (2.0, 2, 2),
    (np.float64(2.0), 2, 2),
    ("2", "2", "2"),
    "abc",
    "222",
    None,
    2,
    (2, None, 2),
    {1: 2, 3: 4, 5: 6},
    {2, 3, 4},
    np.array(3),  # was a TypeError (iteration over a 0-d array)
    np.array([[2, 2, 2]]),
]


@pytest.mark.parametrize("size", BAD_SIZES, ids=repr)
def test_bad_desired_volume_raises_naming_the_value(scan: Path, tmp_path: Path, size) -> None:
    # docs/decisions.md, D15: ValueError if desired_volume does not hold exactly 3 values; D7:
    # exactly three positive integers, the message names the value. Nothing is created.
    out = tmp_path / "new" / "deep"
    with pytest.raises(ValueError, match=re.escape(repr(size))):
        resampling(scan, out, size)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "size",
    [
        (3, 3, 3),
        [3, 3, 3],
        (np.int64(3), np.int32(3), np.uint8(3)),
        np.array([3, 3, 3]),
        range(3, 12, 4),
        "generator",
        "map",
    ],
    ids=["tuple", "list", "numpy-scalars", "numpy-array", "range", "generator", "map"],
)
def test_integer_sizes_accepted(scan: Path, tmp_path: Path, size) -> None:
    # Three positive integers, whatever holds them in order: iterators too (were refused).
    expected = tuple(size) if isinstance(size, range) else (3, 3, 3)
    if isinstance(size, str):
        size = (n for n in (3, 3, 3)) if size == "generator" else map(int, ["3", "3", "3"])
    resampling(scan, tmp_path / "out", size)
    assert nib.load(tmp_path / "out" / "scan_042_resampled.nii.gz").shape == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interpolation": "cubic"}, r"interpolation must be one of .*'cubic'"),
        ({"anchor": "corner"}, r"anchor must be one of .*'corner'"),
    ],
)
def test_bad_options_raise_before_side_effects(scan, tmp_path: Path, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        resampling(scan, tmp_path / "new" / "out", SIZE, **kwargs)
    assert not (tmp_path / "new").exists()


def test_output_path_is_a_file_raises(scan: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"folder.*out"):
        resampling(scan, blocker, SIZE)
    assert blocker.read_text() == "not a folder"


def test_true_4d_raises_stating_its_shape(true_4d: Path, tmp_path: Path) -> None:
    # docs/decisions.md, D6: more than one volume -> ValueError that states the shape; nothing
    # created.
    with pytest.raises(ValueError, match=re.escape("(5, 4, 3, 3)")):
        resampling(true_4d, tmp_path / "new" / "out", (2, 2, 2))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["resample", "save", "stream", "stream_write"])
def test_failure_leaves_no_file_and_no_new_folder(scan, tmp_path, monkeypatch, where) -> None:
    # docs/decisions.md, D7: a failure after validation removes the folders it created and leaves
    # no output or temporary file: in memory ("resample", "save") and streamed ("stream" while
    # resampling, "stream_write" after planes were written).
    from napari_resample.io import nifti as _io
    from napari_resample.io import plane_writer as _niistream
    from napari_resample.pipeline import streamed as _filestream

    exc: type[BaseException] = MemoryError if where in ("resample", "stream") else OSError
    if where in ("resample", "save"):
        monkeypatch.setattr(_filestream, "stream_file", lambda *a, **k: None)  # in memory
    if where == "resample":

        def boom(*args, **kwargs):
            raise MemoryError("simulated")

        monkeypatch.setattr("napari_resample.pipeline.run.resample_array", boom)
    elif where == "save":
        real_write = _io._write_image

        def boom(img, filename, compress):
            real_write(img, filename, compress)
            raise OSError("simulated")

        monkeypatch.setattr(_io, "_write_image", boom)
    elif where == "stream":

        def boom(*args, **kwargs):
            raise MemoryError("simulated")

        monkeypatch.setattr(_filestream, "run_stream", boom)
    else:
        real_planes = _niistream.PlaneWriter.write

        def boom(self, block, **kwargs):
            real_planes(self, block, **kwargs)
            raise OSError("simulated")

        monkeypatch.setattr(_niistream.PlaneWriter, "write", boom)
    # "auto" on a small integer volume is decided in memory: an explicit mode streams it
    mode = "bspline"
    before = tree(tmp_path)
    with pytest.raises(exc, match="simulated"):
        resampling(scan, tmp_path / "new" / "deeper" / "out", SIZE, interpolation=mode)
    assert tree(tmp_path) == before
    # An existing output folder is kept (it was not ours), and stays empty.
    (tmp_path / "kept").mkdir()
    with pytest.raises(exc, match="simulated"):
        resampling(scan, tmp_path / "kept" / "sub", SIZE, interpolation=mode)
    assert tree(tmp_path / "kept") == []


@pytest.mark.parametrize("tail", ["x" * 300, "ok/" + "y" * 300 + "/z", "bad\0name"])
def test_failure_creating_the_output_folder_leaves_no_new_folder(scan, tmp_path, tail) -> None:
    # docs/decisions.md, D7 / README: "a failure leaves no partial file and no new empty folder" --
    # also when creating the folders fails part-way (a name too long, a NUL byte): the parents made
    # before the failing one are removed (they were left behind).
    before = tree(tmp_path)
    with pytest.raises((OSError, ValueError)):
        resampling(scan, tmp_path / "new" / tail, SIZE)
    assert tree(tmp_path) == before


def _patched_header(src: Path, dest: Path, **fields) -> Path:
    """Copy of *src* with raw header fields overwritten (what nibabel would refuse to write)."""
    import gzip
    import struct

    raw = bytearray(gzip.decompress(src.read_bytes()))
    offsets = {"datatype": (70, "<h"), "scl_inter": (116, "<f"), "pixdim1": (80, "<f")}
    for name, value in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, raw, offset, value)
    dest.write_bytes(gzip.compress(bytes(raw)))
    return dest


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(
    "fields",
    [{"datatype": 999}, {"scl_inter": float("inf")}, {"pixdim1": float("nan")}],
    ids=["unknown-datatype", "infinite-scl_inter", "nan-pixdim"],
)
def test_corrupt_header_is_a_value_error_before_side_effects(scan, tmp_path, fields) -> None:
    # docs/decisions.md, D15 (upstream spec "Exceptions"): a file that is not a valid .nii.gz is a
    # ValueError. nibabel's own HeaderDataError (not a ValueError) escaped, the NaN-pixdim one only
    # after the output folder had been created.
    bad = _patched_header(scan, tmp_path / "bad.nii.gz", **fields)
    with pytest.raises(ValueError, match=re.escape(repr(str(bad)))):
        resampling(bad, tmp_path / "new" / "out", SIZE)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("length", [230, 238])
def test_long_but_valid_output_name(make_nifti, tmp_path, length: int) -> None:
    # The output name (input prefix + "_resampled.nii.gz") fits in 255 bytes; the temporary
    # file's longer name (".<name>.<12 hex>.tmp.nii.gz") made the write fail.
    prefix = "p" * length
    src = make_nifti(np.ones((4, 4, 4), np.int16), name=prefix + ".nii.gz")
    resampling(src, tmp_path / "out", (2, 2, 2))
    assert tree(tmp_path / "out") == [prefix + "_resampled.nii.gz"]


# --------------------------------------------------------------------------- debug


@pytest.mark.parametrize("output_path", ["processed/", "processed", "./out", "x/y/z", "../up"])
def test_debug_prints_exact_line(scan, tmp_path, monkeypatch, capsys, output_path) -> None:
    # docs/decisions.md, D8: exactly "Resampled image saved at: '<path>'" with the path as given.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    resampling(scan, output_path, SIZE, debug=True)
    captured = capsys.readouterr()
    expected = os.path.join(output_path, "scan_042_resampled.nii.gz")
    assert captured.out == f"Resampled image saved at: '{expected}'\n"
    assert captured.err == ""
    assert os.path.isfile(expected)


@pytest.mark.parametrize("output_path", ["a/b/../c", "a/../c"])
def test_output_path_with_dotdot_through_missing_folder(
    scan, tmp_path, monkeypatch, output_path
) -> None:
    # docs/decisions.md, D15 (upstream spec): the output directory is "created automatically if it
    # doesn't exist" -- like os.makedirs, which creates a/b on the way to a/b/../c.
    monkeypatch.chdir(tmp_path)
    resampling(scan, output_path, SIZE)
    assert os.path.isfile(os.path.join(output_path, "scan_042_resampled.nii.gz"))


def test_debug_with_pathlike(scan: Path, tmp_path: Path, capsys) -> None:
    resampling(scan, tmp_path / "out", SIZE, debug=True)
    expected = os.path.join(str(tmp_path / "out"), "scan_042_resampled.nii.gz")
    assert capsys.readouterr().out == f"Resampled image saved at: '{expected}'\n"


def test_no_debug_prints_nothing(scan: Path, tmp_path: Path, capsys) -> None:
    resampling(scan, tmp_path / "out", SIZE)
    assert capsys.readouterr() == ("", "")


def test_logging_configuration_unchanged(scan: Path, tmp_path: Path) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.root.manager.disable)
    loggers = {
        name: list(getattr(lg, "handlers", []))
        for name, lg in logging.root.manager.loggerDict.items()
    }
    resampling(scan, tmp_path / "out", SIZE, debug=True)
    assert (list(root.handlers), root.level, logging.root.manager.disable) == before
    for name, lg in logging.root.manager.loggerDict.items():
        assert list(getattr(lg, "handlers", [])) == loggers.get(name, []), name


# --------------------------------------------------------------------------- output properties


def test_spec_example_spacing_and_fov(make_nifti, tmp_path: Path) -> None:
    # docs/decisions.md, D15 (upstream spec "Field of View Preservation", scaled down 8x
    # in-plane): 64 x 64 x 30 at 0.5 x 0.5 x 1.0 mm -> (32, 32, 12): 1.0 x 1.0 x 2.5 mm,
    # FOV 32 x 32 x 30 mm.
    path = make_nifti(np.zeros((64, 64, 30), np.int16), np.diag([0.5, 0.5, 1.0, 1.0]))
    resampling(path, tmp_path / "out", (32, 32, 12))
    out = nib.load(tmp_path / "out" / "scan_resampled.nii.gz")
    assert out.shape == (32, 32, 12)
    np.testing.assert_allclose(out.header.get_zooms(), [1.0, 1.0, 2.5], rtol=1e-6)
    fov = np.array(out.shape) * np.array(out.header.get_zooms()[:3])
    np.testing.assert_allclose(fov, [32.0, 32.0, 30.0], atol=0.1)


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("size", [(18, 4, 9), (27, 24, 18), (3, 2, 1), (9, 8, 6)])
@pytest.mark.parametrize("name", CASES)
def test_output_geometry_and_dtype(nifti_case, tmp_path, name: str, size, anchor) -> None:
    # docs/decisions.md, D15 (upstream spec "Output Properties"): dimensions match desired_volume;
    # spacing adjusted so the FOV is kept; origin and direction preserved; data type preserved.
    # docs/decisions.md, D1: the affine is the old one with its columns scaled (anchor "center":
    # origin moved by half the spacing change).
    path, case = nifti_case(name)
    src = nib.load(path)
    interpolation = "label" if name == "labels" else "bspline"
    resampling(path, tmp_path / "out", size, anchor=anchor, interpolation=interpolation)
    out = nib.load(tmp_path / "out" / "scan_resampled.nii.gz")
    old_shape = np.array(case.data.shape[:3])
    assert out.shape == size
    # Data type on disk, byte order included.
    assert out.get_data_dtype() == src.get_data_dtype()
    # Spacing and FOV, read the way the specification's example reads them.
    f = old_shape / size
    if name != "sheared":  # see test_io.test_qform_moved_when_its_zooms_differ_from_sform
        np.testing.assert_allclose(
            out.header.get_zooms()[:3], np.array(src.header.get_zooms()[:3]) * f, rtol=1e-5
        )
    np.testing.assert_allclose(
        spacing_of(out.affine) * size, spacing_of(src.affine) * old_shape, rtol=1e-5
    )
    np.testing.assert_allclose(direction_of(out.affine), direction_of(src.affine), atol=1e-5)
    t = voxel_transform(old_shape, size, anchor)
    if name == "codes_0_0" and anchor == "origin":
        return  # no stored origin: see test_io.test_codes_0_0_stay_0_0
    np.testing.assert_allclose(out.affine, src.affine @ t, atol=1e-4)
    if anchor == "origin":
        np.testing.assert_allclose(out.affine[:3, 3], src.affine[:3, 3], atol=1e-4)
    else:
        corner = np.array([-0.5, -0.5, -0.5, 1.0])
        np.testing.assert_allclose(out.affine @ corner, src.affine @ corner, atol=1e-4)
        far = np.append(np.array(size) - 0.5, 1.0)
        np.testing.assert_allclose(
            out.affine @ far, src.affine @ np.append(old_shape - 0.5, 1), atol=1e-4
        )


def independent_resampling(data: np.ndarray, size, interpolation: str) -> np.ndarray:
    """float64 expectation that shares no code with the engine (anchor "origin").

    ``"bspline"``: scipy's cubic spline (own mirror prefilter) at the sample positions
    ``i * old / new``, clamped to the input's range. ``"label"``: every label's indicator
    interpolated linearly by scipy (clamped coordinates: edge held), as a stack (labels sorted).
    """
    from scipy import ndimage

    x = np.asarray(data, dtype=np.float64)
    f = np.array(x.shape, dtype=np.float64) / np.array(size, dtype=np.float64)
    coords = np.indices(size, dtype=np.float64) * f.reshape(3, 1, 1, 1)
    if interpolation == "bspline":
        out = ndimage.map_coordinates(x, coords, order=3, mode="mirror", prefilter=True)
        return np.clip(out, x.min(), x.max())
    coords = np.minimum(coords, np.array(x.shape).reshape(3, 1, 1, 1) - 1.0)
    return np.stack(
        [
            ndimage.map_coordinates((x == label).astype(np.float64), coords, order=1)
            for label in np.unique(x)
        ]
    )


@pytest.mark.parametrize("name", CASES)
def test_output_values_are_resampled_input(nifti_case, tmp_path: Path, name: str) -> None:
    # The file path resamples the stored values (scl_slope / scl_inter kept aside), and those
    # values are right: checked against an independent float64 computation (scipy), not only
    # against the array engine (which a shared bug, e.g. truncating instead of rounding
    # integers, would leave in agreement).
    from napari_resample import resample_array

    path, case = nifti_case(name)
    interpolation = "label" if name == "labels" else "bspline"
    resampling(path, tmp_path / "out", SIZE, interpolation=interpolation)
    out = nib.load(tmp_path / "out" / "scan_resampled.nii.gz")
    stored = np.asarray(out.dataobj.get_unscaled())
    data = case.data.reshape(case.data.shape[:3])
    # a file streams along k, as the same values Fortran-ordered do (nibabel's layout)
    engine, _ = resample_array(np.asfortranarray(data), SIZE, interpolation=interpolation)
    np.testing.assert_array_equal(stored, engine)
    assert stored.dtype.newbyteorder("=") == data.dtype.newbyteorder("=")
    ref = independent_resampling(data, SIZE, interpolation)
    if interpolation == "label":
        labels = np.unique(data)
        top = ref.max(axis=0)
        # Largest weight wins; where weights tie (up to float noise) any tied label may.
        allowed = ref >= top - 1e-9
        ties = allowed.sum(axis=0) > 1
        assert (~ties).mean() > 0.8
        np.testing.assert_array_equal(stored[~ties], labels[np.argmax(ref, axis=0)][~ties])
        assert np.take_along_axis(allowed, np.searchsorted(labels, stored)[None], 0).all()
    elif stored.dtype.kind in "iu":
        # Rounded to nearest: exactly rint(reference), except within float32 noise of a .5.
        frac = ref - np.floor(ref)
        near_half = np.abs(frac - 0.5) < 1e-3
        assert (~near_half).mean() > 0.99
        np.testing.assert_array_equal(stored[~near_half], np.rint(ref)[~near_half])
        assert np.abs(stored.astype(np.float64) - ref)[near_half].max(initial=0) <= 0.5 + 1e-3
    else:
        span = float(data.max() - data.min())
        rtol = 2e-6 if stored.dtype.itemsize == 4 else 1e-8  # float32 / float64 work
        np.testing.assert_allclose(stored, ref, rtol=0, atol=rtol * span)
    if name == "labels":
        assert set(np.unique(stored)) <= set(np.unique(case.data))
    if name.startswith("big_endian"):
        assert file_endianness(tmp_path / "out" / "scan_resampled.nii.gz") == ">"


def test_public_api() -> None:
    assert set(napari_resample.__all__) == {
        "ResamplingCancelled",
        "__version__",
        "resample_array",
        "resample_to_reference",
        "resample_to_spacing",
        "resampling",
        "resampling_dataset",
        "verify_dataset",
        "qc_dataset",
    }
    for name in ("resample_array", "resampling"):
        doc = getattr(napari_resample, name).__doc__
        assert "Parameters" in doc and "Returns" in doc


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_nonfinite_float_file(nonfinite_float: Path, tmp_path: Path, interpolation: str) -> None:
    # docs/decisions.md, D9 at file level: NaN / +Inf / -Inf survive only where the nearest input
    # voxel was non-finite: upsampling 2x with anchor "origin", input voxel n is nearest to output
    # voxels 2n - 1 and 2n, so each bad voxel becomes one 2x2x2 block (no spreading along rows);
    # the rest is finite and within the finite input range.
    resampling(nonfinite_float, tmp_path / "out", (16, 16, 12), interpolation=interpolation)
    out = np.asarray(nib.load(tmp_path / "out" / "scan_resampled.nii.gz").dataobj)
    src = np.asarray(nib.load(nonfinite_float).dataobj)
    assert out.dtype == np.float32
    assert np.isnan(out).sum() == 8 and np.isnan(out[3:5, 5:7, 3:5]).all()  # input (2, 3, 2)
    assert np.isposinf(out).sum() == 8 and np.isposinf(out[9:11, 9:11, 5:7]).all()  # (5, 5, 3)
    assert np.isneginf(out).sum() == 8 and np.isneginf(out[11:13, 1:3, 7:9]).all()  # (6, 1, 4)
    finite = out[np.isfinite(out)]
    assert finite.size == out.size - 24
    assert finite.min() >= src[np.isfinite(src)].min()
    assert finite.max() <= src[np.isfinite(src)].max()


def test_concurrent_runs_into_one_new_folder_both_survive_a_failure(tmp_path: Path) -> None:
    # docs/decisions.md, D7. Two processes write into the same new folder: B made it and fails;
    # its clean-up removes the (still empty) folder just as A is about to write. A makes the
    # folder again instead of dying after doing all its work; B removes only what it made.
    import subprocess
    import sys

    import nibabel as nib

    for name in ("a", "b"):
        nib.save(
            nib.Nifti1Image(np.arange(216, dtype=np.int16).reshape(6, 6, 6), np.eye(4)),
            tmp_path / f"{name}.nii.gz",
        )
    out = tmp_path / "new" / "shared"
    flags = tmp_path / "flags"
    flags.mkdir()
    common = f"""
import os, sys, time
from pathlib import Path
from napari_resample import resampling
from napari_resample.io import plane_writer as _niistream
flags = Path({str(flags)!r})
real = _niistream.PlaneWriter.__init__
def wait_for(name):
    deadline = time.monotonic() + 60
    while not (flags / name).exists():
        assert time.monotonic() < deadline, name
        time.sleep(0.01)
"""
    process_a = (
        common
        + f"""
calls = []
def write(self, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 1:
        (flags / "a_ready").touch()
        wait_for("b_done")  # B failed and removed the folder it made
    return real(self, path, *args, **kwargs)
_niistream.PlaneWriter.__init__ = write
wait_for("b_made_folder")
resampling({str(tmp_path / "a.nii.gz")!r}, {str(out)!r}, (3, 3, 3), interpolation="bspline")
print(len(calls))
"""
    )
    process_b = (
        common
        + f"""
def write(self, path, *args, **kwargs):
    (flags / "b_made_folder").touch()
    wait_for("a_ready")
    raise OSError("simulated failure of B")
_niistream.PlaneWriter.__init__ = write
try:
    resampling({str(tmp_path / "b.nii.gz")!r}, {str(out)!r}, (3, 3, 3), interpolation="bspline")
except OSError:
    (flags / "b_done").touch()
"""
    )
    a = subprocess.Popen([sys.executable, "-c", process_a], stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen([sys.executable, "-c", process_b])
    assert b.wait(120) == 0
    stdout, _ = a.communicate(timeout=120)
    assert a.returncode == 0
    assert stdout.strip() == "2"  # A's first write met the vanished folder, the second worked
    assert sorted(p.name for p in out.iterdir()) == ["a_resampled.nii.gz"]


def test_a_later_run_removes_temp_files_of_killed_runs(scan: Path, tmp_path: Path) -> None:
    # docs/decisions.md, D7: a SIGKILL during a write leaves a temporary file; its name says
    # which process (on which machine) made it, so the next run into that folder removes it
    # once that process is gone, and leaves alone those of a process still writing.
    import subprocess
    import sys

    from napari_resample.io.atomic import temp_name

    out = tmp_path / "out"
    out.mkdir()
    code = (
        "from napari_resample.io.atomic import temp_name; print(temp_name('x.nii.gz', '.nii.gz'))"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    (out / dead).write_bytes(b"240 MB, once")
    alive = temp_name("y.nii.gz", ".nii.gz")
    (out / alive).write_bytes(b"being written by this process")
    resampling(scan, out, SIZE)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [alive, f"{scan.name[:-7]}_resampled.nii.gz"]
    )
