"""How many threads one resampling may use (every core, unless a caller shares them out), and
how its work is cut into slabs for them.

The engine runs its slabs (:func:`slab_thickness`) on a thread pool of :func:`engine_threads`
threads. A dataset run with
several worker processes gives each a share (``cores // workers``) so that the machine is not
oversubscribed; ``NAPARI_RESAMPLE_THREADS`` sets the number for a whole process (a dask worker,
say).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

#: Environment variable fixing the number of engine threads of a process.
THREADS_ENV = "NAPARI_RESAMPLE_THREADS"

#: Elements per slab of the in-memory engines: big enough for numpy/scipy to be efficient,
#: small enough to stay in cache. Read at call time (tests shrink it to get many slabs).
SLAB_ELEMENTS = 1 << 18

_local = threading.local()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def engine_threads() -> int:
    """Threads the engine may use now: a :func:`limit_engine_threads` block's number, else
    ``$NAPARI_RESAMPLE_THREADS``, else every available core."""
    limit = getattr(_local, "limit", None)
    if limit is not None:
        return limit
    env = os.environ.get(THREADS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


@contextlib.contextmanager
def limit_engine_threads(threads: int | None) -> Iterator[None]:
    """Run the block's resamplings (in this thread) on *threads* threads (None: no change)."""
    previous = getattr(_local, "limit", None)
    if threads is not None:
        _local.limit = max(1, int(threads))
    try:
        yield
    finally:
        _local.limit = previous


def slab_thickness(n: int, per_index: int) -> int:
    """Indices of an *n*-long axis per slab, when one index holds *per_index* elements: about
    :data:`SLAB_ELEMENTS` elements, and at least 4 slabs a thread.

    Examples
    --------
    >>> with limit_engine_threads(2):
    ...     slab_thickness(512, 512 * 512), slab_thickness(512, 64)
    (1, 64)
    """
    return max(1, min(SLAB_ELEMENTS // max(per_index, 1), -(-n // (4 * engine_threads()))))
