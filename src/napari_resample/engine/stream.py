"""The streamed engine: k-planes in, k-planes out, memory bounded by a window of planes.

NIfTI stores k slowest, so a file (or any array that slices along its last axis) delivers
whole (i, j) planes in k order. Every operator here is separable and banded (the truncated
B-spline, linear and Gaussian operators of :mod:`napari_resample.engine.operators`), so output
plane ``k'`` needs only the input planes ``lo[k'] .. hi[k']`` of its operator row. The streamed
engine applies, in the order the in-memory engine would (:func:`_separable.step_order`):

- the in-plane operators that come before the k operator, to each input plane as it arrives;
- the k operator's rows of a chunk of output planes, to the window of planes they read (kept in
  a ring: at most the window's width of planes is held);
- the in-plane operators that come after, and the finish (clamp, round, cast), to each chunk.

Each output value is the same sum of the same products in the same order as in memory: the
streamed output equals :func:`napari_resample.resample_array`'s **bit for bit**, for every mode,
data type and anchor (tested). Label voting and nearest neighbour read windows of input planes
with the same taps and indices.

The clamp range of the finish is the input's [min, max]: when the caller does not know it (a
file read once), the unfinished output is held (in the working type) and finished once the
last input plane has been seen; otherwise (a first pass found it) each chunk is finished and
emitted at once, so memory is independent of the number of planes.

Non-finite float input is not streamed (the in-memory engine fills it from its 3D nearest
finite neighbours): :class:`NonFiniteInput` tells the caller to use the in-memory engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine.geometry import Positions, is_identity
from napari_resample.engine.operators import _linear_weights
from napari_resample.engine.separable import (
    _Finisher,
    _work_dtype,
    _workers,
    build_ops,
    step_order,
)

#: ``(k0, block)``: input planes ``k0 .. k0 + n - 1`` as an (I, J, n) array.
Block = tuple[int, NDArray]
#: Called with ``(k0, block)`` for every finished chunk of output planes, in k order.
Emit = Callable[[int, NDArray], None]
#: Bytes of the window stack a chunk of output planes may read at once (its size only changes
#: how the work is cut, never the result).
CHUNK_BYTES = 32 << 20


class NonFiniteInput(ValueError):
    """A float volume with NaN or Inf reached the streamed engine (see the module docstring)."""


@dataclass
class StreamPlan:
    """Everything the streamed engine needs to resample one volume (from :func:`plan_stream`).

    ``lo[k']`` and ``hi[k']`` are the first and last input planes output plane ``k'`` reads.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    mode: str  # "copy", "separable", "label" or "nearest"
    work: np.dtype
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    pre: list[tuple[int, sparse.csr_matrix]] = field(default_factory=list)
    zop: sparse.csr_matrix | None = None
    post: list[tuple[int, sparse.csr_matrix]] = field(default_factory=list)
    taps: tuple = ()
    index: tuple = ()
    #: ``(value, (inside_i, inside_j, inside_k))``: output voxels outside the input's field of
    #: view along some axis get *value* (:func:`with_fill`); None: the edge rules hold there.
    fill: tuple | None = None

    @property
    def needs_range(self) -> bool:
        """Whether the finish needs the input's value range (interpolating modes)."""
        return self.mode == "separable"

    def window_planes(self) -> int:
        """The most input planes one output plane reads."""
        return int(np.max(self.hi - self.lo)) + 1


