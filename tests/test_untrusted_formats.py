"""NRRD, MetaImage and DICOM input from an untrusted source (the fault-injection
trial): headers checked in Python before SimpleITK sees them, data files kept inside the
header's folder, claimed sizes against the bytes that exist and the memory budget, DICOM
series that are not one volume refused.

Cases that killed or hung the process before these checks run in a child process with a
timeout, so that a regression fails the test instead of the test run.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from _dicom_series import dicom_dir, edited_series
from napari_resample.io.formats import load_volume
from napari_resample.io.itk import image_from_array

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")

CT = dicom_dir() / "98892001" / "CT5N"  # 16 x 16 x 5, 2.5 mm steps
MR700 = dicom_dir() / "98892003" / "MR700"  # 7 projections, each its own orientation


def nrrd_header(sizes=(4, 3, 2), kind="short", encoding="raw", extra="") -> str:
    return (
        f"NRRD0004\ntype: {kind}\ndimension: {len(sizes)}\n"
        f"sizes: {' '.join(str(n) for n in sizes)}\nendian: little\nencoding: {encoding}\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,2)\n"
        f"space origin: (0,0,0)\n{extra}"
    )


def mha_header(dims=(4, 3, 2), data="LOCAL", extra="", ndims=None) -> str:
    return (
        f"ObjectType = Image\nNDims = {ndims if ndims is not None else len(dims)}\n"
        f"BinaryData = True\nBinaryDataByteOrderMSB = False\n{extra}"
        f"DimSize = {' '.join(str(n) for n in dims)}\nElementType = MET_SHORT\n"
        f"ElementDataFile = {data}\n"
    )


def run_isolated(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run *code* in a fresh interpreter (this one's import path), with a timeout."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


# --------------------------------------------------------------- detached data files (item 1)


@pytest.fixture
def outside(tmp_path) -> Path:
    """A private file outside the folder that holds the headers (``hdr/``)."""
    (tmp_path / "private").mkdir()
    secret = tmp_path / "private" / "x"
    secret.write_bytes(b"secret!!" * 8)
    (tmp_path / "hdr").mkdir()
    return secret


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "/proc/self/environ", "/dev/stdin", "../private/x"]
)
def test_nhdr_data_file_outside_its_folder_is_refused(tmp_path, outside, name):
    header = tmp_path / "hdr" / "a.nhdr"
    header.write_text(nrrd_header(kind="uchar", extra=f"data file: {name}\n"))
    with pytest.raises(ValueError, match=r"'data file' in '.*a\.nhdr' names .*outside the header"):
        load_volume(header)


@pytest.mark.parametrize("name", ["/etc/passwd", "/proc/self/environ", "../private/x"])
def test_mhd_element_data_file_outside_its_folder_is_refused(tmp_path, outside, name):
    header = tmp_path / "hdr" / "a.mhd"
    header.write_text(mha_header(data=name))
    with pytest.raises(ValueError, match=r"'ElementDataFile' in '.*a\.mhd' names .*outside"):
        load_volume(header)


def test_list_forms_check_every_file(tmp_path, outside):
    folder = tmp_path / "hdr"
    (folder / "s0.raw").write_bytes(bytes(24))
    nhdr = folder / "a.nhdr"
    nhdr.write_text(nrrd_header(extra="data file: LIST 2\ns0.raw\n../private/x\n"))
    with pytest.raises(ValueError, match=r"names '\.\./private/x', outside"):
        load_volume(nhdr)
    mhd = folder / "a.mhd"
    mhd.write_text(mha_header(data="LIST 2D") + "s0.raw\n/etc/passwd\n")
    with pytest.raises(ValueError, match=r"names '/etc/passwd', outside"):
        load_volume(mhd)


def test_list_forms_inside_the_folder_are_read(tmp_path):
    slices = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # (k, j, i)
    for k in range(2):
        (tmp_path / f"s{k}.raw").write_bytes(slices[k].tobytes())
    nhdr = tmp_path / "a.nhdr"
    nhdr.write_text(nrrd_header(extra="data file: LIST 2\ns0.raw\ns1.raw\n"))
    mhd = tmp_path / "a.mhd"
    mhd.write_text(mha_header(data="LIST 2D") + "s0.raw\ns1.raw\n")
    for header in (nhdr, mhd):
        np.testing.assert_array_equal(load_volume(header).data, slices.transpose(2, 1, 0))


def test_symlink_out_of_the_folder_is_refused(tmp_path, outside):
    (tmp_path / "hdr" / "data.raw").symlink_to(outside)
    header = tmp_path / "hdr" / "a.mhd"
    header.write_text(mha_header(dims=(4, 2, 2), data="data.raw"))
    with pytest.raises(ValueError, match=r"names 'data\.raw', outside the header's folder"):
        load_volume(header)


@pytest.mark.parametrize("pattern", ["s%03d.raw 0 1 1", "%s%n%n%n", "x%n.raw"])
def test_printf_patterns_in_data_file_names_are_refused(tmp_path, pattern):
    mhd = tmp_path / "a.mhd"
    mhd.write_text(mha_header(data=pattern))
    nhdr = tmp_path / "a.nhdr"
    nhdr.write_text(nrrd_header(extra=f"data file: {pattern}\n"))
    for header in (mhd, nhdr):
        result = run_isolated(
            f"""
            from napari_resample.io.formats import load_volume
            try:
                load_volume({str(header)!r})
            except ValueError as exc:
                print("refused:", exc)
            """
        )
        assert result.returncode == 0, result.stderr
        assert "refused:" in result.stdout and "printf" in result.stdout


# ----------------------------------------------------------------- FIFOs and devices (item 5)


def test_fifo_and_device_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    (tmp_path / "zero.nrrd").symlink_to("/dev/zero")
    (tmp_path / "data.raw").symlink_to("/dev/zero")  # inside, but not a regular file
    header = tmp_path / "a.nhdr"
    header.write_text(nrrd_header(extra="data file: data.raw\n"))
    os.mkfifo(tmp_path / "fifo.raw")
    fifo_header = tmp_path / "b.mhd"
    fifo_header.write_text(mha_header(data="fifo.raw"))
    result = run_isolated(
        f"""
        from napari_resample.io.formats import load_volume
        for path in {[str(fifo), str(tmp_path / "zero.nrrd"), str(header), str(fifo_header)]!r}:
            try:
                load_volume(path)
            except ValueError as exc:
                print("refused:", exc)
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "pipe.nii.gz' is a FIFO (named pipe), not a regular file" in lines[0]
    assert "zero.nrrd' is a character device" in lines[1]
    assert "names 'data.raw', outside the header's folder" in lines[2]  # resolves to /dev
    assert "names 'fifo.raw': its data file" in lines[3] and "FIFO" in lines[3]


