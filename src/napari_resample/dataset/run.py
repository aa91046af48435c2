"""Whole datasets: :func:`resampling_dataset`, parallel, resumable and verifiable.

Every file goes through the one file pipeline
(:func:`napari_resample.pipeline.run.resample_volume`) in a task that needs nothing but its
arguments (:func:`run_job`), so the same task runs in this process, in a local process pool or
on any ``concurrent.futures.Executor`` (a dask.distributed ``Client.get_executor()`` for a
cluster). Only this process writes the manifest.

The manifest, ``<output_path>/resampling_manifest.jsonl``, gets one JSON line per file finished
(done or failed), appended as each file finishes. A rerun skips a file only when its latest line
says ``done`` with the same parameters and output path, the input still has the recorded
fingerprint (size, modification time, and a hash of its first and last 64 KiB and of 16 blocks
of 4 KiB spread over the file), and the output still has the recorded size and modification
time. The fingerprint is cheap (it reads about 200 KiB of each input) and catches any change
that goes through the file system's usual ways; a change that keeps the size and restores the
modification time and misses the sampled blocks would be missed: the full SHA-256 of every input
and output is recorded as well, and :func:`verify_dataset` checks them all.

An input is a volume file (NIfTI, NRRD, MetaImage) or a folder holding a DICOM series. A folder's
fingerprint and SHA-256 are over its files (not sub-folders; hidden files and volume files,
which are never part of a series, left out): their sorted names, sizes and modification times
and, for the fingerprint, the first and last 4 KiB of each; its size is their total, its
modification time the latest. Every output is NIfTI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, replace
from typing import Any, TextIO

from napari_resample.engine.memory import default_budget, parse_bytes
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
from napari_resample.engine.threads import available_cores, limit_engine_threads
from napari_resample.io.atomic import make_dirs, remove_empty_dirs, remove_stale_temps
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
from napari_resample.pipeline.run import (
    GridTarget,
    SizeTarget,
    SpacingTarget,
    Target,
    resample_file,
)

#: File name of the manifest in the output folder.
MANIFEST_NAME = "resampling_manifest.jsonl"
#: Bytes hashed at each end of an input for its fingerprint, and the blocks sampled between.
_FINGERPRINT_EDGE = 1 << 16
_FINGERPRINT_BLOCK = 1 << 12
_FINGERPRINT_BLOCKS = 16
#: Seconds between two looks at the cancel event while waiting for workers.
_POLL_SECONDS = 0.1
#: Bytes read at a time when hashing whole files.
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Job:
    """One file of a dataset run: everything :func:`run_job` needs, picklable."""

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


ProgressReporter = Callable[[dict[str, Any], int, int], None]


def resampling_dataset(
    nii_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int] | None = None,
    saving_mode: SavingMode = "case",
    debug: bool = False,
    *,
    spacing: Sequence[float] | None = None,
    reference: str | os.PathLike[str] | None = None,
    fill_value: float = 0,
    interpolation: AutoInterpolation = "auto",
    anchor: Anchor = "origin",
    antialias: bool = False,
    recursive: bool = False,
    workers: int | None = None,
    executor: Executor | None = None,
    resume: bool = True,
    progress: bool = True,
    series: str | None = None,
    max_memory: int | str | None = None,
) -> list[str]:
    """Resample every volume of a folder (or a list of them) to one target grid, into NIfTI.

    The target is exactly one of: a size (*desired_volume*), a spacing (*spacing*) or a
    reference image's grid (*reference*). Each file is resampled as
    :func:`napari_resample.resampling`, :func:`napari_resample.resample_to_spacing` or
    :func:`napari_resample.resample_to_reference` does it. One bad file never stops the others:
    it is recorded as failed, with its error, in the manifest, and left out of the returned
    list.

    Parameters
    ----------
    nii_folder : str, os.PathLike or sequence of them
        A folder whose volumes are resampled, in sorted order: its NIfTI (``.nii.gz``,
        ``.nii``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) files, and
        each sub-folder holding DICOM files (one input, a series, PREFIX its name; not looked
        into). Hidden files and results of this package (``*_resampled.nii.gz``) are left out.
        A folder that itself holds DICOM files is one input. Or an explicit list of such files
        and DICOM folders. Every result is NIfTI-1; from a non-NIfTI input it has qform and
        sform code 1 (scanner).
    output_path : str or os.PathLike
        Folder for the results and the manifest ``resampling_manifest.jsonl``; created (with
        parents) after the inputs are checked.
    desired_volume : (3,) sequence of int, optional
        Target size (X, Y, Z) in each file's voxel order (i, j, k).
    saving_mode : {"case", "folder"}
        ``"case"`` writes ``<output_path>/<PREFIX>/<PREFIX>_resampled.nii.gz``; ``"folder"``
        writes every result into ``output_path``. PREFIX is the file name without its suffix,
        or the DICOM folder's name.
    debug : bool
        Print ``Resampled image saved at: '<path>'`` for each file written.
    spacing : (3,) sequence of float, optional
        Target spacing in mm (i, j, k), field of view kept: each file's size is
        ``round(size * old_spacing / spacing)``; the manifest records requested and achieved.
    reference : str or os.PathLike, optional
        An image whose grid every file is resampled onto (``<PREFIX>_resampled_to_ref.nii.gz``):
        a NIfTI, NRRD or MetaImage file (header only) or a DICOM series folder (read by each
        task). A file that does not overlap it fails; one covering under 50% of it is done,
        with a warning in its record.
    fill_value : float
        With *reference*: the value outside each input's field of view.
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        ``"auto"`` (default): label voting for label maps (the rule of
        :mod:`napari_resample.engine.labels`), B-spline for images. Other values apply to
        every file.
    anchor : {"origin", "center"}
    antialias : bool
    recursive : bool
        Also take the files of subfolders (other than DICOM folders, which are inputs),
        mirroring the tree under *output_path*.
    workers : int, optional
        Worker processes on this machine; None uses every core, 1 runs in this process. Each
        worker's resampling uses ``cores // workers`` threads. Results are the same, bit for bit,
        whatever the number.
    executor : concurrent.futures.Executor, optional
        Runs the files instead of a local pool, e.g. ``distributed.Client(address)
        .get_executor()`` for a dask cluster (every worker must reach the input and output
        paths, as on a shared file system). *workers* is then ignored.
    resume : bool
        Skip the files that the manifest records as done with the same input, parameters and
        output (default); False redoes every file.
    progress : bool
        Show progress on standard error: a bar on a terminal, else one line per file.
    max_memory : int or str, optional
        Memory each worker may use (``"2G"``, ``"800M"`` or bytes); default: half of the memory
        available now, shared by the local workers. NIfTI files are streamed plane by plane
        within it (see :func:`napari_resample.resampling`).
    series : str, optional
        The SeriesInstanceUID to read from the DICOM folders among the inputs (those holding
        several series need it; the error of one without it lists them). Files ignore it.

    Returns
    -------
    list of str
        The output paths of the files that are done (this run or an earlier one), in input
        order, spelled from *output_path*.

    Raises
    ------
    FileNotFoundError
        If *nii_folder* does not exist, holds no volume, or lists a missing file or folder.
    ValueError
        For not exactly one target, a bad *desired_volume*, *spacing*, *saving_mode* or
        option, an unreadable *reference*, an *output_path* that is a file, a listed path that
        is not a volume, a *series* with no DICOM folder among the inputs, or two inputs that
        would write the same output file (naming both); before anything is created.
    KeyboardInterrupt
        On Ctrl-C, after the files being written are removed (finished files and their
        manifest lines stay).

    Examples
    --------
    >>> done = resampling_dataset("scans/", "resampled/", (224, 224, 128))  # doctest: +SKIP
    """
    jobs, out_dir = plan_dataset(
        nii_folder,
        output_path,
        desired_volume,
        saving_mode,
        spacing=spacing,
        reference=reference,
        fill_value=fill_value,
        max_memory=max_memory,
        interpolation=interpolation,
        anchor=anchor,
        antialias=antialias,
        recursive=recursive,
        series=series,
    )
    reporter = _default_reporter(len(jobs)) if progress else None
    try:
        records = run_dataset(
            jobs, out_dir, workers=workers, executor=executor, resume=resume, report=reporter
        )
    finally:
        if reporter is not None:
            reporter.close()
    if debug:
        for job in jobs:
            if records[job.input]["status"] == "done" and not records[job.input].get("skipped"):
                print(f"Resampled image saved at: '{job.shown}'")
    return [job.shown for job in jobs if records[job.input]["status"] == "done"]


# --------------------------------------------------------------------------- planning


def plan_dataset(
    nii_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int] | None,
    saving_mode: str = "case",
    *,
    spacing: Sequence[float] | None = None,
    reference: str | os.PathLike[str] | None = None,
    fill_value: float = 0,
    max_memory: int | str | None = None,
    interpolation: str = "auto",
    anchor: str = "origin",
    antialias: bool = False,
    recursive: bool = False,
    series: str | None = None,
) -> tuple[list[Job], str]:
    """Check every argument and list the jobs, creating nothing. See :func:`resampling_dataset`.

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
    ref_path = ref_print = None
    if reference is not None:
        from napari_resample.pipeline.reference import reference_grid

        reference_grid(reference)  # readable, 3D: checked before anything is made
        ref_path = os.path.abspath(os.fspath(reference))
        ref_print = input_fingerprint(ref_path)
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
        raise ValueError(f"fill_value must be a number, got {fill_value!r}")
    budget = None if max_memory is None else parse_bytes(max_memory)
    check_choice("saving_mode", saving_mode, SAVING_MODES)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    if series is not None and (not isinstance(series, str) or not series):
        raise ValueError(f"series must be a SeriesInstanceUID (a non-empty str), got {series!r}")
    out_dir = os.fspath(output_path)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_path must be a folder, got a file: {out_dir!r}")
    inputs = _list_inputs(nii_folder, out_dir, recursive)
    if series is not None and not any(os.path.isdir(path) for path, _ in inputs):
        raise ValueError(
            f"series={series!r} applies to folders of DICOM files, and none of the "
            f"{len(inputs)} input(s) is one"
        )
    jobs: list[Job] = []
    claimed: dict[str, str] = {}
    suffix = REFERENCE_SUFFIX if reference is not None else OUTPUT_SUFFIX
    for path, rel_dir in inputs:
        name = output_name(path, suffix)
        parts = [rel_dir] if rel_dir else []
        if saving_mode == "case":
            parts.append(volume_name(path))
        shown = os.path.join(out_dir, *parts, name)
        target = os.path.normcase(os.path.abspath(shown))
        if target in claimed:
            raise ValueError(
                f"two inputs would write the same output {shown!r}: {claimed[target]!r} and "
                f"{path!r}; rename one or use saving_mode='case' or recursive=True"
            )
        claimed[target] = path
        jobs.append(
            Job(
                input=os.path.abspath(path),
                output=os.path.abspath(shown),
                shown=shown,
                size=size,
                interpolation=interpolation,
                anchor=anchor,
                antialias=bool(antialias),
                fingerprint={},
                spacing=target_spacing,
                reference=ref_path,
                reference_fingerprint=ref_print,
                fill_value=float(fill_value),
                max_memory=budget,
                series=series if os.path.isdir(path) else None,
            )
        )
    return jobs, out_dir


