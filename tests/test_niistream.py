"""Plane-by-plane NIfTI reading and writing (for volumes larger than memory).

The reader must give what :func:`load_nifti` gives (header, affine, scaling, stored values) with
the same refusals (impossible headers before any voxel, every damaged gzip stream); the writer
must write the bytes :func:`save_nifti` writes, atomically. Both hold a few blocks, whatever the
number of planes, and never leave a thread or a temporary file behind.
"""

from __future__ import annotations

import errno
import gc
import gzip
import itertools
import os
import re
import threading
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import _fuzz
from _gzdamage import CORRUPTIONS
from _limits import run_limited
from conftest import CASES, build_case
from napari_resample.io import atomic as _atomic
from napari_resample.io import gzip as _gz
from napari_resample.io import plane_reader as _reader
from napari_resample.io import plane_writer as _writer
from napari_resample.io.nifti import load_nifti, save_nifti, spatial_volume
from napari_resample.io.plane_reader import PlaneReader, open_planes
from napari_resample.io.plane_writer import PlaneWriter


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("read ", "write "))]


@pytest.fixture(autouse=True)
def no_thread_or_temporary_left():
    """Every test ends with no reading / writing thread alive and no file being written."""
    yield
    deadline = time.monotonic() + 2
    while stream_threads() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert stream_threads() == []
    assert _atomic._IN_PROGRESS == set()


def read_all(path, **kwargs) -> tuple[PlaneReader, np.ndarray, list[int]]:
    """The reader (closed), the planes it gave stacked along k, and the k0 of each block."""
    with open_planes(path, **kwargs) as reader:
        starts, blocks = [], []
        for k0, block in reader:
            starts.append(k0)
            blocks.append(block)
    return reader, np.concatenate(blocks, axis=2), starts


def write_in_blocks(path, data: np.ndarray, header, per_block: int, **kwargs) -> str:
    with PlaneWriter(path, header, **kwargs) as out:
        for k0 in range(0, data.shape[2], per_block):
            out.write(data[:, :, k0 : k0 + per_block])
    return str(path)


def gunzipped(path: Path) -> bytes:
    blob = path.read_bytes()
    return gzip.decompress(blob) if path.name.endswith(".gz") else blob


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("name", CASES)
def test_planes_are_what_load_nifti_reads(make_nifti, name: str, suffix: str) -> None:
    case = build_case(name)
    path = make_nifti(case.data, case.affine, name="scan" + suffix, **case.opts)
    volume = load_nifti(path)
    expected = spatial_volume(volume.data, str(path))
    i, j, k = expected.shape
    plane = i * j * expected.dtype.itemsize
    for block_bytes in (1, plane + 1, 2 * plane - 1, 4 * plane, 10**9):
        reader, got, starts = read_all(path, block_bytes=block_bytes, queue_blocks=1)
        per = max(1, min(k, block_bytes // plane))
        assert reader.planes_per_block == per
        assert starts == list(range(0, k, per))
        assert got.dtype == expected.dtype.newbyteorder("=") and got.dtype.isnative
        np.testing.assert_array_equal(got, expected)
    assert reader.shape == (i, j, k) and reader.path == str(path)
    assert reader.header.binaryblock == volume.header.binaryblock
    np.testing.assert_array_equal(reader.affine, volume.affine)
    assert reader.affine.dtype == np.float64
    assert (reader.slope, reader.inter, reader.ignored) == (
        volume.slope,
        volume.inter,
        volume.ignored,
    )


def test_blocks_are_fortran_planes_of_the_stored_values(make_nifti) -> None:
    data = np.arange(5 * 3 * 7, dtype=np.int16).reshape((5, 3, 7), order="F")
    path = make_nifti(data, name="ramp.nii.gz", endianness=">", slope=2.0, inter=1.0)
    with open_planes(path, block_bytes=2 * 5 * 3 * 2) as reader:
        blocks = list(reader)
    assert [(k0, b.shape) for k0, b in blocks] == [
        (0, (5, 3, 2)),
        (2, (5, 3, 2)),
        (4, (5, 3, 2)),
        (6, (5, 3, 1)),
    ]
    for k0, block in blocks:
        np.testing.assert_array_equal(block, data[:, :, k0 : k0 + block.shape[2]])
    assert (reader.slope, reader.inter, reader.dtype) == (2.0, 1.0, np.dtype(np.int16))


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 1, 5), (1, 9, 3), (6, 5, 1), (3, 4, 2, 1, 1)])
def test_odd_shapes_are_read(make_nifti, shape) -> None:
    data = np.random.default_rng(1).integers(0, 200, shape).astype(np.uint8)
    reader, got, _ = read_all(make_nifti(data, name="odd.nii.gz"), block_bytes=1)
    assert reader.shape == shape[:3]
    np.testing.assert_array_equal(got, data.reshape(shape[:3]))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", sorted(_fuzz.BAD_HEADERS))
