"""The dataset door: :func:`resampling_dataset` (parallel, resumable) and :func:`verify_dataset`.

A run is planned (:mod:`.plan`: every option checked, nothing created), then its jobs run
(:mod:`.pool`: each file through the one file pipeline, in :mod:`.task`), and each finished
file is appended to the manifest (:mod:`.manifest`) by this process only; :mod:`.report` shows
progress. Every output is NIfTI.
"""

from __future__ import annotations

import numbers
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any, TextIO

from napari_resample.dataset.job import DEFAULT_SAVING_MODE, Job, UnusedOptionError
from napari_resample.dataset.manifest import (
    MANIFEST_NAME,
    RecordKey,
    append_record,
    end_line,
    input_fingerprint,
    open_manifest,
    read_manifest,
    record_key,
    still_done,
    verify_manifest,
)
from napari_resample.dataset.plan import Skipped, plan_dataset
from napari_resample.dataset.pool import execute_jobs
from napari_resample.dataset.report import ProgressReporter, describe_entry, stderr_reporter
from napari_resample.dataset.task import job_record
from napari_resample.engine.options import Anchor, AutoInterpolation, SavingMode
from napari_resample.io.atomic import held_dirs, make_dirs, remove_empty_dirs, remove_stale_temps
from napari_resample.io.names import OutputFormat
from napari_resample.qc.run import QCReport, qc_run, warm_report


