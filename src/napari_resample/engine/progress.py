"""Progress and cancellation, as every engine reports and hears them.

A progress callback receives the fraction done, in [0, 1]; a cancel signal is a
:class:`threading.Event` or a callable returning True, heard between steps. Every engine counts
its steps (slabs, chunks of planes) with one :class:`Ticker`, so that progress has one formula:
``done / (total + 1)`` while working (monotone, below 1), and 1.0 once the result is complete.
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


class Ticker:
    """Progress per finished step and the cancel check between steps, for a job of *total* steps.

    :meth:`step_done` reports ``done / (total + 1)``: monotone and below 1, because the step
    that completes the result (a finish, a fill, a write) comes after the last counted one;
    :meth:`finished` reports 1.0. Steps may run on other threads (:meth:`before_step` is
    thread-safe); :meth:`step_done` is called on the thread that reports progress.

    Examples
    --------
    >>> seen = []
    >>> ticker = Ticker(3, seen.append, None)
    >>> ticker.step_done(); ticker.step_done(2); ticker.finished()
    >>> seen
    [0.25, 0.75, 1.0]
    """

    def __init__(
        self,
        total: int,
        progress: ProgressCallback | None,
        check: Callable[[], None] | None,
    ) -> None:
        self.total, self.done = max(total, 1), 0
        self.progress, self.check = progress, check

    def before_step(self) -> None:
        """Raise :class:`ResamplingCancelled` if the cancel signal is set."""
        if self.check is not None:
            self.check()

    def step_done(self, steps: int = 1) -> None:
        """Count *steps* more done, report the fraction, then hear the cancel signal."""
        self.done += steps
        if self.progress is not None:
            self.progress(min(self.done, self.total) / (self.total + 1))
        self.before_step()

    def finished(self) -> None:
        """Report the whole job done (1.0)."""
        if self.progress is not None:
            self.progress(1.0)