def test_impossible_header_is_refused_as_load_nifti_refuses_it(
    tmp_path: Path, monkeypatch, case: str, suffix: str
) -> None:
    sources = _fuzz.source_files(tmp_path)
    folder = tmp_path / case
    folder.mkdir()
    path = _fuzz.write_case(folder, suffix, sources[suffix], _fuzz.BAD_HEADERS[case][0])
    with pytest.raises(ValueError) as expected:
        load_nifti(path)

    def no_read(*args):
        raise AssertionError("voxels were read")

    monkeypatch.setattr(_reader._Source, "run", no_read)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        open_planes(path)


def test_refusals_of_load_nifti(tmp_path: Path, true_4d: Path, make_nifti) -> None:
    with pytest.raises(FileNotFoundError, match=r"NIfTI file not found: .*absent\.nii\.gz"):
        open_planes(tmp_path / "absent.nii.gz")
    with pytest.raises(ValueError, match=r"3D volume, got an image of shape \(5, 4, 3, 3\) in"):
        open_planes(true_4d)
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = make_nifti(rgb, name="rgb.nii.gz")
    with pytest.raises(ValueError, match=r"unsupported NIfTI data type .*rgb\.nii\.gz"):
        open_planes(path)
    short = make_nifti(np.ones((40, 30, 20), np.int16), name="short.nii")
    short.write_bytes(short.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"short\.nii.*claims .*48000 bytes.*has only 47352"):
        open_planes(short)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(
            ValueError, match=rf"block_bytes must be a positive integer, got {bad}"
        ):
            open_planes(short, block_bytes=bad)
    assert stream_threads() == []


@pytest.mark.parametrize("block_bytes", [1, 10**9])
@pytest.mark.parametrize("inflater", ["isal", "zlib"])
@pytest.mark.parametrize("damage", CORRUPTIONS)
def test_damaged_gzip_is_refused_by_the_plane_reader(
    gz_volume, monkeypatch, damage: str, inflater: str, block_bytes: int
) -> None:
    path, blob, data = gz_volume
    corrupt, message = CORRUPTIONS[damage]
    path.write_bytes(corrupt(blob))
    if inflater == "zlib":
        monkeypatch.setattr(_gz, "_isal", lambda: None)  # as without isal installed
    planes = 0
    with pytest.raises(ValueError, match=rf"cannot read .*scan\.nii\.gz.*{message}"):
        with open_planes(path, block_bytes=block_bytes) as reader:
            for _, block in reader:  # a damaged voxel may be in one: the CRC comes last
                planes += block.shape[2]
    assert planes < data.shape[2]  # the last block waits for the end of the stream
    assert not reader._thread.is_alive()


@pytest.mark.parametrize("inflater", ["isal", "zlib"])
def test_multi_member_and_padded_gzip_is_read(gz_volume, monkeypatch, inflater: str) -> None:
    path, blob, data = gz_volume
    if inflater == "zlib":
        monkeypatch.setattr(_gz, "_isal", lambda: None)
    raw = gzip.decompress(blob)
    cuts = [0, 100, 5000, 5001, len(raw)]
    members = b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in itertools.pairwise(cuts))
    for variant in (members, members + b"\0" * 1000):
        path.write_bytes(variant)
        np.testing.assert_array_equal(read_all(path, block_bytes=1)[1], data)


