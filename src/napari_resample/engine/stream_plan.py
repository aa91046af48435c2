"""What a streamed resampling will do and hold: its plan, its chunks and its memory.

:func:`plan_stream` turns a resampling into a :class:`StreamPlan`: the mode, the operators in
the order of least work (:func:`step_order`),
split around the k operator (those before it run on each input plane as it arrives, those
after it on each chunk of output planes), and for every output plane ``k'`` the input planes
``lo[k'] .. hi[k']`` it reads. The sizes here (planes per chunk, per input block, the ring's
capacity, the bytes held) only change how the work is cut, never the result.
:mod:`napari_resample.engine.stream` runs the plan.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine import threads
from napari_resample.engine.clamp import work_dtype
from napari_resample.engine.geometry import Positions, inside_positions, is_identity, nearest_index
from napari_resample.engine.operators import Banded, build_ops, linear_weights
from napari_resample.engine.products import AxisUnits
from napari_resample.engine.threads import engine_threads

#: Bytes of the window stack a chunk of output planes may read at once (read at call time by
#: :func:`chunk_planes`: tests shrink it to one plane per chunk).
CHUNK_BYTES = 32 << 20
#: The most unfinished output (float32/64) held until the input's range is known; above it a
#: first pass over the input finds the range (one more read costs less than holding gigabytes:
#: benchmarks/README.md, Streaming).
HOLD_CAP = 64 << 20
#: Bytes of input read at a time from an array-like.
READ_BYTES = 8 << 20
#: Input planes one engine thread prepares in one go: their in-plane operators run as one
#: product per block of the band for all of them
#: (:class:`napari_resample.engine.operators.Banded`), so the engine's Python work and its
#: threads' hand-offs are paid once per group, not per plane.
GROUP_PLANES = 4
#: Output planes of one unit of the streamed axis's operator (:func:`unit_planes`): one dense
#: product over the window of planes they read, which a sparse product would read once per
#: output plane.
UNIT_PLANES = 8
#: Bytes per output voxel of a chunk in label voting: its scores and weights of the 8 corners.
VOTE_BYTES = 200


@dataclass
class StreamPlan:
    """Everything the streamed engine needs to resample one volume (from :func:`plan_stream`).

    The plan works in the streamed frame: the input's axes ``axes`` (the streamed one last), so
    ``in_shape``, ``out_shape`` and the operators are in that order; ``lo[k']`` and ``hi[k']``
    are the first and last input planes output plane ``k'`` reads.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    mode: str  # "copy", "separable", "label" or "nearest"
    work: np.dtype
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    pre: list[tuple[int, Banded]] = field(default_factory=list)
    zop: sparse.csr_matrix | None = None
    post: list[tuple[int, Banded]] = field(default_factory=list)
    #: ``zop`` as the engine applies it (:class:`napari_resample.engine.products.AxisUnits`).
    units: AxisUnits | None = None
    taps: tuple = ()
    index: tuple = ()
    #: ``(value, (inside_i, inside_j, inside_k))``: output voxels outside the input's field of
    #: view along some axis get *value* (:func:`with_fill`); None: the edge rules hold there.
    fill: tuple | None = None
    #: The input's axes in the streamed frame's order (:func:`stream_frame`).
    axes: tuple[int, int, int] = (0, 1, 2)

    @property
    def size(self) -> tuple[int, int, int]:
        """The output's shape in the input's axis order."""
        back = [0, 0, 0]
        for n, a in zip(self.out_shape, self.axes, strict=True):
            back[a] = n
        return back[0], back[1], back[2]

    @property
    def needs_range(self) -> bool:
        """Whether the finish needs the input's value range (interpolating modes)."""
        return self.mode == "separable"

    def window_planes(self) -> int:
        """The most input planes one output plane reads."""
        return int(np.max(self.hi - self.lo)) + 1

    @property
    def step(self) -> float:
        """Input planes per output plane along k."""
        return self.in_shape[2] / max(self.out_shape[2], 1)

    @property
    def unit_planes(self) -> int:
        """Output planes computed together at least: a unit of the streamed axis's operator."""
        return 1 if self.units is None else self.units.planes

    def ring_plane_shape(self) -> tuple[int, int]:
        """The shape of one plane of the ring: the input plane after the operators before k
        (interpolating modes), else the input plane itself."""
        dims = list(self.in_shape[:2])
        if self.mode == "separable":
            for axis, op in self.pre:
                dims[axis] = op.shape[0]
        return dims[0], dims[1]

    def ring_dtype(self, in_dtype: np.dtype) -> np.dtype:
        """The type of the ring's planes: the working type, or the input's (native order)."""
        return self.work if self.mode == "separable" else np.dtype(in_dtype).newbyteorder("=")

    def capacity(self, chunk: int, group: int) -> int:
        """Planes the ring holds at most: a chunk's window and a group of planes in flight
        (:func:`group_planes`)."""
        return self.window_planes() + math.ceil(chunk * self.step) + group + 1


