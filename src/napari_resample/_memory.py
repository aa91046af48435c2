"""How much memory a resampling will need at its peak, and how much the machine has now.

:func:`estimate_peak_bytes` mirrors the engine's allocations (the arrays that are alive at the
same time, not the small per-slab buffers); :func:`available_memory` reads the operating
system's estimate of what can be allocated without swapping (Linux ``MemAvailable``; None
elsewhere, so that nothing is refused on a guess).

Examples
--------
>>> out = 6000**3 * 2  # a 6000^3 int16 output alone
>>> estimate_peak_bytes((512, 512, 300), "int16", (6000, 6000, 6000), "bspline") > out
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from napari_resample._geometry import scale_factor
from napari_resample._threads import engine_threads

#: Elements of one slab (:data:`napari_resample._separable._CHUNK`, not imported: that loads
#: scipy.sparse) and the bytes per slab element each engine thread holds while working on it:
#: the work copy and each step's result (separable), the 8 corner labels, masks and float64
#: scores (label voting). Measured with tracemalloc, rounded up.
_SLAB_ELEMENTS = 1 << 18
_SLAB_BYTES = {"bspline": 24, "linear": 24, "label": 128, "nearest": 0}
#: Where Linux says how much memory can be allocated without swapping.
MEMINFO = "/proc/meminfo"


def _work_itemsize(dtype: np.dtype) -> int:
    """Bytes of one work element: float64 for float64 and integers over 16 bits, else float32
    (:func:`napari_resample._separable._work_dtype`)."""
    wide = dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2)
    return 8 if wide else 4


def estimate_peak_bytes(
    in_shape: Sequence[int],
    in_dtype: DTypeLike,
    out_shape: Sequence[int],
    interpolation: str,
    *,
    c_contiguous: bool = False,
) -> int:
    """Bytes the engine allocates at its peak, besides the input it is given.

    - per engine thread, the buffers of the slab it works on;
    - the output array (input's type, *out_shape*);
    - ``"bspline"`` / ``"linear"`` with all three axes resampled: the one full-size work-type
      intermediate between the engine's two groups (one axis resampled; the largest of the three
      the planner may choose), and for float input the mask of finite voxels;
    - ``"nearest"``: the largest two consecutive arrays of its axis-by-axis takes;
    - ``"label"``: a C-contiguous copy of an input that is not C-contiguous (*c_contiguous*).
    """
    dtype = np.dtype(in_dtype)
    shape = tuple(int(n) for n in in_shape)
    size = tuple(int(n) for n in out_shape)
    out = math.prod(size) * dtype.itemsize
    if shape == size:
        return out
    slab = min(_SLAB_ELEMENTS, max(math.prod(shape), math.prod(size)))
    out += engine_threads() * slab * _SLAB_BYTES.get(interpolation, 128)
    if interpolation == "label":
        return out + (0 if c_contiguous else math.prod(shape) * dtype.itemsize)
    if interpolation == "nearest":
        dims, prev, peak = list(shape), math.prod(shape), 0
        for axis in sorted(range(3), key=lambda a: -scale_factor(shape[a], size[a])):
            if dims[axis] != size[axis]:
                dims[axis] = size[axis]
                now = math.prod(dims)
                peak = max(peak, (prev if prev != math.prod(shape) else 0) + now)
                prev = now
        return out - math.prod(size) * dtype.itemsize + peak * dtype.itemsize
    extra = math.prod(shape) if dtype.kind == "f" else 0  # np.isfinite's mask
    changed = [a for a in range(3) if shape[a] != size[a]]
    if len(changed) == 3:
        work = _work_itemsize(dtype)
        inter = max(math.prod(size[a] if b == a else shape[b] for b in range(3)) for a in range(3))
        extra += inter * work
    return out + extra


def available_memory() -> int | None:
    """Bytes that can be allocated now without swapping (Linux ``MemAvailable``), or None
    where the system does not say."""
    try:
        with open(MEMINFO, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
