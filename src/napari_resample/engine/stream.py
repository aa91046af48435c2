"""The engine: planes in, planes out, memory bounded by a window of planes. The only one.

A NIfTI file stores k slowest, so it delivers whole (i, j) planes in k order; an array in memory
(or a memmap, zarr, dask array) is read along its own slowest axis (:func:`stream_axes`: i for
a C-ordered array, k otherwise), so each plane is contiguous. Every operator here is separable
and banded (the truncated B-spline, linear and Gaussian operators of
:mod:`napari_resample.engine.operators`), so output plane ``k'`` needs only the input planes
``lo[k'] .. hi[k']`` of its operator row. The engine applies, in the order its plan chose
(:mod:`napari_resample.engine.stream_plan`, in the streamed frame: the streamed axis last):

- the in-plane operators that come before the streamed axis's operator, to each input plane as
  it arrives (as dense blocks of their band: :class:`napari_resample.engine.operators.Banded`);
- the streamed axis's operator rows of a chunk of output planes, to the window of planes they
  read (kept in a ring, :mod:`napari_resample.engine.ring`: at most the window's width of
  planes is held);
- the in-plane operators that come after, and the finish (clamp, round, cast), to each chunk.

In memory and streamed are one computation: the same array read along the same axis gives the
same result **bit for bit**, for every mode, data type and anchor (tested); a C- and a
Fortran-ordered copy of the same values may differ in a float's last bit when interpolated.

The clamp range of the finish is the input's [min, max] (the rules of
:mod:`napari_resample.engine.clamp`): when the caller does not know it (a file read once), the
unfinished output is held (in the working type) and finished once the last input plane has been
seen; otherwise (a first pass found it) each chunk is finished and emitted at once, so memory is
independent of the number of planes.

Non-finite float input (NaN, Inf) is the one exception: its rule fills each non-finite voxel
from its 3D nearest finite neighbour (a Euclidean distance transform, not a plane-local rule),
so the whole volume is read into memory, filled, and then run through this same engine
(:func:`napari_resample.engine.resample.sample_grid`); met while streaming,
:class:`NonFiniteInput` tells the caller to do that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine.clamp import Finisher, RunningRange, ValueRange, value_range
from napari_resample.engine.geometry import Positions
from napari_resample.engine.operators import Banded
from napari_resample.engine.progress import ProgressCallback, Ticker
from napari_resample.engine.ring import PlaneRing
from napari_resample.engine.stream_plan import (
    HOLD_CAP,
    StreamPlan,
    blocks_planes,
    chunk_planes,
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
) -> None:
    """Resample the planes of *blocks* (in k order, every plane once) by *plan*, giving the
    output planes to *emit* in k order, in chunks, finished in *out_dtype*.

    *value_range*: the input's [min, max] for the finish of the interpolating modes; None holds
    the unfinished output until the last input plane (then finished with the range seen).
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
    runner = _Runner(plan, native, value_range, emit, ticker, chunk_bytes)
    with ThreadPoolExecutor(max_workers=engine_threads()) as pool:
        runner.pool = pool
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
    ) -> None:
        self.plan, self.out_dtype, self._emit, self.ticker = plan, out_dtype, emit, ticker
        self.back = tuple(int(a) for a in np.argsort(plan.axes))
        self.have = -1
        self.next = 0
        self.held: list[tuple[int, NDArray]] = []
        self.seen = RunningRange()
        self.pool: ThreadPoolExecutor | None = None
        self.ring: PlaneRing | None = None
        self.shape = plan.ring_plane_shape()
        self.chunk_bytes = chunk_bytes
        self.chunk = 1
        # the first input plane still needed once output plane k' - 1 is done: min(lo[k':])
        lo = plan.lo
        self.keep_from = np.minimum.accumulate(lo[::-1])[::-1] if lo.size else lo
        self.finish: Finisher | None = None
        if value_range is not None and plan.needs_range:
            self.finish = Finisher(value_range[0], value_range[1], out_dtype)

    def emit(self, k0: int, block: NDArray) -> None:
        """Hand a finished chunk on, with the fill value outside the input's field of view, in
        the input's axis order."""
        if self.plan.fill is not None:
            value, (mi, mj, mk) = self.plan.fill
            block = np.array(block, copy=True) if not block.flags.writeable else block
            block[~mi] = value
            block[:, ~mj] = value
            block[:, :, ~mk[k0 : k0 + block.shape[2]]] = value
        self._emit(k0, block.transpose(self.back))

    def _keep(self) -> int:
        return int(self.keep_from[self.next]) if self.next < self.keep_from.size else 1 << 62

    # ---------------------------------------------------------------- input side

    def add(self, k0: int, block: NDArray) -> None:
        """Take input planes k0.. (in order, in the input's axis order, sliced along the
        streamed axis), computing what they complete as they come in."""
        block = block.transpose(self.plan.axes)
        if k0 != self.have + 1:
            raise ValueError(
                f"planes must come in order: expected plane {self.have + 1}, got {k0}"
            )
        plan = self.plan
        if self.ring is None:
            self.chunk = chunk_planes(plan, block.dtype, self.chunk_bytes)
            elems = self.shape[0] * self.shape[1]
            self.ring = PlaneRing(plan.capacity(self.chunk), elems, plan.ring_dtype(block.dtype))
        if plan.mode == "separable" and self.finish is None:
            note_finite_range(self.seen, block)
        n = block.shape[2]
        group = engine_threads()
        for g in range(0, n, group):
            planes = [block[:, :, t] for t in range(g, min(n, g + group))]
            if plan.mode == "separable":
                planes = self._map(self._prepare, planes)
            for t, plane in enumerate(planes):
                self.ring.push(k0 + g + t, np.asarray(plane, order="C"), self._keep())
            self.have = k0 + g + len(planes) - 1
            self.drain()

    def _prepare(self, plane: NDArray) -> NDArray:
        """An input plane in the working type, through the operators before k."""
        out = np.array(plane, dtype=self.plan.work, order="C")
        return plane_steps(out, self.plan.pre)

    def _map(self, fn: Callable[[NDArray], NDArray], items: list[NDArray]) -> list[NDArray]:
        if self.pool is None or len(items) < 2:
            return [fn(x) for x in items]
        return list(self.pool.map(fn, items))

    # ---------------------------------------------------------------- output side

    def drain(self) -> None:
        """Compute every chunk of output planes whose input window has arrived."""
        plan = self.plan
        n_out = plan.out_shape[2]
        while self.next < n_out and plan.hi[self.next] <= self.have:
            self.ticker.before_step()
            a = self.next
            b = a + 1
            while b < n_out and b - a < self.chunk and plan.hi[b] <= self.have:
                b += 1
            self._compute(a, b)
            self.next = b
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
        shape = self.shape
        if plan.zop is None:
            planes = [self.ring.rows(k, k)[0].reshape(shape) for k in range(a, b)]
        else:
            rows = sparse.csr_matrix(plan.zop[a:b, lo : hi + 1])
            result = self._z_product(rows, self.ring.rows(lo, hi))
            planes = [result[t].reshape(shape) for t in range(b - a)]
        if plan.post:
            planes = self._map(lambda p: plane_steps(p, plan.post), planes)
        chunk = np.stack(planes)  # planes first: each plane contiguous to the end
        if self.finish is None:
            self.held.append((a, chunk))
            return
        self.emit(a, self._finished(chunk).transpose(1, 2, 0))

    def _z_product(self, rows: sparse.csr_matrix, flat: NDArray) -> NDArray:
        """``rows @ flat``, its columns cut between the threads (same sums per value)."""
        n = flat.shape[1]
        parts = max(1, min(engine_threads(), n // 4096))
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
        assert self.seen.range is not None
        self.finish = Finisher(*self.seen.range, self.out_dtype)
        while self.held:
            a, chunk = self.held.pop(0)
            self.emit(a, self._finished(chunk).transpose(1, 2, 0))


def plane_steps(plane: NDArray, steps: list[tuple[int, Banded]]) -> NDArray:
    """The in-plane operators applied to one (I, J) plane, each as dense blocks of its band
    (:class:`napari_resample.engine.operators.Banded`): the same products for every array."""
    for axis, op in steps:
        plane = op.left(plane) if axis == 0 else op.right(plane)
    return np.ascontiguousarray(plane)


def resample_planes(
    arr: NDArray,
    positions: Positions,
    interpolation: str,
    antialias: bool,
    progress: ProgressCallback | None = None,
    check: Callable[[], None] | None = None,
) -> NDArray:
    """An in-memory (finite) *arr* sampled at *positions*: :func:`stream_array` over the
    array's own contiguous planes (:func:`stream_axes`), its value range known, so each chunk is
    finished at once. A decreasing streamed axis (a flipped grid) is run increasing and its
    output flipped back."""
    native = arr.dtype.newbyteorder("=")
    axis = stream_axes(arr)[2]
    # the result in the array's layout: its streamed planes contiguous
    result = np.empty(tuple(x.size for x in positions), native, order="F" if axis == 2 else "C")
    x = positions[axis]
    flip = x.size > 1 and bool(x[1] < x[0])
    at = list(positions)
    if flip:
        at[axis] = x[::-1]
    stream_array(
        arr,
        (arr.shape[0], arr.shape[1], arr.shape[2]),
        arr.dtype,
        (at[0], at[1], at[2]),
        interpolation=interpolation,
        antialias=antialias,
        out=np.flip(result, axis) if flip else result,
        budget=None,
        progress=progress,
        check=check,
        value_range=value_range(arr) if interpolation in ("bspline", "linear") else None,
    )
    return result


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
