"""The ring of input planes a streamed resampling still needs
(:mod:`napari_resample.engine.stream`).

Planes are rows of one buffer, so that any window of consecutive planes is a contiguous block of
rows (no copy): the k operator reads a window as one dense operand.

Examples
--------
>>> ring = PlaneRing(capacity=3, elems=2, dtype=np.dtype(np.float32))
>>> for k in range(5):
...     ring.push(k, np.full(2, k), keep_from=k - 1)
>>> ring.rows(3, 4).tolist()
[[3.0, 3.0], [4.0, 4.0]]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class PlaneRing:
    """Up to *capacity* planes of *elems* values each, the oldest dropped as later ones come."""

    def __init__(self, capacity: int, elems: int, dtype: np.dtype) -> None:
        self.buf = np.empty((capacity, elems), dtype=dtype)
        self.first = 0  # plane number of row `start`
        self.start = 0
        self.count = 0

    def push(self, k: int, plane: NDArray, keep_from: int) -> None:
        """Add plane *k* (the next one), dropping the planes before *keep_from* first."""
        if self.count == 0:
            self.first, self.start = k, 0
        self.drop_before(keep_from)
        if self.start + self.count == self.buf.shape[0]:
            if self.count == self.buf.shape[0]:  # never with the planned capacity
                self.buf = np.concatenate([self.buf, np.empty_like(self.buf)])
            else:  # move the live rows to the front
                self.buf[: self.count] = self.buf[self.start : self.start + self.count]
                self.start = 0
        row = self.buf[self.start + self.count]
        row.reshape(plane.shape)[...] = plane  # any layout, no temporary copy
        self.count += 1

    def drop_before(self, k: int) -> None:
        """Forget the planes numbered below *k*."""
        n = min(max(0, k - self.first), self.count)
        self.first += n
        self.start += n
        self.count -= n

    def rows(self, lo: int, hi: int) -> NDArray:
        """Planes lo..hi (inclusive) as a (hi - lo + 1, elems) view."""
        a = self.start + lo - self.first
        return self.buf[a : a + hi - lo + 1]
