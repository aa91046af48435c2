"""Running the command line: one volume, a dataset, ``--sample`` or ``--verify``; signals and
exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from napari_resample.cli.parser import (
    DATASET_OPTIONS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    OPTION_NAMES,
    PROG,
    build_parser,
    check_usage,
    is_given,
    print_error,
)
from napari_resample.dataset.job import DEFAULT_SAVING_MODE, UnusedOptionError
from napari_resample.io.dicom import is_dicom_series_folder
from napari_resample.io.names import is_zarr_name


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that files being written are removed."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 on success).

    Errors that argparse finds (and the usage checks made before anything runs) exit through
    :class:`SystemExit` with code 2, as argparse does. A Ctrl-C while the command line runs is
    the exit code 130 and one line, never a traceback. Warnings are lines
    ``napari-resample: warning: <sentence>`` on standard error.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # shown as lines, whatever the caller's filters
            warnings.showwarning = _show_warning
            return _main(argv)
    except KeyboardInterrupt:
        print_error("interrupted (files being written were removed)")
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["qc"]:  # the one sub-command (an INPUT named qc: write ./qc)
        from napari_resample.cli.qc import qc_main

        return qc_main(argv[1:])
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
        print_error(str(exc) or type(exc).__name__)
        return EXIT_FAILED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if not issubclass(category, UserWarning):  # a library's own warning: its usual form
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr: nobody to tell
        print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


_python_showwarning = warnings.showwarning


def say(text: str) -> None:
    """Print *text* on standard output; a closed or full output (``| head -1``) stops the
    printing, never the run."""
    from napari_resample.dataset.report import printable

    try:
        print(printable(text, sys.stdout), flush=True)
    except (OSError, ValueError):
        # Later prints, and Python's flush at exit, go nowhere instead of failing again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


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
    if os.path.isdir(source) and not (is_dicom_series_folder(source) or is_zarr_name(source)):
        return _dataset(source, out_dir, args, cancel)
    return _one_file(source, out_dir, args)  # a file, a NIfTI-Zarr, or a DICOM series


def _one_file(path: str, out_dir: str, args: argparse.Namespace) -> int:
    """One volume (a file or a DICOM folder), as the dataset runner does it but with no
    manifest; a progress bar on standard error when it is a terminal (not with --quiet)."""
    from napari_resample.dataset.report import describe_record, file_progress, is_terminal
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
    progress = close = None
    if not args.quiet and is_terminal(sys.stderr):
        progress, close = file_progress(sys.stderr, os.path.basename(os.path.normpath(path)))
    try:
        record = run_job(job, progress)
    finally:
        if close is not None:
            close()
        if not os.path.exists(job.output):
            remove_empty_dirs(made)
    if record["status"] == "failed":
        print_error(record["error"])
        return EXIT_FAILED
    if args.debug:
        say(f"Resampled image saved at: '{job.shown}'")
    if not args.quiet:
        line = describe_record({**record, "output": job.shown}, 1, 1).replace("[1/1] ", "", 1)
        say(line.replace(" -> ", " -> (replaced) ", 1) if replaced else line)
    return EXIT_OK


def _dataset(source: Any, out_dir: str, args: argparse.Namespace, cancel: threading.Event) -> int:
    from napari_resample.dataset.plan import Skipped
    from napari_resample.dataset.report import Reporter, describe_entry, is_terminal
    from napari_resample.dataset.run import checked_as_they_pass, run_dataset, run_report

    entries: list[Skipped] = []
    jobs = _plan(source, out_dir, args, entries)
    if args.qc:
        jobs = checked_as_they_pass(jobs, out_dir)
    reporter = None
    if not args.quiet:
        reporter = Reporter(len(jobs), sys.stdout, sys.stderr if is_terminal(sys.stderr) else None)
        for entry in entries:
            if not entry.failed:
                reporter.note(describe_entry(entry))
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
            skipped=entries,
        )
    finally:
        if reporter is not None:
            reporter.close()
        if client is not None:
            client.close()
    done = [job for job in jobs if records[job.key]["status"] == "done"]
    skipped = [job for job in done if records[job.key].get("skipped")]
    failed = [job for job in jobs if records[job.key]["status"] == "failed"]
    unusable = [entry for entry in entries if entry.failed]
    if args.debug:
        for job in done:
            if job not in skipped:
                say(f"Resampled image saved at: '{job.shown}'")
    if not args.quiet:
        left_out = len(entries) - len(unusable)
        others = _count(left_out, "other entry", "other entries")
        say(
            f"{_count(len(jobs) + len(unusable), 'file')}: {len(done) - len(skipped)} "
            f"resampled, {len(skipped)} skipped as already done, "
            f"{len(failed) + len(unusable)} failed"
            + (f", {others} left out (listed above)" if left_out else "")
            + f"; results in {out_dir}"
        )
    for job in failed:
        what = job.input if job.series is None else f"{job.input} (series {job.series})"
        print_error(f"{what}: {records[job.key]['error']}")
    for entry in unusable:
        print_error(f"{entry.path}: {entry.reason}")
    code = EXIT_FAILED if failed or unusable else EXIT_OK
    if args.qc:
        from napari_resample.cli.qc import qc_outcome

        report = run_report(out_dir, jobs, records)
        code = max(code, qc_outcome(report, strict=args.strict, quiet=args.quiet))
    return code


def _count(n: int, one: str, many: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``: a count with its noun in the right number."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def _plan(
    source: Any, out_dir: str, args: argparse.Namespace, entries: list[Any] | None = None
) -> list[Any]:
    """The jobs of a run, from the command line's options (checked before anything is made;
    an option that does nothing raises :class:`UnusedOptionError`); the entries of a dataset
    folder that are not inputs appended to *entries*."""
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
        skipped=entries,
        output_format=args.output_format or "nii.gz",
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
    from napari_resample.dataset.manifest import verify_manifest

    checked, problems = verify_manifest(out_dir)
    for problem in problems:
        print_error(f"mismatch: {problem}")
    if not quiet:
        say(
            f"{_count(checked, 'done file')} checked against the manifest: "
            f"{_count(len(problems), 'mismatch', 'mismatches')}"
            + ("; the next run redoes the files that do not match" if problems else "")
        )
    return EXIT_FAILED if problems else EXIT_OK


def _write_sample(out_dir: str, quiet: bool) -> list[str]:
    """Write the phantom and its labels to *out_dir*; return their paths."""
    from napari_resample.io.atomic import make_dirs
    from napari_resample.io.nifti import save_volume
    from napari_resample.io.phantom import phantom_volumes

    make_dirs(out_dir, [])
    paths = []
    for name, volume in phantom_volumes().items():
        path = os.path.join(out_dir, f"{name}.nii.gz")
        save_volume(path, volume)
        paths.append(path)
        if not quiet:
            say(f"sample written: {path}")
    return paths
