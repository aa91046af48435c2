"""The rules a front door must not decide for itself: which interpolation a volume gets.

``"auto"`` resolves here, once, for every front door and both engines: label voting for what
the Labels rule (:mod:`napari_resample.engine.labels`) calls a label map, cubic B-spline for
everything else (docs/decisions.md, D22). An explicit ``"bspline"`` or ``"linear"`` on a label
map is done as asked, with one warning naming the file and the part of the rule that fired.

The rule looks at the header first (stored type, scaling, intent code) and at the voxels only
when the header cannot decide (:func:`voxels_decide`): the in-memory pipeline counts them in
the array (:func:`is_label_map`), the streamed one plane by plane as they pass
(:mod:`napari_resample.pipeline.streamed`); both give the counts to :func:`label_reason`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_resample.engine.labels import (
    FEW_LABELS,
    LABEL_INTENTS,
    MAX_LABELS,
    NIFTI_INTENT_LABEL,
    count_distinct,
    equal_neighbours,
    label_rule,
)
from napari_resample.engine.options import (
    AUTO_INTERPOLATIONS,
    AutoInterpolation,
    Interpolation,
    check_choice,
)
from napari_resample.io.nifti import NiftiVolume

#: ``(distinct values, equal-neighbour fraction asked only when needed)``: the voxel counts.
Counts = tuple[int, Callable[[], float]]
#: Modes that invent values between labels (the ones warned about on a label map).
_INVENTING = ("bspline", "linear")


@dataclass(frozen=True)
class VolumeFacts:
    """What the Labels rule reads from a header, and how messages name the volume.

    Attributes
    ----------
    dtype : numpy.dtype
        The stored (unscaled) type.
    intent_code : int
    scaled : bool
        Whether ``scl_slope`` / ``scl_inter`` change the stored values.
    name : str
        The file (or layer) for messages.
    """

    dtype: np.dtype
    intent_code: int
    scaled: bool
    name: str

    @classmethod
    def of_volume(cls, volume: NiftiVolume) -> VolumeFacts:
        """The facts of an in-memory volume (intent 0 without a header)."""
        intent = 0 if volume.header is None else int(volume.header["intent_code"])
        name = repr(volume.path) if volume.path else "the volume"
        return cls(np.dtype(volume.data.dtype), intent, volume.is_scaled, name)


def voxels_decide(facts: VolumeFacts) -> bool:
    """Whether the header leaves the rule to the voxels: unscaled integers without a label
    intent (anything else is decided by the header alone)."""
    return facts.dtype.kind in "iu" and not facts.scaled and facts.intent_code not in LABEL_INTENTS


def label_reason(facts: VolumeFacts, counts: Callable[[], Counts]) -> str | None:
    """Why the volume is a label map (the part of the rule that fired), or None for an image.

    *counts* is asked only when :func:`voxels_decide`.

    Examples
    --------
    >>> facts = VolumeFacts(np.dtype(np.int16), 0, False, "'seg.nii.gz'")
    >>> label_reason(facts, lambda: (3, lambda: 0.1))
    '3 distinct values (at most 32)'
    >>> label_reason(facts, lambda: (40, lambda: 0.9))
    '40 distinct values and 90% equal neighbours'
    >>> label_reason(facts, lambda: (40, lambda: 0.5)) is None
    True
    >>> label_reason(VolumeFacts(np.dtype(np.uint8), 1002, False, "x"), lambda: (0, float))
    'intent code 1002 (label)'
    """
    if facts.dtype.kind not in "iu" or facts.scaled:
        return None
    if facts.intent_code in LABEL_INTENTS:
        name = "label" if facts.intent_code == NIFTI_INTENT_LABEL else "neuroname"
        return f"intent code {facts.intent_code} ({name})"
    distinct, equal_fraction = counts()
    asked: list[float] = []

    def fraction() -> float:
        asked.append(equal_fraction())
        return asked[0]

    if not label_rule(distinct, fraction):
        return None
    if asked:
        return f"{distinct} distinct values and {100 * asked[0]:.0f}% equal neighbours"
    return f"{distinct} distinct values (at most {FEW_LABELS})"


def array_counts(data: np.ndarray) -> Callable[[], Counts]:
    """The voxel counts of an array, computed when asked."""
    return lambda: (count_distinct(data, MAX_LABELS + 1), lambda: equal_neighbours(data))


def is_label_map(volume: NiftiVolume) -> bool:
    """Whether a NIfTI volume is a label map, by the Labels rule
    (:mod:`napari_resample.engine.labels`)."""
    return label_reason(VolumeFacts.of_volume(volume), array_counts(volume.data)) is not None


def choose_interpolation(
    interpolation: AutoInterpolation, facts: VolumeFacts, counts: Callable[[], Counts]
) -> Interpolation:
    """The interpolation used: ``"auto"`` is ``"label"`` for label maps and ``"bspline"`` for
    images; others are kept, and ``"bspline"`` / ``"linear"`` on a label map warn once.

    Warns
    -----
    UserWarning
        For an explicit ``"bspline"`` or ``"linear"`` on a volume the rule calls a label map:
        the file, the rule that fired and what to use instead; pointing at the caller of the
        front door.
    """
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if interpolation == "auto":
        return "label" if label_reason(facts, counts) is not None else "bspline"
    if interpolation in _INVENTING:
        reason = label_reason(facts, counts)
        if reason is not None:
            warn_label_map(facts.name, interpolation, reason)
    return interpolation


def resolve_interpolation(
    interpolation: AutoInterpolation, volume: NiftiVolume, *, warn: bool = True
) -> Interpolation:
    """:func:`choose_interpolation` for an in-memory volume (its voxels counted if needed);
    ``warn=False`` for a read-out that only shows the choice (the run warns)."""
    if not warn and interpolation != "auto":
        check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
        return interpolation
    return choose_interpolation(
        interpolation, VolumeFacts.of_volume(volume), array_counts(volume.data)
    )


def resolve_for_layer(
    interpolation: AutoInterpolation, volume: NiftiVolume, labels: bool, *, warn: bool = True
) -> Interpolation:
    """:func:`resolve_interpolation` for the volume a napari layer holds.

    A Labels layer is a label map by declaration, as a LABEL intent code is in a header: auto
    votes on it whatever its voxels look like (a painted segmentation with many labels). Any
    other layer gets the rule on its voxels, so a file opened by this plugin's reader resamples
    exactly as the file functions resample the file itself.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_resample.io.nifti import NiftiVolume
    >>> ramp = NiftiVolume(np.arange(4096, dtype=np.float32).reshape(16, 16, 16), np.eye(4), None)
    >>> resolve_for_layer("auto", ramp, labels=True), resolve_for_layer("auto", ramp, labels=False)
    ('label', 'bspline')
    """
    if labels and interpolation == "auto":
        return "label"
    return resolve_interpolation(interpolation, volume, warn=warn)


def warn_label_map(name: str, interpolation: str, reason: str) -> None:
    """The one warning for an interpolating mode asked for on a label map."""
    warn_caller(
        f"{name} is a label map ({reason}) and interpolation={interpolation!r} invents values "
        "between its labels; use 'label' (label voting) or 'auto' to keep the label set"
    )


def warn_caller(message: str) -> None:
    """``warnings.warn(message, UserWarning)`` pointing at the first caller outside this
    package (the user's line calling a front door), however deep the pipeline called it."""
    frame = sys._getframe(0)
    level = 1
    while frame.f_back is not None and _ours(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _ours(frame: object) -> bool:
    module = str(getattr(frame, "f_globals", {}).get("__name__", ""))
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


_PACKAGE = __name__.split(".")[0]
