"""Planning a dataset run: the inputs listed, every option checked, one :class:`Job` per file.

Nothing here touches the outputs: a plan is made (and refused) before anything is created. An
input is a volume file (NIfTI, NRRD, MetaImage) or a folder holding a DICOM series; every
output is NIfTI.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from napari_resample.dataset.manifest import input_fingerprint
from napari_resample.engine.memory import parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    SAVING_MODES,
    Anchor,
    AutoInterpolation,
    SavingMode,
    check_choice,
    validate_size,
    validate_spacing,
)
from napari_resample.io.formats import is_volume_input, looks_like_dicom_folder
from napari_resample.io.names import (
    OUTPUT_SUFFIX,
    REFERENCE_SUFFIX,
    VOLUME_SUFFIXES,
    is_output_name,
    output_name,
    volume_name,
    volume_suffix,
)

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
    napari_resample.dataset.plan.UnusedOptionError: fill_value applies only with reference, \
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


def plan_dataset(
    nii_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int] | None,
    saving_mode: str = DEFAULT_SAVING_MODE,
    *,
    spacing: Sequence[float] | None = None,
    reference: str | os.PathLike[str] | None = None,
    fill_value: float | None = None,
    max_memory: int | str | None = None,
    interpolation: str | None = None,
    anchor: str | None = None,
    antialias: bool | None = None,
    recursive: bool = False,
    series: str | None = None,
    names: Mapping[str, str] | None = None,
) -> tuple[list[Job], str]:
    """Check every argument and list the jobs, creating nothing. See
    :func:`napari_resample.resampling_dataset`.

    *interpolation*, *fill_value*, *anchor* and *antialias* are None when the caller did not
    give them (then ``"auto"``, 0, ``"origin"`` and False). One of the last three given with a
    target that does not use it, or a *series* with no DICOM folder among the inputs, raises
    :class:`UnusedOptionError`, its message spelling the options as *names* says (see
    :func:`check_options_apply`).

    Returns the jobs in input order and the output folder as given.
    """
    targets = {"desired_volume": desired_volume, "spacing": spacing, "reference": reference}
    given = [name for name, value in targets.items() if value is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one target: desired_volume (a size), spacing or reference, got "
            + (", ".join(given) if given else "none")
        )
    size = validate_size(desired_volume) if desired_volume is not None else None
    target_spacing = validate_spacing(spacing) if spacing is not None else None
    if fill_value is not None and (
        isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real)
    ):
        raise ValueError(f"fill_value must be a number, got {fill_value!r}")
    budget = None if max_memory is None else parse_bytes(max_memory)
    check_choice("saving_mode", saving_mode, SAVING_MODES)
    interpolation = "auto" if interpolation is None else interpolation
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if anchor is not None:
        check_choice("anchor", anchor, ANCHORS)
    if series is not None and (not isinstance(series, str) or not series):
        raise ValueError(f"series must be a SeriesInstanceUID (a non-empty str), got {series!r}")
    options = {"fill_value": fill_value, "anchor": anchor, "antialias": antialias}
    check_options_apply(given[0], [k for k, v in options.items() if v is not None], names)
    ref_path = ref_print = None
    if reference is not None:
        from napari_resample.pipeline.reference import reference_grid

        reference_grid(reference)  # readable, 3D: checked before anything is made
        ref_path = os.path.abspath(os.fspath(reference))
        ref_print = input_fingerprint(ref_path)
    out_dir = os.fspath(output_path)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_path must be a folder, got a file: {out_dir!r}")
    inputs = list_inputs(nii_folder, out_dir, recursive)
    if series is not None and not any(os.path.isdir(path) for path, _ in inputs):
        raise UnusedOptionError(
            f"{(names or {}).get('series', 'series')} {series!r} applies to folders of DICOM "
            f"files, and none of the {len(inputs)} input(s) is one"
        )
    template = Job(
        input="",
        output="",
        shown="",
        size=size,
        interpolation=interpolation,  # type: ignore[arg-type]  # checked above
        anchor=anchor or "origin",  # type: ignore[arg-type]  # checked above
        antialias=bool(antialias),
        fingerprint={},
        spacing=target_spacing,
        reference=ref_path,
        reference_fingerprint=ref_print,
        fill_value=float(fill_value or 0),
        max_memory=budget,
    )
    return _jobs(inputs, out_dir, saving_mode, template, series), out_dir


def _jobs(
    inputs: list[tuple[str, str]],
    out_dir: str,
    saving_mode: str,
    template: Job,
    series: str | None,
) -> list[Job]:
    """One job per input, from *template*; refuse two inputs that would write one output."""
    from dataclasses import replace

    jobs: list[Job] = []
    claimed: dict[str, str] = {}
    suffix = REFERENCE_SUFFIX if template.reference is not None else OUTPUT_SUFFIX
    for path, rel_dir in inputs:
        parts = [rel_dir] if rel_dir else []
        if saving_mode == "case":
            parts.append(volume_name(path))
        shown = os.path.join(out_dir, *parts, output_name(path, suffix))
        target = os.path.normcase(os.path.abspath(shown))
        if target in claimed:
            raise ValueError(
                f"two inputs would write the same output {shown!r}: {claimed[target]!r} and "
                f"{path!r}; rename one or use saving_mode='case' or recursive=True"
            )
        claimed[target] = path
        jobs.append(
            replace(
                template,
                input=os.path.abspath(path),
                output=os.path.abspath(shown),
                shown=shown,
                series=series if os.path.isdir(path) else None,
            )
        )
    return jobs


def list_inputs(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str,
    recursive: bool,
) -> list[tuple[str, str]]:
    """``(path, folder relative to the dataset root)`` of every input, sorted."""
    if not isinstance(source, str | os.PathLike):
        return [(p, "") for p in _listed_inputs(source)]
    root = os.fspath(source)
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise ValueError(f"nii_folder must be a folder or a list of files, got {root!r}")
        raise FileNotFoundError(f"input folder does not exist: {root!r}")
    if looks_like_dicom_folder(root):
        return [(root, "")]
    skip = os.path.realpath(out_dir)
    found: list[tuple[str, str]] = []
    for folder, subdirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        rel = "" if rel == "." else rel
        kept = []
        for d in sorted(subdirs):
            path = os.path.join(folder, d)
            if d.startswith(".") or os.path.realpath(path) == skip:
                continue
            if looks_like_dicom_folder(path):
                found.append((path, rel))  # a series: one input, not looked into
            else:
                kept.append(d)
        subdirs[:] = kept
        for name in sorted(files):
            if name.startswith(".") or volume_suffix(name) is None or is_output_name(name):
                continue
            found.append((os.path.join(folder, name), rel))
        if not recursive:
            break
    if not found:
        raise FileNotFoundError(
            f"no volume file ({', '.join(VOLUME_SUFFIXES)}) and no DICOM folder in {root!r}"
        )
    return sorted(found, key=lambda item: (item[1], os.path.basename(item[0])))


def _listed_inputs(source: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The paths of an explicit list of inputs, each checked to exist and be a volume."""
    paths = [os.fspath(p) for p in source]
    if not paths:
        raise FileNotFoundError("no input file given (an empty list)")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"input does not exist: {p!r}")
        if not is_volume_input(p):
            raise ValueError(
                f"input must be a file ending in {', '.join(VOLUME_SUFFIXES)} or a folder "
                f"of DICOM files, got {p!r}"
            )
    return paths
