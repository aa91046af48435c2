"""The 1-D resampling operators: one sparse ``n_out x n_in`` matrix per axis.

The output grid is an axis-aligned scaling of the input grid in voxel space, so every
interpolator is *separable*: the 3D operation is one 1-D operation per axis, applied one axis
after the other. Along one axis, output sample ``i'`` reads the input at the continuous index
``x = o + f * i'`` (see :mod:`napari_resample.engine.geometry`), and each 1-D operation is a sparse
``n_out x n_in`` matrix:

- ``"bspline"``: cubic B-spline. A recursive prefilter turns samples into spline coefficients
  (mirror boundaries, as ITK), then 4 weighted taps per output sample. Past the last voxel
  centre the spline continues mirrored, so upsampling never produces 0-slabs.
- ``"linear"``: 2 taps, holding the edge value past the last voxel.
- ``antialias``: a Gaussian (sigma ``(f - 1) / 2`` input voxels) applied before the
  interpolator along each downsampled axis.

The matrices are built sparse from the start, in float64 (:func:`axis_operator`): their memory
grows with ``n_out`` times the taps a row needs, never with ``n_out x n_in`` (a 32766-voxel axis
made from 2 voxels, or 4 made from 20000, costs next to nothing).
:func:`build_ops` converts them to the working type for the engines, which apply them.

Examples
--------
>>> axis_matrix(4, 2, "linear", "center", antialias=False)
array([[0.5, 0.5, 0. , 0. ],
       [0. , 0. , 0.5, 0.5]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine.geometry import Positions, is_identity, position_step, sample_positions
from napari_resample.engine.options import Anchor

#: Pole of the cubic B-spline prefilter: its inverse decays like ``|_POLE|`` (0.27) per voxel.
_POLE = math.sqrt(3.0) - 2.0
#: The inverse prefilter's taps kept on each side: ``sqrt(3) * 0.268^26 / (1 - 0.268)`` is under
#: 3e-15, far below the 1e-9 at which :func:`_truncate` drops weights anyway.
_PREFILTER_RADIUS = 25


def _mirror(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Fold indices into [0, n) by mirroring about the end voxels (d c b | a b c d | c b a).

    Examples
    --------
    >>> _mirror(np.arange(-3, 7), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _taps_matrix(
    rows: NDArray[np.int64], cols: NDArray, vals: NDArray, n_out: int, n_in: int
) -> sparse.csr_matrix:
    """Sparse (n_out, n_in) float64 matrix whose row ``rows[r]`` has the taps ``cols[r]`` with
    weights ``vals[r]`` (other rows empty); repeated columns in a row add up.

    *rows* must be increasing. Built straight in CSR form: no (row, column) list.

    Examples
    --------
    >>> _taps_matrix(np.array([1]), np.array([[0, 2, 0]]), np.ones((1, 3)), 2, 3).toarray()
    array([[0., 0., 0.],
           [2., 0., 1.]])
    """
    taps = cols.shape[1]
    counts = np.zeros(n_out + 1, dtype=np.int64)
    counts[np.asarray(rows) + 1] = taps
    data = np.asarray(vals, dtype=np.float64).reshape(-1)
    if not data.flags.writeable:  # a broadcast view; summing duplicates writes into it
        data = data.copy()
    m = sparse.csr_matrix(
        (data, np.asarray(cols).astype(np.int32, copy=False).reshape(-1), np.cumsum(counts)),
        shape=(n_out, n_in),
    )
    m.sum_duplicates()
    return m


def _bspline_matrix(n_in: int, x: NDArray[np.float64]) -> sparse.csr_matrix:
    """Cubic B-spline interpolation at positions *x*: taps times the inverse prefilter.

    Each output row has 4 weights on spline coefficients; the coefficients are the samples
    through the inverse of the mirror-boundary ``(1, 4, 1) / 6`` filter. Only the rows of that
    inverse the taps use are built (:func:`_prefilter_inverse_rows`), each over a bounded window.
    """
    n_out = x.size
    fl = np.floor(x)
    t = (x - fl)[:, None]
    j = _mirror(fl.astype(np.int64)[:, None] - 1 + np.arange(4), n_in)
    w = np.concatenate(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    out_rows = np.arange(n_out)
    if n_in == 1:
        return _taps_matrix(out_rows, j, w, n_out, n_in)
    # The coefficients the taps read, numbered 0, 1, ... in order (a mask: no sort of n_out x 4).
    read = np.zeros(n_in, dtype=bool)
    read[j] = True
    used = np.flatnonzero(read)
    number = np.cumsum(read, dtype=np.int32) - 1
    taps = _taps_matrix(out_rows, number[j], w, n_out, used.size)
    inverse = _prefilter_inverse_rows(used, n_in)
    # At a knot the spline is the sample itself: exactly, not to within rounding. Those rows
    # get no taps, and a 1 below.
    knots = t.ravel() == 0
    if knots.any():
        taps = sparse.csr_matrix(sparse.diags((~knots).astype(np.float64)) @ taps)
        taps.eliminate_zeros()
    # By blocks of rows: scipy sizes a product's buffers for the worst case (every tap times a
    # whole inverse row), several times the result.
    parts = []
    for a in range(0, n_out, _PRODUCT_ROWS):
        b = min(a + _PRODUCT_ROWS, n_out)
        part = sparse.csr_matrix(taps[a:b] @ inverse)
        at = np.flatnonzero(knots[a:b])
        if at.size:
            part = part + _taps_matrix(at, j[a + at, 1:2], np.ones((at.size, 1)), b - a, n_in)
        parts.append(part)
    return sparse.csr_matrix(parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr"))


#: Output rows per block of the B-spline operator's product (:func:`_bspline_matrix`).
_PRODUCT_ROWS = 1 << 14


def _prefilter_inverse_rows(used: NDArray[np.int64], n: int) -> sparse.csr_matrix:
    """Rows *used* of the inverse of the mirror-boundary cubic B-spline filter, (used.size, n).

    On the infinite line the inverse of ``(1, 4, 1) / 6`` is ``h[k] = sqrt(3) * _POLE**|k|``;
    with mirror boundaries the coefficients of the mirrored samples are the mirrored
    coefficients, so ``inv[m, c]`` is the sum of ``h[m - p]`` over the positions ``p`` that
    mirror onto ``c`` (kept within :data:`_PREFILTER_RADIUS`).

    Examples
    --------
    >>> b = np.array([[4, 2, 0], [1, 4, 1], [0, 2, 4]]) / 6  # n = 3, mirror boundaries
    >>> inv = _prefilter_inverse_rows(np.arange(3), 3).toarray()
    >>> bool(np.allclose(inv @ b, np.eye(3), atol=1e-14))
    True
    """
    k = np.arange(-_PREFILTER_RADIUS, _PREFILTER_RADIUS + 1)
    h = math.sqrt(3.0) * _POLE ** np.abs(k)
    cols = _mirror(used[:, None] + k, n)
    return _taps_matrix(np.arange(used.size), cols, np.broadcast_to(h, cols.shape), used.size, n)


def linear_weights(
    n_in: int, x: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Linear interpolation at positions *x*: ``(1 - t) * in[j0] + t * in[j1]``, holding the
    edge value outside [0, n_in - 1].

    Examples
    --------
    >>> j0, j1, t = linear_weights(3, np.array([-1.0, 0.25, 2.0, 5.0]))
    >>> j0.tolist(), j1.tolist(), t.tolist()
    ([0, 0, 2, 2], [1, 1, 2, 2], [0.0, 0.25, 0.0, 0.0])
    """
    xc = np.clip(x, 0, n_in - 1)
    j0 = np.minimum(np.floor(xc).astype(np.int64), n_in - 1)
    return j0, np.minimum(j0 + 1, n_in - 1), xc - j0


