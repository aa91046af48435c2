"""Running the command line: one volume, a dataset, ``--sample`` or ``--verify``; signals and
exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from napari_resample.cli.parser import (
    DATASET_OPTIONS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    OPTION_NAMES,
    build_parser,
    check_usage,
    is_given,
    print_error,
)
from napari_resample.dataset.plan import DEFAULT_SAVING_MODE, UnusedOptionError
from napari_resample.io.formats import looks_like_dicom_folder


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that files being written are removed."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 on success).

    Errors that argparse finds (and the usage checks made before anything runs) exit through
    :class:`SystemExit` with code 2, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_usage(parser, args)
    cancel = threading.Event()
    previous = _install_handlers(cancel)
    try:
        return _run(args, cancel)
    except KeyboardInterrupt:
        print_error("interrupted (files being written were removed)")
        return EXIT_INTERRUPTED
    except _Terminated:
        print_error("terminated (files being written were removed)")
        return EXIT_TERMINATED
    except UnusedOptionError as exc:
        print_error(f"{exc} (see --help)")
        return EXIT_USAGE
    except (OSError, ValueError, ImportError, MemoryError) as exc:
        print_error(str(exc))
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
    from napari_resample.dataset.report import describe_record
    from napari_resample.dataset.task import run_job
    from napari_resample.io.atomic import make_dirs, remove_empty_dirs

    if not os.path.exists(path):
        raise FileNotFoundError(f"input does not exist: {path!r}")
    unused = [name for dest, name in DATASET_OPTIONS.items() if is_given(getattr(args, dest))]
    if unused:
        raise UnusedOptionError(
            f"{' '.join(unused)} applies to a folder of volumes (a dataset), and INPUT is one "
            f"volume: {path!r}"
        )
    (job,) = _plan([path], out_dir, args)
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
        print_error(record["error"])
        return EXIT_FAILED
    if args.debug:
        print(f"Resampled image saved at: '{job.shown}'")
    if not args.quiet:
        line = describe_record({**record, "output": job.shown}, 1, 1).replace("[1/1] ", "", 1)
        print(line.replace(" -> ", " -> (replaced) ", 1) if replaced else line)
    return EXIT_OK


def _dataset(source: Any, out_dir: str, args: argparse.Namespace, cancel: threading.Event) -> int:
    from napari_resample.dataset.report import Reporter
    from napari_resample.dataset.run import run_dataset

    jobs = _plan(source, out_dir, args)
    reporter = None
    if not args.quiet:
        bar = sys.stderr if sys.stderr.isatty() else None
        reporter = Reporter(len(jobs), sys.stdout, bar)
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
        print_error(f"{job.input}: {records[job.input]['error']}")
    return EXIT_FAILED if failed else EXIT_OK


def _plan(source: Any, out_dir: str, args: argparse.Namespace) -> list[Any]:
    """The jobs of a run, from the command line's options (checked before anything is made;
    an option that does nothing raises :class:`UnusedOptionError`)."""
    from napari_resample.dataset.plan import plan_dataset

    jobs, _ = plan_dataset(
        source,
        out_dir,
        args.size,
        args.saving_mode or DEFAULT_SAVING_MODE,
        spacing=args.spacing,
        reference=args.like,
        fill_value=args.fill_value,
        max_memory=args.max_memory,
        interpolation=args.interpolation,
        anchor=args.anchor,
        antialias=args.antialias or None,
        recursive=args.recursive,
        series=args.series,
        names=OPTION_NAMES,
    )
    if args.no_disk_check:
        jobs = [replace(job, check_disk=False) for job in jobs]
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
    from napari_resample.dataset.manifest import MANIFEST_NAME, read_manifest
    from napari_resample.dataset.run import verify_dataset

    problems = verify_dataset(out_dir)
    for problem in problems:
        print_error(f"mismatch: {problem}")
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
