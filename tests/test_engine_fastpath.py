"""The fast separable engine (docs/decisions.md, D13): correctness against independent references.

The engine applies one sparse matrix per axis, slab by slab on a thread pool. These tests check
it against references that share none of that code: ``scipy.ndimage.map_coordinates`` on the
full 3D grid (cubic B-spline with its own mirror prefilter, or linear with clamped coordinates)
for every dtype and awkward size, and SimpleITK's B-spline resampler where ITK agrees with the
mirror boundary (axes of 3 voxels or more). Tolerances are D13's accuracy targets: relative
RMS <= 1e-6 and max |diff| <= 1e-3 of the input's range (plus the 0.5 of rounding for integers).
No test here measures time.
"""

from __future__ import annotations

import itertools
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import napari_resample
from _references import itk_resample
from napari_resample import resample_array
from napari_resample.engine import operators as _operators
from napari_resample.engine import stream as _stream
from napari_resample.engine import stream_plan as _stream_plan
from napari_resample.engine import threads as _threads
from napari_resample.engine import vote as _vote
from napari_resample.engine.geometry import sample_positions

DTYPES = ["int8", "int16", "int32", "uint8", "uint16", "float32", "float64"]
# (input shape, output size): odd sizes, 1 and 2 on an axis, down- and upsampling, mixed.
SHAPES = [
    ((17, 12, 9), (7, 5, 4)),
    ((9, 11, 6), (20, 23, 13)),
    ((2, 15, 8), (5, 6, 8)),
    ((13, 2, 7), (13, 1, 16)),
    ((1, 10, 9), (3, 4, 9)),
    ((12, 9, 1), (5, 9, 2)),
    ((16, 13, 11), (16, 26, 5)),
]


def volume(shape, dtype: str, seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise, spanning most of the type's range (or -1000..3000)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    v = (
        np.sin(2 * grids[0] + 1) * np.cos(3 * grids[1])
        + grids[2]
        + 0.3 * rng.standard_normal(shape)
    )
    v = (v - v.min()) / max(np.ptp(v), 1e-12)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -1000), min(info.max, 3000)
        return np.rint(lo + (hi - lo) * v).astype(dtype)
    return (-1000 + 4000 * v).astype(dtype)


def reference(data: np.ndarray, size, interpolation: str, anchor: str) -> np.ndarray:
    """float64 result by map_coordinates on the whole grid, clamped to the input's range."""
    x = np.asarray(data, dtype=np.float64)
    pos = [sample_positions(n, m, anchor) for n, m in zip(x.shape, size, strict=True)]
    coords = np.array(np.meshgrid(*pos, indexing="ij"))
    if interpolation == "bspline":
        out = ndimage.map_coordinates(x, coords, order=3, mode="mirror", prefilter=True)
    else:  # linear holds the edge value: clamped coordinates
        hi = np.array(x.shape, dtype=np.float64).reshape(3, 1, 1, 1) - 1
        out = ndimage.map_coordinates(x, np.clip(coords, 0, hi), order=1, mode="nearest")
    return np.clip(out, x.min(), x.max())