def _linear_matrix(n_in: int, x: NDArray[np.float64]) -> sparse.csr_matrix:
    """Linear interpolation at positions *x*, holding the edge value outside [0, n_in - 1]."""
    n_out = x.size
    j0, j1, t = linear_weights(n_in, x)
    return _taps_matrix(
        np.arange(n_out), np.stack([j0, j1], 1), np.stack([1 - t, t], 1), n_out, n_in
    )


def _gaussian_rows(n: int, sigma: float, needed: NDArray[np.int64]) -> sparse.csr_matrix:
    """Rows *needed* of the (n, n) Gaussian smoothing with mirror boundaries (others empty)."""
    radius = max(1, math.ceil(4 * sigma))
    k = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    g /= g.sum()
    cols = _mirror(needed[:, None] + k, n)
    return _taps_matrix(needed, cols, np.broadcast_to(g, cols.shape), n, n)


def axis_operator(
    n_in: int, n_out: int, interpolation: str, anchor: Anchor, antialias: bool
) -> sparse.csr_matrix:
    """The sparse (n_out, n_in) float64 matrix resampling one axis (weights not truncated)."""
    return operator_at(n_in, sample_positions(n_in, n_out, anchor), interpolation, antialias)


def operator_at(
    n_in: int, x: NDArray[np.float64], interpolation: str, antialias: bool
) -> sparse.csr_matrix:
    """The sparse (x.size, n_in) float64 matrix sampling one axis at the continuous input
    indices *x* (any evenly spaced positions: increasing, decreasing for a flipped axis, or
    reaching outside the input, where the edge rules hold).

    With *antialias*, a Gaussian (sigma ``(f - 1) / 2``) smooths first when the spacing ``f``
    of *x* (in input voxels) is over 1.
    """
    m = _bspline_matrix(n_in, x) if interpolation == "bspline" else _linear_matrix(n_in, x)
    f = position_step(n_in, x)
    if antialias and f > 1:
        # Smoothing then sampling: only the Gaussian's rows that the sampling reads are built.
        m = sparse.csr_matrix(m @ _gaussian_rows(n_in, (f - 1) / 2, np.unique(m.indices)))
    return m


