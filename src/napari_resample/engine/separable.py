"""The separable 3D engine: one sparse 1-D operator per resampled axis, slab by slab.

Every axis operator (:func:`napari_resample.engine.operators.operator_at`, sparse) is converted to
the working type (the B-spline one is short because the inverse prefilter decays like
0.27^distance). The volume is cut into slabs along an axis that a group of steps leaves alone;
each slab is converted to the work type, pushed through its steps and finished (clamp, round,
cast) while it is still in cache, on all cores (scipy's sparse products and numpy's copies
release the GIL). No BLAS call, so no second thread pool competes with ours. With three axes to
resample, the first step is one group (its result is the only full-size intermediate) and the
last two steps another; the order is chosen by a cost model (:func:`_plan`).

Values are computed, clamped, rounded and cast by the rules of :mod:`napari_resample.engine.clamp`
(the streamed engine's too); progress and cancel go through one
:class:`napari_resample.engine.progress.Ticker` per call.
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

from napari_resample.engine.clamp import Finisher, value_range, work_dtype
from napari_resample.engine.geometry import Positions
from napari_resample.engine.operators import build_ops
from napari_resample.engine.progress import Ticker
from napari_resample.engine.threads import engine_threads, slab_thickness

if TYPE_CHECKING:
    from napari_resample.engine.progress import ProgressCallback

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


def resample_separable(
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
    work = work_dtype(arr.dtype)
    lo, hi = value_range(arr)
    size = tuple(x.size for x in positions)
    ops = build_ops(arr.shape, positions, interpolation, antialias, work)
    groups = _plan(arr.shape, size, ops)
    finish = Finisher(lo, hi, out_dtype)
    # Slabs of every group, counted first so that progress is a fraction of the whole job.
    total, dims = 0, list(arr.shape)
    for slab_axis, steps in groups:
        out_dims = [size[a] if a in steps else dims[a] for a in range(3)]
        total += -(-dims[slab_axis] // _slab_thickness(dims, out_dims, slab_axis))
        dims = out_dims
    ticker = Ticker(total, progress, check)
    current: NDArray = arr
    with ThreadPoolExecutor(max_workers=engine_threads()) as pool:
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


def step_order(
    shape: tuple[int, ...], size: tuple[int, ...], ops: dict[int, sparse.csr_matrix]
) -> list[int]:
    """The axes in the order the in-memory engine applies their operators (:func:`_plan`)."""
    return [a for _, steps in _plan(shape, size, ops) for a in steps]


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


def _run_group(
    src: NDArray,
    steps: list[tuple[int, sparse.csr_matrix]],
    slab_axis: int,
    work: np.dtype,
    finish: Finisher | None,
    pool: ThreadPoolExecutor,
    ticker: Ticker | None = None,
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
            ticker.before_step()
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
            ticker.step_done()
    return out


def _slab_thickness(
    src_shape: list[int] | tuple[int, ...], out_shape: list[int], axis: int
) -> int:
    """Indices along *axis* per slab (:func:`napari_resample.engine.threads.slab_thickness`),
    an index holding its share of the larger of the group's input and output."""
    n = src_shape[axis]
    return slab_thickness(n, max(math.prod(src_shape), math.prod(out_shape)) // n)


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