def check_accuracy(got: np.ndarray, ref: np.ndarray, data: np.ndarray) -> None:
    span = max(float(data.max()) - float(data.min()), 1.0)
    diff = got.astype(np.float64) - ref
    rounding = 0.5 if got.dtype.kind in "iu" else 0.0
    assert np.abs(diff).max() <= rounding + 1e-3 * span
    if rounding:
        # Integers: rounded to nearest, so within 0.5 (+ float32 noise) of the exact value.
        assert np.abs(diff).max() <= 0.5 + 1e-5 * span
    else:
        rel_rms = np.sqrt(np.mean(diff**2) / max(np.mean(ref**2), 1e-300))
        assert rel_rms <= 1e-6


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("shape, size", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_matches_independent_reference(interpolation, dtype, shape, size, anchor) -> None:
    data = volume(shape, dtype)
    got, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    assert got.shape == size and got.dtype == data.dtype
    check_accuracy(got, reference(data, size, interpolation, anchor), data)


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("shape, size", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest_is_exact_indexing(dtype, shape, size, anchor) -> None:
    data = volume(shape, dtype)
    got, _ = resample_array(data, size, interpolation="nearest", anchor=anchor)
    idx = [
        np.clip(np.floor(sample_positions(n, m, anchor) + 0.5), 0, n - 1).astype(int)
        for n, m in zip(shape, size, strict=True)
    ]
    np.testing.assert_array_equal(got, data[np.ix_(*idx)])


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize(
    "shape, size",
    [((20, 17, 9), (8, 7, 5)), ((9, 8, 7), (21, 16, 12)), ((15, 12, 10), (6, 12, 23))],
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_bspline_meets_issue_targets_against_simpleitk(dtype, shape, size, anchor) -> None:
    sitk = pytest.importorskip("SimpleITK")
    data = volume(shape, dtype, seed=3)
    x = data.astype(np.float64)
    ref = itk_resample(sitk, data, size, anchor, sitk.sitkBSpline)
    ref = np.clip(ref, x.min(), x.max())
    # ITK writes its default 0 at continuous index >= N - 1/2, where we extrapolate.
    keep = [sample_positions(n, m, anchor) < n - 0.5 for n, m in zip(shape, size, strict=True)]
    work = data if dtype != "int16" else data.astype(np.float32)  # before rounding
    got, _ = resample_array(work, size, anchor=anchor)
    sel = np.ix_(*keep)
    check_accuracy(got[sel], ref[sel], data)
    rounded, _ = resample_array(data, size, anchor=anchor)
    assert np.abs(rounded[sel] - ref[sel]).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_slab_cutting_does_not_change_the_result(monkeypatch, interpolation, antialias) -> None:
    # Slabs of one index (and a ragged last slab) must give what one big slab gives.
    data = volume((23, 19, 14), "float64", seed=5)
    size = (9, 31, 6)
    whole, _ = resample_array(data, size, interpolation=interpolation, antialias=antialias)
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    sliced, _ = resample_array(data, size, interpolation=interpolation, antialias=antialias)
    np.testing.assert_allclose(sliced, whole, rtol=0, atol=1e-12 * np.abs(whole).max())


def test_every_plan_gives_the_same_result(monkeypatch) -> None:
    # The cost model only picks among equivalent orders; force each and compare.
    data = volume((14, 12, 10), "float64", seed=6)
    size = (9, 17, 6)
    expected = reference(data, size, "bspline", "origin")
    for order in itertools.permutations(range(3)):
        monkeypatch.setattr(_stream_plan, "step_order", lambda *a, order=order: list(order))
        got, _ = resample_array(data, size)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.ptp(data))


def test_antialias_equals_dense_operator_product() -> None:
    # antialias=True is the Gaussian, then the interpolator, along each downsampled axis.
    data = volume((24, 20, 8), "float64", seed=7)
    size = (7, 9, 8)
    got, _ = resample_array(data, size, antialias=True)
    expected = data
    for axis in range(3):
        m = _operators.axis_matrix(data.shape[axis], size[axis], "bspline", "origin", True)
        expected = np.moveaxis(np.tensordot(m, np.moveaxis(expected, axis, 0), axes=1), 0, axis)
    expected = np.clip(expected, data.min(), data.max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.ptp(data))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16"])
def test_no_float64_copy_for_small_integers(monkeypatch, dtype) -> None:
    data = volume((160, 144, 128), dtype)
    size = (112, 100, 72)
    resample_array(data, (8, 8, 8))  # import and warm up outside the trace
    # Small slabs, so that the bound below measures full-size arrays, not per-thread buffers.
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1 << 14)
    tracemalloc.start()
    try:
        resample_array(data, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # A float64 copy of the input alone would be 8 bytes per voxel, a float32 one 4; the
    # engine's one float32 intermediate (one axis already shrunk), slabs and output stay below.
    assert peak < 4 * data.size, f"peak {peak} bytes for {data.size} voxels"


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest", "label"])
def test_upsampling_has_no_zero_slab(factor, anchor, interpolation) -> None:
    data = volume((7, 6, 5), "int16") - np.int16(-1000) + np.int16(50)  # all >= 50
    size = tuple(factor * n + 1 for n in data.shape)
    got, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    assert got.min() >= data.min()
    for axis in range(3):
        for edge in (0, -1):
            assert np.take(got, edge, axis=axis).min() >= data.min()


@pytest.mark.parametrize("dtype", DTYPES)
def test_unchanged_axes_are_untouched(dtype) -> None:
    # Resampling one axis leaves the others exact: lines along them are only copied.
    data = volume((9, 10, 11), dtype)
    same, _ = resample_array(data, data.shape)
    np.testing.assert_array_equal(same, data)
    got, _ = resample_array(data, (9, 10, 11 * 2), interpolation="bspline")
    np.testing.assert_array_equal(got[:, :, ::2], data)  # knots of a 2x upsampling


def test_thread_pool_never_exceeds_the_cores(monkeypatch) -> None:
    sizes = []
    real = _stream.ThreadPoolExecutor

    def spy(max_workers=None, **kwargs):
        sizes.append(max_workers)
        return real(max_workers=max_workers, **kwargs)

    # The pools: the engine's (one per run) and label voting's (one per chunk).
    monkeypatch.setattr(_stream, "ThreadPoolExecutor", spy)
    monkeypatch.setattr(_vote, "ThreadPoolExecutor", spy)
    resample_array(volume((20, 18, 16), "int16"), (9, 8, 30))
    assert len(sizes) == 1
    resample_array(volume((20, 18, 16), "int16"), (9, 8, 30), interpolation="label")
    assert len(sizes) >= 3  # the run's pool, and voting's for each chunk
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert sizes and all(1 <= n <= cores for n in sizes)


def _spy_engine(monkeypatch) -> list[tuple]:
    """Record the operators the engine builds (in memory or streamed: both build them with
    ``operators.build_ops``), as ``(input shape, changed axes)``."""
    calls: list[tuple] = []
    real = _operators.build_ops

    def spy(shape, *args, **kwargs):
        ops = real(shape, *args, **kwargs)
        calls.append((tuple(shape), sorted(ops)))
        return ops

    monkeypatch.setattr(_stream_plan, "build_ops", spy)
    return calls


def test_resampling_uses_the_fast_engine(monkeypatch, tmp_path) -> None:
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume((20, 18, 12), "int16"), np.diag([0.5, 0.5, 2.0, 1])), src)
    calls = _spy_engine(monkeypatch)
    napari_resample.resampling(src, tmp_path / "out", (10, 9, 24))
    assert calls and calls[0][0] == (18, 20, 12)  # built in the streamed frame (j, i, k)
    out = nib.load(tmp_path / "out" / "scan_resampled.nii.gz")
    assert out.shape == (10, 9, 24)


