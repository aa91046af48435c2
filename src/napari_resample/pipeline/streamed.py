"""A NIfTI file resampled into a NIfTI file, streamed: I/O overlapped with compute, memory bounded.

The input's planes come from :func:`napari_resample.io.plane_reader.open_planes` (decompressed by a
background thread), go through the streamed engine (:mod:`napari_resample.engine.stream`) and out
through the output's writer (:func:`napari_resample.io.volume_io.open_writer`: ``.nii.gz``
compressed by another thread, ``.nii.zarr`` a slab of chunks at a time):
reading, computing and writing run at the same time, and memory holds a window of planes, whatever
the volume's size. The result is the in-memory pipeline's, bit for bit.

What the engine needs to know before the first output plane:

- the clamp range of the interpolating modes (the input's [min, max]). The header's
  ``cal_min``/``cal_max`` are not trusted (writers leave them stale). When the unfinished output
  is small (:data:`napari_resample.engine.stream.HOLD_CAP`, 64 MiB) and fits the budget, it is
  held and finished once the whole input was seen (one read of the file); otherwise a **first
  pass** over the file finds the range;
- for ``interpolation="auto"``, whether the volume is a label map, by the one rule
  (:mod:`napari_resample.pipeline.rules`): the header decides when it can; else the first
  blocks of planes are held and counted (up to a quarter of the budget, at most 64 MiB) until
  over 256 values make an image (the count only grows) or the whole volume was counted, and
  the held blocks stream on (one read); otherwise the first pass counts distinct values and
  equal neighbours plane by plane (the same numbers as in memory). For an explicit
  ``"bspline"`` or ``"linear"`` the same counts are taken as the planes pass, and the rule's
  warning comes once the file is written.

Whether a file is streamed at all is decided in one place, :func:`decide_stream`: float volumes
with NaN or Inf, grids that are oblique, swap axes or read k backwards, and ``"auto"`` needing
the voxels of a volume that fits in memory go to the in-memory engines (:func:`stream_file`
returns None, having written nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_resample.engine.labels import (
    MAX_LABELS,
    distinct_values,
    pair_counts,
    sampled_planes,
)
from napari_resample.engine.memory import format_bytes
from napari_resample.engine.options import AutoInterpolation, Interpolation
from napari_resample.engine.progress import CancelSignal, ProgressCallback, cancel_check
from napari_resample.engine.stream import Block, NonFiniteInput, run_stream
from napari_resample.engine.stream_plan import (
    HOLD_CAP,
    StreamPlan,
    foresee_fits,
    plan_stream,
    stream_budget,
    with_fill,
)
from napari_resample.engine.threads import engine_threads, limit_engine_threads
from napari_resample.io.header import set_stored_dtype, storable_dtype
from napari_resample.io.plane_source import PlaneSource
from napari_resample.io.volume_io import open_volume_planes as open_planes
from napari_resample.io.volume_io import open_writer, writer_need
from napari_resample.pipeline.limits import in_memory_need
from napari_resample.pipeline.observe import Observers, labels_counted, observed
from napari_resample.pipeline.rules import (
    Counts,
    VolumeFacts,
    choose_interpolation,
    voxels_decide,
)
from napari_resample.pipeline.targets import OutputGrid, Source

__all__ = ["StreamResult", "decide_stream", "open_planes", "stream_file"]


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
    """What one read of the planes found: value range, non-finite values, and the Labels rule's
    counts (distinct values up to :data:`MAX_LABELS` + 1, equal neighbour pairs on the sampled
    planes)."""

    count_labels: bool
    sampled: set[int] = field(default_factory=set)
    lo: float | int | None = None
    hi: float | int | None = None
    nonfinite: bool = False
    seen: np.ndarray | None = None
    equal: int = 0
    pairs: int = 0

    def add(self, k0: int, block: np.ndarray, *, labels_only: bool = False) -> None:
        """Count the planes ``k0 ..`` of *block*: the Labels rule's counts, and their range too
        unless *labels_only*."""
        if not labels_only:
            self._add_range(block)
        if self.count_labels and self.distinct <= MAX_LABELS:  # beyond: an image, stop
            # A strided sample with more than MAX_LABELS values settles it (the count only
            # grows) without counting the whole block.
            found = _sample_values(block)
            if found.size <= MAX_LABELS:
                found = distinct_values(block)
            self.seen = found if self.seen is None else np.union1d(self.seen, found)
            for t in range(block.shape[2]):
                if k0 + t in self.sampled:
                    e, n = pair_counts(block[:, :, t])
                    self.equal, self.pairs = self.equal + e, self.pairs + n

    def _add_range(self, block: np.ndarray) -> None:
        values = block
        if block.dtype.kind == "f":
            finite = np.isfinite(block)
            if not finite.all():
                self.nonfinite = True
                values = block[finite]
        if values.size:
            kind = int if block.dtype.kind in "iub" else float
            b_lo, b_hi = kind(values.min()), kind(values.max())
            self.lo = b_lo if self.lo is None else min(self.lo, b_lo)
            self.hi = b_hi if self.hi is None else max(self.hi, b_hi)

    @property
    def distinct(self) -> int:
        return 0 if self.seen is None else int(self.seen.size)

    @property
    def value_range(self) -> tuple[float | int, float | int]:
        return (0 if self.lo is None else self.lo, 0 if self.hi is None else self.hi)

    def counts(self) -> Counts:
        """The counts :func:`napari_resample.pipeline.rules.label_reason` asks for."""
        return self.distinct, lambda: self.equal / self.pairs if self.pairs else 1.0


@dataclass
class StreamDecision:
    """How :func:`stream_file` streams a file (from :func:`decide_stream`).

    Attributes
    ----------
    reader : PlaneSource
        The reader to stream (a new one when a first pass read the file).
    blocks : iterator of (k0, block)
        Its planes, from the first (one block may have been read to decide ``"auto"``).
    plan : StreamPlan
    mode : str
        The interpolation, ``"auto"`` resolved.
    chunk_bytes : int
    value_range : (lo, hi) or None
        From a first pass; None: the unfinished output is held and finished at the end.
    stats : _Stats or None
        The first pass's, if one was made.
    """

    reader: PlaneSource
    blocks: Iterator[Block]
    plan: StreamPlan
    mode: Interpolation
    chunk_bytes: int
    value_range: tuple[float | int, float | int] | None
    stats: _Stats | None


def facts_of(reader: PlaneSource) -> VolumeFacts:
    """What the Labels rule reads from a streamed file's header."""
    scaled = (reader.slope, reader.inter) != (1.0, 0.0)
    intent = int(reader.header["intent_code"])
    return VolumeFacts(reader.dtype, intent, scaled, repr(reader.path))


