"""Running the jobs of a dataset: in this process, on a local process pool, or on any
``concurrent.futures.Executor``; Ctrl-C and SIGTERM stop the workers, each removing the file it
was writing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import replace
from typing import Any

from napari_resample.dataset.job import Job
from napari_resample.dataset.task import job_record, run_job
from napari_resample.engine.memory import default_budget
from napari_resample.engine.threads import available_cores

#: Seconds between two looks at the cancel event while waiting for workers.
_POLL_SECONDS = 0.1


def execute_jobs(
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
                check_cancel(cancel)
                yield run_job(job)
            return
        share = default_budget() // n
        jobs = [replace(job, threads=threads, max_memory=job.max_memory or share) for job in jobs]
        yield from _pooled(jobs, n, cancel)
        return
    yield from _submitted(executor, jobs, cancel)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise KeyboardInterrupt if *cancel* is set."""
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
        initializer=worker_init,
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
            check_cancel(cancel)
            finished, pending = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                job = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # the worker itself died: the file is not done
                    yield job_record(job, 0.0, error=f"worker lost: {type(exc).__name__}: {exc}")
                check_cancel(cancel)
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


def worker_init() -> None:
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