def plan_stream(
    in_shape: tuple[int, int, int],
    dtype: np.dtype,
    positions: Positions,
    interpolation: str,
    antialias: bool = False,
    axes: tuple[int, int, int] | None = None,
) -> StreamPlan | None:
    """The streamed plan of a resampling whose input planes come along ``axes[2]`` (default:
    k, :func:`stream_frame`), or None when it cannot be streamed (output planes that read input
    planes in decreasing order: a flipped streamed axis)."""
    axes = stream_frame() if axes is None else axes
    plan = _plan_frame(
        (in_shape[axes[0]], in_shape[axes[1]], in_shape[axes[2]]),
        dtype,
        (positions[axes[0]], positions[axes[1]], positions[axes[2]]),
        interpolation,
        antialias,
    )
    if plan is not None:
        plan.axes = axes
    return plan


def stream_frame(along_i: bool = False) -> tuple[int, int, int]:
    """The axes of the streamed frame (the streamed one last): along i ``(1, 2, 0)`` (a plane
    of a C-ordered array), along k ``(1, 0, 2)`` (a k-plane of a Fortran-ordered array, or of a
    NIfTI file, is a C-ordered (j, i) plane: no gather)."""
    return (1, 2, 0) if along_i else (1, 0, 2)


def _plan_frame(
    in_shape: tuple[int, int, int],
    dtype: np.dtype,
    positions: Positions,
    interpolation: str,
    antialias: bool,
) -> StreamPlan | None:
    size = (positions[0].size, positions[1].size, positions[2].size)
    z = positions[2]
    if z.size > 1 and np.any(np.diff(z) < 0):
        return None
    n_z = in_shape[2]
    work = work_dtype(np.dtype(dtype))
    if all(is_identity(n, x) for n, x in zip(in_shape, positions, strict=True)):
        k = np.arange(n_z, dtype=np.int64)
        return StreamPlan(in_shape, size, "copy", work, k, k)
    if interpolation == "nearest":
        index = tuple(nearest_index(n, x) for n, x in zip(in_shape, positions, strict=True))
        return StreamPlan(in_shape, size, "nearest", work, index[2], index[2], index=index)
    if interpolation == "label":
        taps = tuple(linear_weights(n, x) for n, x in zip(in_shape, positions, strict=True))
        return StreamPlan(in_shape, size, "label", work, taps[2][0], taps[2][1], taps=taps)
    ops = build_ops(in_shape, positions, interpolation, antialias, work)
    order = step_order(in_shape, size, ops)
    if 2 in ops:
        at = order.index(2)
        zop = sparse.csr_matrix(ops[2])
        lo, hi = _row_span(zop)
        pre = [(a, Banded(ops[a])) for a in order[:at]]
        post = [(a, Banded(ops[a])) for a in order[at + 1 :]]
    else:
        zop = None
        lo = hi = np.arange(n_z, dtype=np.int64)
        pre, post = [(a, Banded(ops[a])) for a in order], []
    plan = StreamPlan(in_shape, size, "separable", work, lo, hi, pre, zop, post)
    if zop is not None:
        elems = math.prod(plan.ring_plane_shape())
        plan.units = AxisUnits(zop, elems, unit_planes(elems, work.itemsize))
    return plan


