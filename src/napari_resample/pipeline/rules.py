"""The rules a front door must not decide for itself: which interpolation a volume gets.

``"auto"`` resolves here, once, for every front door and both engines.
"""

from __future__ import annotations

from napari_resample.engine.labels import is_label_volume
from napari_resample.engine.options import (
    AUTO_INTERPOLATIONS,
    AutoInterpolation,
    Interpolation,
    check_choice,
)
from napari_resample.io.nifti import NiftiVolume


def is_label_map(volume: NiftiVolume) -> bool:
    """Whether a NIfTI volume is a label map, by the Labels rule
    (:mod:`napari_resample.engine.labels`)."""
    intent = 0 if volume.header is None else int(volume.header["intent_code"])
    return is_label_volume(volume.data, intent, volume.is_scaled)


def resolve_interpolation(interpolation: AutoInterpolation, volume: NiftiVolume) -> Interpolation:
    """The interpolation used for *volume*: ``"auto"`` is ``"label"`` for label maps (the rule
    of :mod:`napari_resample.engine.labels`) and ``"bspline"`` for images; others are kept."""
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if interpolation == "auto":
        return "label" if is_label_map(volume) else "bspline"
    return interpolation
