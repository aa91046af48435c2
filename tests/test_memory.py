"""The engine's peak-memory estimate, which resample_array and the widget refuse runs by
(docs/decisions.md, D18)."""

from __future__ import annotations

from napari_resample.engine.memory import available_memory
from napari_resample.engine.resample import estimate_memory


def test_the_6000_cube_is_hundreds_of_gib_and_memory_is_known_on_linux() -> None:
    peak = estimate_memory((512, 512, 300), "int16", (6000, 6000, 6000), "bspline")
    assert peak > 6000**3 * 2 + 6000 * 512 * 300 * 4  # output and the float32 intermediate
    free = available_memory()
    assert free is None or 0 < free < peak