def _list_inputs(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str,
    recursive: bool,
) -> list[tuple[str, str]]:
    """``(path, folder relative to the dataset root)`` of every input, sorted."""
    if not isinstance(source, str | os.PathLike):
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
        return [(p, "") for p in paths]
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


# --------------------------------------------------------------------------- running


def run_dataset(
    jobs: Sequence[Job],
    out_dir: str,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    resume: bool = True,
    report: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, dict[str, Any]]:
    """Run *jobs* (from :func:`plan_dataset`); return the latest record of each input.

    Skipped files get their manifest record with ``"skipped": True`` (and no new line). When
    *cancel* is set (a Ctrl-C handler sets it), the run stops as a KeyboardInterrupt would,
    at the latest when the file being resampled in this process is finished: Python drops a
    KeyboardInterrupt that lands in a destructor, the event is never lost.
    """
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    made: list[str] = []
    make_dirs(out_dir, made)
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    previous = read_manifest(manifest) if resume else {}
    records: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        fingerprint = input_fingerprint(job.input)
        job = replace(job, fingerprint=fingerprint)
        old = previous.get(job.input)
        if old is not None and _still_done(old, job):
            records[job.input] = {**old, "skipped": True}
        else:
            todo.append(job)
    count = 0
    if report is not None:
        for job in jobs:
            if job.input in records:
                count += 1
                report(records[job.input], count, len(jobs))
    folders = sorted({os.path.dirname(job.output) for job in todo})
    for folder in folders:
        make_dirs(folder, made)
        remove_stale_temps(folder)
    count = len(records)
    try:
        with open(manifest, "a", encoding="utf-8") as log:
            _end_line(log, manifest)
            for record in _execute(todo, workers, executor, cancel):
                log.write(json.dumps(record, sort_keys=True) + "\n")
                log.flush()
                records[record["input"]] = record
                count += 1
                if report is not None:
                    report(record, count, len(jobs))
    finally:
        for folder in folders:
            remove_stale_temps(folder)
        remove_empty_dirs([d for d in made if d != out_dir])
    return records


