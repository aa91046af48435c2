"""The separable 3D engine: one banded 1-D operator per resampled axis.

Every axis operator (:func:`napari_resample._operators.operator_at`, sparse) is truncated and
converted to the working type (the B-spline one is short because the inverse prefilter decays
like 0.27^distance). The operators are applied one axis after the other, in the order of a cost
model (:func:`step_order`), by the streamed engine (:mod:`napari_resample._stream`) whether the
volume is in memory or read plane by plane from a file: the in-plane operators to each k-plane
as dense blocks of the band (:mod:`napari_resample._banded`, BLAS on the calling thread), the k
operator to a window of planes, on all cores (numpy's products and copies release the GIL).
One engine, so a file streamed within a memory budget and an array in memory give the same
numbers, bit for bit.

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
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample._geometry import Positions, is_identity
from napari_resample._operators import _truncate, operator_at
from napari_resample._threads import engine_threads

if TYPE_CHECKING:
    from napari_resample._resample import ProgressCallback

#: Elements per slab (label voting) and the unit of the in-memory engine's blocks of input
#: planes (32 of it) and chunks of output planes (16 bytes of it): big enough for BLAS and
#: numpy to be efficient, small enough to stay in cache.
_CHUNK = 1 << 18

#: Relative cost difference under which the planner (:func:`_plan`) cannot tell two orders
#: apart (a tie).
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

    The streamed engine (:func:`napari_resample._stream.run_stream`) run over the array's
    k-planes, with the value range known: one engine, so the in-memory and the streamed
    results are the same computation. A k axis sampled backwards (a flip) reads the planes in
    reverse instead (mirrored positions on the reversed view: the same samples).

    *progress* gets the fraction done after each chunk of output planes; *check* is called
    before each block of input planes and each chunk and may raise to stop the work (a cancel).
    """
    from napari_resample._stream import array_blocks, plan_stream, run_stream

    z = positions[2]
    if z.size > 1 and z[1] < z[0]:
        arr = arr[:, :, ::-1]
        positions = (positions[0], positions[1], (arr.shape[2] - 1) - z)
    shape = (arr.shape[0], arr.shape[1], arr.shape[2])
    plan = plan_stream(shape, arr.dtype, positions, interpolation, antialias)
    assert plan is not None  # k is read forwards now
    value_range = _value_range(arr)
    size = tuple(x.size for x in positions)
    out = np.empty(size, dtype=out_dtype, order="F")

    def emit(k0: int, block: NDArray) -> None:
        out[:, :, k0 : k0 + block.shape[2]] = block

    planes = max(_workers(), (_CHUNK << 5) // max(shape[0] * shape[1], 1))
    run_stream(
        array_blocks(arr, shape, planes),
        plan,
        emit,
        out_dtype=out_dtype,
        value_range=value_range,
        progress=progress,
        check=check,
        chunk_bytes=_CHUNK << 4,
    )
    return out


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
    """The axes in the order the engine applies their operators (:func:`_plan`)."""
    return _plan(shape, size, ops)


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
) -> list[int]:
    """The order of the steps with the least estimated work.

    A step costs its operator's non-zeros times the lines it is applied to (the band's dense
    blocks pad every operator alike). Orders within :data:`_TIE` of each other are a tie, won
    by the one found first: axes in increasing order.
    """
    best: tuple[float, list[int]] | None = None
    for order in itertools.permutations(ops):
        dims = list(shape)
        cost = 0.0
        for a in order:
            cost += ops[a].nnz * math.prod(dims) / dims[a]
            dims[a] = size[a]
        if best is None or cost < best[0] * (1 - _TIE):
            best = (cost, list(order))
    return [] if best is None else best[1]


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
    """Threads to use: :func:`napari_resample._threads.engine_threads`."""
    return engine_threads()
