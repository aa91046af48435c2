"""A dataset run's unit of work (:class:`Job`), and the rules of which options go with which
target (:func:`check_options_apply`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from napari_resample.engine.options import Anchor, AutoInterpolation, SavingMode

#: The layout of a dataset's results when the caller names none, in Python and on the command
#: line alike: every result in the output folder, the input's layout mirrored (an image and its
#: label map stay side by side, and a file's result lands where the one-file doors put it).
DEFAULT_SAVING_MODE: SavingMode = "folder"
#: The targets, by the name of the argument that gives each.
TARGETS = ("desired_volume", "spacing", "reference")
#: The options that only some targets use. Given with another target, such an option would do
#: nothing, so the front doors refuse it instead of ignoring it.
TARGET_OPTIONS: dict[str, tuple[str, ...]] = {
    "fill_value": ("reference",),
    "anchor": ("desired_volume", "spacing"),
    "antialias": ("desired_volume", "spacing"),
}


class UnusedOptionError(ValueError):
    """An option given where it does nothing (a front door refuses it rather than ignore it)."""


@dataclass(frozen=True)
class Job:
    """One file of a dataset run: everything :func:`napari_resample.dataset.task.run_job`
    needs, picklable."""

    input: str  # absolute path
    output: str  # absolute path
    shown: str  # the output path as the caller's output_path spells it
    size: tuple[int, int, int] | None  # one of size, spacing, reference is the target
    interpolation: AutoInterpolation
    anchor: Anchor
    antialias: bool
    fingerprint: dict[str, Any]
    threads: int | None = None
    spacing: tuple[float, float, float] | None = None
    reference: str | None = None  # absolute path
    reference_fingerprint: dict[str, Any] | None = None
    fill_value: float = 0.0
    max_memory: int | None = None  # bytes per worker; None: a share of what is available
    series: str | None = None  # the DICOM series of a folder input
    check_disk: bool = True  # refuse a result over its folder's free space (resample_file)
    qc_dir: str | None = None  # the run's output folder, when its files are checked as they pass

    @property
    def key(self) -> tuple[str, str | None]:
        """What tells this job's records apart in a manifest: its input and series (several
        series of one folder are several inputs)."""
        return (self.input, self.series)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that decide the output (compared on resume; ``series`` only when
        set, so that the records of earlier versions still match)."""
        params = self._target_params
        if self.series is not None:
            params["series"] = self.series
        return params

    @property
    def _target_params(self) -> dict[str, Any]:
        if self.reference is not None:
            return {
                "reference": self.reference,
                "reference_fingerprint": self.reference_fingerprint,
                "interpolation": self.interpolation,
                "fill_value": self.fill_value,
            }
        target: dict[str, Any] = (
            {"desired_volume": list(self.size)}
            if self.size is not None
            else {"spacing": list(self.spacing or ())}
        )
        return {
            **target,
            "interpolation": self.interpolation,
            "anchor": self.anchor,
            "antialias": self.antialias,
        }


def check_options_apply(
    target: str, given: Sequence[str], names: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`UnusedOptionError` if an option of *given* does nothing with *target*.

    Parameters
    ----------
    target : {"desired_volume", "spacing", "reference"}
    given : sequence of str
        The options the caller set (by their Python names).
    names : mapping of str to str, optional
        How the caller spells each option and target in messages (the command line's
        ``--fill-value`` for ``fill_value``); default: the Python names.

    Examples
    --------
    >>> check_options_apply("reference", ["fill_value"])
    >>> check_options_apply("spacing", ["fill_value"])
    Traceback (most recent call last):
    ...
    napari_resample.dataset.job.UnusedOptionError: fill_value applies only with reference, \
not with spacing: leave it out
    """

    def name(key: str) -> str:
        return (names or {}).get(key, key)

    for option in given:
        applies = TARGET_OPTIONS.get(option, TARGETS)
        if target not in applies:
            raise UnusedOptionError(
                f"{name(option)} applies only with {' or '.join(map(name, applies))}, "
                f"not with {name(target)}: leave it out"
            )