def _end_line(log: TextIO, manifest: str) -> None:
    """Start a fresh line if a killed run left half a line at the end of the manifest."""
    with open(manifest, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            log.write("\n")


def _execute(
    jobs: Sequence[Job],
    workers: int | None,
    executor: Executor | None,
    cancel: threading.Event | None = None,
) -> Iterable[dict[str, Any]]:
    """Run the jobs, in this process, a local process pool, or *executor*; yield records as
    they finish."""
    if not jobs:
        return
    if executor is None:
        n, threads = pool_plan(workers, len(jobs))
        if n <= 1:
            for job in jobs:
                _check(cancel)
                yield run_job(job)
            return
        share = default_budget() // n
        jobs = [replace(job, threads=threads, max_memory=job.max_memory or share) for job in jobs]
        yield from _pooled(jobs, n, cancel)
        return
    yield from _submitted(executor, jobs, cancel)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt


def pool_plan(workers: int | None, n_jobs: int) -> tuple[int, int]:
    """Worker processes and engine threads per worker for a local run: never more processes
    than jobs, and ``processes * threads <= cores`` so that they do not compete."""
    cores = available_cores()
    n = max(1, min(cores if workers is None else int(workers), n_jobs))
    return n, max(1, cores // n)


def _pooled(
    jobs: Sequence[Job], n: int, cancel: threading.Event | None
) -> Iterable[dict[str, Any]]:
    """Run *jobs* on a pool of *n* fresh worker processes; on any interruption, stop the
    workers at once (each removes the file it was writing) and re-raise."""
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context(_start_method()),
        initializer=_worker_init,
    )
    try:
        yield from _submitted(pool, jobs, cancel, shield=True)
    except BaseException:
        processes = list(getattr(pool, "_processes", {}).values())
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 1.0
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)  # reaped, so that its temporary file is seen as stale
        raise
    pool.shutdown(wait=True)


