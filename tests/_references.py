"""Independent references the engine is checked against (no code shared with the engine).

``itk_resample`` is SimpleITK's ``ResampleImageFilter``, the resampler the upstream
specification is written around; tests/test_resample.py and tests/test_engine_fastpath.py both
use it. SimpleITK is imported by the caller (``pytest.importorskip``) and passed in, so a machine
without it skips those tests instead of failing to import this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def itk_resample(sitk: Any, data: np.ndarray, size, anchor: str, interpolator) -> np.ndarray:
    """SimpleITK ResampleImageFilter on a unit-spacing voxel grid, returned in (i, j, k) order.

    The output grid is the one of docs/decisions.md, D1: spacing f = old / new, origin 0
    ("origin") or (f - 1) / 2 ("center"), computed in float64, default value 0 (so samples at
    continuous index >= N - 1/2 come back as 0: docs/decisions.md, D2).
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.astype(np.float64).transpose(2, 1, 0)))
    f = np.asarray(data.shape, float) / np.asarray(size, float)
    origin = np.zeros(3) if anchor == "origin" else (f - 1) / 2
    flt = sitk.ResampleImageFilter()
    flt.SetSize([int(s) for s in size])
    flt.SetOutputSpacing(f.tolist())
    flt.SetOutputOrigin(origin.tolist())
    flt.SetOutputDirection(img.GetDirection())
    flt.SetInterpolator(interpolator)
    flt.SetDefaultPixelValue(0.0)
    flt.SetOutputPixelType(sitk.sitkFloat64)
    return sitk.GetArrayFromImage(flt.Execute(img)).transpose(2, 1, 0)
