"""The output held until the input's value range is known: :class:`HeldOutput`.

An interpolating mode clamps its output to the input's exact [min, max] (D21). When a file is
read once, that range is known only at its last plane, so the streamed engine keeps the
unfinished chunks (planes first, in the working type) and finishes them at the end. Integer
input lets chunks go earlier, from the first: a chunk whose values lie within the range seen
so far is finished exactly as it would be at the end (the final range can only be wider).

A chunk whose values pass that range (a spline's overshoot at every edge of a CT) must wait.
Once the range looks final (:func:`looks_final`), the held chunks are also finished with it
*ahead of time* and handed to a *foresee* callback: a writer compresses them while the last
planes are read, and keeps that work only if the planes finally emitted are the same bytes.
Nothing emitted depends on the guess; a wrong one costs its CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.clamp import Finisher, RunningRange, ValueRange

#: Called with ``(k0, planes)`` for finished planes ``(n, P0, P1)``, in k order.
EmitPlanes = Callable[[int, NDArray], None]

#: The held output is foreseen once this fraction of the input planes is in ...
FORESEE_AFTER = 0.75
#: ... and the range seen has not changed over this many input planes. A CT reaches its air
#: and its brightest bone long before its end: its range stops moving. Were the planes'
#: extremes independent draws, the range would still change after 3/4 of them with
#: probability 1/4 at most (the chance that the volume's extreme lies in its last quarter):
#: the CPU a wrong guess costs is bounded by that, times one compression of the output.
FORESEE_STEADY = 16


def looks_final(planes_in: int, planes: int, steady: int) -> bool:
    """Whether the range seen looks final: *planes_in* of the input's *planes* are in, and it
    has not changed over the last *steady* of them.

    Examples
    --------
    >>> looks_final(240, 300, 20), looks_final(200, 300, 100), looks_final(290, 300, 10)
    (True, False, False)
    """
    return planes_in >= FORESEE_AFTER * planes and steady >= FORESEE_STEADY


class HeldOutput:
    """Unfinished chunks of output planes, finished and handed to *emit* in k order.

    Parameters
    ----------
    planes : int
        Output planes along the streamed axis.
    work, out_dtype : numpy.dtype
        The working type of the chunks and the finished type.
    emit : callable
        Takes ``(k0, planes)``, finished.
    foresee : callable, optional
        Takes ``(k0, planes)`` finished ahead of time with a range that looks final
        (:meth:`foresee_held`); each chunk at most once.

    Examples
    --------
    >>> out = []
    >>> held = HeldOutput(2, np.dtype(np.float32), np.dtype(np.uint8), lambda k, p: out.append(p))
    >>> rows = held.rows(0, 2, 2)
    >>> rows[:] = [[-3.0, 1.4], [250.6, 300.0]]
    >>> seen = RunningRange()
    >>> seen.add(np.array([0, 255], np.uint8))
    >>> held.add(0, rows.reshape(2, 1, 2), seen, early=True)  # -3 and 300 wait for the range
    >>> out
    []
    >>> held.flush(seen)
    >>> out[0].ravel().tolist()
    [0, 1, 251, 255]
    """

    def __init__(
        self,
        planes: int,
        work: np.dtype,
        out_dtype: np.dtype,
        emit: EmitPlanes,
        foresee: EmitPlanes | None = None,
    ):
        self.planes, self.work, self.out_dtype, self._emit = planes, work, out_dtype, emit
        self._foresee = foresee
        self.chunks: list[tuple[int, NDArray]] = []  # (k0, planes first)
        self.front: tuple[float, float] | None = None  # the first chunk's min and max
        # k0 -> (the range, the planes finished with it) of the chunks handed to foresee
        self.guesses: dict[int, tuple[ValueRange, NDArray]] = {}
        self._rows: NDArray | None = None
        self._scratch: NDArray | None = None
        self._guessed: NDArray | None = None  # the planes finished ahead: one array

    def rows(self, a: int, b: int, elems: int) -> NDArray:
        """Rows ``(b - a, elems)`` of one array for the whole output, to compute planes a:b
        into: allocated once (in huge pages; a page fault per 4 KiB of a held CT output cost
        4 % of the file's CPU)."""
        if self._rows is None:
            self._rows = np.empty((self.planes, elems), dtype=self.work)
        return self._rows[a:b]

    def add(
        self, k0: int, chunk: NDArray, seen: RunningRange, *, early: bool, steady: bool = False
    ) -> None:
        """Hold the planes k0.. of *chunk*; then, when *early* (integer input), finish the held
        chunks, from the first, whose values lie within *seen* (the range so far); and when
        *steady* (the range looks final, :func:`looks_final`), foresee those left."""
        self.chunks.append((k0, chunk))
        if early and seen.range is not None:
            self._release(seen)
        if steady:
            self.foresee_held(seen)

    def foresee_held(self, seen: RunningRange) -> None:
        """Hand to *foresee* each held chunk not handed yet, finished with the range *seen*
        (clamped into a scratch array: the held values stay as they are, for the real
        finish). The planes are kept: :meth:`flush` emits them as they are if the final range
        is *seen*'s."""
        if self._foresee is None or seen.range is None:
            return
        guess = Finisher(*seen.range, self.out_dtype)
        for a, chunk in self.chunks:
            if a in self.guesses:
                continue
            if self._scratch is None or self._scratch.shape != chunk.shape:
                self._scratch = np.empty_like(chunk)
            if self._guessed is None:  # in huge pages, as the held rows
                self._guessed = np.empty((self.planes, *chunk.shape[1:]), self.out_dtype)
            dest = self._guessed[a : a + chunk.shape[0]]  # never written again: foresee keeps it
            guess(chunk, dest, self._scratch)
            self.guesses[a] = (seen.range, dest)
            self._foresee(a, dest)

    def _release(self, seen: RunningRange) -> None:
        """Finish and emit the held chunks, from the first, whose values lie within *seen*."""
        assert seen.range is not None
        now = Finisher(*seen.range, self.out_dtype)
        if now.exact_lo is not None or now.exact_hi is not None:
            return
        while self.chunks:
            # only the first chunk can go next: the others' ranges are taken when it has gone
            if self.front is None:
                first = self.chunks[0][1]
                self.front = float(first.min()), float(first.max())
            if not now.lo <= self.front[0] or not self.front[1] <= now.hi:
                return
            a, held = self.chunks.pop(0)
            self.front = None
            dest = np.empty(held.shape, dtype=self.out_dtype)
            now(held, dest)
            self._emit(a, dest)

    def flush(self, seen: RunningRange) -> None:
        """Finish and emit every held chunk with the range *seen* (all planes are in), into
        one array (its pages faulted once); a chunk foreseen with that same range is emitted
        as it was finished then (the same finish of the same values)."""
        if not self.chunks:
            return
        assert seen.range is not None
        finish = Finisher(*seen.range, self.out_dtype)
        k0 = self.chunks[0][0]
        dest = np.empty((self.planes - k0, *self.chunks[0][1].shape[1:]), dtype=self.out_dtype)
        for a, chunk in self.chunks:
            guessed = self.guesses.get(a)
            if guessed is not None and guessed[0] == seen.range:
                self._emit(a, guessed[1])
                continue
            part = dest[a - k0 : a - k0 + chunk.shape[0]]
            finish(chunk, part)
            self._emit(a, part)
        self.chunks, self._rows, self._scratch, self.guesses = [], None, None, {}
        self._guessed = None