def _start_method() -> str:
    """``"fork"`` on Linux when this process runs no other thread (workers start at once, and
    a script needs no ``if __name__ == "__main__":`` guard), else ``"spawn"`` (forking a process
    with threads can copy a lock another thread held; macOS's frameworks do not survive it)."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _submitted(
    executor: Executor,
    jobs: Sequence[Job],
    cancel: threading.Event | None = None,
    shield: bool = False,
) -> Iterable[dict[str, Any]]:
    """Submit every job, then yield records as they finish. With *shield*, Ctrl-C is ignored
    while submitting: a local pool starts its worker processes then, and they inherit the
    ignoring from birth (a Ctrl-C reaching a worker still importing would print a traceback;
    once started, the parent stops them)."""
    futures: dict[Future[dict[str, Any]], Job] = {}
    with _sigint_ignored() if shield else contextlib.nullcontext():
        for job in jobs:
            futures[executor.submit(run_job, job)] = job
    pending = set(futures)
    try:
        while pending:
            _check(cancel)
            finished, pending = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                job = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # the worker itself died: the file is not done
                    yield _record(job, 0.0, error=f"worker lost: {type(exc).__name__}: {exc}")
                _check(cancel)
    finally:
        for future in futures:
            future.cancel()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_init() -> None:
    """In a pool worker: Ctrl-C is the parent's to handle; SIGTERM unwinds (removing the file
    being written) instead of killing outright."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Stop a pool worker now: delete the file it is writing, then end the process (unwinding
    instead could meet the pool's own code, which reports exceptions and takes the next task)."""
    from napari_resample.io.atomic import remove_files_in_progress

    remove_files_in_progress()
    os._exit(128 + signum)


