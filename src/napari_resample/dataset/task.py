"""One file of a dataset run: :func:`run_job`, a task that needs nothing but its arguments.

Every file goes through the one file pipeline (:func:`napari_resample.pipeline.run.resample_file`),
so the same task runs in this process, in a local process pool or on any
``concurrent.futures.Executor`` (a dask.distributed ``Client.get_executor()`` for a cluster).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from napari_resample.dataset.job import Job
from napari_resample.dataset.manifest import file_sha256, output_stat
from napari_resample.engine.progress import ProgressCallback
from napari_resample.engine.threads import limit_engine_threads
from napari_resample.pipeline.run import (
    GridTarget,
    SizeTarget,
    SpacingTarget,
    Target,
    resample_file,
)

if TYPE_CHECKING:
    from napari_resample.qc.run import FileWatch


def run_job(job: Job, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Resample one file of a dataset and describe what happened (never raises for the file's
    own problems: they are the record's ``error``); *progress* hears the fraction done."""
    from napari_resample.version import __version__

    start = time.perf_counter()
    before = after = None
    used = None
    watch = None
    if job.qc_dir is not None:
        from napari_resample.qc.run import FileWatch  # QC's modules load only when asked for

        watch = FileWatch(job.input, job.output)
    try:
        with limit_engine_threads(job.threads), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = resample_file(
                job.input,
                job.output,
                job_target(job),
                interpolation=job.interpolation,
                series=job.series,
                max_memory=job.max_memory,
                check_disk=job.check_disk,
                progress=progress,
                observers=None if watch is None else watch.observers,
            )
            before, after, used = result.before, result.after, result.interpolation
        info = dict(result.info, streamed=result.streamed)
        if caught:
            info["warnings"] = [str(w.message) for w in caught]
        size, mtime_ns = output_stat(job.output)
        outcome = {
            **info,
            "output_size": size,
            "output_mtime_ns": mtime_ns,
            "output_sha256": file_sha256(job.output),
            "input_sha256": file_sha256(job.input),
        }
        record = job_record(
            job, time.perf_counter() - start, before, after, used, __version__, outcome
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return job_record(
            job, time.perf_counter() - start, before, None, used, __version__, error=error
        )
    if watch is not None and job.qc_dir is not None:
        record["qc"] = file_qc(watch, record, job.qc_dir)
    return record


def file_qc(watch: FileWatch, record: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """The QC of a file just resampled (its FileQC as JSON); QC that fails says why in an
    error finding, and never fails the file."""
    from napari_resample.qc.run import failed, qc_file

    start = time.perf_counter()
    try:
        inp, out = watch.summaries()
        return qc_file(record, inp, out, output_dir).to_json()
    except Exception as exc:  # the file is done: a QC problem is reported, not raised
        return failed(record, "qc", f"{record['output']}: QC failed: {exc!r}").to_json()
    finally:
        record["qc_seconds"] = round(time.perf_counter() - start, 4)


def job_target(job: Job) -> Target:
    """The target grid of *job* for :func:`napari_resample.pipeline.run.resample_file`."""
    if job.reference is not None:
        from napari_resample.pipeline.reference import reference_grid

        return GridTarget(reference_grid(job.reference), job.fill_value)
    if job.spacing is not None:
        return SpacingTarget(job.spacing, job.anchor, job.antialias)
    assert job.size is not None
    return SizeTarget(job.size, job.anchor, job.antialias)


def job_record(
    job: Job,
    seconds: float,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    used: str | None = None,
    version: str | None = None,
    outcome: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The manifest record of *job*: done with *outcome*, or failed with *error*."""
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