#: The weight of a multiply-add of the k operator (a sparse product over a window of planes)
#: against one of an in-plane operator (dense blocks of its band, BLAS): measured.
K_COST = 4.0


def step_order(
    shape: tuple[int, ...], size: tuple[int, ...], ops: dict[int, sparse.csr_matrix]
) -> list[int]:
    """The resampled axes in the order of least work: a step costs its operator's non-zeros
    times the lines it is applied to (the k operator's weighted by :data:`K_COST`); a tie
    (within 2 %) goes to the order found first (axis 0 first)."""
    best: tuple[float, list[int]] | None = None
    for order in itertools.permutations(ops):
        dims = list(shape)
        cost = 0.0
        for a in order:
            cost += ops[a].nnz * math.prod(dims) / dims[a] * (K_COST if a == 2 else 1.0)
            dims[a] = size[a]
        if best is None or cost < best[0] * 0.98:
            best = (cost, list(order))
    return [] if best is None else best[1]


def with_fill(plan: StreamPlan, positions: Positions, value: float | int) -> StreamPlan:
    """*plan* writing *value* outside the input's field of view (as
    :func:`napari_resample.engine.resample.sample_grid` with ``fill_value``)."""
    at = [positions[a] for a in plan.axes]
    masks = tuple(inside_positions(n, x) for n, x in zip(plan.in_shape, at, strict=True))
    if all(m.all() for m in masks):
        return plan
    plan.fill = (value, masks)
    return plan


def filled(plan: StreamPlan, k0: int, block: NDArray) -> NDArray:
    """Output planes ``k0..`` (streamed frame) with the plan's fill value outside the input's
    field of view (:func:`with_fill`), in place when *block* is writeable."""
    if plan.fill is None:
        return block
    value, (mi, mj, mk) = plan.fill
    block = np.array(block, copy=True) if not block.flags.writeable else block
    block[~mi] = value
    block[:, ~mj] = value
    block[:, :, ~mk[k0 : k0 + block.shape[2]]] = value
    return block


def _row_span(op: sparse.csr_matrix) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """First and last column of every row of *op* (rows always have an entry here)."""
    starts, ends = op.indptr[:-1], op.indptr[1:]
    lo = np.minimum.reduceat(op.indices, starts).astype(np.int64)
    hi = np.maximum.reduceat(op.indices, starts).astype(np.int64)
    empty = ends == starts
    if empty.any():  # reduceat gives the next row's value there; such rows read nothing
        lo[empty], hi[empty] = 0, 0
    return lo, hi