def run_job(job: Job) -> dict[str, Any]:
    """Resample one file of a dataset and describe what happened (never raises for the file's
    own problems: they are the record's ``error``)."""
    from napari_resample.version import __version__

    start = time.perf_counter()
    before = after = None
    used = None
    try:
        with limit_engine_threads(job.threads), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = resample_file(
                job.input,
                job.output,
                _target(job),
                interpolation=job.interpolation,
                series=job.series,
                max_memory=job.max_memory,
            )
            before, after, used = result.before, result.after, result.interpolation
        info = dict(result.info, streamed=result.streamed)
        if caught:
            info["warnings"] = [str(w.message) for w in caught]
        stat = os.stat(job.output)
        outcome = {
            **info,
            "output_size": stat.st_size,
            "output_mtime_ns": stat.st_mtime_ns,
            "output_sha256": file_sha256(job.output),
            "input_sha256": file_sha256(job.input),
        }
        return _record(job, time.perf_counter() - start, before, after, used, __version__, outcome)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _record(
            job, time.perf_counter() - start, before, None, used, __version__, error=error
        )


def _target(job: Job) -> Target:
    """The target grid of *job* for :func:`_pipeline.resample_file`."""
    if job.reference is not None:
        from napari_resample.pipeline.reference import reference_grid

        return GridTarget(reference_grid(job.reference), job.fill_value)
    if job.spacing is not None:
        return SpacingTarget(job.spacing, job.anchor, job.antialias)
    assert job.size is not None
    return SizeTarget(job.size, job.anchor, job.antialias)


def _record(
    job: Job,
    seconds: float,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    used: str | None = None,
    version: str | None = None,
    outcome: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    if version is None:
        from napari_resample.version import __version__ as version
    return {
        "input": job.input,
        "input_size": job.fingerprint.get("size"),
        "input_mtime_ns": job.fingerprint.get("mtime_ns"),
        "input_sample_hash": job.fingerprint.get("sample_hash"),
        "output": job.output,
        "params": job.params,
        "interpolation_used": used,
        "version": version,
        "status": "failed" if error is not None else "done",
        "error": error,
        "before": before,
        "after": after,
        "seconds": round(seconds, 4),
        **(outcome or {}),
    }


# --------------------------------------------------------------------------- the manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The latest record of each input in a manifest (absent file: none). Lines that do not
    parse (half a line left by a killed run) are ignored."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return latest
    with fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("input"), str):
                latest[record["input"]] = record
    return latest