def test_cli_uses_the_fast_engine(monkeypatch, tmp_path) -> None:
    from napari_resample import cli as _cli

    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume((20, 18, 12), "int16"), np.eye(4)), src)
    calls = _spy_engine(monkeypatch)
    assert _cli.main([str(src), str(tmp_path / "out"), "--size", "10", "9", "24"]) == 0
    assert calls and calls[0][0] == (18, 20, 12)  # built in the streamed frame (j, i, k)


# --------------------------------------------------------------------------- gzip fast path


@pytest.mark.parametrize("dtype", ["int16", ">i2", "uint8", "float32", ">f8"])
def test_fast_gzip_read_equals_nibabel(tmp_path, dtype) -> None:
    pytest.importorskip("isal")
    from napari_resample.io import gzip as _gz
    from napari_resample.io import nifti as _io

    data = volume((33, 21, 17), np.dtype(dtype).newbyteorder("=").name).astype(dtype)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(40, b"x" * 100))  # vox_offset > 352
    path = tmp_path / "v.nii.gz"
    nib.save(img, path)
    proxy = nib.load(path).dataobj
    fast = _gz.read_gz_fast(str(path), proxy)
    slow = np.asarray(proxy.get_unscaled())
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)
    assert fast.flags.writeable
    loaded = _io.load_nifti(path).data
    assert loaded.dtype == slow.dtype
    np.testing.assert_array_equal(loaded, slow)


def test_truncated_gzip_is_refused_with_or_without_isal(tmp_path, monkeypatch) -> None:
    from napari_resample.io import gzip as _gz
    from napari_resample.io import nifti as _io

    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume((30, 20, 10), "int16"), np.eye(4)), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cannot read"):
        _io.load_nifti(path)
    monkeypatch.setattr(_gz, "_isal", lambda: None)
    with pytest.raises(ValueError, match="cannot read"):
        _io.load_nifti(path)


def test_fast_gzip_write_holds_what_nibabel_writes(tmp_path, monkeypatch) -> None:
    pytest.importorskip("isal")
    import gzip

    from napari_resample.io import gzip as _gz
    from napari_resample.io import nifti as _io

    data = volume((25, 19, 11), "int16")
    header = nib.Nifti1Image(data, np.diag([0.7, 0.7, 2.0, 1])).header
    fast = _io.save_nifti(tmp_path / "fast.nii.gz", data, header)
    monkeypatch.setattr(_gz, "_isal", lambda: None)
    slow = _io.save_nifti(tmp_path / "slow.nii.gz", data, header)
    with gzip.open(fast, "rb") as a, gzip.open(slow, "rb") as b:
        assert a.read() == b.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.nii.gz", "slow.nii.gz"]
