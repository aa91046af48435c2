"""The separable 3D engine: one sparse 1-D operator per resampled axis, slab by slab.

Every axis operator (:func:`napari_resample.engine.operators.operator_at`, sparse) is converted to
the working type (the B-spline one is short because the inverse prefilter decays like
0.27^distance). The volume is cut into slabs along an axis that a group of steps leaves alone;
each slab is converted to the work type, pushed through its steps and finished (clamp, round,
cast) while it is still in cache, on all cores (scipy's sparse products and numpy's copies
release the GIL). No BLAS call, so no second thread pool competes with ours. With three axes to
resample, the first step is one group (its result is the only full-size intermediate) and the
last two steps another; the order is chosen by a cost model (:func:`_plan`).

Values are computed in float32 (float64 for float64 input and for integers wider than 16 bits,
which float32 cannot hold exactly), clamped to the input's finite [min, max], rounded to nearest
for integer types, and returned in the requested data type.

Examples
--------
>>> _work_dtype(np.dtype(np.int16)), _work_dtype(np.dtype(np.int32))
(dtype('float32'), dtype('float64'))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine.geometry import Positions, is_identity
from napari_resample.engine.operators import _truncate, operator_at
from napari_resample.engine.threads import engine_threads

if TYPE_CHECKING:
    from napari_resample.engine.progress import ProgressCallback

#: Elements per slab: big enough for numpy/scipy to be efficient, small enough to stay in cache.
_CHUNK = 1 << 18

# The planner's cost model (:func:`_plan`), in units of "one multiply-add of a sparse product":
#: Reading one element of a group's input through slabs cut along a non-contiguous axis
#: (long contiguous runs: plain streaming).
_CONTIGUOUS_COST = 1.0
#: Extra cost per element of a full-size intermediate between two groups: written by the first
#: group and read back by the second, out of cache.
_INTERMEDIATE_COST = 8.0
#: Relative cost of reading an element through slabs cut across the contiguous axis (short
#: strided copies): high enough that the planner avoids it whenever another plan exists.
_STRIDED_COST = 1000.0
#: Relative cost difference under which the model cannot tell two plans apart (a tie).
_TIE = 0.02


def _separable(
    arr: NDArray,
    positions: Positions,
    interpolation: str,
    antialias: bool,
    out_dtype: np.dtype,
    progress: ProgressCallback | None,
    check: Callable[[], None] | None = None,
) -> NDArray:
    """*arr* sampled at *positions* by ``"bspline"`` or ``"linear"``, finished in *out_dtype*.

    *progress* gets the fraction of all slabs done after each slab; *check* is called before
    each slab and may raise to stop the work (a cancel).
    """
    work = _work_dtype(arr.dtype)
    lo, hi = _value_range(arr)
    size = tuple(x.size for x in positions)
    ops = build_ops(arr.shape, positions, interpolation, antialias, work)
    groups = _plan(arr.shape, size, ops)
    finish = _Finisher(lo, hi, out_dtype)
    # Slabs of every group, counted first so that progress is a fraction of the whole job.
    total, dims = 0, list(arr.shape)
    for slab_axis, steps in groups:
        out_dims = [size[a] if a in steps else dims[a] for a in range(3)]
        total += -(-dims[slab_axis] // _slab_thickness(dims, out_dims, slab_axis))
        dims = out_dims
    ticker = _Ticker(total, progress, check)
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
                ticker,
            )
    return current


def build_ops(
    shape: tuple[int, ...],
    positions: Positions,
    interpolation: str,
    antialias: bool,
    work: np.dtype,
) -> dict[int, sparse.csr_matrix]:
    """The truncated operator of every axis that changes, in the working type (shared by the
    in-memory and the streamed engine, so that both compute the same numbers)."""
    changed = [a for a in range(3) if not is_identity(shape[a], positions[a])]
    return {
        a: _truncate(operator_at(shape[a], positions[a], interpolation, antialias)).astype(work)
        for a in changed
    }


def step_order(
    shape: tuple[int, ...], size: tuple[int, ...], ops: dict[int, sparse.csr_matrix]
) -> list[int]:
    """The axes in the order the in-memory engine applies their operators (:func:`_plan`)."""
    return [a for _, steps in _plan(shape, size, ops) for a in steps]


class _Ticker:
    """Progress per finished slab (the fraction of *total*, monotone, below 1: the caller says
    1.0 when everything is done) and the cancel check between slabs."""

    def __init__(
        self,
        total: int,
        progress: ProgressCallback | None,
        check: Callable[[], None] | None,
    ) -> None:
        self.total, self.done = max(total, 1), 0
        self.progress, self.check = progress, check

    def before_slab(self) -> None:
        if self.check is not None:
            self.check()

    def slab_done(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total) / (self.total + 1))
        self.before_slab()


def _plan(
    shape: tuple[int, ...], size: tuple[int, ...], ops: dict[int, sparse.csr_matrix]
) -> list[tuple[int, list[int]]]:
    """Groups of steps ``(slab axis, axes)`` with the least estimated work.

    A step costs the operator's non-zeros times the lines it is applied to; a group costs its
    input's traffic too (:data:`_CONTIGUOUS_COST` per element, :data:`_STRIDED_COST` when its
    slabs are cut across the contiguous last axis), and a full-size intermediate between two
    groups is written and read back (:data:`_INTERMEDIATE_COST`). Plans within :data:`_TIE`
    of each other are a tie, won by the one found first: axis 0 first (its slabs are cut along
    axis 1, contiguous runs in both C and Fortran order; measured the fastest on nibabel's
    Fortran-ordered volumes, and as fast as any on C-ordered ones).
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
                traffic = (
                    _STRIDED_COST if slab == 2 else _CONTIGUOUS_COST + _INTERMEDIATE_COST * (n > 0)
                )
                cost += math.prod(dims) * traffic
                for a in steps:
                    cost += ops[a].nnz * math.prod(dims) / dims[a]
                    dims[a] = size[a]
            if best is None or cost < best[0] * (1 - _TIE):
                best = (cost, plan)
    assert best is not None
    return best[1]


