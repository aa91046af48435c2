"""The engine's peak-memory estimate, which resample_array and the widget refuse runs by
(docs/decisions.md, D18)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_resample import resample_array
from napari_resample._memory import available_memory
from napari_resample._resample import estimate_memory
from napari_resample._threads import limit_engine_threads


@pytest.mark.parametrize("size", [(112, 100, 72), (300, 200, 150), (160, 200, 128)])
@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest", "label"])
def test_peak_estimate_bounds_what_the_engine_allocates(interpolation, size) -> None:
    data = np.zeros((160, 144, 128), np.int16)
    data[::3] = 5
    with limit_engine_threads(2):
        resample_array(data, (8, 8, 8), interpolation=interpolation)  # imports, warm-up
        tracemalloc.start()
        try:
            resample_array(data, size, interpolation=interpolation)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        estimate = estimate_memory(data.shape, data.dtype, size, interpolation)
    # Generous for small label runs (the slab buffers of every thread), never short.
    assert peak * 0.99 <= estimate <= 3 * peak + (80 << 20), (peak, estimate)


def test_the_6000_cube_is_hundreds_of_gib_and_memory_is_known_on_linux() -> None:
    peak = estimate_memory((512, 512, 300), "int16", (6000, 6000, 6000), "bspline")
    assert peak > 6000**3 * 2 + 6000 * 512 * 300 * 4  # output and the float32 intermediate
    free = available_memory()
    assert free is None or 0 < free < peak