def plan_stream(
    in_shape: tuple[int, int, int],
    dtype: np.dtype,
    positions: Positions,
    interpolation: str,
    antialias: bool = False,
) -> StreamPlan | None:
    """The streamed plan of a resampling, or None when it cannot be streamed (output planes
    that read input planes in decreasing k order: a flipped k axis)."""
    size = (positions[0].size, positions[1].size, positions[2].size)
    z = positions[2]
    if z.size > 1 and np.any(np.diff(z) < 0):
        return None
    n_z = in_shape[2]
    work = _work_dtype(np.dtype(dtype))
    if all(is_identity(n, x) for n, x in zip(in_shape, positions, strict=True)):
        k = np.arange(n_z, dtype=np.int64)
        return StreamPlan(in_shape, size, "copy", work, k, k)
    if interpolation == "nearest":
        index = tuple(
            np.clip(np.floor(x + 0.5), 0, n - 1).astype(np.int64)
            for n, x in zip(in_shape, positions, strict=True)
        )
        return StreamPlan(in_shape, size, "nearest", work, index[2], index[2], index=index)
    if interpolation == "label":
        taps = tuple(_linear_weights(n, x) for n, x in zip(in_shape, positions, strict=True))
        return StreamPlan(in_shape, size, "label", work, taps[2][0], taps[2][1], taps=taps)
    ops = build_ops(in_shape, positions, interpolation, antialias, work)
    order = step_order(in_shape, size, ops)
    if 2 in ops:
        at = order.index(2)
        zop = sparse.csr_matrix(ops[2])
        lo, hi = _row_span(zop)
        pre = [(a, ops[a]) for a in order[:at]]
        post = [(a, ops[a]) for a in order[at + 1 :]]
    else:
        zop = None
        lo = hi = np.arange(n_z, dtype=np.int64)
        pre, post = [(a, ops[a]) for a in order], []
    return StreamPlan(in_shape, size, "separable", work, lo, hi, pre, zop, post)


def with_fill(plan: StreamPlan, positions: Positions, value: float | int) -> StreamPlan:
    """*plan* writing *value* outside the input's field of view (as
    :func:`napari_resample.engine.resample.sample_grid` with ``fill_value``)."""
    from napari_resample.engine.geometry import inside_positions

    masks = tuple(inside_positions(n, x) for n, x in zip(plan.in_shape, positions, strict=True))
    if all(m.all() for m in masks):
        return plan
    plan.fill = (value, masks)
    return plan


def _row_span(op: sparse.csr_matrix) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """First and last column of every row of *op* (rows always have an entry here)."""
    starts, ends = op.indptr[:-1], op.indptr[1:]
    lo = np.minimum.reduceat(op.indices, starts).astype(np.int64)
    hi = np.maximum.reduceat(op.indices, starts).astype(np.int64)
    empty = ends == starts
    if empty.any():  # reduceat gives the next row's value there; such rows read nothing
        lo[empty], hi[empty] = 0, 0
    return lo, hi


def _plane_elems(plan: StreamPlan) -> int:
    """Elements of one plane of the ring: the input plane after the operators before k
    (interpolating modes), else the input plane itself."""
    if plan.mode != "separable":
        return plan.in_shape[0] * plan.in_shape[1]
    dims = list(plan.in_shape[:2])
    for axis, op in plan.pre:
        dims[axis] = op.shape[0]
    return dims[0] * dims[1]


def _ring_dtype(plan: StreamPlan, in_dtype: np.dtype) -> np.dtype:
    return plan.work if plan.mode == "separable" else np.dtype(in_dtype).newbyteorder("=")


def _step(plan: StreamPlan) -> float:
    """Input planes per output plane along k."""
    return plan.in_shape[2] / max(plan.out_shape[2], 1)


