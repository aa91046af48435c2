"""The command line: ``napari-resample INPUT OUTPUT_DIR --size X Y Z`` (``python -m`` too).

INPUT is one volume (a NIfTI, NRRD or MetaImage file, or a folder holding DICOM files: a series)
or a folder of volumes, which is a dataset run (:func:`napari_resample.resampling_dataset`:
parallel, resumable, with a manifest). Outputs are always NIfTI. ``--sample`` replaces INPUT
with the built-in phantom and its label map, written to OUTPUT_DIR first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from napari_resample.engine.options import ANCHORS, AUTO_INTERPOLATIONS, SAVING_MODES
from napari_resample.io.formats import looks_like_dicom_folder
from napari_resample.io.names import output_name


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit code 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that files being written are removed."""


USAGE = """napari-resample INPUT OUTPUT_DIR --size X Y Z [options]
       napari-resample INPUT OUTPUT_DIR --spacing SX SY SZ [options]
       napari-resample INPUT OUTPUT_DIR --like REFERENCE [--fill-value V] [options]
       napari-resample --sample OUTPUT_DIR (--size X Y Z | --spacing SX SY SZ) [options]
       napari-resample INPUT OUTPUT_DIR --verify"""

#: Exit codes: success, a file failed, bad usage, Ctrl-C, SIGTERM.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from napari_resample.version import __version__

    parser = _Parser(
        prog="napari-resample",
        usage=USAGE,
        description=(
            "Resample 3D medical volumes to a target size or spacing, keeping their field of "
            "view (new spacing = old spacing * old size / new size), or onto a reference "
            "image's grid. Writes NIfTI: <PREFIX>_resampled.nii.gz "
            "(<PREFIX>_resampled_to_ref.nii.gz with --like); from NRRD, MetaImage or DICOM "
            "input with qform and sform code 1 (scanner). INPUT is a NIfTI (.nii.gz, .nii), "
            "NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, a folder holding a DICOM "
            "series (PREFIX is its name), or a folder of volumes and DICOM series folders (a "
            "dataset: parallel, resumable, recorded in OUTPUT_DIR/resampling_manifest.jsonl)."
        ),
    )
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
        "it, such a folder is refused with its series listed)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    target = parser.add_argument_group(
        "target grid (exactly one, unless --verify)"
    ).add_mutually_exclusive_group()
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
    parser.add_argument(
        "--fill-value",
        type=float,
        default=0.0,
        metavar="V",
        help="with --like: the value outside the input's field of view (default 0)",
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
        "--max-memory",
        metavar="SIZE",
        help="memory a resampling may use, e.g. 2G or 800M (per worker for datasets; default: "
        "half of the memory available now); NIfTI files are streamed plane by plane within it",
    )
    group = parser.add_argument_group("datasets (INPUT is a folder of volumes)")
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes on this machine (default: one per core; 1: no pool)",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask cluster, e.g. tcp://host:8786 (needs napari-resample[distributed]; "
        "every worker must reach INPUT and OUTPUT_DIR)",
    )
    group.add_argument(
        "--saving-mode",
        choices=SAVING_MODES,
        default="folder",
        help="folder (default): every result in OUTPUT_DIR; case: OUTPUT_DIR/<PREFIX>/",
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
        "--verify",
        action="store_true",
        help="re-hash every input and output recorded in OUTPUT_DIR's manifest; recompute nothing",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="use the built-in phantom (and its label map) instead of INPUT",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print \"Resampled image saved at: '<path>'\""
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    expected = 1 if args.sample else 2
    if len(args.paths) != expected:
        usage = "OUTPUT_DIR" if args.sample else "INPUT OUTPUT_DIR"
        parser.error(f"expected {usage}, got {len(args.paths)} path(s): {args.paths}")
    if args.size is None and args.spacing is None and args.like is None and not args.verify:
        parser.error("one of --size X Y Z, --spacing SX SY SZ or --like REFERENCE is required")
    if args.sample and args.like is not None:
        parser.error("--sample takes --size or --spacing, not --like")
    if args.sample and args.series is not None:
        parser.error("--series picks a series of a DICOM folder INPUT; --sample has no INPUT")
    cancel = threading.Event()
    previous = _install_handlers(cancel)
    try:
        return _run(args, cancel)
    except KeyboardInterrupt:
        print("napari-resample: interrupted (files being written were removed)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("napari-resample: terminated (files being written were removed)", file=sys.stderr)
        return EXIT_TERMINATED
    except (OSError, ValueError, ImportError, MemoryError) as exc:
        print(f"napari-resample: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_handlers(cancel: threading.Event) -> dict[int, Any]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM :class:`_Terminated`, and both set
    *cancel*, which the dataset runner also checks between files (an exception raised while
    Python runs a destructor is dropped; the event is not). Main thread only; a Ctrl-C that
    the environment ignores (a shell's background job) stays ignored. Returns the old
    handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_sigint(signum: int, frame: object) -> None:
        cancel.set()
        raise KeyboardInterrupt

    def on_sigterm(signum: int, frame: object) -> None:
        cancel.set()
        raise _Terminated

    previous: dict[int, Any] = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_sigint)
    return previous


def _run(args: argparse.Namespace, cancel: threading.Event) -> int:
    out_dir = args.paths[-1]
    if args.verify:
        return _verify(out_dir, args.quiet)
    if args.sample:
        return _dataset(_write_sample(out_dir, quiet=args.quiet), out_dir, args, cancel)
    source = args.paths[0]
    if os.path.isdir(source) and not looks_like_dicom_folder(source):
        return _dataset(source, out_dir, args, cancel)
    return _one_file(source, out_dir, args)  # a file, or a DICOM folder: one series


def _one_file(path: str, out_dir: str, args: argparse.Namespace) -> int:
    """One volume (a file or a DICOM folder), as the dataset runner does it but with no
    manifest."""
    from napari_resample.dataset.run import describe_record, run_job
    from napari_resample.io.atomic import make_dirs, remove_empty_dirs

    if not os.path.exists(path):
        raise FileNotFoundError(f"input does not exist: {path!r}")
    (job,) = _plan([path], out_dir, args, "folder")
    replaced = os.path.exists(job.output)
    if replaced and os.path.samefile(job.output, job.input):
        raise ValueError(f"output would overwrite the input file: {job.shown!r}")
    made: list[str] = []
    make_dirs(out_dir, made)
    try:
        record = run_job(job)
    finally:
        if not os.path.exists(job.output):
            remove_empty_dirs(made)
    if record["status"] == "failed":
        print(f"napari-resample: error: {record['error']}", file=sys.stderr)
        return EXIT_FAILED
    if args.debug:
        print(f"Resampled image saved at: '{job.shown}'")
    if not args.quiet:
        line = describe_record({**record, "output": job.shown}, 1, 1).replace("[1/1] ", "", 1)
        print(line.replace(" -> ", " -> (replaced) ", 1) if replaced else line)
    return EXIT_OK


def _dataset(source: Any, out_dir: str, args: argparse.Namespace, cancel: threading.Event) -> int:
    from napari_resample.dataset.run import _Reporter, run_dataset

    jobs = _plan(source, out_dir, args, args.saving_mode, args.recursive)
    reporter = None
    if not args.quiet:
        bar = sys.stderr if sys.stderr.isatty() else None
        reporter = _Reporter(len(jobs), sys.stdout, bar)
    client = _connect(args.scheduler) if args.scheduler else None
    try:
        records = run_dataset(
            jobs,
            out_dir,
            workers=args.workers,
            executor=None if client is None else client.get_executor(),
            resume=not args.no_resume,
            report=reporter,
            cancel=cancel,
        )
    finally:
        if reporter is not None:
            reporter.close()
        if client is not None:
            client.close()
    done = [job for job in jobs if records[job.input]["status"] == "done"]
    skipped = [job for job in done if records[job.input].get("skipped")]
    failed = [job for job in jobs if records[job.input]["status"] == "failed"]
    if args.debug:
        for job in done:
            if job not in skipped:
                print(f"Resampled image saved at: '{job.shown}'")
    if not args.quiet:
        print(
            f"{len(jobs)} files: {len(done) - len(skipped)} resampled, {len(skipped)} skipped "
            f"as already done, {len(failed)} failed; results in {out_dir}"
        )
    for job in failed:
        print(
            f"napari-resample: error: {job.input}: {records[job.input]['error']}", file=sys.stderr
        )
    return EXIT_FAILED if failed else EXIT_OK


def _plan(
    source: Any, out_dir: str, args: argparse.Namespace, saving_mode: str, recursive: bool = False
) -> list[Any]:
    """The jobs of a run, from the command line's options (checked before anything is made)."""
    from napari_resample.dataset.run import plan_dataset

    jobs, _ = plan_dataset(
        source,
        out_dir,
        args.size,
        saving_mode,
        spacing=args.spacing,
        reference=args.like,
        fill_value=args.fill_value,
        max_memory=args.max_memory,
        interpolation=args.interpolation,
        anchor=args.anchor,
        antialias=args.antialias,
        recursive=recursive,
        series=args.series,
    )
    return jobs


def _connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "--scheduler needs dask.distributed: pip install 'napari-resample[distributed]'"
        ) from exc
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise OSError(f"cannot reach the dask scheduler at {address!r}: {exc}") from exc


def _verify(out_dir: str, quiet: bool) -> int:
    from napari_resample.dataset.run import MANIFEST_NAME, read_manifest, verify_dataset

    problems = verify_dataset(out_dir)
    for problem in problems:
        print(f"napari-resample: mismatch: {problem}", file=sys.stderr)
    if not quiet:
        records = read_manifest(os.path.join(out_dir, MANIFEST_NAME)).values()
        checked = sum(1 for r in records if r.get("status") == "done")
        print(f"{checked} done files checked against the manifest: {len(problems)} mismatches")
    return EXIT_FAILED if problems else EXIT_OK


def _write_sample(out_dir: str, quiet: bool) -> list[str]:
    """Write the phantom and its labels to *out_dir*; return their paths."""
    from napari_resample.io.nifti import save_volume
    from napari_resample.io.phantom import phantom_volumes

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, volume in phantom_volumes().items():
        path = os.path.join(out_dir, f"{name}.nii.gz")
        save_volume(path, volume)
        paths.append(path)
        if not quiet:
            print(f"sample written: {path}")
    return paths


__all__ = ["build_parser", "main", "output_name"]
