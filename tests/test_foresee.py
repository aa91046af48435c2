"""Held output finished and compressed ahead of time (engine/held.py, io/gzip_write.py): the
work is used only when it is exactly what is written, and never changes a byte of the file."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest

from napari_resample import resampling
from napari_resample.engine import held as _held
from napari_resample.engine.geometry import grid_positions
from napari_resample.engine.stream import array_blocks, run_stream
from napari_resample.engine.stream_plan import plan_stream
from napari_resample.io import gzip_write as _gzw
from napari_resample.pipeline import streamed as _streamed


def _noise(n: int, seed: int = 0) -> bytes:
    """Bytes that compress like a noisy CT (several GZIP_BLOCKs of them)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 300, n // 2).astype(np.int16)).tobytes()


def _packed(
    data: bytes,
    threads: int,
    ahead: tuple[int, bytes] | None,
    calls: list,
    cut_at: int = 3 * _gzw.GZIP_BLOCK + 1000,
) -> bytes:
    """*data* through a GzipWriter; *ahead* foreseen first, in two pieces cut at stream byte
    *cut_at* (and waited for); the blocks compressed ahead are appended to *calls*."""
    out = io.BytesIO()
    with _gzw.GzipWriter(out, threads) as stream:
        if ahead is not None:
            offset, guess = ahead
            cut = cut_at - offset
            stream.foresee(offset, guess[:cut])
            stream.foresee(offset + cut, guess[cut:])
            for job in stream._ahead.values():  # the test waits; the writer never does
                job.done.result()
            calls.append(sorted(stream._ahead))
        stream.write(data[:1000])
        stream.write(data[1000:])
    return out.getvalue()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "seam", [3 * _gzw.GZIP_BLOCK + 1000, 4 * _gzw.GZIP_BLOCK - 100, 4 * _gzw.GZIP_BLOCK]
)
def test_blocks_foreseen_right_are_used_and_the_bytes_do_not_change(monkeypatch, threads, seam):
    data = _noise(6 * _gzw.GZIP_BLOCK + 1234)
    deflated = []
    real = _gzw.deflate_block

    def counted(z, block, window):
        deflated.append(len(block))
        return real(z, block, window)

    monkeypatch.setattr(_gzw, "deflate_block", counted)
    plain = _packed(data, threads, None, [])
    blocks = len(deflated)
    assert blocks == 7  # six whole blocks and the rest
    deflated.clear()
    offset = 100_000  # foreseen from the middle of block 0 to the end
    foreseen: list = []
    ahead = _packed(data, threads, (offset, data[offset:]), foreseen, seam)
    assert ahead == plain
    assert gzip.decompress(ahead) == data
    # blocks 1-5 lie whole after offset + 32 KiB (those at the seam across the two pieces,
    # their data or their dictionary): compressed once, ahead; none twice
    assert foreseen == [[1, 2, 3, 4, 5]]
    assert len(deflated) == blocks


@pytest.mark.parametrize("threads", [1, 2])
def test_blocks_foreseen_wrong_are_compressed_again(monkeypatch, threads):
    data = _noise(5 * _gzw.GZIP_BLOCK)
    guess = bytearray(data)
    guess[3 * _gzw.GZIP_BLOCK + 7] ^= 0xFF  # one byte of block 3 differs
    guess[2 * _gzw.GZIP_BLOCK - 5] ^= 0xFF  # and one in block 2's window... of block 2
    deflated = []
    real = _gzw.deflate_block
    monkeypatch.setattr(_gzw, "deflate_block", lambda z, b, w: deflated.append(1) or real(z, b, w))
    plain = _packed(data, threads, None, [])
    blocks = len(deflated)
    deflated.clear()
    assert _packed(data, threads, (0, bytes(guess)), []) == plain
    # blocks 1-4 foreseen; block 1 (its last bytes) and block 2 (its window) and block 3
    # differ: compressed again; block 4 is used
    assert len(deflated) == blocks + 3


def test_a_foreseen_block_not_done_in_time_is_not_waited_for(monkeypatch):
    data = _noise(4 * _gzw.GZIP_BLOCK)
    plain = _packed(data, 1, None, [])
    out = io.BytesIO()
    with _gzw.GzipWriter(out, 1) as stream:
        from concurrent.futures import Future

        never: Future = Future()  # a compression that never ends (a starved thread)
        stream._ahead[2] = _gzw._Foreseen(data[2 * _gzw.GZIP_BLOCK :], b"", never)
        stream.write(data)
    assert out.getvalue() == plain
    assert never.cancelled()


def _ct(shape, top_at: int | None, seed: int = 0) -> np.ndarray:
    """An int16 CT-like volume (noisy air down to -1024 from the first plane, a noisy body)
    whose maximum is reached at plane *top_at*, Fortran-ordered (streamed along k)."""
    rng = np.random.default_rng(seed)
    i, j, _ = np.indices(shape)
    body = ((i - shape[0] / 2) ** 2 + (j - shape[1] / 2) ** 2) < (shape[0] / 3) ** 2
    noise = rng.normal(0, 20, shape)
    data = np.where(body, 40 + noise, -1024 + np.abs(noise)).astype(np.int16)
    data[0, 0, 0] = -1024  # the air's floor, from the first plane
    if top_at is not None:
        data[shape[0] // 2, shape[1] // 2, top_at] = 3000
    return np.asfortranarray(data)


def _run(data, size, foresee):
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, size, "origin"), "bspline"
    )
    out = np.zeros(size, data.dtype)

    def emit(k0, block):
        out[:, :, k0 : k0 + block.shape[2]] = block

    run_stream(
        array_blocks(data, data.shape, 4), plan, emit, out_dtype=data.dtype, foresee=foresee
    )
    return out


