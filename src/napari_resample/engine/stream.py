"""The engine: planes in, planes out, memory bounded by a window of planes. The only one.

A NIfTI file stores k slowest, so it delivers whole (i, j) planes in k order; an array in memory
(or a memmap, zarr, dask array) is read along its own slowest axis (:func:`stream_axes`: i for
a C-ordered array, k otherwise), so each plane is contiguous. Every operator here is separable
and banded (:mod:`napari_resample.engine.operators`), so output plane ``k'`` needs only the
input planes ``lo[k'] .. hi[k']`` of its operator row. The engine applies, in the order its plan
chose (:mod:`napari_resample.engine.stream_plan`, in the streamed frame: the streamed axis last),
with the products of :mod:`napari_resample.engine.products`:

- the in-plane operators that come before the streamed axis's operator, to each group of input
  planes as it arrives (shared among the threads);
- the streamed axis's operator, a chunk of output planes (whole units of its rows) at a time, to
  the window of planes they read (kept in a ring, :mod:`napari_resample.engine.ring`);
- the in-plane operators that come after, and the finish (clamp, round, cast), to each chunk.

In memory and streamed are one computation: the same array read along the same axis gives the
same result **bit for bit**, however the work is cut (tested); a C- and a Fortran-ordered copy
of the same values may differ in a float's last bit when interpolated.

The clamp range of the finish is the input's [min, max] (:mod:`napari_resample.engine.clamp`):
when the caller does not know it (a file read once), the unfinished output is held
(:class:`~napari_resample.engine.held.HeldOutput`) and finished once the last input plane has
been seen, or earlier when it can; otherwise each chunk is finished and emitted at once, so
memory is independent of the number of planes.

Non-finite float input (NaN, Inf) is the one exception: its rule fills each non-finite voxel
from its 3D nearest finite neighbour (not a plane-local rule), so the whole volume is read into
memory, filled, and run through this same engine
(:func:`napari_resample.engine.resample.sample_grid`); met while streaming,
:class:`NonFiniteInput` tells the caller to do that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.clamp import Finisher, RunningRange, ValueRange
from napari_resample.engine.geometry import Positions
from napari_resample.engine.held import HeldOutput, looks_final
from napari_resample.engine.products import plane_steps, step_buffers
from napari_resample.engine.progress import ProgressCallback, Ticker
from napari_resample.engine.ring import PlaneRing
from napari_resample.engine.stream_plan import (
    HOLD_CAP,
    StreamPlan,
    blocks_planes,
    chunk_planes,
    filled,
    group_planes,
    plan_stream,
    stream_budget,
    stream_frame,
)
from napari_resample.engine.threads import engine_threads

#: ``(k0, block)``: input planes ``k0 .. k0 + n - 1`` as an (I, J, n) array.
Block = tuple[int, NDArray]
#: Called with ``(k0, block)`` for every finished chunk of output planes, in k order.
Emit = Callable[[int, NDArray], None]


class NonFiniteInput(ValueError):
    """A float volume with NaN or Inf reached the streamed engine (see the module docstring)."""


def note_finite_range(seen: RunningRange, block: NDArray) -> None:
    """Take *block* into the range *seen*, refusing NaN and Inf.

    Raises
    ------
    NonFiniteInput
        For float values holding NaN or Inf.
    """
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        raise NonFiniteInput("the volume holds NaN or Inf values, which are not streamed")
    seen.add(block)


def run_stream(
    blocks: Iterable[Block],
    plan: StreamPlan,
    emit: Emit,
    *,
    out_dtype: np.dtype,
    value_range: ValueRange | None = None,
    progress: ProgressCallback | None = None,
    check: Callable[[], None] | None = None,
    chunk_bytes: int | None = None,
    foresee: Emit | None = None,
) -> ValueRange | None:
    """Resample the planes of *blocks* (in k order, every plane once) by *plan*, giving the
    output planes to *emit* in k order, in chunks, finished in *out_dtype*; return the input's
    finite [min, max] when the finish used one (the interpolating modes: *value_range*, or the
    range seen), else None.

    *value_range*: the input's [min, max] for the finish of the interpolating modes; None holds
    the unfinished output until the last input plane (then finished with the range seen), and
    *foresee*, when given, is shown held planes finished ahead of time once the range looks
    final (:mod:`napari_resample.engine.held`): planes *emit* will probably get, as *emit*
    would get them. Only *emit* is the result.
    *chunk_bytes* bounds a chunk's working set
    (:func:`napari_resample.engine.stream_plan.chunk_planes`). *progress* hears the fraction of
    output planes done after each chunk; *check* is called between blocks and chunks.

    Raises
    ------
    NonFiniteInput
        For float input holding NaN or Inf (interpolating modes), before anything is emitted
        when *value_range* is None.
    """
    native = np.dtype(out_dtype).newbyteorder("=")
    ticker = Ticker(plan.out_shape[2], progress, check)
    runner = _Runner(plan, native, value_range, emit, ticker, chunk_bytes, foresee)
    with ThreadPoolExecutor(max_workers=runner.threads) as pool:
        runner.pool = pool if runner.threads > 1 else None
        for k0, block in blocks:
            ticker.before_step()
            runner.add(k0, block)
        if runner.have != plan.in_shape[2] - 1:
            raise ValueError(
                f"the stream ended after {runner.have + 1} of {plan.in_shape[2]} planes"
            )
        runner.drain()
        runner.flush()
    ticker.finished()
    if not plan.needs_range:
        return None
    return value_range if value_range is not None else runner.seen.range


class _Runner:
    """The state of one streamed resampling: the ring, the next output plane, the held output
    and the value range seen."""

    def __init__(
        self,
        plan: StreamPlan,
        out_dtype: np.dtype,
        value_range: ValueRange | None,
        emit: Emit,
        ticker: Ticker,
        chunk_bytes: int | None,
        foresee: Emit | None = None,
    ) -> None:
        self.plan, self.out_dtype, self._emit, self.ticker = plan, out_dtype, emit, ticker
        self.back = tuple(int(a) for a in np.argsort(plan.axes))
        self.have = -1
        self.next = 0
        self._foresee = foresee
        self.held = HeldOutput(
            plan.out_shape[2],
            plan.work,
            out_dtype,
            self._emit_planes,
            None if foresee is None else self._foresee_planes,
        )
        self.steady_from = 0  # the input plane from which the range seen has not changed
        self.early = False  # whether held chunks may be finished early (integer input)
        self.seen = RunningRange()
        self.pool: ThreadPoolExecutor | None = None
        self.ring: PlaneRing | None = None
        self.shape = plan.ring_plane_shape()
        self.chunk_bytes, self.chunk, self.group = chunk_bytes, 1, 1
        self.threads = engine_threads()
        self.buffers: list[NDArray] = []  # a group in the working type, after each step
        # the first input plane still needed once output plane k' - 1 is done: min(lo[k':])
        lo = plan.lo
        self.keep_from = np.minimum.accumulate(lo[::-1])[::-1] if lo.size else lo
        # where a chunk may end (the last plane of a unit) and the last input plane it needs
        self.stops = np.arange(plan.out_shape[2]) if plan.units is None else plan.units.ends - 1
        self.stop = 0
        self.reach = np.maximum.accumulate(plan.hi) if plan.hi.size else plan.hi
        self.finish: Finisher | None = None
        if value_range is not None and plan.needs_range:
            self.finish = Finisher(value_range[0], value_range[1], out_dtype)

    def emit(self, k0: int, block: NDArray) -> None:
        """Hand a finished chunk on (:meth:`handed`)."""
        self._emit(k0, self.handed(k0, block))

    def handed(self, k0: int, block: NDArray) -> NDArray:
        """A finished chunk as it is handed on: with the fill value outside the input's field
        of view, in the input's axis order."""
        return filled(self.plan, k0, block).transpose(self.back)

    def _keep(self) -> int:
        return int(self.keep_from[self.next]) if self.next < self.keep_from.size else 1 << 62

    # ---------------------------------------------------------------- input side

    def add(self, k0: int, block: NDArray) -> None:
        """Take input planes k0.. (in order, in the input's axis order, sliced along the
        streamed axis), computing what they complete as they come in, a group at a time."""
        block = block.transpose(self.plan.axes)
        if k0 != self.have + 1:
            raise ValueError(
                f"planes must come in order: expected plane {self.have + 1}, got {k0}"
            )
        plan = self.plan
        if self.ring is None:
            self.chunk = chunk_planes(plan, block.dtype, self.chunk_bytes)
            self.group = group_planes(plan, self.chunk_bytes)
            capacity, elems = plan.capacity(self.chunk, self.group), math.prod(self.shape)
            self.ring = PlaneRing(capacity, elems, plan.ring_dtype(block.dtype))
            self.early = block.dtype.kind in "iub"
        if plan.mode == "separable" and self.finish is None:
            before = self.seen.range
            note_finite_range(self.seen, block)
            if self.seen.range != before:
                self.steady_from = k0 + block.shape[2]
        stack = block.transpose(2, 0, 1)  # planes first
        for g in range(0, stack.shape[0], self.group):
            planes = stack[g : g + self.group]
            if plan.mode == "separable":
                planes = self._prepare(planes)
            for t in range(planes.shape[0]):
                self.ring.push(k0 + g + t, planes[t], self._keep())
            self.have = k0 + g + planes.shape[0] - 1
            self.drain()

    def _prepare(self, stack: NDArray) -> NDArray:
        """Input planes (n, P0, P1) in the working type, through the operators before the
        streamed axis: the planes shared among the threads, into buffers kept for the run."""
        n = stack.shape[0]
        if not self.buffers:
            work, pre = self.plan.work, self.plan.pre
            self.buffers = [np.empty((self.group, *stack.shape[1:]), work)]
            self.buffers += step_buffers(self.group, stack.shape[1:], pre, work)

        def run(a: int, b: int) -> None:
            np.copyto(self.buffers[0][a:b], stack[a:b], casting="unsafe")
            plane_steps(self.buffers[0][a:b], self.plan.pre, [x[a:b] for x in self.buffers[1:]])

        self._each(run, n)
        return self.buffers[-1][:n]

    def _each(self, fn: Callable[[int, int], None], n: int) -> None:
        """``fn(a, b)`` over *n* planes cut evenly among the threads."""
        parts = min(self.threads, n)
        if self.pool is None or parts < 2:
            fn(0, n)
            return
        cuts = [n * p // parts for p in range(parts + 1)]
        list(self.pool.map(fn, cuts[:-1], cuts[1:]))

    # ---------------------------------------------------------------- output side

    def drain(self) -> None:
        """Compute every chunk of output planes whose input window has arrived: whole units of
        the streamed axis's operator, up to :attr:`chunk` planes."""
        n_out = self.plan.out_shape[2]
        stops, reach = self.stops, self.reach
        while self.next < n_out and reach[stops[self.stop]] <= self.have:
            self.ticker.before_step()
            a, j = self.next, self.stop
            while (
                j + 1 < stops.size
                and stops[j + 1] + 1 - a <= self.chunk
                and reach[stops[j + 1]] <= self.have
            ):
                j += 1
            b = int(stops[j]) + 1
            self._compute(a, b)
            self.next, self.stop = b, j + 1
            self.ticker.step_done(b - a)

    def _planes(self, lo: int, hi: int) -> NDArray:
        """Input planes lo..hi as a (n, I, J) view of the ring."""
        assert self.ring is not None
        return self.ring.rows(lo, hi).reshape(-1, *self.shape)

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
            window = self._planes(lo, hi)  # planes first: (streamed, frame 0, frame 1)
            taps = ((z0[a:b] - lo, z1[a:b] - lo, tz[a:b]), tx, ty)
            axes = (plan.axes[2], plan.axes[0], plan.axes[1])
            self.emit(a, vote_taps(window, taps, axes=axes).transpose(1, 2, 0))
        else:
            self._interpolate(a, b, lo, hi)

    def _interpolate(self, a: int, b: int, lo: int, hi: int) -> None:
        plan = self.plan
        assert self.ring is not None
        if plan.units is None:  # a copy: the ring's rows are overwritten later
            chunk = np.array(self._planes(a, b - 1))
        else:
            flat = self._rows(a, b)
            plan.units.apply(a, b, self.ring.rows(lo, hi), lo, flat, self._each)
            chunk = flat.reshape(b - a, *self.shape)
        if plan.post:
            done = step_buffers(chunk.shape[0], self.shape, plan.post, plan.work)

            def run(p: int, q: int) -> None:
                plane_steps(chunk[p:q], plan.post, [x[p:q] for x in done])

            self._each(run, chunk.shape[0])
            chunk = done[-1]
        # planes first: each plane contiguous to the end
        if self.finish is None:
            planes_in = self.have + 1
            steady = looks_final(planes_in, plan.in_shape[2], planes_in - self.steady_from)
            self.held.add(a, chunk, self.seen, early=self.early, steady=steady)
            return
        dest = np.empty(chunk.shape, dtype=self.out_dtype)
        self.finish(chunk, dest)
        self._emit_planes(a, dest)

    def _rows(self, a: int, b: int) -> NDArray:
        """Where output planes a:b are computed, (b - a, plane size): the held output's rows
        when it is held and nothing follows the streamed axis, else a new array."""
        elems = self.shape[0] * self.shape[1]
        if self.finish is not None or self.plan.post:
            return np.empty((b - a, elems), dtype=self.plan.work)
        return self.held.rows(a, b, elems)

    def _emit_planes(self, k0: int, planes: NDArray) -> None:
        self.emit(k0, planes.transpose(1, 2, 0))

    def _foresee_planes(self, k0: int, planes: NDArray) -> None:
        """:meth:`_emit_planes` and :meth:`emit` for planes finished ahead of time."""
        assert self._foresee is not None
        self._foresee(k0, self.handed(k0, planes.transpose(1, 2, 0)))

    def flush(self) -> None:
        """Finish and emit the held output, with the value range seen (all planes are in)."""
        self.held.flush(self.seen)


def stream_axes(data: object) -> tuple[int, int, int]:
    """The axes of *data* as the engine streams them, the streamed axis last: a C-ordered
    numpy array along i (its planes ``data[i]`` are contiguous), anything else along k (the
    order of NIfTI files and of Fortran-ordered arrays):
    :func:`napari_resample.engine.stream_plan.stream_frame`. The same array streams the same
    way in memory or not, so the results are equal bit for bit. (Label voting multiplies its
    weights in (i, j, k) order whatever the frame, and nearest neighbour only copies values:
    their results are the values' only, whatever the layout.)"""
    c_order = (
        isinstance(data, np.ndarray) and data.flags.c_contiguous and not data.flags.f_contiguous
    )
    return stream_frame(c_order)


def array_blocks(
    data: object, shape: tuple[int, int, int], planes: int, axis: int = 2
) -> Iterator[Block]:
    """``(k0, block)`` of an array-like that slices (numpy memmap, zarr, h5py, dask), *planes*
    planes along *axis* at a time, as numpy arrays."""
    for k0 in range(0, shape[axis], planes):
        where = tuple(slice(k0, k0 + planes) if a == axis else slice(None) for a in range(3))
        yield k0, np.asarray(data[where])  # type: ignore[index]


def value_range_of(data: object, shape: tuple[int, int, int], dtype: np.dtype) -> ValueRange:
    """The [min, max] of a non-empty array-like, read plane block by plane block (a first
    pass); :class:`NonFiniteInput` for float data holding NaN or Inf."""
    seen = RunningRange()
    for _, block in array_blocks(data, shape, blocks_planes(shape, dtype.itemsize)):
        note_finite_range(seen, block)
    assert seen.range is not None
    return seen.range


def stream_array(
    data: object,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    positions: Positions,
    *,
    interpolation: str,
    antialias: bool,
    out: object,
    budget: int | None,
    progress: ProgressCallback | None = None,
    check: Callable[[], None] | None = None,
    value_range: ValueRange | None = None,
) -> None:
    """Resample an array-like into the array-like *out*, plane chunk by plane chunk along the
    axis :func:`stream_axes` chooses, within *budget* bytes (beyond what *out* itself holds;
    None: no bound, for arrays already in memory). *value_range*: the input's [min, max] when
    known (else held output or a first pass finds it).

    Raises
    ------
    MemoryError
        When even streaming needs more than *budget* (one plane too big), with the numbers;
        before any work.
    NonFiniteInput
        For float data with NaN or Inf (nothing is written to *out*).
    ValueError
        When the streamed axis is read backwards (no streamed plan).
    """
    from napari_resample.engine.memory import format_bytes

    axes = stream_axes(data)
    plan = plan_stream(shape, dtype, positions, interpolation, antialias, axes)
    if plan is None:
        raise ValueError(f"axis {axes[2]} sampled in decreasing order cannot be streamed")
    native = np.dtype(dtype).newbyteorder("=")
    chunk_bytes = None
    if budget is not None:
        need, held, chunk_bytes = stream_budget(plan, np.dtype(dtype), budget)
        if need > budget:
            raise MemoryError(
                f"resampling a {shape} {dtype} volume to {plan.size} ({interpolation}) "
                f"needs {format_bytes(need)} even streamed plane by plane (window of "
                f"{plan.window_planes()} planes), over the budget of {format_bytes(budget)}"
            )
        if value_range is None and plan.needs_range and (need + held > budget or held > HOLD_CAP):
            value_range = value_range_of(data, shape, np.dtype(dtype))  # a first pass
    axis = axes[2]

    def emit(k0: int, block: NDArray) -> None:
        where = tuple(
            slice(k0, k0 + block.shape[axis]) if a == axis else slice(None) for a in range(3)
        )
        out[where] = block  # type: ignore[index]

    per_block = blocks_planes(plan.in_shape, np.dtype(dtype).itemsize, budget)
    blocks = array_blocks(data, shape, per_block, axis)
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
