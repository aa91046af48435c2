"""Memory bombs are refused before anything large is allocated (docs/decisions.md, D7, D13).

A small file whose header claims gigabytes, or a request whose output cannot fit, must end in an
error that says so, quickly, instead of allocating (and zeroing) what was claimed. The bomb tests
run in a child process whose address space is capped (:mod:`_limits`), so that a regression
fails with a MemoryError there instead of taking the machine down.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _limits import LIMIT, run_limited
from napari_resample import resample_array
from napari_resample.engine import memory as _memory
from napari_resample.engine.resample import estimate_memory
from napari_resample.io.nifti import load_nifti


def header_bytes(shape: tuple[int, ...], dtype: str) -> bytes:
    """A NIfTI-1 header (and the 4 bytes of extension flags) claiming *shape* voxels."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4


def gz_bomb(path: Path, shape: tuple[int, ...], dtype: str) -> Path:
    """A ~12.7 KB .nii.gz: the header, then 13 MB of zeros, compressed as hard as gzip can."""
    path.write_bytes(gzip.compress(header_bytes(shape, dtype) + bytes(13_000_000), 9, mtime=0))
    return path


def claimed(shape, dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


@pytest.mark.parametrize(
    ("shape", "dtype"), [((1024, 1024, 768), "int16"), ((1024, 1024, 1280), "float32")]
)
def test_small_gz_claiming_gigabytes_is_refused_before_allocating(tmp_path, shape, dtype) -> None:
    path = gz_bomb(tmp_path / "bomb.nii.gz", shape, dtype)
    assert path.stat().st_size < 13_000 and claimed(shape, dtype) >= LIMIT  # 1.5 GiB, 5 GiB
    start = time.monotonic()
    out = run_limited(
        f"""
        from napari_resample import resampling
        from napari_resample.io.nifti import load_nifti
        for read in (lambda: load_nifti({str(path)!r}),
                     lambda: resampling({str(path)!r}, {str(tmp_path / "out")!r}, (4, 4, 4))):
            try:
                read()
            except ValueError as exc:
                print("refused:", exc)
        """
    )
    assert time.monotonic() - start < 30
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("refused:") for line in lines), out
    for line in lines:
        assert "bomb.nii.gz" in line and "claims" in line, line
        assert str(claimed(shape, dtype)) in line and str(path.stat().st_size) in line, line
    assert not (tmp_path / "out").exists()


def test_short_uncompressed_file_is_refused(tmp_path) -> None:
    # A .nii holding less than vox_offset + the voxel bytes its header claims.
    path = tmp_path / "short.nii"
    nib.save(nib.Nifti1Image(np.ones((40, 30, 20), np.int16), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(
        ValueError, match=r"short\.nii.*claims .*48000 bytes.*has only 47352 bytes"
    ):
        load_nifti(path)
    bomb = tmp_path / "bomb.nii"
    bomb.write_bytes(header_bytes((1024, 1024, 1024), "float32"))
    out = run_limited(
        f"from napari_resample.io.nifti import load_nifti\nload_nifti({str(bomb)!r})"
    )
    assert "ERROR ValueError" in out and "has only 352 bytes" in out, out


def test_read_needing_more_than_available_memory_is_refused(tmp_path, monkeypatch) -> None:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((40, 30, 20), np.int16), np.eye(4)), path)
    monkeypatch.setattr(_memory, "available_memory", lambda: 10_000)
    with pytest.raises(MemoryError, match=r"scan\.nii\.gz.*48000 bytes.*9\.8 KiB is available"):
        load_nifti(path)
    monkeypatch.setattr(_memory, "available_memory", lambda: None)  # unknown: not checked
    assert load_nifti(path).data.shape == (40, 30, 20)


def test_resampling_needing_more_than_available_memory_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(_memory, "available_memory", lambda: 2**30)
    with pytest.raises(MemoryError, match=r"\(2, 2, 2\).*\(2048, 2048, 2048\).*GiB.*1\.0 GiB"):
        resample_array(np.zeros((2, 2, 2), np.uint8), (2048, 2048, 2048))
    assert resample_array(np.zeros((2, 2, 2), np.uint8), (256, 256, 256))[0].shape[0] == 256


@pytest.mark.parametrize(
    ("shape", "size", "antialias"),
    [
        ((2, 2, 2), (32766, 2, 2), False),
        ((4000, 2, 2), (32766, 2, 2), False),  # a dense operator: 1 GB
        ((30000, 2, 2), (4, 2, 2), True),  # a dense Gaussian: 7 GB
    ],
)
def test_long_axes_resample_in_little_memory(shape, size, antialias) -> None:
    start = time.monotonic()
    out = run_limited(
        f"""
        import numpy as np
        from napari_resample import resample_array
        out, _ = resample_array(np.zeros({shape}), {size}, antialias={antialias})
        print("shape", out.shape)
        """
    )
    assert f"shape {size}" in out, out
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("shape", "size", "interpolation", "dtype"),
    [
        ((60, 50, 40), (120, 100, 80), "bspline", "int16"),
        ((60, 50, 40), (30, 25, 90), "linear", "float32"),
        ((60, 50, 40), (31, 77, 40), "bspline", "float64"),
        ((40, 30, 20), (90, 70, 50), "label", "uint8"),
        ((60, 50, 40), (90, 20, 40), "nearest", "int32"),
        ((160, 144, 128), (300, 200, 150), "bspline", "int16"),
        ((160, 144, 128), (112, 100, 72), "linear", "int16"),
        ((160, 144, 128), (160, 200, 128), "label", "int16"),
    ],
)
def test_memory_estimate_covers_what_is_allocated(shape, size, interpolation, dtype) -> None:
    data = np.random.default_rng(0).integers(0, 5, size=shape).astype(dtype)
    resample_array(data, (4, 4, 4), interpolation=interpolation)  # imports outside the trace
    tracemalloc.start()
    try:
        resample_array(data, size, interpolation=interpolation)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = estimate_memory(shape, dtype, size, interpolation)
    assert peak <= estimate <= 8 * peak + 2**25, (peak, estimate)