def test_held_planes_are_foreseen_once_the_range_looks_final_and_match_what_is_emitted():
    data = _ct((40, 36, 120), top_at=10)  # the range is final after plane 10
    size = (20, 18, 50)
    seen = {}

    def foresee(k0, block):
        assert k0 not in seen  # each chunk at most once
        seen[k0] = block.copy()

    out = _run(data, size, foresee)
    assert seen, "nothing foreseen"
    # only once 3/4 of the input planes were in
    assert min(seen) >= 0 and len(seen) < size[2]
    for k0, block in seen.items():
        np.testing.assert_array_equal(block, out[:, :, k0 : k0 + block.shape[2]])
    np.testing.assert_array_equal(out, _run(data, size, None))


def test_a_range_that_moves_after_the_guess_changes_nothing_emitted():
    # the spline undershoots the air at the body's edge, and the guess clamps it to -1024;
    # then a lower value arrives in the last planes, after the guess, and the clamp moves
    data = _ct((40, 36, 120), top_at=None)
    data[0, 0, 117] = -2048
    size = (60, 54, 50)  # upsampled in plane: no antialias smooths the edge
    seen = {}
    out = _run(data, size, lambda k0, block: seen.setdefault(k0, block.copy()))
    assert seen
    differ = [
        k0
        for k0, block in seen.items()
        if not np.array_equal(block, out[:, :, k0 : k0 + block.shape[2]])
    ]
    assert differ, "the guess was right: the test does not test a wrong one"
    np.testing.assert_array_equal(out, _run(data, size, None))


def test_the_range_must_be_steady_and_most_planes_in():
    assert _held.looks_final(90, 120, _held.FORESEE_STEADY)
    assert not _held.looks_final(89, 120, 89)  # under 3/4 of the planes
    assert not _held.looks_final(119, 120, _held.FORESEE_STEADY - 1)  # moved lately


def test_a_file_written_with_foresight_is_the_file_written_without(tmp_path, monkeypatch):
    # 320 kB planes: the reader's 4 MB blocks hold 13 of them, so planes keep coming after
    # the range has looked final for a while
    data = _ct((400, 400, 64), top_at=5)
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.5, 1])), src)
    hints = []
    real = _streamed.open_writer

    def spying(*args, **kwargs):
        writer = real(*args, **kwargs)
        foresee = writer.foresee
        writer.foresee = lambda k0, block: hints.append(k0) or foresee(k0, block)
        return writer

    monkeypatch.setattr(_streamed, "open_writer", spying)
    resampling(src, tmp_path / "with", (150, 150, 40), interpolation="bspline")
    assert hints, "the pipeline never foresaw the held output"
    monkeypatch.setattr(_streamed, "foresee_fits", lambda *a: False)
    hints.clear()
    resampling(src, tmp_path / "without", (150, 150, 40), interpolation="bspline")
    assert not hints
    a = (tmp_path / "with" / "ct_resampled.nii.gz").read_bytes()
    b = (tmp_path / "without" / "ct_resampled.nii.gz").read_bytes()
    assert a == b


def test_only_a_gzip_writer_asks_for_planes_ahead(tmp_path):
    from napari_resample.io.plane_writer import PlaneWriter

    header = nib.Nifti1Header()
    header.set_data_shape((2, 2, 2))
    header.set_data_dtype(np.int16)
    for name, wanted in (("a.nii.gz", True), ("a.nii", False)):
        writer = PlaneWriter(tmp_path / name, header)
        assert writer.foresees is wanted
        writer.abort()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("order", ["F", "C"])
def test_planes_handed_over_are_written_as_copies_are(tmp_path, order):
    from napari_resample.io.nifti import save_nifti
    from napari_resample.io.plane_writer import PlaneWriter

    data = _ct((50, 40, 30), top_at=3)
    header = nib.Nifti1Image(data, np.eye(4)).header
    save_nifti(tmp_path / "whole.nii.gz", data, header)
    with PlaneWriter(tmp_path / "planes.nii.gz", header) as writer:
        for k in range(0, 30, 7):
            block = np.array(data[:, :, k : k + 7], order=order)  # the caller's, handed over
            writer.write(block, handed_over=True)
    assert (tmp_path / "planes.nii.gz").read_bytes() == (tmp_path / "whole.nii.gz").read_bytes()


def test_foresight_is_asked_only_when_its_copies_fit_the_budget():
    from napari_resample.engine.stream_plan import foresee_fits, stream_budget

    data = _ct((64, 60, 96), top_at=5)
    positions = grid_positions(data.shape, (80, 72, 50), "origin")
    plan = plan_stream(data.shape, data.dtype, positions, "bspline")
    copies = 2 * 80 * 72 * 50 * data.dtype.itemsize  # the output finished, and compressed
    answers = set()
    for budget in range(1 << 20, 64 << 20, 1 << 19):
        need, held, _ = stream_budget(plan, data.dtype, budget)  # chunks shrink with it
        answers.add(foresee_fits(plan, data.dtype, budget))
        assert foresee_fits(plan, data.dtype, budget) == (need + held + copies <= budget)
    assert answers == {True, False}
    nearest = plan_stream(data.shape, data.dtype, positions, "nearest")
    assert not foresee_fits(nearest, data.dtype, 1 << 30)  # nothing held: nothing to foresee
