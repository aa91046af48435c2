"""The command line: ``napari-resample INPUT OUTPUT_DIR --size X Y Z`` (``python -m`` too).

INPUT is a ``.nii.gz`` file or a folder of them (batch). ``--sample`` replaces INPUT with the
built-in phantom and its label map, written to OUTPUT_DIR first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from napari_resample._names import nifti_suffix, output_name
from napari_resample._options import ANCHORS, AUTO_INTERPOLATIONS, AutoInterpolation


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit code 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


USAGE = """napari-resample INPUT OUTPUT_DIR --size X Y Z [options]
       napari-resample --sample OUTPUT_DIR --size X Y Z [options]"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="napari-resample",
        usage=USAGE,
        description=(
            "Resample 3D NIfTI volumes to a target size, keeping their field of view: "
            "new spacing = old spacing * old size / new size. Writes "
            "OUTPUT_DIR/<PREFIX>_resampled.nii.gz."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="input .nii.gz file (or a folder of them) and output folder; "
        "with --sample, only OUTPUT_DIR",
    )
    parser.add_argument(
        "--size",
        nargs=3,
        type=int,
        required=True,
        metavar=("X", "Y", "Z"),
        help="target size in the file's voxel order (i, j, k)",
    )
    parser.add_argument(
        "--interpolation",
        choices=AUTO_INTERPOLATIONS,
        default="auto",
        help="auto (default: label voting for label maps, bspline for images), bspline, "
        "linear, nearest, or label (for segmentations)",
    )
    parser.add_argument(
        "--anchor",
        choices=ANCHORS,
        default="origin",
        help="origin (default): keep the first voxel centre; center: keep the outer edges",
    )
    parser.add_argument(
        "--antialias", action="store_true", help="smooth downsampled axes before sampling"
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="use the built-in phantom (and its label map) instead of INPUT",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print \"Resampled image saved at: '<path>'\""
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    expected = 1 if args.sample else 2
    if len(args.paths) != expected:
        usage = "OUTPUT_DIR" if args.sample else "INPUT OUTPUT_DIR"
        parser.error(f"expected {usage}, got {len(args.paths)} path(s): {args.paths}")
    out_dir = args.paths[-1]
    try:
        if args.sample:
            jobs = _write_sample(out_dir, quiet=args.quiet)
        else:
            jobs = _inputs(args.paths[0])
        failures = 0
        for n, path in enumerate(jobs, start=1):
            counter = f"[{n}/{len(jobs)}] " if len(jobs) > 1 else ""
            failures += _run_one(path, out_dir, args, counter)
        if len(jobs) > 1 and not args.quiet:
            print(f"{len(jobs) - failures} of {len(jobs)} files resampled into {out_dir}")
    except (OSError, ValueError) as exc:
        print(f"napari-resample: error: {exc}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def _inputs(path: str) -> list[str]:
    """The files to process: *path* itself, or the ``.nii.gz`` files of a folder."""
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if nifti_suffix(name) == ".nii.gz" and not name.startswith(".")
        )
        if not files:
            raise ValueError(f"no .nii.gz file in folder {path!r}")
        return files
    return [path]


def _run_one(path: str, out_dir: str, args: argparse.Namespace, counter: str = "") -> int:
    """Resample one file; return 0 on success, 1 on a reported failure.

    *counter* (``"[3/120] "`` in a batch) prefixes what is printed, errors included.
    """
    from napari_resample._api import resampling

    start = time.perf_counter()
    try:
        resampling(
            path,
            out_dir,
            tuple(args.size),
            debug=args.debug,
            interpolation=cast(AutoInterpolation, args.interpolation),
            anchor=args.anchor,
            antialias=args.antialias,
        )
    except (OSError, ValueError) as exc:
        print(f"napari-resample: error: {counter}{exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one bad file must not stop a batch, nor print a traceback
        print(
            f"napari-resample: error: {counter}{path!r}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        out = os.path.join(out_dir, output_name(path))
        seconds = time.perf_counter() - start
        print(
            f"{counter}{path} -> {out} ({args.interpolation}, {seconds:.2f} s)\n"
            f"  {_describe(path)}  ->  {_describe(out)}"
        )
    return 0


def _describe(path: str) -> str:
    import nibabel as nib

    img: Any = nib.load(path)
    zooms = "x".join(f"{z:.4g}" for z in img.header.get_zooms()[:3])
    fov = "x".join(
        f"{n * z:.4g}" for n, z in zip(img.shape[:3], img.header.get_zooms()[:3], strict=True)
    )
    return f"{img.shape} @ {zooms} mm, FOV {fov} mm, {img.get_data_dtype()}"


def _write_sample(out_dir: str, quiet: bool) -> list[str]:
    """Write the phantom and its labels to *out_dir*; return their paths."""
    from napari_resample._io import save_volume
    from napari_resample._phantom import phantom_volumes

    os.makedirs(out_dir, exist_ok=True)
    jobs = []
    for name, volume in phantom_volumes().items():
        path = os.path.join(out_dir, f"{name}.nii.gz")
        save_volume(path, volume)
        jobs.append(path)
        if not quiet:
            print(f"sample written: {path}")
    return jobs
