"""Planning a dataset run: the inputs listed, every option checked, one :class:`Job` per input.

Nothing here touches the outputs: a plan is made (and refused) before anything is created. An
input is a volume file (NIfTI, NRRD, MetaImage) or a DICOM series; every output is NIfTI.

Every entry of a dataset folder ends as an input, or as a :class:`Skipped` entry with its
reason (listed in the summary and the manifest; ``failed`` when it was meant as an input and
cannot be one). Entries whose name starts with ``.`` (hidden files, temporary files) and the
output folder are not part of the dataset. The rule of DICOM folders is
:func:`is_dicom_series_folder`'s; in a folder that is not one, DICOM files are grouped by series
(SeriesInstanceUID, as GDCM groups them), each series an input named after its first file.
Nothing but regular files is ever opened: FIFOs, devices, sockets, dangling symbolic links and
symbolic link loops are listed with their kind.
"""

from __future__ import annotations

import errno
import numbers
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from napari_resample.dataset.job import (
    DEFAULT_SAVING_MODE,
    TARGET_OPTIONS,
    TARGETS,
    Job,
    UnusedOptionError,
    check_options_apply,
)
from napari_resample.dataset.manifest import input_fingerprint
from napari_resample.engine.memory import parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    SAVING_MODES,
    check_choice,
    validate_size,
    validate_spacing,
)
from napari_resample.io.dicom import is_dicom_head, is_dicom_series_folder, read_head
from napari_resample.io.formats import is_volume_input, list_dicom_series
from napari_resample.io.names import (
    VOLUME_SUFFIXES,
    check_output_format,
    is_output_name,
    is_zarr_name,
    output_suffix,
    volume_name,
    volume_suffix,
)

__all__ = [
    "DEFAULT_SAVING_MODE",
    "TARGETS",
    "TARGET_OPTIONS",
    "Job",
    "Skipped",
    "UnusedOptionError",
    "check_options_apply",
    "list_inputs",
    "plan_dataset",
]


@dataclass(frozen=True)
class Skipped:
    """An entry of a dataset folder that is not an input, and why; *failed* when it was meant
    as one (a volume's name) and cannot be read."""

    path: str
    reason: str
    failed: bool = False