def input_fingerprint(path: str) -> dict[str, Any]:
    """Size, modification time and a hash of sampled blocks: cheap to compute (about 200 KiB
    read per file; 8 KiB per file of a DICOM folder), enough to tell a changed input in
    practice. See the module docstring for its limits and for folders."""
    if os.path.isdir(path):
        return _folder_fingerprint(path)
    stat = os.stat(path)
    digest = hashlib.blake2b(digest_size=16)
    size = stat.st_size
    with open(path, "rb") as fh:
        if size <= 2 * _FINGERPRINT_EDGE + _FINGERPRINT_BLOCKS * _FINGERPRINT_BLOCK:
            digest.update(fh.read())
        else:
            digest.update(fh.read(_FINGERPRINT_EDGE))
            span = size - 2 * _FINGERPRINT_EDGE - _FINGERPRINT_BLOCK
            for n in range(_FINGERPRINT_BLOCKS):
                fh.seek(_FINGERPRINT_EDGE + span * n // (_FINGERPRINT_BLOCKS - 1))
                digest.update(fh.read(_FINGERPRINT_BLOCK))
            fh.seek(size - _FINGERPRINT_EDGE)
            digest.update(fh.read(_FINGERPRINT_EDGE))
    return {"size": size, "mtime_ns": stat.st_mtime_ns, "sample_hash": digest.hexdigest()}


def _folder_files(folder: str) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of the files of a DICOM folder that can belong to a series, sorted."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or volume_suffix(entry.name) is not None:
                continue
            if entry.is_file():
                found.append((entry.name, entry.stat()))
    return sorted(found, key=lambda item: item[0])


def _folder_fingerprint(folder: str) -> dict[str, Any]:
    digest = hashlib.blake2b(digest_size=16)
    total = latest = 0
    for name, stat in _folder_files(folder):
        total += stat.st_size
        latest = max(latest, stat.st_mtime_ns)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        with open(os.path.join(folder, name), "rb") as fh:
            digest.update(fh.read(_FINGERPRINT_BLOCK))
            if stat.st_size > 2 * _FINGERPRINT_BLOCK:
                fh.seek(stat.st_size - _FINGERPRINT_BLOCK)
            digest.update(fh.read(_FINGERPRINT_BLOCK))
    return {"size": total, "mtime_ns": latest, "sample_hash": digest.hexdigest()}


def file_sha256(path: str) -> str:
    """SHA-256 of a whole file, as hex; for a folder (a DICOM series), SHA-256 of the lines
    ``<name> <size> <SHA-256 of the file>`` of its files (see the module docstring)."""
    if os.path.isdir(path):
        lines = hashlib.sha256()
        for name, stat in _folder_files(path):
            file_digest = file_sha256(os.path.join(path, name))
            lines.update(f"{name}\0{stat.st_size}\0{file_digest}\n".encode())
        return lines.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _still_done(record: dict[str, Any], job: Job) -> bool:
    """Whether *record* proves *job* done: same parameters, input and output as recorded."""
    if record.get("status") != "done" or record.get("params") != job.params:
        return False
    if record.get("output") != job.output:
        return False
    recorded = {
        "size": record.get("input_size"),
        "mtime_ns": record.get("input_mtime_ns"),
        "sample_hash": record.get("input_sample_hash"),
    }
    if recorded != job.fingerprint:
        return False
    try:
        stat = os.stat(job.output)
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (
        record.get("output_size"),
        record.get("output_mtime_ns"),
    )


def verify_dataset(output_path: str | os.PathLike[str]) -> list[str]:
    """Re-hash every input and output that the manifest records as done; recompute nothing.

    Returns one sentence per mismatch (an input changed or gone, an output changed or gone);
    an empty list when everything matches.

    Raises
    ------
    FileNotFoundError
        If *output_path* holds no manifest.
    """
    manifest = os.path.join(os.fspath(output_path), MANIFEST_NAME)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {os.fspath(output_path)!r}")
    problems: list[str] = []
    for record in read_manifest(manifest).values():
        if record.get("status") != "done":
            continue
        for role in ("input", "output"):
            path = record[role]
            present = os.path.isfile(path) or (role == "input" and os.path.isdir(path))
            if not present:
                problems.append(f"{role} missing: {path}")
            elif file_sha256(path) != record.get(f"{role}_sha256"):
                problems.append(f"{role} changed since it was resampled: {path}")
    return problems


# --------------------------------------------------------------------------- progress


class _Reporter:
    """Progress: a tqdm bar on *bar* (a terminal) if given, else one plain line per file on
    *lines*."""

    def __init__(self, total: int, lines: TextIO, bar: TextIO | None = None) -> None:
        self.lines = lines
        self.failed = 0
        self.bar: Any = None
        if bar is not None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=bar, unit="file", dynamic_ncols=True)

    def __call__(self, record: dict[str, Any], done: int, total: int) -> None:
        if record["status"] == "failed":
            self.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=self.failed, refresh=False)
            if record["status"] == "failed":
                self.bar.write(describe_record(record, done, total), file=self.lines)
            return
        print(describe_record(record, done, total), file=self.lines, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _default_reporter(total: int) -> _Reporter:
    return _Reporter(total, sys.stderr, sys.stderr if sys.stderr.isatty() else None)


def describe_record(record: dict[str, Any], done: int, total: int) -> str:
    """One plain line for a finished (or skipped) file."""
    head = f"[{done}/{total}] {record['input']}"
    if record.get("skipped"):
        return f"{head}: already done -> {record['output']}"
    if record["status"] == "failed":
        return f"{head}: FAILED: {record['error']}"
    before, after = record["before"], record["after"]
    text = (
        f"{head} -> {record['output']} ({record['interpolation_used']}, {record['seconds']:.2f} s)"
        f"\n  {_fmt_geometry(before)}  ->  {_fmt_geometry(after)}"
    )
    if "spacing_requested" in record:
        from napari_resample.api import describe_spacing

        text += "\n  " + describe_spacing(
            record["spacing_requested"], record["spacing_achieved"], after["shape"]
        )
    if "overlap" in record:
        text += f"\n  covers {100 * record['overlap']:.1f}% of the reference's field of view"
    for warning in record.get("warnings", ()):
        text += f"\n  warning: {warning}"
    return text


def _fmt_geometry(g: dict[str, Any]) -> str:
    def x(values: Iterable[float]) -> str:
        return "x".join(f"{v:.4g}" for v in values)

    return f"{tuple(g['shape'])} @ {x(g['spacing'])} mm, FOV {x(g['fov'])} mm, {g['dtype']}"
