"""Progress and cancellation, as every engine reports and hears them.

A progress callback receives the fraction done, in [0, 1]; a cancel signal is a
:class:`threading.Event` or a callable returning True, heard between steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[float], None]
#: What stops a resampling: a :class:`threading.Event` that gets set, or a callable that
#: returns True.
CancelSignal = threading.Event | Callable[[], bool]


class ResamplingCancelled(Exception):
    """A resampling stopped because its ``cancel`` signal was set (nothing is returned).

    Raised by :func:`resample_array` and :func:`napari_resample.pipeline.run.resample_volume`
    within one slab of the signal; importable as
    ``napari_resample.ResamplingCancelled``.
    """


def cancel_check(cancel: CancelSignal | None) -> Callable[[], None] | None:
    """A function raising :class:`ResamplingCancelled` once *cancel* is set (None: no check)."""
    if cancel is None:
        return None
    is_set = cancel.is_set if isinstance(cancel, threading.Event) else cancel

    def check() -> None:
        if is_set():
            raise ResamplingCancelled("resampling cancelled")

    return check