def axis_matrix(
    n_in: int, n_out: int, interpolation: str, anchor: Anchor, antialias: bool
) -> NDArray[np.float64]:
    """:func:`axis_operator` as a dense array: for small sizes (tests, examples) only."""
    return np.asarray(axis_operator(n_in, n_out, interpolation, anchor, antialias).toarray())


#: The weights :func:`build_ops` drops, by working type: under float32's resolution (its
#: epsilon, 1.2e-7) a weight changes a float32 sum less than the sum's own rounding, and
#: dropping them shortens the B-spline rows by a quarter (30 to 23 weights at 512 -> 224);
#: float64 work keeps the weights down to 1e-9 (docs/decisions.md, D25).
TRUNCATE = {np.dtype(np.float32): float(np.finfo(np.float32).eps), np.dtype(np.float64): 1e-9}


def _truncate(m: sparse.csr_matrix, tol: float = 1e-9) -> sparse.csr_matrix:
    """*m* without the weights too small to matter (the prefilter's inverse decays like
    0.27^distance), in place."""
    m.data[np.abs(m.data) < tol] = 0.0
    m.eliminate_zeros()
    return m


def build_ops(
    shape: tuple[int, ...],
    positions: Positions,
    interpolation: str,
    antialias: bool,
    work: np.dtype,
) -> dict[int, sparse.csr_matrix]:
    """The truncated operator of every axis that changes, in the working type *work*
    (:func:`napari_resample.engine.clamp.work_dtype`): one construction for the in-memory and
    the streamed engine, so that both compute the same numbers. Weights under
    :data:`TRUNCATE` of the working type are dropped."""
    changed = [a for a in range(3) if not is_identity(shape[a], positions[a])]
    tol = TRUNCATE[np.dtype(work)]
    return {
        a: _truncate(operator_at(shape[a], positions[a], interpolation, antialias), tol).astype(
            work
        )
        for a in changed
    }


# --------------------------------------------------------------------------- banded products

#: Output rows per dense block: measured on 512-voxel planes (512 -> 224, B-spline): 8 pads
#: the band less than 16 (39 against 56 multiply-adds per output value) and, with the planes
#: of a group in one call, costs no more calls to matter; 4 calls BLAS too often.
BLOCK = 8
#: Most multiply-adds of one dense product: OpenBLAS (0.3.31 here) shares a product among
#: ``MNK / 2**18`` threads, so from 2**19 on it wakes its own threads, which then spin for the
#: caller beside the engine's threads and the reader's (measured: a 16 x 64 x 512 product cost
#: 20 ms of CPU instead of 15 us on a loaded machine). Under 2**18, always the calling thread.
MAX_MNK = 1 << 18


@dataclass(frozen=True)
class Block:
    """Rows ``r0:r1`` of an operator read input columns ``s:e`` only: ``dense`` is that
    (r1 - r0, e - s) part, ``dense_t`` its transpose (both C-contiguous)."""

    r0: int
    r1: int
    s: int
    e: int
    dense: NDArray
    dense_t: NDArray


