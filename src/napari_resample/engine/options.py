"""The user-facing options and their validation: one definition each, imported everywhere.

The allowed values of each finite option are a ``Literal`` type; the tuples the command line,
the widget and the error messages use are derived from it, so adding a value is one edit.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import numpy as np

Interpolation = Literal["bspline", "linear", "nearest", "label"]
#: Allowed ``interpolation`` values, in the order menus show them.
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)

#: ``interpolation`` of the front doors that choose per file: label maps vote, images B-spline.
AutoInterpolation = Literal["auto", "bspline", "linear", "nearest", "label"]
AUTO_INTERPOLATIONS: tuple[str, ...] = get_args(AutoInterpolation)

SavingMode = Literal["case", "folder"]
#: Dataset layouts: one folder per case (``<out>/<PREFIX>/<PREFIX>_resampled.nii.gz``) or all
#: results in one folder.
SAVING_MODES: tuple[str, ...] = get_args(SavingMode)

Anchor = Literal["origin", "center"]
#: Allowed ``anchor`` values.
ANCHORS: tuple[str, ...] = get_args(Anchor)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ValueError unless *value* is one of *allowed*.

    Examples
    --------
    >>> check_choice("anchor", "center", ANCHORS)
    >>> check_choice("anchor", "middle", ANCHORS)
    Traceback (most recent call last):
    ...
    ValueError: anchor must be one of ('origin', 'center'), got 'middle'
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def validate_size(desired_volume: object) -> tuple[int, int, int]:
    """Return *desired_volume* as a tuple of three positive Python ints, or raise ValueError.

    Python and numpy integers are accepted, in a sequence, a 1-D numpy array or an iterator
    (``map(int, args)``); bools, floats (even integral ones), strings, zeros and negatives are
    not, nor unordered containers (sets, dicts).

    Examples
    --------
    >>> validate_size((224, np.int64(224), 128))
    (224, 224, 128)
    >>> validate_size(map(int, ["64", "64", "32"]))
    (64, 64, 32)
    """
    rule = "desired_volume must hold exactly 3 positive integers (X, Y, Z)"
    if isinstance(desired_volume, Iterator):  # at most 4 items: enough to see it is not 3
        desired_volume = tuple(itertools.islice(desired_volume, 4))
    if (
        isinstance(desired_volume, str | bytes)
        or not isinstance(desired_volume, Sequence | np.ndarray)
        or (isinstance(desired_volume, np.ndarray) and desired_volume.ndim == 0)
    ):
        raise ValueError(f"{rule}, got {desired_volume!r}")
    values = list(desired_volume)
    if len(values) != 3:
        raise ValueError(f"{rule}, got {len(values)} values: {desired_volume!r}")
    for v in values:
        if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{rule}, got {desired_volume!r} (bad value {v!r})")
    return (int(values[0]), int(values[1]), int(values[2]))


def validate_spacing(spacing: object, name: str = "spacing") -> tuple[float, float, float]:
    """Return *spacing* as three positive finite Python floats (mm), or raise ValueError.

    Examples
    --------
    >>> validate_spacing((1, 1.5, np.float32(2.0)))
    (1.0, 1.5, 2.0)
    >>> validate_spacing((1, 0, 1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: spacing must hold exactly 3 positive finite numbers ... (bad value 0)
    """
    rule = f"{name} must hold exactly 3 positive finite numbers (mm, in the file's i, j, k order)"
    if isinstance(spacing, Iterator):
        spacing = tuple(itertools.islice(spacing, 4))
    if isinstance(spacing, str | bytes) or not isinstance(spacing, Sequence | np.ndarray):
        raise ValueError(f"{rule}, got {spacing!r}")
    values = list(np.ravel(spacing)) if isinstance(spacing, np.ndarray) else list(spacing)
    if len(values) != 3:
        raise ValueError(f"{rule}, got {len(values)} values: {spacing!r}")
    for v in values:
        if (
            isinstance(v, bool | np.bool_)
            or not isinstance(v, numbers.Real)
            or not math.isfinite(v)
            or v <= 0
        ):
            raise ValueError(f"{rule}, got {spacing!r} (bad value {v!r})")
    return (float(values[0]), float(values[1]), float(values[2]))