def decide_stream(
    reader: PlaneSource,
    grid: OutputGrid,
    interpolation: AutoInterpolation,
    budget: int,
    check: Callable[[], None] | None = None,
) -> StreamDecision | None:
    """Whether and how the file of *reader* is streamed onto *grid*: the one place this is
    decided for files. None (nothing read beyond the header, nothing written): the in-memory
    engines take it, for a grid that is not :attr:`OutputGrid.streamable`, ``"auto"`` needing
    the voxels of a volume whose in-memory work fits *budget* (one read instead of two), k read
    backwards, or a first pass that found NaN or Inf. Closes *reader* when it makes a first pass.

    Raises
    ------
    MemoryError
        When even streaming needs more than *budget* (one plane too big), with the numbers.
    """
    if not grid.streamable or grid.positions is None:
        return None
    facts = facts_of(reader)
    blocks: Iterator[Block] = iter(reader)
    stats = None
    if interpolation != "auto":
        mode: Interpolation = interpolation  # its warning, if any, once the planes are counted
    elif not voxels_decide(facts):
        mode = choose_interpolation("auto", facts, _unasked)  # the header decides
    else:
        held, seen, whole = _held_until_decided(reader, blocks, min(HOLD_CAP, budget // 4))
        if seen.distinct > MAX_LABELS or whole:
            # Over MAX_LABELS values make an image whatever the rest holds (the count only
            # grows): the rule answers once they are seen, and the volume streams; a volume
            # held whole was counted whole.
            mode = choose_interpolation("auto", facts, seen.counts)
            blocks = itertools.chain(held, blocks)
        elif in_memory_need(Source.of_reader(reader), grid, ("label", "bspline")) <= budget:
            return None  # one read, in memory (within the budget, either mode), instead of two
        else:
            reader.close()
            stats = _first_pass(reader.path, reader.shape, count_labels=True, check=check)
            mode = choose_interpolation("auto", facts, stats.counts)
            reader = open_planes(reader.path)
            blocks = iter(reader)
    counts_wanted = _counts_wanted(interpolation, facts)
    return _planned(reader, blocks, grid, mode, budget, stats, counts_wanted, check)


def _planned(
    reader: PlaneSource,
    blocks: Iterator[Block],
    grid: OutputGrid,
    mode: Interpolation,
    budget: int,
    stats: _Stats | None,
    counts_wanted: bool,
    check: Callable[[], None] | None,
) -> StreamDecision | None:
    """The streamed plan of :func:`decide_stream` once the mode is known: None for k read
    backwards or NaN / Inf found by a first pass; a first pass when the clamp range is needed
    and the unfinished output cannot be held."""
    assert grid.positions is not None  # a streamable grid's
    path = reader.path
    plan = plan_stream(reader.shape, reader.dtype, grid.positions, mode, grid.antialias)
    if plan is None:
        return None
    if grid.fill is not None:
        plan = with_fill(plan, grid.positions, grid.fill)
    need, held, chunk_bytes = stream_budget(plan, reader.dtype, budget)
    if need > budget:
        raise MemoryError(
            f"resampling {path!r} ({reader.shape} {reader.dtype}) to {plan.size} "
            f"({mode}) needs {format_bytes(need)} even streamed plane by plane, over the "
            f"budget of {format_bytes(budget)}"
        )
    value_range = None
    if plan.needs_range and (need + held > budget or held > HOLD_CAP):  # a first pass
        if stats is None:
            reader.close()
            stats = _first_pass(path, reader.shape, count_labels=counts_wanted, check=check)
            reader = open_planes(path)
            blocks = iter(reader)
        if stats.nonfinite:
            reader.close()
            return None
        value_range = stats.value_range
    return StreamDecision(reader, blocks, plan, mode, chunk_bytes, value_range, stats)


def stream_file(
    reader: PlaneSource,
    out_file: str,
    grid: OutputGrid,
    *,
    interpolation: AutoInterpolation,
    budget: int,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    observers: Observers | None = None,
) -> StreamResult | None:
    """Resample the NIfTI file open in *reader* onto *grid* into *out_file* (its folder must
    exist), streamed; *reader* is closed. *observers* see the input's blocks as the engine
    takes them and the output's as they are written.

    Returns None, having written nothing, when :func:`decide_stream` says the in-memory
    engines take it, or when the input holds NaN or Inf (found before anything is written).

    Warns
    -----
    UserWarning
        An explicit ``"bspline"`` or ``"linear"`` on a label map
        (:func:`napari_resample.pipeline.rules.choose_interpolation`), once written.

    Raises
    ------
    MemoryError
        When even streaming needs more than *budget* (one plane too big), with the numbers,
        before anything is written.
    FileNotFoundError, ValueError, OSError
        Those of reading and writing NIfTI files; nothing is left behind.
    """
    check = cancel_check(cancel)
    decision = None
    try:
        # a NIfTI-Zarr writer holds a slab of chunks: the engine gets the rest of the budget
        budget = max(1, budget - writer_need(out_file, grid.shape, reader.dtype))
        decision = decide_stream(reader, grid, interpolation, budget, check)
        if decision is None:
            return None
        source, stats, blocks = decision.reader, decision.stats, decision.blocks
        facts = facts_of(source)
        if stats is None or not stats.count_labels:  # count the labels as the planes pass
            stats = _Stats(_counts_wanted(interpolation, facts), _sampled(source.shape))
            if stats.count_labels:
                blocks = _counted(blocks, stats)
        header = grid.header.copy()
        set_stored_dtype(header, storable_dtype(source.dtype))
        watch_output, plan = None, decision.plan
        labels = labels_counted(decision.mode, source.dtype)
        if observers is not None:
            observers.input.begin(
                source.shape, source.affine, source.dtype, labels, range_given=plan.needs_range
            )
            observers.output.begin(plan.size, grid.affine, source.dtype, labels)
            blocks = observed(blocks, observers.input)
            watch_output = observers.output
        with (
            open_writer(
                out_file, header, slope=source.slope, inter=source.inter, labels=labels
            ) as writer,
            limit_engine_threads(max(1, engine_threads() - 1)),  # reading + writing: a core
        ):

            def emit(k0: int, block: np.ndarray) -> None:
                if watch_output is not None:
                    watch_output.add(k0, block)
                writer.write(block, handed_over=True)  # the engine's, never reused

            ahead = writer.foresees and foresee_fits(plan, source.dtype, budget)
            seen = run_stream(
                blocks,
                plan,
                emit,
                out_dtype=source.dtype,
                value_range=decision.value_range,
                progress=progress,
                check=check,
                chunk_bytes=decision.chunk_bytes,
                foresee=writer.foresee if ahead else None,
            )
        if observers is not None and seen is not None:
            observers.input.value_range(*seen)
        if interpolation != "auto":
            choose_interpolation(interpolation, facts, stats.counts)  # warns on a label map
        return StreamResult(
            header,
            grid.affine,
            decision.plan.size,
            source.dtype,
            decision.mode,
            decision.stats is not None,
        )
    except NonFiniteInput:
        return None
    finally:
        reader.close()
        if decision is not None:
            decision.reader.close()


def _unasked() -> Counts:
    raise AssertionError("the header decides: no voxel counts asked")  # pragma: no cover


def _unasked_fraction() -> float:
    raise AssertionError("over MAX_LABELS values: no fraction asked")  # pragma: no cover


def _held_until_decided(
    reader: PlaneSource, blocks: Iterator[Block], cap: int
) -> tuple[list[Block], _Stats, bool]:
    """The first blocks of *reader*, read until the Labels rule's counts settle ``auto`` (more
    than MAX_LABELS values: an image) or *cap* bytes are held (a CT's first planes may be air
    alone), their counts, and whether they are the whole volume."""
    seen = _Stats(count_labels=True, sampled=_sampled(reader.shape))
    held: list[Block] = []
    size = 0
    sampled: np.ndarray | None = None
    for k0, block in blocks:
        held.append((k0, block))
        # Samples first (a CT's air holds few values, its body settles it on a sample): the
        # held blocks are counted exactly only when the samples leave the answer open.
        found = _sample_values(block)
        sampled = found if sampled is None else np.union1d(sampled, found)
        size += block.nbytes
        if sampled.size > MAX_LABELS or size >= cap:
            break
    if sampled is not None and sampled.size > MAX_LABELS:
        seen.seen = sampled  # over MAX_LABELS values: an image, whatever the rest holds
    else:
        for k0, block in held:
            seen.add(k0, block, labels_only=True)
    whole = bool(held) and held[-1][0] + held[-1][1].shape[2] == reader.shape[2]
    return held, seen, whole


def _sample_values(block: np.ndarray) -> np.ndarray:
    """The distinct values of a strided sample of *block* (about 100,000 voxels)."""
    return distinct_values(block.reshape(-1, order="A")[:: max(1, block.size // 100_000)])


def _counts_wanted(interpolation: str, facts: VolumeFacts) -> bool:
    """Whether the Labels rule will ask for voxel counts (auto, or the warning of an
    interpolating mode) on this volume."""
    return interpolation in ("auto", "bspline", "linear") and voxels_decide(facts)


def _sampled(shape: tuple[int, int, int]) -> set[int]:
    return set(sampled_planes(shape[2]).tolist())


def _counted(blocks: Iterator[Block], stats: _Stats) -> Iterator[Block]:
    """The blocks of *blocks*, the Labels rule's counts taken in *stats* as they pass."""
    for k0, block in blocks:
        stats.add(k0, block, labels_only=True)
        yield k0, block


def _first_pass(
    path: str,
    shape: tuple[int, int, int],
    *,
    count_labels: bool,
    check: Callable[[], None] | None,
) -> _Stats:
    """One read of the file: value range, non-finite values, and (for the label rule) distinct
    values up to :data:`MAX_LABELS` + 1 and equal neighbours on the sampled planes."""
    stats = _Stats(count_labels, _sampled(shape) if count_labels else set())
    with open_planes(path) as reader:
        for k0, block in reader:
            if check is not None:
                check()
            stats.add(k0, block)
    return stats