def test_gzip_ending_before_the_voxels_is_refused(gz_volume) -> None:
    path, blob, _ = gz_volume
    raw = gzip.decompress(blob)
    path.write_bytes(gzip.compress(raw[:-700], mtime=0))  # a valid stream, 700 bytes short
    with pytest.raises(ValueError, match=r"scan\.nii\.gz.*ends after 11300 of the 12000 bytes"):
        read_all(path, block_bytes=1)


def open_fds_to(path: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    out = []
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                out.append(fd.name)
        except OSError:
            continue
    return out


@pytest.fixture
def big_gz(tmp_path: Path) -> Path:
    """A 64 MiB volume (256 planes of 256 x 256 int16), compressed."""
    data = np.zeros((256, 256, 256), np.int16)
    data[...] = np.arange(256, dtype=np.int16)
    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_closing_early_stops_the_thread_and_closes_the_file(big_gz: Path) -> None:
    reader = open_planes(big_gz, block_bytes=1, queue_blocks=2)
    time.sleep(0.2)  # the thread reads ahead, then waits for room
    assert reader._queue.qsize() <= 2 and reader._thread.is_alive()
    assert len(open_fds_to(big_gz)) == 1
    k0, block = next(iter(reader))
    assert k0 == 0 and block.shape == (256, 256, 1)
    start = time.monotonic()
    reader.close()
    assert time.monotonic() - start < 1.0
    assert not reader._thread.is_alive() and open_fds_to(big_gz) == []
    with pytest.raises(RuntimeError, match=r"big\.nii\.gz.*read already"):
        iter(reader)


def test_a_consumer_that_raises_or_drops_the_reader_stops_the_thread(big_gz: Path) -> None:
    with pytest.raises(ZeroDivisionError), open_planes(big_gz, block_bytes=1) as reader:
        for _ in reader:
            raise ZeroDivisionError
    assert not reader._thread.is_alive()
    for k0, _ in open_planes(big_gz, block_bytes=1):  # never closed, never referenced again
        if k0 == 3:
            break
    dropped = open_planes(big_gz, block_bytes=1)
    thread = dropped._thread
    del dropped
    gc.collect()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_reader_memory_does_not_grow_with_the_planes(tmp_path: Path) -> None:
    # Peak traced memory while reading 400 and 4000 planes of 128 x 128 int16 (12.5 and 125 MiB)
    # in blocks of 4 planes: (queue_blocks + 2) blocks plus the inflater's output (two 4 MiB
    # chunks at most: the one being made and the one before it), both times.
    plane = 128 * 128 * 2
    peaks = []
    for k in (400, 4000):
        path = tmp_path / f"k{k}.nii.gz"
        data = np.broadcast_to(np.arange(k, dtype=np.int16), (128, 128, k))
        write_in_blocks(path, data, _header((128, 128, k), np.int16), 64)
        gc.collect()
        tracemalloc.start()
        try:
            wrong = 0
            with open_planes(path, block_bytes=4 * plane, queue_blocks=2) as reader:
                for k0, block in reader:
                    wrong += int(block[0, 0, -1]) - (k0 + block.shape[2] - 1)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert wrong == 0
    assert max(peaks) < 4 * 4 * plane + 2 * _gz._GZ_OUT + 2**20, peaks
    assert peaks[1] < peaks[0] + 2**20, peaks


# --------------------------------------------------------------------------- writing


def _header(shape, dtype, klass=nib.Nifti1Header) -> nib.Nifti1Header:
    header = klass()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(np.diag([0.5, 0.75, 2.5, 1.0]), code=2)
    return header


def assert_same_file(ours: Path, reference: Path) -> None:
    """The same decompressed bytes, and so the same header fields and voxels for nibabel."""
    a, b = nib.load(ours), nib.load(reference)
    assert type(a) is type(b)
    for key in b.header:
        np.testing.assert_array_equal(a.header[key], b.header[key], err_msg=key)
    np.testing.assert_array_equal(a.dataobj.get_unscaled(), b.dataobj.get_unscaled())
    assert (a.dataobj.slope, a.dataobj.inter) == (b.dataobj.slope, b.dataobj.inter)
    assert gunzipped(ours) == gunzipped(reference)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("name", CASES)
def test_writer_writes_what_save_nifti_writes(make_nifti, tmp_path: Path, name, suffix) -> None:
    case = build_case(name)
    volume = load_nifti(make_nifti(case.data, case.affine, **case.opts))
    reference, ours = tmp_path / ("reference" + suffix), tmp_path / ("ours" + suffix)
    save_nifti(reference, volume.data, volume.header, slope=volume.slope, inter=volume.inter)
    planes = spatial_volume(volume.data)
    for per_block in (1, 4, 100):
        write_in_blocks(
            ours, planes, volume.header, per_block, slope=volume.slope, inter=volume.inter
        )
        assert_same_file(ours, reference)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        [reference.name, ours.name]
    )


