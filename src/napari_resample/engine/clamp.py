"""The values of a resampling: the working type, the clamp range and the finish, for every engine.

One rule, used by the in-memory engine (:mod:`napari_resample.engine.separable`), the streamed
engine (:mod:`napari_resample.engine.stream`) and SimpleITK's oblique path
(:mod:`napari_resample.pipeline.reference`), so that they give the same values:

- values are computed in :func:`work_dtype` (float32; float64 for float64 input and for
  integers wider than 16 bits, which float32 cannot hold exactly);
- non-finite float voxels (NaN, +-Inf) are first replaced by their nearest finite neighbour
  (:func:`fill_nonfinite`), so the clamp range is the input's finite [min, max]
  (:func:`value_range`, or :class:`RunningRange` over blocks seen one after another);
- the result is clamped to that range, rounded to nearest for integer types and cast
  (:class:`Finisher`), as scikit-image's ``_clip_warp_output`` serves ``resize`` and ``warp``.

Examples
--------
>>> work_dtype(np.dtype(np.int16)), work_dtype(np.dtype(np.int32))
(dtype('float32'), dtype('float64'))
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: A clamp range ``(lo, hi)``: Python ints for integer types, floats for float types.
ValueRange = tuple[float | int, float | int]


def work_dtype(dtype: np.dtype) -> np.dtype:
    """float32, or float64 where float32 is not exact: float64 data and integers over 16 bits.

    Examples
    --------
    >>> work_dtype(np.dtype(np.uint16)), work_dtype(np.dtype(np.float64))
    (dtype('float32'), dtype('float64'))
    """
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def value_range(arr: NDArray) -> ValueRange:
    """The [min, max] of *arr* (finite values, non-empty), exact: Python ints for integer types.

    Examples
    --------
    >>> value_range(np.array([3, -2, 7], np.int64))
    (-2, 7)
    >>> value_range(np.array([True, True]))
    (0, 1)
    """
    if arr.dtype.kind == "b":
        return 0, 1
    lo, hi = arr.min(), arr.max()
    return (int(lo), int(hi)) if arr.dtype.kind in "iu" else (float(lo), float(hi))


class RunningRange:
    """:func:`value_range` of blocks seen one after another (a volume read plane by plane).

    Examples
    --------
    >>> seen = RunningRange()
    >>> seen.add(np.array([4, 9])); seen.add(np.array([], np.int16)); seen.add(np.array([-1]))
    >>> seen.range
    (-1, 9)
    """

    def __init__(self) -> None:
        #: The range of the blocks seen so far; None before the first non-empty block.
        self.range: ValueRange | None = None

    def add(self, block: NDArray) -> None:
        """Take *block*'s values into the range (an empty block changes nothing)."""
        if block.size == 0:
            return
        lo, hi = value_range(block)
        if self.range is not None:
            lo, hi = min(self.range[0], lo), max(self.range[1], hi)
        self.range = (lo, hi)


class Finisher:
    """Clamp to the input range, round for integer types, cast: applied block by block.

    For integers too wide for the working float type, the float bounds are the nearest floats
    inside the range (so the cast cannot wrap), and values that reached the rounded-up maximum
    (or minimum) get the exact integer bound back.

    Examples
    --------
    >>> dest = np.empty(4, np.uint8)
    >>> Finisher(0, 255, np.dtype(np.uint8))(np.array([-3.0, 1.4, 1.6, 300.0]), dest)
    >>> dest.tolist()
    [0, 1, 2, 255]
    """

    def __init__(self, lo: float | int, hi: float | int, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.rint = dtype.kind in "iub"
        self.lo, self.hi = float(lo), float(hi)
        self.exact_lo: int | None = None
        self.exact_hi: int | None = None
        if self.rint:
            lo_i, hi_i = int(lo), int(hi)
            if int(self.hi) > hi_i:
                self.exact_hi, self.hi = hi_i, float(np.nextafter(self.hi, -np.inf))
            if int(self.lo) < lo_i:
                self.exact_lo, self.lo = lo_i, float(np.nextafter(self.lo, np.inf))

    def __call__(self, block: NDArray, dest: NDArray, scratch: NDArray | None = None) -> None:
        """Write *block* (working type) finished into *dest*; *block* is clamped in place, or
        into *scratch* (its shape and type) when given, *block* then left as it is."""
        top = block > self.hi if self.exact_hi is not None else None
        bottom = block < self.lo if self.exact_lo is not None else None
        clamped = block if scratch is None else scratch
        np.clip(block, self.lo, self.hi, out=clamped)
        if self.rint:  # rounded straight into the integer type: one pass less
            np.rint(clamped, out=dest, casting="unsafe")
        else:
            dest[...] = clamped
        if top is not None:
            dest[top] = self.exact_hi
        if bottom is not None:
            dest[bottom] = self.exact_lo


def fill_nonfinite(arr: NDArray, finite: NDArray) -> NDArray:
    """Copy of *arr* where each non-finite voxel holds its nearest finite neighbour's value.

    *finite* is ``np.isfinite(arr)``, with at least one True.

    Examples
    --------
    >>> fill_nonfinite(np.array([1.0, np.nan, np.nan, 4.0]), np.array([1, 0, 0, 1], bool))
    array([1., 1., 4., 4.])
    """
    from scipy import ndimage  # not at import: napari's reader needs none of the engine

    idx = ndimage.distance_transform_edt(~finite, return_distances=False, return_indices=True)
    return arr[tuple(idx)]