class _Finisher:
    """Clamp to the input range, round for integer types, cast: applied slab by slab.

    For integers too wide for the working float type, the float bounds are the nearest floats
    inside the range (so the cast cannot wrap), and values that reached the rounded-up maximum
    (or minimum) get the exact integer bound back.

    Examples
    --------
    >>> dest = np.empty(4, np.uint8)
    >>> _Finisher(0, 255, np.dtype(np.uint8))(np.array([-3.0, 1.4, 1.6, 300.0]), dest)
    >>> dest.tolist()
    [0, 1, 2, 255]
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
    """Threads to use: :func:`napari_resample.engine.threads.engine_threads`."""
    return engine_threads()


def _run_group(
    src: NDArray,
    steps: list[tuple[int, sparse.csr_matrix]],
    slab_axis: int,
    work: np.dtype,
    finish: _Finisher | None,
    pool: ThreadPoolExecutor,
    ticker: _Ticker | None = None,
) -> NDArray:
    """Apply *steps* to *src* slab by slab along *slab_axis* (which no step touches).

    *ticker* hears of every finished slab (progress) and is asked before each (cancel).
    """
    shape = list(src.shape)
    for axis, op in steps:
        shape[axis] = op.shape[0]
    out = np.empty(shape, dtype=work if finish is None else finish.dtype)
    n = src.shape[slab_axis]
    thick = _slab_thickness(src.shape, shape, slab_axis)

    def run(k0: int) -> None:
        if ticker is not None:
            ticker.before_slab()
        where = tuple(slice(k0, k0 + thick) if a == slab_axis else slice(None) for a in range(3))
        block = np.array(src[where], dtype=work, order="C")
        for axis, op in steps:
            block = _apply_op(block, axis, op)
        if finish is None:
            out[where] = block
        else:
            finish(block, out[where])

    for _ in pool.map(run, range(0, n, thick)):
        if ticker is not None:
            ticker.slab_done()
    return out


def _slab_thickness(
    src_shape: list[int] | tuple[int, ...], out_shape: list[int], axis: int
) -> int:
    """Indices along *axis* per slab: about :data:`_CHUNK` elements, at least 4 slabs a thread."""
    n = src_shape[axis]
    per_index = max(math.prod(src_shape), math.prod(out_shape)) // n
    return max(1, min(_CHUNK // max(per_index, 1), -(-n // (4 * _workers()))))


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
