"""A NIfTI file resampled into a NIfTI file, streamed: I/O overlapped with compute, memory bounded.

The input's planes come from :func:`napari_resample.io.plane_reader.open_planes` (decompressed by a
background thread), go through the streamed engine (:mod:`napari_resample.engine.stream`) and out
through :class:`napari_resample.io.plane_writer.PlaneWriter` (compressed by another thread):
reading, computing and writing run at the same time, and memory holds a window of planes, whatever
the volume's size. The result is the in-memory pipeline's, bit for bit.

What the engine needs to know before the first output plane:

- the clamp range of the interpolating modes (the input's [min, max]). The header's
  ``cal_min``/``cal_max`` are not trusted (writers leave them stale). When the unfinished output
  is small (:data:`_stream.HOLD_CAP`, 64 MiB) and fits the budget, it is held and finished once
  the whole input was seen (one read of the file); otherwise a **first pass** over the file
  finds the range;
- for ``interpolation="auto"``, whether the volume is a label map: the header's intent decides
  when it says so; otherwise the first pass counts distinct values and equal neighbours (the
  rule of :mod:`napari_resample.engine.labels`, computed plane by plane with the same numbers).

Float volumes with NaN or Inf, and grids that read k backwards, are not streamed: the caller
uses the in-memory pipeline (:func:`stream_file` returns None).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_resample.engine.geometry import Positions
from napari_resample.engine.labels import (
    LABEL_INTENTS,
    MAX_LABELS,
    label_rule,
    pair_counts,
    sampled_planes,
)
from napari_resample.engine.memory import format_bytes
from napari_resample.engine.progress import CancelSignal, ProgressCallback, cancel_check
from napari_resample.engine.resample import (
    estimate_memory,
)
from napari_resample.engine.stream import NonFiniteInput, run_stream
from napari_resample.engine.stream_plan import HOLD_CAP, plan_stream, stream_budget, with_fill
from napari_resample.io.header import set_stored_dtype, storable_dtype
from napari_resample.io.plane_reader import PlaneReader, open_planes
from napari_resample.io.plane_writer import PlaneWriter


@dataclass
class StreamTarget:
    """The output grid of a streamed resampling, from the input's header (a callback's answer).

    Attributes
    ----------
    positions : Positions
        Input continuous indices sampled along each axis.
    header : nibabel.Nifti1Header
        The output header (its data type is set from the input's by :func:`stream_file`).
    affine : (4, 4) ndarray
        The output's voxel -> RAS affine.
    fill : number or None
        The stored value outside the input's field of view (reference grids); None: the edge
        rules hold there.
    """

    positions: Positions
    header: Any
    affine: Any
    fill: float | int | None = None


@dataclass
class StreamResult:
    """What a streamed resampling wrote: its header, affine, shape, stored type and mode, and
    whether a first pass over the input was needed."""

    header: Any
    affine: Any
    shape: tuple[int, int, int]
    dtype: np.dtype
    interpolation: str
    first_pass: bool


@dataclass
class _Stats:
    lo: float | int
    hi: float | int
    nonfinite: bool
    distinct: int
    equal: int
    pairs: int


def stream_file(
    path: str,
    out_file: str,
    target: Callable[[PlaneReader], StreamTarget | None],
    *,
    interpolation: str,
    antialias: bool,
    budget: int,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
) -> StreamResult | None:
    """Resample the NIfTI file *path* into *out_file* (its folder must exist), streamed.

    *target* gives the output grid from the opened input (None: not a grid to stream). Returns
    None, having written nothing, when the work is not streamed: a target of None, non-finite
    float input, k read backwards, or ``"auto"`` needing a look at the voxels of a volume the
    in-memory pipeline can hold within *budget* (one read instead of two). The caller then uses
    the in-memory pipeline.

    Raises
    ------
    MemoryError
        When even streaming needs more than *budget* (one plane too big), with the numbers,
        before anything is written.
    FileNotFoundError, ValueError, OSError
        Those of reading and writing NIfTI files; nothing is left behind.
    """
    check = cancel_check(cancel)
    reader = open_planes(path)
    try:
        grid = target(reader)
        if grid is None:
            return None
        mode = _mode_from_header(interpolation, reader)
        stats = None
        if mode is None:  # "auto" for an integer volume without a label intent
            out_shape = tuple(x.size for x in grid.positions)
            in_memory = math.prod(reader.shape) * reader.dtype.itemsize + estimate_memory(
                reader.shape, reader.dtype, out_shape, "label"
            )
            if in_memory <= budget:
                return None
            reader.close()
            stats = _first_pass(path, reader.shape, count_labels=True, check=check)
            mode = "label" if _is_label(stats) else "bspline"
            reader = open_planes(path)
        plan = plan_stream(reader.shape, reader.dtype, grid.positions, mode, antialias)
        if plan is None:
            return None
        if grid.fill is not None:
            plan = with_fill(plan, grid.positions, grid.fill)
        need, held, chunk_bytes = stream_budget(plan, reader.dtype, budget)
        if need > budget:
            raise MemoryError(
                f"resampling {path!r} ({reader.shape} {reader.dtype}) to {plan.out_shape} "
                f"({mode}) needs {format_bytes(need)} even streamed plane by plane, over the "
                f"budget of {format_bytes(budget)}"
            )
        value_range = None
        if plan.needs_range and (need + held > budget or held > HOLD_CAP):  # a first pass
            if stats is None:
                reader.close()
                stats = _first_pass(path, reader.shape, count_labels=False, check=check)
                reader = open_planes(path)
            if stats.nonfinite:
                return None
            value_range = (stats.lo, stats.hi)
        header = grid.header
        set_stored_dtype(header, storable_dtype(reader.dtype))
        with PlaneWriter(out_file, header, slope=reader.slope, inter=reader.inter) as writer:
            run_stream(
                reader,
                plan,
                lambda k0, block: writer.write(block),
                out_dtype=reader.dtype,
                value_range=value_range,
                progress=progress,
                check=check,
                chunk_bytes=chunk_bytes,
            )
        return StreamResult(
            header, grid.affine, plan.out_shape, reader.dtype, mode, stats is not None
        )
    except NonFiniteInput:
        return None
    finally:
        reader.close()


def _mode_from_header(interpolation: str, reader: PlaneReader) -> str | None:
    """The interpolation, or None when ``"auto"`` needs the voxels to decide."""
    if interpolation != "auto":
        return interpolation
    scaled = (reader.slope, reader.inter) != (1.0, 0.0)
    if reader.dtype.kind not in "iu" or scaled:
        return "bspline"
    if int(reader.header["intent_code"]) in LABEL_INTENTS:
        return "label"
    return None


def _is_label(stats: _Stats) -> bool:
    return label_rule(stats.distinct, lambda: stats.equal / stats.pairs if stats.pairs else 1.0)


def _first_pass(
    path: str,
    shape: tuple[int, int, int],
    *,
    count_labels: bool,
    check: Callable[[], None] | None,
) -> _Stats:
    """One read of the file: value range, non-finite values, and (for the label rule) distinct
    values up to :data:`MAX_LABELS` + 1 and equal neighbours on the sampled planes."""
    lo: float | int | None = None
    hi: float | int | None = None
    nonfinite = False
    seen = np.empty(0)
    equal = pairs = 0
    sampled = set(sampled_planes(shape[2]).tolist()) if count_labels else set()
    with open_planes(path) as reader:
        for k0, block in reader:
            if check is not None:
                check()
            values = block
            if block.dtype.kind == "f":
                finite = np.isfinite(block)
                if not finite.all():
                    nonfinite = True
                    values = block[finite]
            if values.size:
                kind = int if reader.dtype.kind in "iub" else float
                b_lo, b_hi = kind(values.min()), kind(values.max())
                lo = b_lo if lo is None else min(lo, b_lo)
                hi = b_hi if hi is None else max(hi, b_hi)
            if count_labels:
                if seen.size <= MAX_LABELS:
                    seen = np.union1d(seen, np.unique(block))
                for t in range(block.shape[2]):
                    if k0 + t in sampled:
                        e, n = pair_counts(block[:, :, t])
                        equal, pairs = equal + e, pairs + n
    return _Stats(
        0 if lo is None else lo,
        0 if hi is None else hi,
        nonfinite,
        int(seen.size),
        equal,
        pairs,
    )
