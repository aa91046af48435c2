"""The products of the streamed engine (:mod:`napari_resample.engine.stream`), each a dense BLAS
product whose shape the plan alone fixes, so that a plane's result never depends on how the work
was cut (blocks read, chunks, memory budget, threads):

- the in-plane operators on a stack of planes (:func:`plane_steps`), as dense blocks of their
  band (:class:`napari_resample.engine.operators.Banded`);
- the streamed axis's operator on the ring's window of planes (:class:`AxisUnits`): its rows
  in units of a few output planes, each unit a small dense matrix over the input planes its
  rows read, applied to the window a piece of columns at a time. A sparse product (what this
  replaces) reads the whole window once per output plane; a unit reads it once per unit, each
  piece while it is in cache.

Examples
--------
>>> op = sparse.csr_matrix(np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], np.float32))
>>> units = AxisUnits(op, elems=2, planes=2)
>>> out = np.empty((2, 2), np.float32)
>>> units.apply(0, 2, np.array([[0, 1], [2, 3], [4, 5]], np.float32), 0, out)
>>> out.tolist()
[[1.0, 2.0], [3.0, 4.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from napari_resample.engine.operators import Banded, pieces


def plane_steps(planes: NDArray, steps: list[tuple[int, Banded]], outs: list[NDArray]) -> None:
    """The in-plane operators applied to a stack of (P0, P1) planes (n, P0, P1), each as dense
    blocks of its band, the result of step ``s`` into ``outs[s]``: the same products for every
    plane, however many come together."""
    for (axis, op), out in zip(steps, outs, strict=True):
        planes = op.left(planes, out) if axis == 0 else op.right(planes, out)


def step_buffers(
    n: int, shape: tuple[int, ...], steps: list[tuple[int, Banded]], dtype: np.dtype
) -> list[NDArray]:
    """New arrays for the results of :func:`plane_steps` on *n* planes of *shape*."""
    dims = [n, *shape]
    out = []
    for axis, op in steps:
        dims[1 + axis] = op.shape[0]
        out.append(np.empty(dims, dtype=dtype))
    return out


@dataclass(frozen=True)
class Unit:
    """Output planes ``a:b`` read input planes ``lo..hi``: ``part`` is that part of the
    operator, applied ``piece`` columns at a time: dense, or sparse for a unit of one plane."""

    a: int
    b: int
    lo: int
    hi: int
    part: NDArray | sparse.csr_matrix
    piece: int


class AxisUnits:
    """The streamed axis's (n_out, n_in) operator *op* as :class:`Unit` s of *planes* output
    planes, for planes of *elems* values.

    Parameters
    ----------
    op : scipy.sparse.csr_matrix
        In the working type; every row has an entry.
    elems : int
        Values of one plane of the window (the ring's planes).
    planes : int
        Output planes per unit (the last one may have fewer). Units of one plane (big planes)
        stay sparse products, in 4 pieces: a dense one-row product is a BLAS matrix-vector
        product, which OpenBLAS shares among its threads from 9216 values on, and the pieces
        that would avoid it cost a Python call per few thousand values.
    """

    def __init__(self, op: sparse.csr_matrix, elems: int, planes: int = 1) -> None:
        n_out = int(op.shape[0])
        self.planes = max(1, int(planes))
        self.units: list[Unit] = []
        for a in range(0, n_out, self.planes):
            b = min(a + self.planes, n_out)
            cols = op[a:b].indices
            lo, hi = int(cols.min()), int(cols.max())
            part = sparse.csr_matrix(op[a:b, lo : hi + 1])
            if self.planes == 1:
                self.units.append(Unit(a, b, lo, hi, part, max(1, -(-elems // 4))))
                continue
            dense = np.ascontiguousarray(part.toarray(), dtype=op.dtype)
            self.units.append(Unit(a, b, lo, hi, dense, pieces(b - a, hi - lo + 1, elems)))
        self.ends = np.array([u.b for u in self.units], dtype=np.int64)

    def apply(
        self,
        a: int,
        b: int,
        window: NDArray,
        first: int,
        out: NDArray,
        each: Callable[[Callable[[int, int], None], int], None] | None = None,
    ) -> None:
        """Output planes ``a:b`` (whole units) into *out* (b - a, elems) from *window*, the
        input planes ``first..`` as rows; *each* shares the column pieces among threads
        (``each(fn, n)`` calls ``fn(p, q)`` over ``0..n``)."""
        for u in self.units[a // self.planes : -(-b // self.planes)]:
            rows = window[u.lo - first : u.hi - first + 1]
            dest = out[u.a - a : u.b - a]
            n = -(-rows.shape[1] // u.piece)

            def run(
                p: int, q: int, u: Unit = u, rows: NDArray = rows, dest: NDArray = dest
            ) -> None:
                for c in range(p * u.piece, min(q * u.piece, rows.shape[1]), u.piece):
                    at = slice(c, c + u.piece)
                    if isinstance(u.part, np.ndarray):
                        np.matmul(u.part, rows[:, at], out=dest[:, at])
                    else:  # the same sums per value, however the columns are cut
                        dest[:, at] = u.part @ rows[:, at]

            if each is None:
                run(0, n)
            else:
                each(run, n)