def chunk_planes(plan: StreamPlan, in_dtype: np.dtype, chunk_bytes: int | None = None) -> int:
    """Output planes computed together: the input planes their window adds and their results
    within *chunk_bytes* (default :data:`CHUNK_BYTES`; at least one plane, and at least a unit
    of the streamed axis's operator: :attr:`StreamPlan.unit_planes`)."""
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES
    ring = math.prod(plan.ring_plane_shape()) * plan.ring_dtype(in_dtype).itemsize
    out = plan.out_shape[0] * plan.out_shape[1] * plan.work.itemsize
    per_plane = plan.step * ring + 3 * out
    if plan.mode == "label":
        per_plane += plan.out_shape[0] * plan.out_shape[1] * VOTE_BYTES
    # and at most 8 slabs' worth of output voxels (threads.SLAB_ELEMENTS, read at call time:
    # tests shrink it for many progress steps)
    most = max(1, 8 * threads.SLAB_ELEMENTS // max(plan.out_shape[0] * plan.out_shape[1], 1))
    fit = max(1, min(plan.out_shape[2], most, int(chunk_bytes // max(per_plane, 1))))
    return max(fit, plan.unit_planes)


def unit_planes(elems: int, itemsize: int) -> int:
    """Output planes of one unit of the streamed axis's operator, for planes of *elems* values:
    :data:`UNIT_PLANES`, fewer for big planes (a unit's results within a quarter of
    :data:`CHUNK_BYTES`, and within the output values of a chunk of ``threads.SLAB_ELEMENTS``,
    both read at call time: tests shrink them to one plane per chunk). It depends on the
    plane alone, never on the memory budget, so that every run makes the same products."""
    by_bytes = CHUNK_BYTES // (4 * max(elems * itemsize, 1))
    return max(1, min(UNIT_PLANES, by_bytes, 8 * threads.SLAB_ELEMENTS // max(elems, 1)))


def group_planes(plan: StreamPlan, chunk_bytes: int | None = None) -> int:
    """Input planes taken together: :data:`GROUP_PLANES` per engine thread (one per thread for
    the modes without in-plane steps), fewer when their working copies (the plane in the
    working type and after each in-plane step) would pass *chunk_bytes* (default
    :data:`CHUNK_BYTES`); at least one per thread."""
    if plan.mode != "separable":  # nothing to prepare: the planes go straight to the ring
        return engine_threads()
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES
    per_plane = 3 * plan.in_shape[0] * plan.in_shape[1] * plan.work.itemsize
    return engine_threads() * max(1, min(GROUP_PLANES, chunk_bytes // max(per_plane, 1)))


def stream_memory(
    plan: StreamPlan, in_dtype: np.dtype, chunk: int, block_planes: int, group: int
) -> int:
    """Bytes the streamed engine holds at most, beyond the held output: the input block (and
    a decoded copy), the ring of planes (a window and the chunk's extra planes), the planes
    being prepared (a group), a chunk's results and finish, and the operators."""
    i, j, _ = plan.in_shape
    oi, oj, _ = plan.out_shape
    item = np.dtype(in_dtype).itemsize
    ring = math.prod(plan.ring_plane_shape()) * plan.ring_dtype(in_dtype).itemsize
    work = plan.work.itemsize
    total = 2 * block_planes * i * j * item  # the block and the source's own decoded copy
    total += plan.capacity(chunk, group) * ring  # the ring
    # the group of planes in flight: in the working type, after each step
    total += group * 3 * max(ring, i * j * work)
    total += chunk * oi * oj * (3 * work + item)  # results, post steps, finish
    if plan.mode == "label":
        total += chunk * oi * oj * VOTE_BYTES
    total += sum(op.nbytes for _, op in plan.pre + plan.post)
    if plan.zop is not None:
        total += plan.zop.data.nbytes + plan.zop.indices.nbytes + plan.zop.indptr.nbytes
    return total


def blocks_planes(shape: tuple[int, int, int], itemsize: int, budget: int | None = None) -> int:
    """Planes per input block: about :data:`READ_BYTES` (less for a small *budget*), at
    least one."""
    size = READ_BYTES if budget is None else max(1, min(READ_BYTES, budget // 16))
    return max(1, size // max(shape[0] * shape[1] * itemsize, 1))


def stream_budget(plan: StreamPlan, in_dtype: np.dtype, budget: int) -> tuple[int, int, int]:
    """``(bytes streaming needs, bytes more to hold the unfinished output, chunk_bytes)`` for
    a run within *budget*: chunks and blocks shrink with the budget (down to one plane)."""
    chunk_bytes = max(1, min(CHUNK_BYTES, budget // 8))
    chunk = chunk_planes(plan, in_dtype, chunk_bytes)
    block = blocks_planes(plan.in_shape, in_dtype.itemsize, budget)
    need = stream_memory(plan, in_dtype, chunk, block, group_planes(plan, chunk_bytes))
    held = math.prod(plan.out_shape) * plan.work.itemsize if plan.needs_range else 0
    return need, held, chunk_bytes


def foresee_fits(plan: StreamPlan, in_dtype: np.dtype, budget: int) -> bool:
    """Whether a held output may also be finished ahead of time for the writer
    (:mod:`napari_resample.engine.held`): its copy in the input's type and as many compressed
    bytes fit in *budget* beside the run (:func:`stream_budget`)."""
    need, held, _ = stream_budget(plan, in_dtype, budget)
    ahead = 2 * math.prod(plan.out_shape) * in_dtype.itemsize
    return plan.needs_range and need + held + ahead <= budget
