"""Banded operators applied as small dense products: the engine's in-plane kernel.

Every axis operator is banded (:mod:`napari_resample._operators`): output row ``r`` reads a
short run of inputs, and neighbouring rows read overlapping runs. Cut into blocks of
:data:`BLOCK` rows, each block is a small dense matrix over the columns its rows read
(``Block``), and applying the operator is one dense product per block: BLAS (numpy's
``matmul``) runs those at several times the speed of a sparse product, needs no transposed
copy of its operand, and computes with the exact zeros of the padding, so the result is the
sparse product's to within float rounding.

The products are cut so that each does at most :data:`MAX_MNK` multiply-adds: OpenBLAS runs
such sizes on the calling thread (measured: its own threads start between 0.66 and 1.3
million), so the engine's pool, and a decompressing thread beside it, are not oversubscribed.

Examples
--------
>>> from scipy import sparse
>>> op = sparse.csr_matrix(np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], np.float32))
>>> band = Banded(op)
>>> band.left(np.arange(8, dtype=np.float32).reshape(4, 2)).tolist()
[[1.0, 2.0], [5.0, 6.0]]
>>> band.right(np.arange(8, dtype=np.float32).reshape(2, 4)).tolist()
[[0.5, 2.5], [4.5, 6.5]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

#: Output rows per dense block: measured on 512-voxel planes (16 is 3-6x faster than a sparse
#: product; 8 pads less but calls BLAS twice as often, 32 pads too much).
BLOCK = 16
#: Most multiply-adds of one dense product (see the module docstring).
MAX_MNK = 1 << 19


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

    Parameters
    ----------
    op : scipy.sparse matrix, (n_out, n_in)
        In the working type (float32 or float64); the products keep it.
    block : int
        Output rows per dense block.
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
        """``op @ x`` for a 2D *x* (n_in, m): the operator along *x*'s first axis."""
        m = x.shape[1]
        if out is None:
            out = np.empty((self.shape[0], m), dtype=self.dtype)
        for b in self.blocks:
            if b.e == b.s:
                out[b.r0 : b.r1] = 0
                continue
            step = _piece(b.r1 - b.r0, b.e - b.s, m)
            for c in range(0, m, step):
                np.matmul(b.dense, x[b.s : b.e, c : c + step], out=out[b.r0 : b.r1, c : c + step])
        return out

    def right(self, x: NDArray, out: NDArray | None = None) -> NDArray:
        """``x @ op.T`` for a 2D *x* (m, n_in): the operator along *x*'s second axis."""
        m = x.shape[0]
        if out is None:
            out = np.empty((m, self.shape[0]), dtype=self.dtype)
        for b in self.blocks:
            if b.e == b.s:
                out[:, b.r0 : b.r1] = 0
                continue
            step = _piece(b.r1 - b.r0, b.e - b.s, m)
            for c in range(0, m, step):
                part = out[c : c + step, b.r0 : b.r1]
                np.matmul(x[c : c + step, b.s : b.e], b.dense_t, out=part)
        return out


def _piece(rows: int, width: int, m: int) -> int:
    """Columns (of *m*) per product so that ``rows * width * piece <= MAX_MNK``, cut evenly."""
    most = max(1, MAX_MNK // max(rows * width, 1))
    parts = -(-m // most)
    return max(1, -(-m // parts))
