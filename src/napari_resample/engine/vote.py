"""Label voting (``interpolation="label"``): resampling for label maps (segmentations).

Every label's indicator is resampled linearly and each output voxel takes the label with the
highest weight (per-label voting; ties go to the smallest label, NaN last), so the output holds
only input labels and no in-between values. Computed by voting among the labels of the 8 input
voxels around each sample (the only ones with a weight), not one pass per label. NaN is a label
like any other.

Examples
--------
>>> labels = np.array([5, 3], dtype=np.int16).reshape(2, 1, 1)
>>> from napari_resample.engine.geometry import grid_positions
>>> from napari_resample.engine.operators import linear_weights
>>> at = grid_positions(labels.shape, (4, 1, 1), "origin")
>>> taps = tuple(linear_weights(n, x) for n, x in zip(labels.shape, at, strict=True))
>>> vote_taps(labels, taps).ravel().tolist()  # at 0.5: a tie
[5, 3, 3, 3]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.progress import Ticker
from napari_resample.engine.threads import engine_threads, slab_thickness

if TYPE_CHECKING:
    from napari_resample.engine.progress import ProgressCallback


#: The linear taps ``(j0, j1, t)`` of one axis
#: (:func:`napari_resample.engine.operators.linear_weights`).
Taps = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


def vote_taps(
    arr: NDArray,
    taps: tuple[Taps, Taps, Taps],
    progress: ProgressCallback | None = None,
    check: Callable[[], None] | None = None,
    axes: tuple[int, int, int] = (0, 1, 2),
) -> NDArray:
    """Per-label voting on *arr* with the linear taps of each axis: each output voxel takes the
    label with the largest trilinear weight.

    This is the result of resampling every label's indicator linearly and keeping the largest
    (ties go to the smallest label, NaN last), computed without one pass per label: trilinear
    weights only involve the 8 input voxels around a sample point, so each output voxel votes
    among the labels of its 8 corners. Where the 8 corners agree (inside regions: most voxels)
    that label is the answer; only the others are scored. The streamed engine votes on a
    window of planes with the window's indices (``j0 - lo``, ``j1 - lo``) and the same weights.

    *axes*: the volume's axis of each axis of *arr* (the streamed engine votes on windows of
    planes in its streamed frame): the weights are multiplied and the corners scored in the
    volume's (i, j, k) order whatever the frame, so the votes (float near-ties included) depend
    on the values only. *progress* gets the fraction of slabs done after each slab; *check* is
    called before each slab and may raise to stop the work (a cancel).
    """
    if check is not None:
        check()
    arr = np.ascontiguousarray(arr)
    native = arr.dtype.newbyteorder("=")
    size = tuple(t[0].size for t in taps)
    out = np.empty(size, dtype=native)
    rows = slab_thickness(size[0], math.prod(size[1:]) + math.prod(arr.shape[1:]))
    starts = range(0, size[0], rows)
    ticker = Ticker(len(starts), progress, check)

    def run(r0: int) -> None:
        ticker.before_step()
        r1 = min(r0 + rows, size[0])
        (x0, x1, tx), (y0, y1, ty), (z0, z1, tz) = taps
        # The 8 corner labels of every output voxel of the slab, by whole-row takes.
        frame = [
            a.take(z, axis=2)
            for a in (
                b.take(y, axis=1)
                for b in (arr.take(x, axis=0) for x in (x0[r0:r1], x1[r0:r1]))
                for y in (y0, y1)
            )
            for z in (z0, z1)
        ]
        corners = [frame[_frame_index(t, axes)] for t in _CORNERS]
        block = corners[0].astype(native, copy=True)
        mixed = np.zeros(block.shape, dtype=bool)
        for c in corners[1:]:
            mixed |= ~_same_label(c, block)
        flat = np.flatnonzero(mixed)
        if flat.size:
            where = np.unravel_index(flat, mixed.shape)
            weights = [(1.0 - t, t) for t in (tx[r0:r1], ty, tz)]
            labels = [c.reshape(-1)[flat] for c in corners]
            d = [axes.index(a) for a in range(3)]  # the axis of arr of each volume axis
            w = [
                weights[d[0]][t0][where[d[0]]]
                * weights[d[1]][t1][where[d[1]]]
                * weights[d[2]][t2][where[d[2]]]
                for t0, t1, t2 in _CORNERS
            ]
            score = [wc.copy() for wc in w]
            for a, b in itertools.combinations(range(8), 2):
                same = _same_label(labels[a], labels[b])
                score[a] += w[b] * same
                score[b] += w[a] * same
            best, best_score = labels[0], score[0]
            for lab, sc in zip(labels[1:], score[1:], strict=True):
                win = (sc > best_score) | ((sc == best_score) & _label_before(lab, best))
                np.copyto(best, lab, where=win)
                np.copyto(best_score, sc, where=win)
            block.reshape(-1)[flat] = best
        out[r0:r1] = block

    with ThreadPoolExecutor(max_workers=min(engine_threads(), len(starts))) as pool:
        for _ in pool.map(run, starts):
            ticker.step_done()
    return out


#: The 8 corners of a cell, as (i, j, k) offsets, in the order they are scored.
_CORNERS = list(itertools.product((0, 1), repeat=3))


def _frame_index(corner: tuple[int, ...], axes: tuple[int, int, int]) -> int:
    """The index among the corners taken in *arr*'s axis order of the volume corner *corner*."""
    c = [corner[a] for a in axes]
    return c[0] * 4 + c[1] * 2 + c[2]


def _same_label(a: NDArray, b: NDArray) -> NDArray[np.bool_]:
    """``a == b``, with NaN equal to NaN (NaN is a label like any other)."""
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return same


def _label_before(a: NDArray, b: NDArray) -> NDArray[np.bool_]:
    """``a`` sorts before ``b`` (the tie-break: smallest label first, NaN last).

    Examples
    --------
    >>> _label_before(np.array([3.0, np.nan, 2.0]), np.array([5.0, 2.0, np.nan])).tolist()
    [True, False, True]
    """
    before = a < b
    if a.dtype.kind == "f":
        before |= np.isnan(b) & ~np.isnan(a)
    return before