def resampling_dataset(
    nii_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int] | None = None,
    saving_mode: SavingMode = DEFAULT_SAVING_MODE,
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
    check_disk: bool = True,
    qc: bool = False,
    output_format: OutputFormat = "nii.gz",
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
        ``.nii``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) files, each
        sub-folder that is a DICOM series (one input, PREFIX its name), and its loose DICOM
        files grouped by series (one input each, PREFIX the name of its first file). A folder
        is a DICOM series only when it holds DICOM files and nothing else
        (:func:`napari_resample.io.dicom.is_dicom_series_folder`); such a folder given
        itself is one input. Every other entry (a note, a result of this package, a FIFO, a
        device, a dangling symbolic link, a sub-folder without *recursive*) is listed with its
        reason in the manifest and the progress, never opened; one named as a volume that
        cannot be read is a failed file. Hidden entries (``.name``) are not part of a dataset.
        Or an explicit list of volume files and DICOM folders. Every result is NIfTI-1; from
        a non-NIfTI input it has qform and sform code 1 (scanner).
    output_path : str or os.PathLike
        Folder for the results and the manifest ``resampling_manifest.jsonl``; created (with
        parents) after the inputs are checked.
    desired_volume : (3,) sequence of int, optional
        Target size (X, Y, Z) in each file's voxel order (i, j, k).
    saving_mode : {"folder", "case"}
        ``"folder"`` (default, as on the command line) writes every result into
        ``output_path``, the input's layout mirrored: an image and its label map stay side by
        side, and each result lands where :func:`napari_resample.resampling` puts it.
        ``"case"`` writes ``<output_path>/<PREFIX>/<PREFIX>_resampled.nii.gz`` (NiDataset's
        layout). PREFIX is the file name without its suffix, or the DICOM folder's name.
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
        With *reference* only: the value outside each input's field of view (a non-zero value
        with another target does nothing, and is refused).
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        ``"auto"`` (default): label voting for label maps (the rule of
        :mod:`napari_resample.engine.labels`), B-spline for images. Other values apply to
        every file.
    anchor : {"origin", "center"}
        With *desired_volume* or *spacing* only (``"center"`` with *reference* is refused).
    antialias : bool
        With *desired_volume* or *spacing* only (True with *reference* is refused).
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
        paths, as on a shared file system). Not with *workers*.
    resume : bool
        Skip the files that the manifest records as done with the same input, parameters and
        output (default), unless :func:`verify_dataset` found them changed since; False redoes
        every file.
    progress : bool
        Show progress on standard error: a bar on a terminal, else one line per file.
    series : str, optional
        The SeriesInstanceUID to read from the DICOM folders among the inputs (those holding
        several series need it; the error of one without it lists them). Files ignore it; it
        is refused when no input is a DICOM folder.
    max_memory : int or str, optional
        Memory each worker may use (``"2G"``, ``"800M"`` or bytes); default: half of the memory
        available now, shared by the local workers. NIfTI files are streamed plane by plane
        within it (see :func:`napari_resample.resampling`).
    check_disk : bool
        Refuse each file whose result cannot fit its folder's free space, before it is computed
        (:func:`napari_resample.pipeline.limits.check_free_space`); False to skip the check.
    qc : bool
        Check every resampled pair as it passes (field of view, position, orientation, forms,
        value range, NaN, labels; image and label map on one grid) and write the report
        ``qc/index.html`` and ``qc/qc.json`` in *output_path* (see :func:`qc_dataset`, which
        does the same for a finished run). Default False.

    output_format : {"nii.gz", "nii.zarr"}
        As :func:`napari_resample.resampling`: ``"nii.zarr"`` writes each result as a
        NIfTI-Zarr folder (``<PREFIX>_resampled.nii.zarr``); a ``.nii.zarr`` input folder is
        one volume.
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
        option, an option that does nothing with the target (*fill_value* without *reference*,
        *anchor* or *antialias* with it, *series* with no DICOM folder, *workers* with
        *executor*), an unreadable *reference*, an *output_path* that is a file, a listed path
        that is not a volume, or two inputs that would write the same output file (naming
        both); before anything is created.
    OSError
        If the output folder cannot be written (one sentence naming the folder and the
        reason) or its manifest is a symbolic link (never written through); before any file
        is resampled.
    KeyboardInterrupt
        On Ctrl-C, after the files being written are removed (finished files and their
        manifest lines stay).

    Examples
    --------
    >>> done = resampling_dataset("scans/", "resampled/", (224, 224, 128))  # doctest: +SKIP
    """
    check_runner(workers, executor)
    skipped: list[Skipped] = []
    zero = isinstance(fill_value, numbers.Real) and not isinstance(fill_value, bool)
    jobs, out_dir = plan_dataset(
        nii_folder,
        output_path,
        desired_volume,
        saving_mode,
        spacing=spacing,
        reference=reference,
        # Left at their defaults, these are not "given": only a value that would change
        # something is refused with a target that does not use it.
        fill_value=None if zero and fill_value == 0 else fill_value,
        max_memory=max_memory,
        interpolation=interpolation,
        anchor=None if anchor == "origin" else anchor,
        antialias=None if antialias is False else antialias,
        recursive=recursive,
        series=series,
        skipped=skipped,
        output_format=output_format,
    )
    if not check_disk:
        jobs = [replace(job, check_disk=False) for job in jobs]
    if qc:
        jobs = checked_as_they_pass(jobs, out_dir)
    reporter = stderr_reporter(len(jobs)) if progress else None
    if reporter is not None:
        for entry in skipped:
            reporter.note(describe_entry(entry))
    try:
        records = run_dataset(
            jobs,
            out_dir,
            workers=workers,
            executor=executor,
            resume=resume,
            report=reporter,
            skipped=skipped,
        )
    finally:
        if reporter is not None:
            reporter.close()
    if debug:
        for job in jobs:
            if records[job.key]["status"] == "done" and not records[job.key].get("skipped"):
                print(f"Resampled image saved at: '{job.shown}'")
    if qc:
        report = run_report(out_dir, jobs, records)
        if progress or debug:
            print(report.summary(), file=sys.stderr)
    return [job.shown for job in jobs if records[job.key]["status"] == "done"]


def checked_as_they_pass(jobs: Sequence[Job], out_dir: str) -> list[Job]:
    """*jobs*, each to be checked by QC as it is resampled (the report goes in *out_dir*);
    QC's modules and the report's template are readied first, for the workers to inherit
    (:func:`~napari_resample.qc.run.warm_report`)."""
    warm_report()
    return [replace(job, qc_dir=os.path.abspath(out_dir)) for job in jobs]


def run_report(
    out_dir: str, jobs: Sequence[Job], records: dict[RecordKey, dict[str, Any]]
) -> QCReport:
    """The QC report of a run of *jobs* whose latest *records* :func:`run_dataset` returned."""
    return qc_run(os.path.abspath(out_dir), [records[job.key] for job in jobs])


def qc_dataset(output_path: str | os.PathLike[str]) -> QCReport:
    """Check the results of a finished dataset run and write its report: ``qc/index.html``
    (one page that opens offline: every file's status, flags, geometry before and after,
    thumbnails and the check sentences) and ``qc/qc.json``, in *output_path*.

    Files the run checked as it went (``qc=True``) keep their verdicts; the others are read
    again (nothing is resampled). See the checks in the documentation (Quality control).

    Raises
    ------
    FileNotFoundError
        If *output_path* holds no manifest.
    OSError
        If the manifest is a symbolic link, or the report cannot be written.
    """
    out_dir = os.path.abspath(os.fspath(output_path))
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.lexists(manifest):
        raise FileNotFoundError(
            f"no dataset run in {os.fspath(output_path)!r}: it holds no {MANIFEST_NAME}"
        )
    return qc_run(out_dir, read_manifest(manifest).values())


def check_runner(workers: object, executor: Executor | None) -> None:
    """Raise ValueError for a bad *workers*, or one given with *executor* (it would do
    nothing: the executor runs every file)."""
    if workers is None:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if executor is not None:
        raise UnusedOptionError(
            f"workers={workers!r} sizes the local pool, and executor replaces it: leave one out"
        )


def run_dataset(
    jobs: Sequence[Job],
    out_dir: str,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    resume: bool = True,
    report: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    skipped: Sequence[Skipped] = (),
) -> dict[RecordKey, dict[str, Any]]:
    """Run *jobs* (from :func:`napari_resample.dataset.plan.plan_dataset`); return the latest
    record of each job (by :attr:`Job.key`) and of each *skipped* entry (by ``(path, None)``).

    Files found done get their manifest record with ``"skipped": True`` (and no new line). An
    input that cannot be read now (gone, not a regular file, no permission) fails alone. Each
    *skipped* entry gets a record (status ``skipped``, or ``failed`` when it was meant as an
    input), appended when it differs from the manifest's latest. When *cancel* is set (a Ctrl-C
    handler sets it), the run stops as a KeyboardInterrupt would, at the latest when the file
    being resampled in this process is finished: Python drops a KeyboardInterrupt that lands
    in a destructor, the event is never lost. The manifest is never written through a symbolic
    link (refused before any work).
    """
    check_runner(workers, executor)
    made: list[str] = []
    make_dirs(out_dir, made)
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    try:
        previous = read_manifest(manifest)
        log = open_manifest(manifest)
    except BaseException:
        remove_empty_dirs(made)
        raise
    with log:
        end_line(log, manifest)
        records = _entry_records(skipped, previous, log)
        todo = _sort_out(jobs, previous if resume else {}, records, log)
        count = 0
        if report is not None:
            for job in jobs:
                if job.key in records:
                    count += 1
                    report(records[job.key], count, len(jobs))
        folders = sorted({os.path.dirname(job.output) for job in todo})
        with held_dirs(folders, made):
            try:
                for folder in folders:
                    remove_stale_temps(folder)
                for record in execute_jobs(todo, workers, executor, cancel):
                    append_record(log, record)
                    records[record_key(record)] = record
                    count += 1
                    if report is not None:
                        report(record, count, len(jobs))
            finally:
                for folder in folders:
                    remove_stale_temps(folder)
    return records


def _entry_records(
    skipped: Sequence[Skipped], previous: dict[RecordKey, dict[str, Any]], log: TextIO
) -> dict[RecordKey, dict[str, Any]]:
    """The records of the entries that are not inputs, appended to *log* when new."""
    from napari_resample.version import __version__

    records: dict[RecordKey, dict[str, Any]] = {}
    for entry in skipped:
        status = "failed" if entry.failed else "skipped"
        record = {"input": entry.path, "status": status, "error": entry.reason}
        old = previous.get((entry.path, None), {})
        if entry.failed or (old.get("status"), old.get("error")) != (status, entry.reason):
            append_record(log, {**record, "output": None, "version": __version__})
        records[(entry.path, None)] = record
    return records


def _sort_out(
    jobs: Sequence[Job],
    previous: dict[RecordKey, dict[str, Any]],
    records: dict[RecordKey, dict[str, Any]],
    log: TextIO,
) -> list[Job]:
    """The jobs to run, fingerprinted; the others' records into *records*: done already, or
    failed now because their input cannot be read (appended to *log*)."""
    todo: list[Job] = []
    for job in jobs:
        try:
            job = replace(job, fingerprint=input_fingerprint(job.input))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            record = job_record(job, 0.0, error=f"cannot read the input: {reason}")
            append_record(log, record)
            records[job.key] = record
            continue
        old = previous.get(job.key)
        if old is not None and still_done(old, job.params, job.output, job.fingerprint):
            records[job.key] = {**old, "skipped": True}
        else:
            todo.append(job)
    return todo


def verify_dataset(output_path: str | os.PathLike[str]) -> list[str]:
    """Re-hash every input and output that the manifest records as done; recompute nothing.

    Returns one sentence per mismatch (an input changed or gone, an output changed or gone);
    an empty list when everything matches. A mismatched file is recorded as stale in the
    manifest, so that the next run redoes it (its quick check could miss what the full hash
    sees); it is reported again until then.

    Raises
    ------
    FileNotFoundError
        If *output_path* holds no manifest.
    OSError
        If the manifest is a symbolic link (never followed).
    """
    return verify_manifest(output_path)[1]