@pytest.mark.parametrize(
    ("shape", "dtype", "klass"),
    [
        ((1, 1, 1), np.uint8, nib.Nifti1Header),
        ((6, 5, 1), np.int16, nib.Nifti1Header),
        ((7, 3, 5), np.float64, nib.Nifti2Header),
        ((4, 6, 3, 1), np.float32, nib.Nifti2Header),
        ((5, 4, 3), ">i2", nib.Nifti1Header),
    ],
)
def test_odd_headers_are_written_as_save_nifti_writes_them(tmp_path, shape, dtype, klass) -> None:
    header = _header(shape, dtype, klass)
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"streamed"))
    data = (
        np.random.default_rng(0).integers(0, 100, shape).astype(np.dtype(dtype).newbyteorder("="))
    )
    save_nifti(tmp_path / "reference.nii.gz", data, header, slope=0.5, inter=-3.0)
    write_in_blocks(
        tmp_path / "ours.nii.gz", data.reshape(shape[:3]), header, 2, slope=0.5, inter=-3.0
    )
    assert_same_file(tmp_path / "ours.nii.gz", tmp_path / "reference.nii.gz")


def test_read_then_write_round_trips_a_file(nifti_case, tmp_path: Path) -> None:
    path, _ = nifti_case("scaled")
    out = tmp_path / "copy.nii.gz"
    with (
        open_planes(path, block_bytes=1) as reader,
        PlaneWriter(out, reader.header, slope=reader.slope, inter=reader.inter) as writer,
    ):
        for _, block in reader:
            writer.write(block)
    assert gunzipped(out) == gunzipped(path)


def test_blocks_are_cast_exactly_or_refused(tmp_path: Path) -> None:
    header = _header((3, 2, 4), np.int16, lambda: nib.Nifti1Header(endianness=">"))
    path = tmp_path / "cast.nii.gz"
    exact = np.arange(24, dtype=np.float64).reshape((3, 2, 4)) - 5
    with PlaneWriter(path, header) as out:
        out.write(exact[:, :, :1])
        out.write(exact[:, :, 1:3].astype(np.int8))
        out.write(exact[:, :, 3:] > 0)  # bool -> int16 is safe
    stored = np.asarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(stored[:, :, :3], exact[:, :, :3])
    np.testing.assert_array_equal(stored[:, :, 3], exact[:, :, 3] > 0)
    for bad, value in (
        (np.full((3, 2, 1), 0.5), r"0\.5"),
        (np.full((3, 2, 1), np.nan), "nan"),
        (np.full((3, 2, 1), 40000, dtype=np.int32), "40000"),
        (np.full((3, 2, 1), 2**16 - 1, dtype=np.uint16), "65535"),
    ):
        with pytest.raises(
            ValueError, match=rf"{bad.dtype} values .*cast\.nii\.gz.*stored type >i2: got {value}"
        ):
            with PlaneWriter(path, header) as out:
                out.write(bad)
    assert [p.name for p in tmp_path.iterdir()] == ["cast.nii.gz"]
    header = _header((2, 2, 1), np.float32)
    with pytest.raises(ValueError, match=r"float64 values .* float32: got 0\.1"):
        with PlaneWriter(tmp_path / "f.nii", header) as out:
            out.write(np.full((2, 2, 1), 0.1))