# ------------------------------------------------------------ MetaImage that killed (item 2)


@pytest.mark.parametrize("ndims", ["-1", "65535", "1000000000", "0", "3.5"])
def test_metaimage_ndims_out_of_range_is_refused_in_time(tmp_path, ndims):
    path = tmp_path / "a.mha"
    path.write_bytes(mha_header(ndims=ndims).encode() + bytes(48))
    result = run_isolated(
        f"""
        from napari_resample.io.formats import load_volume
        try:
            load_volume({str(path)!r})
        except ValueError as exc:
            print("refused:", exc)
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert f"NDims {ndims!r} refused" in result.stdout


def test_header_fields_are_named_in_refusals(tmp_path):
    cases = {
        "sizes": nrrd_header(sizes=(4, 0, 2)),
        "type": nrrd_header(kind="block"),
        "encoding": nrrd_header(encoding="zip"),
        "space directions": nrrd_header(extra="").replace("(0,0,2)", "(0,nan,2)"),
        "endian": nrrd_header().replace("endian: little\n", ""),
    }
    for field, text in cases.items():
        path = tmp_path / f"{field.replace(' ', '_')}.nrrd"
        path.write_bytes(text.encode() + b"\n" + bytes(48))
        with pytest.raises(ValueError, match=rf"'.*{path.name}': {field} .* refused"):
            load_volume(path)
    mha = tmp_path / "m.mha"
    mha.write_bytes(mha_header(extra="ElementSpacing = 1 1\n").encode() + bytes(48))
    with pytest.raises(ValueError, match=r"ElementSpacing '1 1' refused: expected 3 finite"):
        load_volume(mha)
    truthy = tmp_path / "t.mha"  # MetaIO takes it for True: raw bytes "inflated" before
    truthy.write_bytes(mha_header(extra="CompressedData = 1000000000\n").encode() + bytes(48))
    with pytest.raises(ValueError, match=r"CompressedData '1000000000' refused: expected True"):
        load_volume(truthy)


# --------------------------------------------------------- claimed bytes and memory (items 3, 7)


def test_raw_data_shorter_than_claimed_is_refused_before_allocating(tmp_path):
    path = tmp_path / "big.nrrd"  # 3 GB claimed over 1 KB of data
    path.write_bytes(nrrd_header(sizes=(1024, 1024, 1536)).encode() + b"\n" + bytes(1024))
    with pytest.raises(ValueError, match=r"claims 3221225472 bytes .* holds only 1024 bytes"):
        load_volume(path)


def test_compressed_metaimage_that_does_not_inflate_is_refused(tmp_path):
    good = tmp_path / "good.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8, 8), np.int16)), str(good), True)
    head, data = good.read_bytes().split(b"ElementDataFile = LOCAL\n")
    bad = tmp_path / "bad.mha"  # a valid stream, 8x too short for what the header claims
    bad.write_bytes(
        head.replace(b"DimSize = 8 8 8", b"DimSize = 8 8 64") + b"ElementDataFile = LOCAL\n" + data
    )
    with pytest.raises(ValueError, match=r"'.*bad\.mha'.*inflates to only 1024 bytes"):
        load_volume(bad)
    cut = tmp_path / "cut.mha"
    cut.write_bytes(good.read_bytes()[: -len(data) // 2])
    with pytest.raises(ValueError, match=r"'.*cut\.mha'.*(inflates to only|damaged)"):
        load_volume(cut)
    np.testing.assert_array_equal(load_volume(good).data, 1)


def test_gzip_nrrd_bomb_is_refused_by_the_budget(tmp_path):
    path = tmp_path / "bomb.nrrd"  # 64 MiB of zeros in ~65 KiB
    path.write_bytes(
        nrrd_header(sizes=(256, 256, 512), encoding="gzip").encode()
        + b"\n"
        + gzip.compress(bytes(256 * 256 * 512 * 2), 9)
    )
    assert path.stat().st_size < 1 << 20
    with pytest.raises(MemoryError, match=r"bomb\.nrrd.*over max_memory 50\.0 MiB"):
        load_volume(path, max_memory=50 << 20)
    claim = tmp_path / "claim.nrrd"  # the budget refuses before any byte is inflated
    claim.write_bytes(nrrd_header(sizes=(1024, 1024, 512), encoding="gzip").encode() + b"\n")
    with pytest.raises(MemoryError, match=r"claim\.nrrd.*over max_memory"):
        load_volume(claim, max_memory=1 << 20)
    short = tmp_path / "short.nrrd"
    short.write_bytes(nrrd_header(encoding="gzip").encode() + b"\n" + zlib.compress(bytes(10)))
    with pytest.raises(ValueError, match=r"inflates to only 10 bytes"):
        load_volume(short)


def test_budget_applies_to_metaimage_and_dicom(tmp_path):
    path = tmp_path / "a.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32, 32), np.float64)), str(path))
    with pytest.raises(MemoryError, match=r"a\.mha.*over max_memory"):
        load_volume(path, max_memory=100_000)
    assert load_volume(path, max_memory=1 << 20).data.shape == (32, 32, 32)
    with pytest.raises(MemoryError, match=r"DICOM series in '.*CT5N' \(16 x 16 x 5\).*over"):
        load_volume(CT, max_memory=4000)


# ------------------------------------------------------------------------- DICOM (items 4, 6)


def test_dicom_slices_claiming_more_pixels_than_they_hold_are_refused(tmp_path):
    def bomb(n, ds):
        ds.Rows = ds.Columns = 12000

    folder = edited_series(CT, tmp_path / "bomb", bomb)
    with pytest.raises(ValueError, match=r"claims 288000000 bytes of pixel data but the file"):
        load_volume(folder, max_memory=100 << 20)


def test_dicom_series_with_differing_orientations_is_refused():
    with pytest.raises(ValueError, match=r"'.*MR700' have different orientations") as e:
        load_volume(MR700)
    assert str(e.value).count("ImageOrientationPatient") == 1
    assert "[0.653996, 0.756504" in str(e.value) or "[-0.143447" in str(e.value)


def test_duplicated_slice_is_refused(tmp_path):
    positions = [pydicom.dcmread(p).ImagePositionPatient for p in sorted(CT.iterdir())]

    def duplicate(n, ds):
        if n == 3:
            ds.ImagePositionPatient = positions[2]

    folder = edited_series(CT, tmp_path / "dup", duplicate)
    with pytest.raises(ValueError, match=r"two slices .* lie at the same position"):
        load_volume(folder)


def test_truncated_and_damaged_slices_are_refused(tmp_path):
    folder = edited_series(CT, tmp_path / "cut")
    victim = sorted(folder.iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:-200])
    with pytest.raises(
        ValueError, match=rf"cannot be read \(truncated or damaged file\): '.*{victim.name}'"
    ):
        load_volume(folder)

    def wrong_rows(n, ds):
        if n == 1:
            ds.Rows = 17  # 32 bytes of pixel data missing

    folder = edited_series(CT, tmp_path / "rows", wrong_rows)
    with pytest.raises(ValueError, match=r"(differ in size|truncated or damaged)"):
        load_volume(folder)


def test_missing_slice_warns_with_the_gap_and_the_step(tmp_path, capfd):
    folder = edited_series(CT, tmp_path / "gap")
    sorted(folder.iterdir())[2].unlink()
    with pytest.warns(UserWarning, match=r"a step of 5 mm .* the typical step is 2\.5 mm") as w:
        volume = load_volume(folder)
    assert str(folder) in str(w[0].message)
    assert volume.data.shape == (16, 16, 4)
    err = capfd.readouterr().err
    assert "WARNING" not in err and "itk" not in err.lower()  # SimpleITK's own text is muted


# ----------------------------------------------------------------------- byte order on SimpleITK


def test_big_endian_arrays_reach_simpleitk_in_native_order():
    data = np.arange(24, dtype=">i2").reshape(4, 3, 2)
    image = image_from_array(data, np.diag([1.0, 2.0, 3.0, 1.0]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), data)
    floats = image_from_array(data.astype(">f4"))
    assert floats.GetPixelIDTypeAsString() == "32-bit float"


# ------------------------------------------------------------------------------ fuzzer (item 6)

#: Address space of the fuzz process: a header that makes a reader allocate what it claims
#: fails inside it instead of taking the machine's memory.
FUZZ_MEMORY = 3 << 30


def fuzz(folder: Path, cases: int, seed: int, *mode: str) -> dict:
    """Run :mod:`_itk_fuzz` in a child process under :data:`FUZZ_MEMORY`; its counts."""
    script = Path(__file__).with_name("_itk_fuzz.py")
    argv = [str(script), str(cases), str(seed), str(folder), *mode]
    code = (
        f"import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_AS, ({FUZZ_MEMORY}, {FUZZ_MEMORY})); "
        f"sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, f"the fuzz process died ({result.returncode}): {result.stderr}"
    assert result.stderr.strip() == ""  # no text of SimpleITK's readers reaches the terminal
    counts = json.loads(result.stdout.splitlines()[-1])
    assert counts["undocumented"] == []
    assert counts["read"] + counts["refused"] == cases
    return counts


def test_fuzzed_nrrd_and_metaimage_headers_die_hang_or_leak_nothing(tmp_path):
    counts = fuzz(tmp_path, 1000, 18)
    assert counts["read"] > 20 and counts["refused"] > 100  # both paths really exercised


def test_fuzzed_dicom_series_die_hang_or_leak_nothing(tmp_path):
    counts = fuzz(tmp_path, 100, 7, "dicom")
    assert counts["read"] > 5 and counts["refused"] > 20


def test_big_endian_nifti_onto_an_oblique_reference(tmp_path):
    import nibabel as nib
    from nibabel.testing import data_path

    from napari_resample import resample_to_reference

    source = Path(data_path) / "anatomical.nii"  # nibabel's own big-endian int16 volume
    assert nib.load(source).get_data_dtype().byteorder == ">"
    turn = np.deg2rad(25.0)
    affine = np.eye(4)
    affine[:3, :3] = 3 * np.array(
        [[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]]
    )
    affine[:3, 3] = nib.load(source).affine[:3, 3]
    reference = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10), np.int16), affine), reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # partial overlap
        out = resample_to_reference(source, reference, tmp_path)
    result = nib.load(out)
    assert result.shape == (20, 20, 10) and np.abs(result.get_fdata()).max() > 0


def test_impossible_slice_geometry_and_unparseable_files_are_refused(tmp_path):
    def flat(n, ds):
        if n == 1:
            ds.PixelSpacing = [0, 0]

    folder = edited_series(CT, tmp_path / "flat", flat)
    with pytest.raises(ValueError, match=r"has an impossible PixelSpacing '0\.0.+0\.0'"):
        load_volume(folder)

    def samples(n, ds):
        if n == 0:
            ds.SamplesPerPixel = 255  # GDCM refuses to list the folder at all

    folder = edited_series(CT, tmp_path / "samples", samples)
    with pytest.raises(ValueError, match=r"cannot list the DICOM series in '.*samples', a file"):
        load_volume(folder)


def test_control_characters_in_a_header_are_refused_before_simpleitk(tmp_path, capfd):
    # Found by 20,000 fuzzed headers: "DimSize = 4\x1f3 2" parses as 4 3 2 with Python's split()
    # but not in MetaIO, which printed its own errors on stderr.
    path = tmp_path / "x.mha"
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nDimSize = 4\x1f3 2\nElementType = MET_SHORT\n"
        "ElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + bytes(48))
    with pytest.raises(ValueError, match="control character"):
        load_volume(str(path))
    assert capfd.readouterr().err == ""


def test_the_file_doors_bound_the_read_of_other_formats_by_max_memory(tmp_path):
    # The budget must hold while SimpleITK reads, not only after: the header's claim is checked
    # against max_memory before any voxel is read.
    from napari_resample import resample_to_spacing

    path = tmp_path / "a.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32, 32), np.float64)), str(path))
    with pytest.raises(MemoryError, match=r"a\.mha.*over max_memory"):
        resample_to_spacing(str(path), str(tmp_path / "out"), (2, 2, 2), max_memory=100_000)
    assert not (tmp_path / "out").exists()


def test_fuzzed_files_through_the_napari_reader_in_process(tmp_path):
    # What napari does when a user drops the file: the reader must return layers or nothing,
    # show its errors as notifications, and never take the process down.
    (tmp_path / "h").mkdir()
    (tmp_path / "d").mkdir()
    counts = fuzz(tmp_path / "h", 300, 18, "napari")
    assert counts["read"] > 5 and counts["refused"] > 50
    counts = fuzz(tmp_path / "d", 30, 7, "dicom", "napari")
    assert counts["read"] > 1 and counts["refused"] > 5