def chunk_planes(plan: StreamPlan, in_dtype: np.dtype, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Output planes computed together: the input planes their window adds and their results
    within *chunk_bytes* (at least one plane)."""
    ring = _plane_elems(plan) * _ring_dtype(plan, in_dtype).itemsize
    out = plan.out_shape[0] * plan.out_shape[1] * plan.work.itemsize
    per_plane = _step(plan) * ring + 3 * out
    if plan.mode == "label":
        per_plane += plan.out_shape[0] * plan.out_shape[1] * _VOTE_BYTES
    return max(1, min(plan.out_shape[2], int(chunk_bytes // max(per_plane, 1))))


def stream_memory(plan: StreamPlan, in_dtype: np.dtype, chunk: int, block_planes: int) -> int:
    """Bytes the streamed engine holds at most, beyond the held output: the input block (and
    a decoded copy), the ring of planes (a window and the chunk's extra planes), the planes
    being prepared on every thread, a chunk's results and finish, and the operators."""
    i, j, _ = plan.in_shape
    oi, oj, _ = plan.out_shape
    item = np.dtype(in_dtype).itemsize
    ring_item = _ring_dtype(plan, in_dtype).itemsize
    ring = _plane_elems(plan) * ring_item
    cap = _capacity(plan, chunk)
    work = plan.work.itemsize
    threads = _workers()
    total = 2 * block_planes * i * j * item  # the block and the source's own decoded copy
    total += cap * ring  # the ring
    total += threads * 3 * max(ring, i * j * work)  # planes in flight: input, steps, result
    total += chunk * oi * oj * (3 * work + item)  # results, post steps, finish
    if plan.mode == "label":
        total += chunk * oi * oj * _VOTE_BYTES
    ops = [op for _, op in plan.pre + plan.post] + ([plan.zop] if plan.zop is not None else [])
    return total + sum(op.data.nbytes + op.indices.nbytes + op.indptr.nbytes for op in ops)


#: Bytes per output voxel of a chunk in label voting: its scores and weights of the 8 corners.
_VOTE_BYTES = 200


def _capacity(plan: StreamPlan, chunk: int) -> int:
    """Planes the ring holds at most: a chunk's window and the threads' planes in flight."""
    return plan.window_planes() + math.ceil(chunk * _step(plan)) + _workers() + 1


def run_stream(
    blocks: Iterable[Block],
    plan: StreamPlan,
    emit: Emit,
    *,
    out_dtype: np.dtype,
    value_range: tuple[float | int, float | int] | None = None,
    progress: Callable[[float], None] | None = None,
    check: Callable[[], None] | None = None,
    chunk_bytes: int | None = None,
) -> None:
    """Resample the planes of *blocks* (in k order, every plane once) by *plan*, giving the
    output planes to *emit* in k order, in chunks, finished in *out_dtype*.

    *value_range*: the input's [min, max] for the finish of the interpolating modes; None holds
    the unfinished output until the last input plane (then finished with the range seen).
    *chunk_bytes* bounds a chunk's working set (:func:`chunk_planes`; default
    :data:`CHUNK_BYTES`).

    Raises
    ------
    NonFiniteInput
        For float input holding NaN or Inf (interpolating modes), before anything is emitted
        when *value_range* is None.
    """
    native = np.dtype(out_dtype).newbyteorder("=")
    total = max(plan.out_shape[2], 1)
    runner = _Runner(plan, native, value_range, emit, chunk_bytes or CHUNK_BYTES)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        runner.pool = pool
        for k0, block in blocks:
            if check is not None:
                check()
            runner.add(k0, block, lambda: runner.drain(progress, total, check))
        if runner.have != plan.in_shape[2] - 1:
            raise ValueError(
                f"the stream ended after {runner.have + 1} of {plan.in_shape[2]} planes"
            )
        runner.drain(progress, total, check)
        runner.flush()
    if progress is not None:
        progress(1.0)


class _Ring:
    """The input planes a streamed resampling still needs, as rows of one buffer, so that any
    window of consecutive planes is a contiguous block of rows (no copy)."""

    def __init__(self, capacity: int, elems: int, dtype: np.dtype) -> None:
        self.buf = np.empty((capacity, elems), dtype=dtype)
        self.first = 0  # plane number of row `start`
        self.start = 0
        self.count = 0

    def push(self, k: int, plane: NDArray, keep_from: int) -> None:
        if self.count == 0:
            self.first, self.start = k, 0
        self.drop_before(keep_from)
        if self.start + self.count == self.buf.shape[0]:
            if self.count == self.buf.shape[0]:  # never with the planned capacity
                self.buf = np.concatenate([self.buf, np.empty_like(self.buf)])
            else:  # move the live rows to the front
                self.buf[: self.count] = self.buf[self.start : self.start + self.count]
                self.start = 0
        self.buf[self.start + self.count] = plane.reshape(-1)
        self.count += 1

    def drop_before(self, k: int) -> None:
        n = min(max(0, k - self.first), self.count)
        self.first += n
        self.start += n
        self.count -= n

    def rows(self, lo: int, hi: int) -> NDArray:
        """Planes lo..hi (inclusive) as a (hi - lo + 1, elems) view."""
        a = self.start + lo - self.first
        return self.buf[a : a + hi - lo + 1]


class _Runner:
    """The state of one streamed resampling: the ring, the next output plane, the held output
    and the value range seen."""

    def __init__(
        self,
        plan: StreamPlan,
        out_dtype: np.dtype,
        value_range: tuple[float | int, float | int] | None,
        emit: Emit,
        chunk_bytes: int,
    ) -> None:
        self.plan, self.out_dtype, self._emit = plan, out_dtype, emit
        self.have = -1
        self.next = 0
        self.held: list[tuple[int, NDArray]] = []
        self.seen: tuple[float | int, float | int] | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.ring: _Ring | None = None
        self.chunk_bytes = chunk_bytes
        self.chunk = 1
        # the first input plane still needed once output plane k' - 1 is done: min(lo[k':])
        lo = plan.lo
        self.keep_from = np.minimum.accumulate(lo[::-1])[::-1] if lo.size else lo
        self.finish: _Finisher | None = None
        if value_range is not None and plan.needs_range:
            self.finish = _Finisher(value_range[0], value_range[1], out_dtype)

    def emit(self, k0: int, block: NDArray) -> None:
        """Hand a finished chunk on, with the fill value outside the input's field of view."""
        if self.plan.fill is not None:
            value, (mi, mj, mk) = self.plan.fill
            block = np.array(block, copy=True) if not block.flags.writeable else block
            block[~mi] = value
            block[:, ~mj] = value
            block[:, :, ~mk[k0 : k0 + block.shape[2]]] = value
        self._emit(k0, block)

    def _keep(self) -> int:
        return int(self.keep_from[self.next]) if self.next < self.keep_from.size else 1 << 62

    # ---------------------------------------------------------------- input side

    def add(self, k0: int, block: NDArray, drain: Callable[[], None]) -> None:
        """Take input planes k0.. (in order), calling *drain* whenever new planes are in."""
        if k0 != self.have + 1:
            raise ValueError(
                f"planes must come in order: expected plane {self.have + 1}, got {k0}"
            )
        plan = self.plan
        if self.ring is None:
            self.chunk = chunk_planes(plan, block.dtype, self.chunk_bytes)
            dtype = _ring_dtype(plan, block.dtype)
            self.ring = _Ring(_capacity(plan, self.chunk), _plane_elems(plan), dtype)
        if plan.mode == "separable":
            self._note_range(block)
        n = block.shape[2]
        group = _workers()
        for g in range(0, n, group):
            planes = [block[:, :, t] for t in range(g, min(n, g + group))]
            if plan.mode == "separable":
                planes = self._map(self._prepare, planes)
            for t, plane in enumerate(planes):
                self.ring.push(k0 + g + t, np.asarray(plane, order="C"), self._keep())
            self.have = k0 + g + len(planes) - 1
            drain()

    def _note_range(self, block: NDArray) -> None:
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise NonFiniteInput("the volume holds NaN or Inf values, which are not streamed")
        lo, hi = _block_range(block)
        if self.seen is not None:
            lo, hi = min(self.seen[0], lo), max(self.seen[1], hi)
        self.seen = (lo, hi)

    def _prepare(self, plane: NDArray) -> NDArray:
        """An input plane in the working type, through the operators before k."""
        out = np.array(plane, dtype=self.plan.work, order="C")
        return _plane_steps(out, self.plan.pre)

    def _map(self, fn: Callable[[NDArray], NDArray], items: list[NDArray]) -> list[NDArray]:
        if self.pool is None or len(items) < 2:
            return [fn(x) for x in items]
        return list(self.pool.map(fn, items))

    # ---------------------------------------------------------------- output side

    def drain(
        self,
        progress: Callable[[float], None] | None,
        total: int,
        check: Callable[[], None] | None,
    ) -> None:
        """Compute every chunk of output planes whose input window has arrived."""
        plan = self.plan
        n_out = plan.out_shape[2]
        while self.next < n_out and plan.hi[self.next] <= self.have:
            if check is not None:
                check()
            a = self.next
            b = a + 1
            while b < n_out and b - a < self.chunk and plan.hi[b] <= self.have:
                b += 1
            self._compute(a, b)
            self.next = b
            if progress is not None:
                progress(0.95 * b / total)

    def _planes(self, lo: int, hi: int) -> NDArray:
        """Input planes lo..hi as a (n, I, J) view of the ring."""
        assert self.ring is not None
        i, j, _ = self.plan.in_shape
        return self.ring.rows(lo, hi).reshape(-1, i, j)

    def _compute(self, a: int, b: int) -> None:
        plan = self.plan
        lo, hi = int(plan.lo[a:b].min()), int(plan.hi[a:b].max())
        if plan.mode == "copy":
            out = self._planes(a, b - 1).transpose(1, 2, 0).astype(self.out_dtype)
            self.emit(a, out)
        elif plan.mode == "nearest":
            ix, iy, iz = plan.index
            picked = self._planes(lo, hi).take(iz[a:b] - lo, axis=0)
            out = picked.take(ix, axis=1).take(iy, axis=2).transpose(1, 2, 0)
            self.emit(a, out.astype(self.out_dtype, copy=False))
        elif plan.mode == "label":
            from napari_resample.engine.vote import vote_taps

            tx, ty, (z0, z1, tz) = plan.taps
            window = self._planes(lo, hi).transpose(1, 2, 0)
            window_taps = (z0[a:b] - lo, z1[a:b] - lo, tz[a:b])
            self.emit(a, vote_taps(window, (tx, ty, window_taps)))
        else:
            self._interpolate(a, b, lo, hi)

    def _interpolate(self, a: int, b: int, lo: int, hi: int) -> None:
        plan = self.plan
        assert self.ring is not None
        shape = self._ring_plane_shape()
        if plan.zop is None:
            planes = [self.ring.rows(k, k)[0].reshape(shape) for k in range(a, b)]
        else:
            rows = sparse.csr_matrix(plan.zop[a:b, lo : hi + 1])
            result = self._z_product(rows, self.ring.rows(lo, hi))
            planes = [result[t].reshape(shape) for t in range(b - a)]
        if plan.post:
            planes = self._map(lambda p: _plane_steps(p, plan.post), planes)
        chunk = np.stack(planes, axis=2)
        if self.finish is None:
            self.held.append((a, chunk))
            return
        self.emit(a, self._finished(chunk))

    def _ring_plane_shape(self) -> tuple[int, int]:
        dims = list(self.plan.in_shape[:2])
        for axis, op in self.plan.pre:
            dims[axis] = op.shape[0]
        return dims[0], dims[1]

    def _z_product(self, rows: sparse.csr_matrix, flat: NDArray) -> NDArray:
        """``rows @ flat``, its columns cut between the threads (same sums per value)."""
        n = flat.shape[1]
        parts = max(1, min(_workers(), n // 4096))
        if parts == 1 or self.pool is None:
            return np.asarray(rows @ flat)
        cuts = np.linspace(0, n, parts + 1).astype(np.int64)
        out = np.empty((rows.shape[0], n), dtype=flat.dtype)

        def run(p: int) -> None:
            out[:, cuts[p] : cuts[p + 1]] = rows @ flat[:, cuts[p] : cuts[p + 1]]

        list(self.pool.map(run, range(parts)))
        return out

    def _finished(self, chunk: NDArray) -> NDArray:
        assert self.finish is not None
        dest = np.empty(chunk.shape, dtype=self.out_dtype)
        self.finish(chunk, dest)
        return dest

    def flush(self) -> None:
        """Finish and emit the held output, with the value range seen (all planes are in)."""
        if not self.held:
            return
        assert self.seen is not None
        self.finish = _Finisher(self.seen[0], self.seen[1], self.out_dtype)
        while self.held:
            a, chunk = self.held.pop(0)
            self.emit(a, self._finished(chunk))


def _block_range(block: NDArray) -> tuple[float | int, float | int]:
    """[min, max] of a block, exact: Python ints for integer types (as the in-memory engine's
    :func:`_separable._value_range`)."""
    if block.dtype.kind == "b":
        return 0, 1
    lo, hi = block.min(), block.max()
    return (int(lo), int(hi)) if block.dtype.kind in "iu" else (float(lo), float(hi))


def _plane_steps(plane: NDArray, steps: list[tuple[int, sparse.csr_matrix]]) -> NDArray:
    """The in-plane operators applied to one (I, J) plane, as the in-memory engine applies
    them to its slabs (the same products: each value is the same sum in the same order)."""
    for axis, op in steps:
        plane = np.asarray(op @ plane) if axis == 0 else np.asarray(op @ plane.T).T
    return np.ascontiguousarray(plane)


def array_blocks(data: object, shape: tuple[int, int, int], planes: int) -> Iterator[Block]:
    """``(k0, block)`` of an array-like that slices along its last axis (numpy memmap, zarr,
    h5py, dask), *planes* planes at a time, as numpy arrays."""
    for k0 in range(0, shape[2], planes):
        yield k0, np.asarray(data[:, :, k0 : k0 + planes])  # type: ignore[index]


#: The most unfinished output (float32/64) held until the input's range is known; above it a
#: first pass over the input finds the range (one more read costs less than holding gigabytes:
#: benchmarks/README.md, Streaming).
HOLD_CAP = 64 << 20
#: Bytes of input read at a time from an array-like.
READ_BYTES = 8 << 20


def blocks_planes(shape: tuple[int, int, int], itemsize: int, budget: int | None = None) -> int:
    """Planes per input block: about :data:`READ_BYTES` (less for a small *budget*), at
    least one."""
    size = READ_BYTES if budget is None else max(1, min(READ_BYTES, budget // 16))
    return max(1, size // max(shape[0] * shape[1] * itemsize, 1))


def value_range_of(data: object, shape: tuple[int, int, int], dtype: np.dtype) -> tuple:
    """The [min, max] of an array-like, read plane block by plane block (a first pass).

    Raises
    ------
    NonFiniteInput
        For float data holding NaN or Inf.
    """
    lo: float | int | None = None
    hi: float | int | None = None
    for _, block in array_blocks(data, shape, blocks_planes(shape, dtype.itemsize)):
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise NonFiniteInput("the volume holds NaN or Inf values, which are not streamed")
        b_lo, b_hi = _block_range(block)
        lo = b_lo if lo is None else min(lo, b_lo)
        hi = b_hi if hi is None else max(hi, b_hi)
    return lo, hi


def stream_budget(plan: StreamPlan, in_dtype: np.dtype, budget: int) -> tuple[int, int, int]:
    """``(bytes streaming needs, bytes more to hold the unfinished output, chunk_bytes)`` for
    a run within *budget*: chunks and blocks shrink with the budget (down to one plane)."""
    chunk_bytes = max(1, min(CHUNK_BYTES, budget // 8))
    chunk = chunk_planes(plan, in_dtype, chunk_bytes)
    block = blocks_planes(plan.in_shape, in_dtype.itemsize, budget)
    need = stream_memory(plan, in_dtype, chunk, block)
    held = math.prod(plan.out_shape) * plan.work.itemsize if plan.needs_range else 0
    return need, held, chunk_bytes


def stream_array(
    data: object,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    positions: Positions,
    *,
    interpolation: str,
    antialias: bool,
    out: object,
    budget: int,
    progress: Callable[[float], None] | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Resample an array-like (sliced along its last axis) into the array-like *out*, plane
    chunk by plane chunk, within *budget* bytes (beyond what *out* itself holds).

    Raises
    ------
    MemoryError
        When even streaming needs more than *budget* (one plane too big), with the numbers;
        before any work.
    NonFiniteInput
        For float data with NaN or Inf (nothing is written to *out*).
    ValueError
        When the k axis is read backwards (no streamed plan).
    """
    from napari_resample.engine.memory import format_bytes

    plan = plan_stream(shape, dtype, positions, interpolation, antialias)
    if plan is None:
        raise ValueError("a k axis sampled in decreasing order cannot be streamed")
    native = np.dtype(dtype).newbyteorder("=")
    need, held, chunk_bytes = stream_budget(plan, np.dtype(dtype), budget)
    if need > budget:
        raise MemoryError(
            f"resampling a {shape} {dtype} volume to {plan.out_shape} ({interpolation}) needs "
            f"{format_bytes(need)} even streamed plane by plane (window of "
            f"{plan.window_planes()} planes), over the budget of {format_bytes(budget)}"
        )
    value_range = None  # held output, finished at the end (NaN found before any write)
    if plan.needs_range and (need + held > budget or held > HOLD_CAP):
        value_range = value_range_of(data, shape, np.dtype(dtype))  # a first pass

    def emit(k0: int, block: NDArray) -> None:
        out[:, :, k0 : k0 + block.shape[2]] = block  # type: ignore[index]

    blocks = array_blocks(data, shape, blocks_planes(shape, np.dtype(dtype).itemsize, budget))
    run_stream(
        blocks,
        plan,
        emit,
        out_dtype=native,
        value_range=value_range,
        progress=progress,
        check=check,
        chunk_bytes=chunk_bytes,
    )