class Banded:
    """A sparse (n_out, n_in) operator as dense row blocks: :meth:`left` and :meth:`right`.

    The engine's in-plane kernel. Every axis operator is banded: output row ``r`` reads a short
    run of inputs, and neighbouring rows read overlapping runs. Cut into blocks of
    :data:`BLOCK` rows, each block is a small dense matrix over the columns its rows read
    (:class:`Block`), and applying the operator is one dense product per block: BLAS (numpy's
    ``matmul``) runs those at several times the speed of a sparse product, needs no transposed
    copy of its operand, and computes with the exact zeros of the padding. Each product does at
    most :data:`MAX_MNK` multiply-adds, so OpenBLAS runs it on the calling thread.

    A stack of planes ``(..., rows, columns)`` goes through in one call per block (numpy loops
    over the stack without the GIL): each plane still gets the very same products, so a plane's
    result does not depend on how many planes came with it.

    Parameters
    ----------
    op : scipy.sparse matrix, (n_out, n_in)
        In the working type (float32 or float64); the products keep it.
    block : int
        Output rows per dense block.

    Examples
    --------
    >>> op = sparse.csr_matrix(np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], np.float32))
    >>> band = Banded(op)
    >>> band.left(np.arange(8, dtype=np.float32).reshape(4, 2)).tolist()
    [[1.0, 2.0], [5.0, 6.0]]
    >>> band.right(np.arange(8, dtype=np.float32).reshape(2, 4)).tolist()
    [[0.5, 2.5], [4.5, 6.5]]
    """

    def __init__(self, op: sparse.spmatrix, block: int = BLOCK) -> None:
        op = sparse.csr_matrix(op)
        self.shape: tuple[int, int] = (int(op.shape[0]), int(op.shape[1]))
        self.dtype = op.dtype
        self.nnz = int(op.nnz)
        self.blocks: list[Block] = []
        for r0 in range(0, self.shape[0], block):
            r1 = min(r0 + block, self.shape[0])
            rows = op[r0:r1]
            if rows.nnz == 0:
                s = e = 0
            else:
                s, e = int(rows.indices.min()), int(rows.indices.max()) + 1
            dense = np.ascontiguousarray(rows[:, s:e].toarray(), dtype=op.dtype)
            self.blocks.append(Block(r0, r1, s, e, dense, np.ascontiguousarray(dense.T)))

    @property
    def nbytes(self) -> int:
        """Bytes of the dense blocks (both orientations)."""
        return sum(2 * b.dense.nbytes for b in self.blocks)

    def left(self, x: NDArray, out: NDArray | None = None) -> NDArray:
        """``op @ x`` for each (n_in, m) plane of *x* (..., n_in, m): the operator along the
        planes' first axis."""
        m = x.shape[-1]
        if out is None:
            out = np.empty((*x.shape[:-2], self.shape[0], m), dtype=self.dtype)
        for b in self.blocks:
            if b.e == b.s:
                out[..., b.r0 : b.r1, :] = 0
                continue
            step = pieces(b.r1 - b.r0, b.e - b.s, m)
            for c in range(0, m, step):
                part = out[..., b.r0 : b.r1, c : c + step]
                np.matmul(b.dense, x[..., b.s : b.e, c : c + step], out=part)
        return out

    def right(self, x: NDArray, out: NDArray | None = None) -> NDArray:
        """``x @ op.T`` for each (m, n_in) plane of *x* (..., m, n_in): the operator along the
        planes' second axis."""
        m = x.shape[-2]
        if out is None:
            out = np.empty((*x.shape[:-1], self.shape[0]), dtype=self.dtype)
        for b in self.blocks:
            if b.e == b.s:
                out[..., b.r0 : b.r1] = 0
                continue
            step = pieces(b.r1 - b.r0, b.e - b.s, m)
            for c in range(0, m, step):
                part = out[..., c : c + step, b.r0 : b.r1]
                np.matmul(x[..., c : c + step, b.s : b.e], b.dense_t, out=part)
        return out


def pieces(rows: int, width: int, m: int) -> int:
    """Columns (of *m*) per product so that ``rows * width * piece <= MAX_MNK``, cut evenly.

    Examples
    --------
    >>> pieces(8, 64, 1024)
    512
    """
    most = max(1, MAX_MNK // max(rows * width, 1))
    parts = -(-m // most)
    return max(1, -(-m // parts))
