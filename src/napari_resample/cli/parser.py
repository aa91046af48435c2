"""The command line's arguments: the parser, the usage checks it cannot make alone, and the
one error format (:func:`print_error`).

Options a call may leave unused default to None (or False), so that :func:`check_usage` and
the dataset planner can tell one given from one left out; their defaults are applied where
they are used, and ``--help`` states them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from napari_resample.dataset.plan import (
    DEFAULT_SAVING_MODE,
    TARGET_OPTIONS,
    UnusedOptionError,
    check_options_apply,
)
from napari_resample.engine.options import ANCHORS, AUTO_INTERPOLATIONS, SAVING_MODES
from napari_resample.io.names import OUTPUT_FORMATS

PROG = "napari-resample"


def print_error(message: str) -> None:
    """Print *message* as the command line's one error format, on standard error."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit code 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see --help)")
        self.exit(EXIT_USAGE)


USAGE = """napari-resample INPUT OUTPUT_DIR --size X Y Z [options]
       napari-resample INPUT OUTPUT_DIR --spacing SX SY SZ [options]
       napari-resample INPUT OUTPUT_DIR --like REFERENCE [--fill-value V] [options]
       napari-resample --sample OUTPUT_DIR (--size X Y Z | --spacing SX SY SZ) [options]
       napari-resample INPUT OUTPUT_DIR --verify
       napari-resample qc OUTPUT_DIR [--strict]"""

#: Exit codes: success, a file failed, bad usage, Ctrl-C, SIGTERM.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