def folder_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nothing_is_left_behind_on_failure(tmp_path: Path) -> None:
    header = _header((4, 3, 5), np.int16)
    dest = tmp_path / "out.nii.gz"
    dest.write_bytes(b"previous result")
    planes = np.ones((4, 3, 5), np.int16)

    writer = PlaneWriter(dest, header)
    writer.write(planes[:, :, :2])
    names = [n for n in folder_files(tmp_path) if n != dest.name]
    assert len(names) == 1 and _atomic._TMP_PATTERN.match(names[0])
    assert str(tmp_path / names[0]) in _atomic._IN_PROGRESS
    writer.abort()
    assert folder_files(tmp_path) == ["out.nii.gz"] and not writer._thread.is_alive()

    with pytest.raises(
        ValueError, match=r"out\.nii\.gz.* was not written: .*5 planes of 4 x 3, 3"
    ):
        with PlaneWriter(dest, header) as writer:
            writer.write(planes[:, :, :3])
    with pytest.raises(ValueError, match=r"out\.nii\.gz.* holds 5 planes: 4 written, 2 more"):
        with PlaneWriter(dest, header) as writer:
            writer.write(planes[:, :, :4])
            writer.write(planes[:, :, :2])
    with pytest.raises(ValueError, match=r"shape \(4, 3, n\), n >= 1, got \(3, 4, 1\)"):
        with PlaneWriter(dest, header) as writer:
            writer.write(np.ones((3, 4, 1), np.int16))
    with pytest.raises(KeyError), PlaneWriter(dest, header) as writer:
        writer.write(planes[:, :, :5])
        raise KeyError("the consumer failed after the last plane")
    assert folder_files(tmp_path) == ["out.nii.gz"]
    assert dest.read_bytes() == b"previous result"
    with pytest.raises(ValueError, match=r"the writer of .*out\.nii\.gz.* is closed"):
        writer.write(planes[:, :, :1])

    with PlaneWriter(dest, header) as writer:
        writer.write(planes)
    assert folder_files(tmp_path) == ["out.nii.gz"]
    np.testing.assert_array_equal(nib.load(dest).get_fdata(), planes)


def test_writer_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    header = _header((4, 3, 5), np.int16)
    with pytest.raises(ValueError, match=r"must end with \.nii or \.nii\.gz, got .*out\.img"):
        PlaneWriter(tmp_path / "out.img", header)
    with pytest.raises(ValueError, match=r"compress=False contradicts the suffix of .*o\.nii\.gz"):
        PlaneWriter(tmp_path / "o.nii.gz", header, compress=False)
    with pytest.raises(ValueError, match=r"3D volume, got an image of shape \(4, 3, 5, 2\)"):
        PlaneWriter(tmp_path / "o.nii.gz", _header((4, 3, 5, 2), np.int16))
    with pytest.raises(ValueError, match=r"NIfTI-1 or NIfTI-2 header, got"):
        PlaneWriter(tmp_path / "o.nii.gz", nib.AnalyzeHeader())
    with pytest.raises(FileNotFoundError):
        PlaneWriter(tmp_path / "missing" / "o.nii.gz", header)
    assert folder_files(tmp_path) == []


