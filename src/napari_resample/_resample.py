"""The resampling engine: a 3D array in, a 3D array of another size out, same field of view.

The output grid is an axis-aligned scaling of the input grid in voxel space, so every
interpolator here is *separable*: the 3D operation is one 1-D operation per axis, applied one
axis after the other. Along one axis, output sample ``i'`` reads the input at the continuous index
``x = o + f * i'`` (see :mod:`napari_resample._geometry`), and each 1-D operation is a sparse
``n_out x n_in`` matrix:

- ``"bspline"``: cubic B-spline. A recursive prefilter turns samples into spline coefficients
  (mirror boundaries, as ITK), then 4 weighted taps per output sample. Past the last voxel
  centre the spline continues mirrored, so upsampling never produces 0-slabs.
- ``"linear"``: 2 taps; ``"nearest"``: 1 tap; both hold the edge value past the last voxel.
- ``"label"``: for label maps: every label's indicator is resampled linearly and each output
  voxel takes the label with the highest weight (per-label voting), so the output holds only
  input labels and no in-between values.

Values are computed in float32 (float64 for float64 input), clamped to the input's finite
[min, max], rounded to nearest for integer types, and returned in the input's data type.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from napari_resample._geometry import ANCHORS, Anchor, resampled_affine, sample_positions

Interpolation = Literal["bspline", "linear", "nearest", "label"]
INTERPOLATIONS: tuple[str, ...] = ("bspline", "linear", "nearest", "label")

#: Pole of the cubic B-spline prefilter.
_POLE = math.sqrt(3.0) - 2.0
#: Elements per work chunk: big enough for numpy to be efficient, small enough to stay in cache.
_CHUNK = 1 << 16

ProgressCallback = Callable[[float], None]


def validate_size(desired_volume: object) -> tuple[int, int, int]:
    """Return *desired_volume* as a tuple of three positive Python ints, or raise ValueError.

    Python and numpy integers are accepted; bools, floats (even integral ones), strings, zeros
    and negatives are not.

    Examples
    --------
    >>> validate_size((224, np.int64(224), 128))
    (224, 224, 128)
    """
    if isinstance(desired_volume, str | bytes) or not isinstance(desired_volume, Sequence | np.ndarray):
        raise ValueError(
            f"desired_volume must hold exactly 3 positive integers (X, Y, Z), got {desired_volume!r}"
        )
    values = list(desired_volume)
    if len(values) != 3:
        raise ValueError(
            "desired_volume must hold exactly 3 positive integers (X, Y, Z), "
            f"got {len(values)} values: {desired_volume!r}"
        )
    for v in values:
        if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(
                "desired_volume must hold exactly 3 positive integers (X, Y, Z), "
                f"got {desired_volume!r} (bad value {v!r})"
            )
    return (int(values[0]), int(values[1]), int(values[2]))


def resample_array(
    data: ArrayLike,
    desired_volume: Sequence[int],
    *,
    affine: ArrayLike | None = None,
    interpolation: Interpolation = "bspline",
    anchor: Anchor = "origin",
    antialias: bool = False,
    progress: ProgressCallback | None = None,
) -> tuple[NDArray, NDArray[np.float64]]:
    """Resample a 3D volume to *desired_volume* voxels, keeping its field of view.

    Parameters
    ----------
    data : (X, Y, Z) array_like
        The volume in NIfTI voxel order (i, j, k). Any integer or float type.
    desired_volume : (3,) sequence of int
        Output size (X, Y, Z), in the same order as ``data.shape``.
    affine : (4, 4) array_like, voxel -> world mm, optional
        Geometry of *data*; identity when None.
    interpolation : {"bspline", "linear", "nearest", "label"}
        Cubic B-spline (default), trilinear, nearest neighbour, or label-preserving voting
        for segmentations.
    anchor : {"origin", "center"}
        ``"origin"`` keeps the centre of the first voxel in place (the specification's
        behaviour); ``"center"`` keeps the outer edges of the field of view.
    antialias : bool
        Smooth each downsampled axis with a Gaussian (sigma ``(f - 1) / 2`` input voxels for a
        factor ``f = old / new``) before sampling, so fine patterns do not alias.
        Ignored for ``"nearest"`` and ``"label"``.
    progress : callable, optional
        Called with the fraction of the work done (0 to 1) as the work proceeds.

    Returns
    -------
    out : (X', Y', Z') ndarray
        Same data type as *data* (native byte order). Values are clamped to the input's finite
        [min, max]; integer types are rounded to nearest. A same-size request returns an exact
        copy.
    new_affine : (4, 4) ndarray of float64
        ``affine`` with its voxel columns scaled by ``old_size / new_size`` (and, for
        ``anchor="center"``, its origin moved by half the spacing change).

    Notes
    -----
    Non-finite voxels (NaN, +-Inf) in float data do not spread: they are replaced by their
    nearest finite neighbour for interpolation, and each output voxel whose nearest input voxel
    was non-finite receives that voxel's value.

    Examples
    --------
    >>> vol = np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2)
    >>> out, aff = resample_array(vol, (2, 2, 2), affine=np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> out.shape, out.dtype, np.diag(aff).tolist()
    ((2, 2, 2), dtype('int16'), [1.0, 1.0, 2.0, 1.0])
    """
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ValueError(f"data must be a 3D array (X, Y, Z), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"data must hold integers or floats, got dtype {arr.dtype}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    size = validate_size(desired_volume)
    if 0 in arr.shape:
        raise ValueError(f"data must not be empty, got shape {arr.shape}")
    base = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    new_affine = resampled_affine(base, arr.shape, size, anchor)
    out = _resample_values(arr, size, interpolation, anchor, antialias, progress)
    if progress is not None:
        progress(1.0)
    return out, new_affine


def _resample_values(
    arr: NDArray,
    size: tuple[int, int, int],
    interpolation: str,
    anchor: Anchor,
    antialias: bool,
    progress: ProgressCallback | None,
) -> NDArray:
    native = arr.dtype.newbyteorder("=")
    if arr.shape == size:
        return np.array(arr, dtype=native, copy=True)
    if interpolation == "nearest":
        return _resample_nearest(arr, size, anchor).astype(native, copy=False)
    if interpolation == "label":
        return _resample_labels(arr, size, anchor, progress)
    nonfinite = None
    source = arr
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            nonfinite = ~finite
            source = _fill_nonfinite(arr, finite)
    out = _separable(source, size, interpolation, anchor, antialias, native, progress)
    if nonfinite is not None:
        # Non-finite voxels go back where they were, by nearest neighbour, instead of spreading.
        hit = _resample_nearest(nonfinite, size, anchor)
        out[hit] = _resample_nearest(arr, size, anchor)[hit]
    return out


def _fill_nonfinite(arr: NDArray, finite: NDArray) -> NDArray:
    """Copy of *arr* where each non-finite voxel holds its nearest finite neighbour's value."""
    from scipy import ndimage

    if not finite.any():
        raise ValueError("data holds no finite value to interpolate")
    idx = ndimage.distance_transform_edt(~finite, return_distances=False, return_indices=True)
    return arr[tuple(idx)]


# --------------------------------------------------------------------------- 1-D operators


def _mirror(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Fold indices into [0, n) by mirroring about the end voxels (d c b | a b c d | c b a)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _taps_matrix(rows: NDArray, cols: NDArray, vals: NDArray, n_out: int, n_in: int) -> NDArray:
    """Dense (n_out, n_in) matrix from tap lists; repeated (row, col) pairs add up."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (rows.ravel(), cols.ravel()), vals.ravel())
    return m


def _bspline_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cubic B-spline interpolation at positions *x*: taps times the inverse prefilter."""
    from scipy.linalg import solve_banded

    n_out = x.size
    fl = np.floor(x)
    t = (x - fl)[:, None]
    j = fl.astype(np.int64)[:, None] - 1 + np.arange(4)
    w = np.concatenate(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    rows = np.broadcast_to(np.arange(n_out)[:, None], j.shape)
    taps = _taps_matrix(rows, _mirror(j, n_in), w, n_out, n_in)
    if n_in == 1:
        return taps
    # Samples = B @ coefficients, with B the mirror-boundary (1, 4, 1) / 6 band; we need
    # taps @ inv(B), i.e. the transpose of inv(B.T) @ taps.T.
    ab = np.empty((3, n_in))
    ab[1] = 4 / 6
    ab[0] = 1 / 6
    ab[2] = 1 / 6
    ab[0, -1] = 2 / 6
    ab[2, 0] = 2 / 6
    return solve_banded((1, 1), ab, taps.T).T


def _linear_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear interpolation at positions *x*, holding the edge value outside [0, n_in - 1]."""
    n_out = x.size
    xc = np.clip(x, 0, n_in - 1)
    j0 = np.minimum(np.floor(xc).astype(np.int64), n_in - 1)
    t = xc - j0
    j1 = np.minimum(j0 + 1, n_in - 1)
    rows = np.repeat(np.arange(n_out)[:, None], 2, axis=1)
    return _taps_matrix(rows, np.stack([j0, j1], 1), np.stack([1 - t, t], 1), n_out, n_in)


def _gaussian_matrix(n: int, sigma: float) -> NDArray[np.float64]:
    """(n, n) Gaussian smoothing with mirror boundaries."""
    radius = max(1, math.ceil(4 * sigma))
    k = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    g /= g.sum()
    rows = np.repeat(np.arange(n)[:, None], k.size, axis=1)
    cols = _mirror(rows + k, n)
    return _taps_matrix(rows, cols, np.broadcast_to(g, rows.shape), n, n)


def axis_matrix(
    n_in: int, n_out: int, interpolation: str, anchor: Anchor, antialias: bool
) -> NDArray[np.float64]:
    """The dense (n_out, n_in) float64 matrix resampling one axis."""
    x = sample_positions(n_in, n_out, anchor)
    m = _bspline_matrix(n_in, x) if interpolation == "bspline" else _linear_matrix(n_in, x)
    f = n_in / n_out
    if antialias and f > 1:
        m = m @ _gaussian_matrix(n_in, (f - 1) / 2)
    return m


# --------------------------------------------------------------------------- the 3D engine


def _separable(
    arr: NDArray,
    size: tuple[int, int, int],
    interpolation: str,
    anchor: Anchor,
    antialias: bool,
    out_dtype: np.dtype,
    progress: ProgressCallback | None,
) -> NDArray:
    work = np.dtype(np.float64 if arr.dtype == np.float64 else np.float32)
    lo, hi = _value_range(arr)
    axes = [a for a in _axis_order(arr.shape, size) if arr.shape[a] != size[a]]
    current: NDArray = arr
    for step, axis in enumerate(axes):
        last = step == len(axes) - 1
        m = axis_matrix(arr.shape[axis], size[axis], interpolation, anchor, antialias)
        if last:
            finish = _Finisher(lo, hi, out_dtype)
            current = _apply_axis(current, m, axis, work, finish, finish.dtype)
        else:
            current = _apply_axis(current, m, axis, work, None, work)
        if progress is not None:
            progress((step + 1) / (len(axes) + 1))
    return current


class _Finisher:
    """Clamp to the input range, round for integer types, cast: applied chunk by chunk."""

    def __init__(self, lo: float, hi: float, dtype: np.dtype) -> None:
        self.lo, self.hi, self.dtype = lo, hi, dtype
        self.rint = dtype.kind in "iub"

    def __call__(self, chunk: NDArray, dest: NDArray) -> None:
        np.clip(chunk, self.lo, self.hi, out=chunk)
        if self.rint:
            np.rint(chunk, out=chunk)
        dest[...] = chunk


def _value_range(arr: NDArray) -> tuple[float, float]:
    if arr.dtype.kind == "b":
        return 0.0, 1.0
    return float(arr.min()), float(arr.max())


def _axis_order(shape: tuple[int, ...], size: tuple[int, int, int]) -> list[int]:
    """Axes sorted so that the volume shrinks as early and grows as late as possible."""
    return sorted(range(3), key=lambda a: size[a] / shape[a])


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _apply_axis(
    src: NDArray,
    m: NDArray[np.float64],
    axis: int,
    work: np.dtype,
    finish: _Finisher | None,
    out_dtype: np.dtype,
) -> NDArray:
    """Multiply *src* by the (n_out, n_in) matrix *m* along *axis*, chunk by chunk."""
    n_out, n_in = m.shape
    shape = list(src.shape)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    shape[axis] = n_out
    out = np.empty(shape, dtype=out_dtype)
    s3 = src.reshape(outer, n_in, inner)
    o3 = out.reshape(outer, n_out, inner)
    if inner == 1:
        # The axis is contiguous: a dense matrix product per block of rows (BLAS).
        mt = np.ascontiguousarray(m.T, dtype=work)
        s2, o2 = s3[:, :, 0], o3[:, :, 0]
        rows = max(1, _CHUNK * 8 // max(n_in, n_out))
        for r0 in range(0, outer, rows):
            chunk = s2[r0 : r0 + rows].astype(work) @ mt
            _store(chunk, o2[r0 : r0 + rows], finish)
        return out
    ms = sparse.csr_matrix(_truncate(m), dtype=work)
    cols = max(64, _CHUNK // n_in)
    tasks = [(a, c0) for a in range(outer) for c0 in range(0, inner, cols)]

    def run(task: tuple[int, int]) -> None:
        a, c0 = task
        block = np.ascontiguousarray(s3[a, :, c0 : c0 + cols], dtype=work)
        _store(ms @ block, o3[a, :, c0 : c0 + cols], finish)

    workers = min(_workers(), len(tasks))
    if workers == 1:
        for task in tasks:
            run(task)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, tasks))
    return out


def _store(chunk: NDArray, dest: NDArray, finish: _Finisher | None) -> None:
    if finish is None:
        dest[...] = chunk
    else:
        finish(chunk, dest)


def _truncate(m: NDArray[np.float64], tol: float = 1e-9) -> NDArray[np.float64]:
    """Drop weights too small to matter (the prefilter's inverse decays like 0.27^distance)."""
    return np.where(np.abs(m) < tol, 0.0, m)


# --------------------------------------------------------------------------- other modes


def _nearest_index(n_in: int, n_out: int, anchor: Anchor) -> NDArray[np.int64]:
    x = sample_positions(n_in, n_out, anchor)
    return np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.int64)


def _resample_nearest(arr: NDArray, size: tuple[int, int, int], anchor: Anchor) -> NDArray:
    """Nearest-neighbour resampling by pure indexing: exact, in the input's type."""
    idx = [_nearest_index(n, s, anchor) for n, s in zip(arr.shape, size, strict=True)]
    return arr[np.ix_(*idx)]


def _resample_labels(
    arr: NDArray, size: tuple[int, int, int], anchor: Anchor, progress: ProgressCallback | None
) -> NDArray:
    """Per-label voting: each label's indicator is resampled linearly; the largest wins."""
    labels = np.unique(arr)
    native = arr.dtype.newbyteorder("=")
    if labels.size == 1:
        return np.full(size, labels[0], dtype=native)
    best = np.full(size, -1.0, dtype=np.float32)
    out = np.empty(size, dtype=native)
    for n, label in enumerate(labels):
        weight = _separable(
            (arr == label).view(np.uint8), size, "linear", anchor, False, np.dtype(np.float32), None
        )
        win = weight > best
        best[win] = weight[win]
        out[win] = label
        if progress is not None:
            progress((n + 1) / (labels.size + 1))
    return out