class Input(NamedTuple):
    """One input: a file or a folder, its folder relative to the dataset root, the DICOM series
    to read (folders only) and the PREFIX of its output."""

    path: str
    rel: str
    series: str | None
    prefix: str


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
    skipped: list[Skipped] | None = None,
    output_format: str = "nii.gz",
) -> tuple[list[Job], str]:
    """Check every argument and list the jobs, creating nothing. See
    :func:`napari_resample.resampling_dataset`.

    *interpolation*, *fill_value*, *anchor* and *antialias* are None when the caller did not
    give them (then ``"auto"``, 0, ``"origin"`` and False). One of the last three given with a
    target that does not use it, or a *series* with no DICOM folder among the inputs, raises
    :class:`UnusedOptionError`, its message spelling the options as *names* says (see
    :func:`check_options_apply`). The entries of a dataset folder that are not inputs are
    appended to *skipped* when given (see the module docstring).

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
    check_output_format(output_format)
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
    left_out: list[Skipped] = []
    inputs = list_inputs(nii_folder, out_dir, recursive, series, left_out)
    if skipped is not None:
        skipped.extend(left_out)
    dicom = any(i.series is not None or _is_dicom_folder(i.path) for i in inputs) or any(
        s.reason.startswith(_OTHER_SERIES) for s in left_out
    )
    if series is not None and not dicom:
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
    return _jobs(inputs, out_dir, saving_mode, template, output_format), out_dir


def _jobs(
    inputs: list[Input], out_dir: str, saving_mode: str, template: Job, output_format: str
) -> list[Job]:
    """One job per input, from *template*; refuse two inputs that would write one output."""
    jobs: list[Job] = []
    claimed: dict[str, str] = {}
    suffix = output_suffix(template.reference is not None, output_format)
    for item in inputs:
        parts = [item.rel] if item.rel else []
        if saving_mode == "case":
            parts.append(item.prefix)
        shown = os.path.join(out_dir, *parts, item.prefix + suffix)
        target = os.path.normcase(os.path.abspath(shown))
        what = item.path if item.series is None else f"{item.path} (series {item.series})"
        if target in claimed:
            raise ValueError(
                f"two inputs would write the same output {shown!r}: {claimed[target]!r} and "
                f"{what!r}; rename one or use saving_mode='case' or recursive=True"
            )
        claimed[target] = what
        jobs.append(
            replace(
                template,
                input=os.path.abspath(item.path),
                output=os.path.abspath(shown),
                shown=shown,
                series=item.series,
            )
        )
    return jobs


#: How a DICOM series not asked for (``series=``) is listed: the start of its reason.
_OTHER_SERIES = "DICOM series not asked for"
#: Bytes read from a file to tell whether it is a DICOM file (the Part 10 marker at 128).


def list_inputs(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str,
    recursive: bool,
    series: str | None = None,
    skipped: list[Skipped] | None = None,
) -> list[Input]:
    """Every input of *source*, sorted by folder then name; the entries of a dataset folder
    that are not inputs appended to *skipped* (see the module docstring)."""
    if not isinstance(source, str | os.PathLike):
        return [
            Input(p, "", series if _is_dicom_folder(p) else None, volume_name(p))
            for p in _listed_inputs(source)
        ]
    root = os.fspath(source)
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise ValueError(f"nii_folder must be a folder or a list of files, got {root!r}")
        raise FileNotFoundError(f"input folder does not exist: {root!r}")
    if is_dicom_series_folder(root):
        return [Input(root, "", series, volume_name(root))]
    found: list[Input] = []
    left: list[Skipped] = []
    _walk(root, "", os.path.realpath(out_dir), recursive, series, found, left)
    if skipped is not None:
        skipped.extend(left)
    if not found and not any(s.failed for s in left):
        raise FileNotFoundError(
            f"no volume file ({', '.join(VOLUME_SUFFIXES)}) and no DICOM series in {root!r}"
            + (f"; {len(left)} other entries left out" if left else "")
        )
    return sorted(found, key=lambda item: (item.rel, item.prefix))


def _walk(
    folder: str,
    rel: str,
    out_real: str,
    recursive: bool,
    series: str | None,
    found: list[Input],
    left: list[Skipped],
) -> None:
    """List the entries of *folder* (and of its sub-folders if *recursive*)."""
    try:
        with os.scandir(folder) as scan:
            names = sorted(e.name for e in scan if not e.name.startswith("."))
    except OSError as exc:
        left.append(Skipped(folder, f"cannot be listed: {_reason(exc)}", failed=True))
        return
    dicom: list[str] = []
    for name in names:
        path = os.path.join(folder, name)
        kind, reason = _classify(path, name)
        if kind == "folder":
            if os.path.realpath(path) == out_real:
                continue  # the output folder: never part of the dataset
            if is_dicom_series_folder(path):
                found.append(Input(path, rel, series, name))
            elif os.path.islink(path):
                left.append(Skipped(path, "a symbolic link to a folder (not followed)"))
            elif recursive:
                _walk(path, os.path.join(rel, name), out_real, recursive, series, found, left)
            else:
                left.append(Skipped(path, "a folder (its files are taken with recursive)"))
        elif kind == "volume":
            found.append(Input(path, rel, None, volume_name(path)))
        elif kind == "dicom":
            dicom.append(name)
        else:
            left.append(Skipped(path, reason, failed=kind == "failed"))
    if dicom:
        found.extend(_series_inputs(folder, rel, dicom, series, left))


def _classify(path: str, name: str) -> tuple[str, str]:
    """``(kind, reason)`` of an entry: kind ``folder``, ``volume``, ``dicom``, ``skip`` or
    ``failed`` (a volume's name that cannot be one), reason for the last two. Only regular
    files are opened, and only DICOM candidates are read (132 bytes)."""
    meant = volume_suffix(name) is not None
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return ("failed" if meant else "skip"), _stat_problem(path, exc)
    zarr = stat.S_ISDIR(mode) and is_zarr_name(name)  # a NIfTI-Zarr folder: one volume
    if stat.S_ISDIR(mode) and not zarr:
        return "folder", ""
    if not (stat.S_ISREG(mode) or zarr):
        return ("failed" if meant else "skip"), (
            f"not a regular file but {_file_kind(mode)} (never opened)"
        )
    if meant:
        if is_output_name(name):
            return (
                "skip",
                "a result of this package (*_resampled*.nii.gz or .nii.zarr), not an input",
            )
        return "volume", ""
    if name.upper().startswith("DICOMDIR"):
        return "skip", "a DICOMDIR index (no voxels)"
    try:
        head = read_head(path)
    except OSError as exc:
        return "skip", f"cannot be read: {_reason(exc)}"
    if is_dicom_head(head):
        return "dicom", ""
    return "skip", f"not a volume file ({', '.join(VOLUME_SUFFIXES)}) nor a DICOM file"


def _is_dicom_folder(path: str) -> bool:
    """Whether the input *path* is a folder of DICOM files (a ``.nii.zarr`` is a volume)."""
    return os.path.isdir(path) and not is_zarr_name(path)


def _stat_problem(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if os.path.islink(path) and isinstance(exc, FileNotFoundError):
        return f"a symbolic link to a missing path ({os.readlink(path)!r})"
    return f"cannot be read: {_reason(exc)}"


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "a special file")


def _series_inputs(
    folder: str, rel: str, dicom: list[str], series: str | None, left: list[Skipped]
) -> list[Input]:
    """The DICOM files of a folder that is not a series, grouped by series: one input each
    (its PREFIX the name of its first file without suffix); files in no series, and series
    other than *series* when given, are listed in *left*."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's raw "No Series were found"
    try:
        found = list_dicom_series(folder)
        members = {
            s.uid: sorted(
                os.path.basename(f)
                for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, s.uid)
            )
            for s in found
        }
    except (OSError, ValueError, RuntimeError) as exc:
        for name in dicom:
            left.append(Skipped(os.path.join(folder, name), f"DICOM files not grouped: {exc}"))
        return []
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    inputs = []
    grouped: set[str] = set()
    for uid, files in sorted(members.items(), key=lambda item: item[1][:1]):
        files = [f for f in files if f in set(dicom)]
        if not files:
            continue
        grouped.update(files)
        if series is not None and uid != series:
            for name in files:
                left.append(Skipped(os.path.join(folder, name), f"{_OTHER_SERIES} ({uid})"))
            continue
        inputs.append(Input(folder, rel, uid, os.path.splitext(files[0])[0] or files[0]))
    for name in dicom:
        if name not in grouped:
            left.append(Skipped(os.path.join(folder, name), "a DICOM file in no image series"))
    return inputs


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