#: How the command line spells the dataset runner's targets and options in its messages.
OPTION_NAMES = {
    "desired_volume": "--size",
    "spacing": "--spacing",
    "reference": "--like",
    "fill_value": "--fill-value",
    "anchor": "--anchor",
    "antialias": "--antialias",
    "series": "--series",
}
#: The options of a dataset run only (INPUT a folder of volumes, or --sample), by their dest.
DATASET_OPTIONS = {
    "workers": "--workers",
    "scheduler": "--scheduler",
    "saving_mode": "--saving-mode",
    "recursive": "--recursive",
    "no_resume": "--no-resume",
    "qc": "--qc",
    "strict": "--strict",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from napari_resample.version import __version__

    parser = Parser(
        prog=PROG,
        usage=USAGE,
        description=(
            "Resample 3D medical volumes to a target size or spacing, keeping their field of "
            "view (new spacing = old spacing * old size / new size), or onto a reference "
            "image's grid. Writes NIfTI: <PREFIX>_resampled.nii.gz "
            "(<PREFIX>_resampled_to_ref.nii.gz with --like); from NRRD, MetaImage or DICOM "
            "input with qform and sform code 1 (scanner). INPUT is a NIfTI (.nii.gz, .nii), "
            "NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, a folder holding a DICOM "
            "series (PREFIX is its name), or a folder of volumes and DICOM series folders (a "
            "dataset: parallel, resumable, recorded in OUTPUT_DIR/resampling_manifest.jsonl). "
            "An option that does nothing in a call (--fill-value without --like, a dataset "
            "option with one volume) is an error."
        ),
    )
    _add_inputs(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_targets(parser)
    _add_sampling(parser)
    _add_dataset(parser)
    _add_output(parser)
    return parser


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """INPUT and OUTPUT_DIR, --series and --sample."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="INPUT OUTPUT_DIR",
        help="input volume (file or DICOM folder) or dataset folder, and output folder; with "
        "--sample, only OUTPUT_DIR",
    )
    parser.add_argument(
        "--series",
        metavar="UID",
        help="the SeriesInstanceUID to read from a DICOM folder holding several series (without "
        "it, such a folder is refused with its series listed); an error when INPUT holds no "
        "DICOM folder",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="use the built-in phantom (and its label map) instead of INPUT",
    )


def _add_targets(parser: argparse.ArgumentParser) -> None:
    """The target grid: exactly one of --size, --spacing and --like (with --fill-value)."""
    group = parser.add_argument_group("target grid (exactly one, unless --verify)")
    target = group.add_mutually_exclusive_group()
    target.add_argument(
        "--size",
        nargs=3,
        type=int,
        metavar=("X", "Y", "Z"),
        help="target size in the file's voxel order (i, j, k)",
    )
    target.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("SX", "SY", "SZ"),
        help="target spacing in mm, in the file's voxel order (i, j, k); the field of view is "
        "kept, so the spacing achieved is printed beside the one requested",
    )
    target.add_argument(
        "--like",
        metavar="REFERENCE",
        help="resample onto the grid of this image (NIfTI, NRRD or MetaImage file: only its "
        "header is read; or a DICOM series folder): same shape and affine",
    )
    group.add_argument(
        "--fill-value",
        type=float,
        metavar="V",
        help="with --like only: the value outside the input's field of view (default 0)",
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    """How values are computed: interpolation, anchor, antialiasing, memory."""
    parser.add_argument(
        "--interpolation",
        choices=AUTO_INTERPOLATIONS,
        help="auto (default: label voting for label maps, bspline for images), bspline, "
        "linear, nearest, or label (for segmentations)",
    )
    parser.add_argument(
        "--anchor",
        choices=ANCHORS,
        help="with --size or --spacing only: origin (default) keeps the first voxel centre; "
        "center keeps the outer edges",
    )
    parser.add_argument(
        "--antialias",
        action="store_true",
        help="with --size or --spacing only: smooth downsampled axes before sampling",
    )
    parser.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory a resampling may use, e.g. 2G or 800M (per worker for datasets; default: "
        "half of the memory available now); NIfTI files are streamed plane by plane within it",
    )
    parser.add_argument(
        "--no-disk-check",
        action="store_true",
        help="write even when a result's uncompressed size is over the free space of its "
        "folder (default: such a file is refused before any work, with both sizes)",
    )


def _add_dataset(parser: argparse.ArgumentParser) -> None:
    """The options of a dataset run (INPUT a folder of volumes, or --sample) and --verify."""
    group = parser.add_argument_group(
        "datasets (INPUT is a folder of volumes; an error with a single volume)"
    )
    runner = group.add_mutually_exclusive_group()
    runner.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes on this machine (default: one per core; 1: no pool)",
    )
    runner.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask cluster, e.g. tcp://host:8786 (needs napari-resample[distributed]; "
        "every worker must reach INPUT and OUTPUT_DIR)",
    )
    group.add_argument(
        "--saving-mode",
        choices=SAVING_MODES,
        help=f"{DEFAULT_SAVING_MODE} (default, as in Python's resampling_dataset): every result "
        "in OUTPUT_DIR, the input's layout mirrored, so an image and its label map stay side "
        "by side and each result lands where a single INPUT's would; case: "
        "OUTPUT_DIR/<PREFIX>/<PREFIX>_resampled.nii.gz (NiDataset's layout)",
    )
    group.add_argument(
        "--recursive", action="store_true", help="also subfolders, mirrored under OUTPUT_DIR"
    )
    group.add_argument(
        "--no-resume",
        action="store_true",
        help="redo every file (default: skip the files the manifest records as done)",
    )
    group.add_argument(
        "--qc",
        action="store_true",
        help="check every result as it is written (field of view, position, orientation, "
        "qform/sform, value range, NaN, labels, image and label map on one grid) and write "
        "OUTPUT_DIR/qc/index.html and qc/qc.json; `napari-resample qc OUTPUT_DIR` does it "
        "for a finished run",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="with --qc: exit with 1 when a check finds an error",
    )
    group.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every input and output recorded in OUTPUT_DIR's manifest; recompute "
        "nothing (takes no other option but --quiet)",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    """What is written and printed."""
    parser.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        help="nii.gz (default) or nii.zarr: <PREFIX>_resampled.nii.zarr, a NIfTI-Zarr folder "
        "(chunked, with a multiscale pyramid)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print \"Resampled image saved at: '<path>'\""
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def is_given(value: object) -> bool:
    """Whether an option's parsed *value* says the command line set it (None and False are
    the parser's defaults; ``--fill-value 0`` and ``--workers 0`` are given)."""
    return value is not None and value is not False


def given_options(args: argparse.Namespace) -> list[str]:
    """The options of *args* that the command line set, spelled as typed (``--fill-value``),
    in the parser's order; INPUT, OUTPUT_DIR and --verify itself are not counted."""
    # Every option's dest is its long flag with "_" for "-" (a test keeps it so).
    return [
        "--" + dest.replace("_", "-")
        for dest, value in vars(args).items()
        if dest not in ("paths", "verify") and is_given(value)
    ]


def check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, as bad usage, what the parser alone cannot see: the number of paths, a missing
    target, and options that do nothing in this call."""
    expected = 1 if args.sample else 2
    if len(args.paths) != expected:
        usage = "OUTPUT_DIR" if args.sample else "INPUT OUTPUT_DIR"
        parser.error(f"expected {usage}, got {len(args.paths)} path(s): {args.paths}")
    if args.verify:
        extra = [o for o in given_options(args) if o != "--quiet"]
        if extra:
            parser.error(
                f"--verify re-hashes OUTPUT_DIR's manifest and takes no other option but "
                f"--quiet, got {' '.join(extra)}"
            )
        return
    if args.size is None and args.spacing is None and args.like is None:
        parser.error("one of --size X Y Z, --spacing SX SY SZ or --like REFERENCE is required")
    check_values(parser, args)
    target = "desired_volume" if args.size else "spacing" if args.spacing else "reference"
    given = [dest for dest in TARGET_OPTIONS if is_given(getattr(args, dest))]
    try:  # here, not only when planning: --sample writes its files before the plan is made
        check_options_apply(target, given, OPTION_NAMES)
    except UnusedOptionError as exc:
        parser.error(str(exc))
    if args.strict and not args.qc:
        parser.error("--strict is the exit code of --qc's checks: give --qc too")
    if args.sample and args.like is not None:
        parser.error("--sample takes --size or --spacing, not --like")
    if args.sample and args.series is not None:
        parser.error("--series picks a series of a DICOM folder INPUT; --sample has no INPUT")
    if args.sample and args.recursive:
        parser.error("--recursive walks the subfolders of INPUT; --sample has no INPUT")


def check_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, as bad usage (exit code 2), a value that no input could take: checked by the
    rules the dataset runner applies (one home per rule), spelled with the flags."""
    from napari_resample.engine.memory import parse_bytes
    from napari_resample.engine.options import validate_size, validate_spacing

    checks: dict[str, tuple[Callable[[Any], object], str]] = {
        "size": (validate_size, "desired_volume"),
        "spacing": (validate_spacing, "spacing"),
        "max_memory": (parse_bytes, "max_memory"),
        "workers": (_positive_workers, "workers"),
        "series": (_series_uid, "series"),
    }
    for dest, (check, name) in checks.items():
        value = getattr(args, dest)
        if value is None:
            continue
        try:
            check(value)
        except (ValueError, TypeError, OverflowError) as exc:
            flag = "--" + dest.replace("_", "-")
            parser.error(str(exc).replace(name, flag, 1))


def _positive_workers(value: int) -> None:
    if value < 1:
        raise ValueError(f"workers must be a positive integer, got {value!r}")


def _series_uid(value: str) -> None:
    if not value.strip():
        raise ValueError(f"series must be a SeriesInstanceUID (not empty), got {value!r}")
