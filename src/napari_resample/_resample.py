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
  input labels and no in-between values. Computed by voting among the labels of the 8 input
  voxels around each sample (the only ones with a weight), not one pass per label.

Values are computed in float32 (float64 for float64 input and for integers wider than 16 bits,
which float32 cannot hold exactly), clamped to the input's finite [min, max], rounded to nearest
for integer types, and returned in the input's data type.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from napari_resample._geometry import resampled_affine, sample_positions
from napari_resample._options import (
    ANCHORS,
    INTERPOLATIONS,
    Anchor,
    Interpolation,
    check_choice,
    validate_size,
)

#: Pole of the cubic B-spline prefilter.
_POLE = math.sqrt(3.0) - 2.0
#: Elements per slab: big enough for numpy/scipy to be efficient, small enough to stay in cache.
_CHUNK = 1 << 18

ProgressCallback = Callable[[float], None]


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
    was non-finite receives that voxel's value (so a volume with no finite voxel is resampled
    by nearest neighbour). In ``"label"`` mode NaN is a label like any other.

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
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
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
        if not finite.any():  # nothing to interpolate: every voxel keeps its nearest's value
            return _resample_nearest(arr, size, anchor).astype(native, copy=False)
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


def _bspline_taps(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 4 cubic B-spline weights per position *x*, on spline coefficients (mirrored)."""
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
    return _taps_matrix(rows, _mirror(j, n_in), w, n_out, n_in)


def _bspline_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cubic B-spline interpolation at positions *x*: taps times the inverse prefilter."""
    from scipy.linalg import solve_banded

    taps = _bspline_taps(n_in, x)
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


def _linear_weights(
    n_in: int, x: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Linear interpolation at positions *x*: ``(1 - t) * in[j0] + t * in[j1]``, holding the
    edge value outside [0, n_in - 1]."""
    xc = np.clip(x, 0, n_in - 1)
    j0 = np.minimum(np.floor(xc).astype(np.int64), n_in - 1)
    return j0, np.minimum(j0 + 1, n_in - 1), xc - j0


def _linear_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear interpolation at positions *x*, holding the edge value outside [0, n_in - 1]."""
    n_out = x.size
    j0, j1, t = _linear_weights(n_in, x)
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
#
# Every axis operator is a sparse CSR matrix (the B-spline one is short because the inverse
# prefilter decays like 0.27^distance). The volume is cut into slabs along an axis that a group of
# steps leaves alone; each slab is converted to the work type, pushed through its steps and
# finished (clamp, round, cast) while it is still in cache, on all cores (scipy's sparse products
# and numpy's copies release the GIL). No BLAS call, so no second thread pool competes with ours.
# With three axes to resample, the first step is one group (its result is the only full-size
# intermediate) and the last two steps another; the order is chosen by a cost model.


def _separable(
    arr: NDArray,
    size: tuple[int, int, int],
    interpolation: str,
    anchor: Anchor,
    antialias: bool,
    out_dtype: np.dtype,
    progress: ProgressCallback | None,
) -> NDArray:
    work = _work_dtype(arr.dtype)
    lo, hi = _value_range(arr)
    changed = [a for a in range(3) if arr.shape[a] != size[a]]
    ops = {
        a: sparse.csr_matrix(
            _truncate(axis_matrix(arr.shape[a], size[a], interpolation, anchor, antialias)),
            dtype=work,
        )
        for a in changed
    }
    groups = _plan(arr.shape, size, ops)
    finish = _Finisher(lo, hi, out_dtype)
    current: NDArray = arr
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for n, (slab_axis, steps) in enumerate(groups):
            last = n == len(groups) - 1
            current = _run_group(
                current,
                [(a, ops[a]) for a in steps],
                slab_axis,
                work,
                finish if last else None,
                pool,
            )
            if progress is not None:
                progress((n + 1) / (len(groups) + 1))
    return current


def _plan(
    shape: tuple[int, ...], size: tuple[int, int, int], ops: dict[int, sparse.csr_matrix]
) -> list[tuple[int, list[int]]]:
    """Groups of steps ``(slab axis, axes)`` with the least estimated work.

    A step costs the operator's non-zeros times the lines it is applied to; a group costs its
    input's traffic too (more when its slabs are cut across the contiguous last axis: short
    strided copies), and a full-size intermediate between two groups is written and read back.
    """
    best: tuple[float, list[tuple[int, list[int]]]] | None = None
    for order in itertools.permutations(ops):
        free = [a for a in range(3) if a not in order]
        plans = [[(free[0], list(order))]] if free else []
        if len(order) > 1:
            plans.append([(1 if order[0] == 0 else 0, [order[0]]), (order[0], list(order[1:]))])
        for plan in plans:
            dims = list(shape)
            cost = 0.0
            for n, (slab, steps) in enumerate(plan):
                cost += math.prod(dims) * (_STRIDED_COST if slab == 2 else 1.0 + 8.0 * (n > 0))
                for a in steps:
                    cost += ops[a].nnz * math.prod(dims) / dims[a]
                    dims[a] = size[a]
            if best is None or cost < best[0]:
                best = (cost, plan)
    assert best is not None
    return best[1]


#: Relative cost of reading an element through slabs cut across the contiguous axis.
_STRIDED_COST = 1000.0


class _Finisher:
    """Clamp to the input range, round for integer types, cast: applied slab by slab.

    For integers too wide for the working float type, the float bounds are the nearest floats
    inside the range (so the cast cannot wrap), and values that reached the rounded-up maximum
    (or minimum) get the exact integer bound back.
    """

    def __init__(self, lo: float | int, hi: float | int, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.rint = dtype.kind in "iub"
        self.lo, self.hi = float(lo), float(hi)
        self.exact_lo = self.exact_hi = None
        if self.rint:
            lo_i, hi_i = int(lo), int(hi)
            if int(self.hi) > hi_i:
                self.exact_hi, self.hi = hi_i, float(np.nextafter(self.hi, -np.inf))
            if int(self.lo) < lo_i:
                self.exact_lo, self.lo = lo_i, float(np.nextafter(self.lo, np.inf))

    def __call__(self, block: NDArray, dest: NDArray) -> None:
        top = block > self.hi if self.exact_hi is not None else None
        bottom = block < self.lo if self.exact_lo is not None else None
        np.clip(block, self.lo, self.hi, out=block)
        if self.rint:
            np.rint(block, out=block)
        dest[...] = block
        if top is not None:
            dest[top] = self.exact_hi
        if bottom is not None:
            dest[bottom] = self.exact_lo


def _value_range(arr: NDArray) -> tuple[float | int, float | int]:
    """The input's [min, max], exact: Python ints for integer types."""
    if arr.dtype.kind == "b":
        return 0, 1
    lo, hi = arr.min(), arr.max()
    return (int(lo), int(hi)) if arr.dtype.kind in "iu" else (float(lo), float(hi))


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """float32, or float64 where float32 is not exact: float64 data and integers over 16 bits."""
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run_group(
    src: NDArray,
    steps: list[tuple[int, sparse.csr_matrix]],
    slab_axis: int,
    work: np.dtype,
    finish: _Finisher | None,
    pool: ThreadPoolExecutor,
) -> NDArray:
    """Apply *steps* to *src* slab by slab along *slab_axis* (which no step touches)."""
    shape = list(src.shape)
    for axis, op in steps:
        shape[axis] = op.shape[0]
    out = np.empty(shape, dtype=work if finish is None else finish.dtype)
    n = src.shape[slab_axis]
    per_index = max(math.prod(src.shape), math.prod(shape)) // n
    thick = max(1, min(_CHUNK // max(per_index, 1), -(-n // (4 * _workers()))))

    def run(k0: int) -> None:
        where = tuple(slice(k0, k0 + thick) if a == slab_axis else slice(None) for a in range(3))
        block = np.array(src[where], dtype=work, order="C")
        for axis, op in steps:
            block = _apply_op(block, axis, op)
        if finish is None:
            out[where] = block
        else:
            finish(block, out[where])

    list(pool.map(run, range(0, n, thick)))
    return out


def _apply_op(block: NDArray, axis: int, op: sparse.csr_matrix) -> NDArray:
    """``op`` (n_out, n_in) applied along *axis* of a 3D *block*, with as few copies as can be.

    The result may be a strided view (after the contiguous axis); the next step copies it once.
    """
    a, b, c = block.shape
    if axis == 0:
        return (op @ np.ascontiguousarray(block).reshape(a, b * c)).reshape(-1, b, c)
    if axis == 1:
        block = np.ascontiguousarray(block)
        out = np.empty((a, op.shape[0], c), dtype=block.dtype)
        for i in range(a):
            out[i] = op @ block[i]
        return out
    # The contiguous axis: scipy copies the transposed lines into place once.
    return (op @ block.reshape(a * b, c).T).T.reshape(a, b, -1)


def _truncate(m: NDArray[np.float64], tol: float = 1e-9) -> NDArray[np.float64]:
    """Drop weights too small to matter (the prefilter's inverse decays like 0.27^distance)."""
    return np.where(np.abs(m) < tol, 0.0, m)


# --------------------------------------------------------------------------- other modes


def _nearest_index(n_in: int, n_out: int, anchor: Anchor) -> NDArray[np.int64]:
    x = sample_positions(n_in, n_out, anchor)
    return np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.int64)


def _resample_nearest(arr: NDArray, size: tuple[int, int, int], anchor: Anchor) -> NDArray:
    """Nearest-neighbour resampling by pure indexing: exact, in the input's type."""
    out = arr
    # One axis at a time, shrinking first and growing last: whole-row copies, no 3D fancy index.
    for axis in sorted(range(3), key=lambda a: size[a] / arr.shape[a]):
        if arr.shape[axis] != size[axis]:
            out = out.take(_nearest_index(arr.shape[axis], size[axis], anchor), axis=axis)
    return out if out is not arr else arr.copy()


def _resample_labels(
    arr: NDArray, size: tuple[int, int, int], anchor: Anchor, progress: ProgressCallback | None
) -> NDArray:
    """Per-label voting: each output voxel takes the label with the largest trilinear weight.

    This is the result of resampling every label's indicator linearly and keeping the largest
    (ties go to the smallest label, NaN last), computed without one pass per label: trilinear
    weights only involve the 8 input voxels around a sample point, so each output voxel votes
    among the labels of its 8 corners. Where the 8 corners agree (inside regions: most voxels)
    that label is the answer; only the others are scored.
    """
    native = arr.dtype.newbyteorder("=")
    taps = [_linear_taps(n, s, anchor) for n, s in zip(arr.shape, size, strict=True)]
    out = np.empty(size, dtype=native)
    per_row = max(1, math.prod(size[1:]) + math.prod(arr.shape[1:]))
    rows = max(1, min(_CHUNK // per_row, -(-size[0] // (4 * _workers()))))
    starts = range(0, size[0], rows)

    def run(r0: int) -> None:
        r1 = min(r0 + rows, size[0])
        (x0, x1, tx), (y0, y1, ty), (z0, z1, tz) = taps
        # The 8 corner labels of every output voxel of the slab, by whole-row takes.
        corners = [
            a.take(z, axis=2)
            for a in (
                b.take(y, axis=1)
                for b in (arr.take(x, axis=0) for x in (x0[r0:r1], x1[r0:r1]))
                for y in (y0, y1)
            )
            for z in (z0, z1)
        ]
        block = corners[0].astype(native, copy=True)
        mixed = np.zeros(block.shape, dtype=bool)
        for c in corners[1:]:
            mixed |= ~_same_label(c, block)
        flat = np.flatnonzero(mixed)
        if flat.size:
            where = np.unravel_index(flat, mixed.shape)
            weights = [(1.0 - t, t) for t in (tx[r0:r1], ty, tz)]
            labels = [c.reshape(-1)[flat] for c in corners]
            w = [
                weights[0][cx][where[0]] * weights[1][cy][where[1]] * weights[2][cz][where[2]]
                for cx in (0, 1)
                for cy in (0, 1)
                for cz in (0, 1)
            ]
            score = [wc.copy() for wc in w]
            for a, b in itertools.combinations(range(8), 2):
                same = _same_label(labels[a], labels[b])
                score[a] += w[b] * same
                score[b] += w[a] * same
            best, best_score = labels[0], score[0]
            for lab, sc in zip(labels[1:], score[1:], strict=True):
                win = (sc > best_score) | ((sc == best_score) & _label_before(lab, best))
                np.copyto(best, lab, where=win)
                np.copyto(best_score, sc, where=win)
            block.reshape(-1)[flat] = best
        out[r0:r1] = block

    with ThreadPoolExecutor(max_workers=min(_workers(), len(starts))) as pool:
        for n, _ in enumerate(pool.map(run, starts)):
            if progress is not None:
                progress((n + 1) / (len(starts) + 1))
    return out


def _linear_taps(
    n_in: int, n_out: int, anchor: Anchor
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """The weights of :func:`_linear_matrix` along one axis, as ``(j0, j1, t)``."""
    return _linear_weights(n_in, sample_positions(n_in, n_out, anchor))


def _same_label(a: NDArray, b: NDArray) -> NDArray[np.bool_]:
    """``a == b``, with NaN equal to NaN (NaN is a label like any other)."""
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return same


def _label_before(a: NDArray, b: NDArray) -> NDArray[np.bool_]:
    """``a`` sorts before ``b`` (the tie-break: smallest label first, NaN last)."""
    before = a < b
    if a.dtype.kind == "f":
        before |= np.isnan(b) & ~np.isnan(a)
    return before