def test_disk_full_names_the_path_and_the_free_space(tmp_path: Path, monkeypatch) -> None:
    class Full:
        closed = False

        def __init__(self, raw, threads=1):
            self.raw = raw

        def discard(self):
            self.closed = True

        def write(self, data):
            self.raw.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_writer, "GzipWriter", Full)
    dest = tmp_path / "result.nii.gz"
    with pytest.raises(OSError, match=r"no space left to write .*result\.nii\.gz.*free in") as err:
        with PlaneWriter(dest, _header((3, 3, 3), np.int16)) as out:
            out.write(np.ones((3, 3, 3), np.int16))
    assert err.value.errno == errno.ENOSPC
    assert folder_files(tmp_path) == []


def test_a_real_full_disk_fails_cleanly(small_filesystem: Path) -> None:
    noise = np.random.default_rng(0).integers(-32768, 32767, (200, 200, 100)).astype(np.int16)
    with pytest.raises(
        OSError, match=r"no space left to write .*result\.nii\.gz.: [0-9.]+ MiB free in"
    ):
        write_in_blocks(small_filesystem / "result.nii.gz", noise, _header(noise.shape, "i2"), 5)
    assert folder_files(small_filesystem) == []
    # 8 MB of zeros compress to a few KB: they fit, written as they come.
    write_in_blocks(small_filesystem / "zeros.nii.gz", noise * 0, _header(noise.shape, "i2"), 5)
    assert folder_files(small_filesystem) == ["zeros.nii.gz"]


# --------------------------------------------------------------------------- bigger than memory


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="RLIMIT_AS is Linux's")
def test_a_volume_larger_than_the_address_space_streams_through(tmp_path: Path) -> None:
    # 1.2 GiB of voxels (1024 x 1024 x 600 uint16, plane k filled with k) under a 1 GiB cap,
    # where the volume cannot be allocated: written, read and copied, and the copy read back,
    # plane by plane in the capped process.
    src, dst = tmp_path / "huge.nii.gz", tmp_path / "copy.nii.gz"
    out = run_limited(
        f"""
        import numpy as np, nibabel as nib
        from napari_resample.io.plane_reader import open_planes
        from napari_resample.io.plane_writer import PlaneWriter
        shape = (1024, 1024, 600)
        try:
            np.ones(shape, np.uint16)
        except MemoryError:
            print("the volume does not fit")
        header = nib.Nifti1Header()
        header.set_data_shape(shape)
        header.set_data_dtype(np.uint16)
        with PlaneWriter({str(src)!r}, header) as out:
            for k0 in range(0, 600, 8):
                out.write(np.broadcast_to(np.arange(k0, k0 + 8, dtype=np.uint16), (1024, 1024, 8)))
        bad = planes = 0
        with open_planes({str(src)!r}) as reader, PlaneWriter({str(dst)!r}, reader.header) as out:
            for k0, block in reader:
                bad += int(np.count_nonzero(block != np.arange(k0, k0 + block.shape[2])))
                planes += block.shape[2]
                out.write(block)
        copied = 0
        for k0, block in open_planes({str(dst)!r}):
            copied += int(np.count_nonzero(block == np.arange(k0, k0 + block.shape[2])))
        print("planes", planes, "bad", bad, "copied", copied)
        """,
        limit_bytes=1 << 30,
        timeout=300,
    )
    assert "the volume does not fit" in out, out
    assert f"planes 600 bad 0 copied {1024 * 1024 * 600}" in out, out
    assert nib.load(dst).shape == (1024, 1024, 600)


def test_the_same_volume_gives_the_same_gz_bytes_however_its_blocks_come(tmp_path: Path) -> None:
    # The blocks follow the memory budget (and the worker count): the file must not, or a
    # dataset's hashes would depend on the machine. 96 x 96 x 60 int16 noise: over 1 MiB.
    rng = np.random.default_rng(3)
    data = rng.integers(-1000, 3000, (96, 96, 60), dtype=np.int16)
    header = _header(data.shape, np.int16, nib.Nifti1Header)
    files = [write_in_blocks(tmp_path / f"b{per}.nii.gz", data, header, per) for per in (1, 7, 60)]
    blobs = {Path(f).read_bytes() for f in files}
    assert len(blobs) == 1
