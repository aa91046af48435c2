"""The Resample button and the progress bar: a run in a background thread, its progress, its
cancel.

While a run goes, the button is Cancel (the engine stops between two slabs) and the widget's
progress bar and napari's activity dock follow the engine slab by slab. The bar shows only while
a run goes (and after a run that ended, its 100 %). When the widget goes (the viewer or the dock
closed), :meth:`RunRow.detach` cancels the run and disconnects it: nothing the worker still
sends reaches a deleted Qt widget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from magicgui.widgets import ProgressBar, PushButton, Widget

from napari_resample.engine.progress import ResamplingCancelled
from napari_resample.io.nifti import NiftiVolume
from napari_resample.plugin.widget.job import Job, run_job
from napari_resample.plugin.widget.status import StatusLine, full_width, reported

RUN_TEXT, CANCEL_TEXT = "Resample", "Cancel"
#: Seconds between two updates of napari's activity-dock bar (the widget's own bar: every 1 %).
ACTIVITY_INTERVAL = 0.25

Outcome = NiftiVolume | tuple[NiftiVolume, float]


class RunRow:
    """Runs a :class:`napari_resample.plugin.widget.job.Job` in a worker and shows its progress.

    Parameters
    ----------
    status_line : StatusLine
    on_idle : callable
        Called (without arguments) when a run starts or has finished: the buttons follow.

    Attributes
    ----------
    run_button : magicgui.widgets.PushButton
    progress_bar : magicgui.widgets.ProgressBar
    worker : napari worker or None
        The run going on (None when idle).
    cancel_event : threading.Event or None
        Set to cancel the run going on.
    activity : napari.utils.progress or None
        The run's bar in napari's activity dock.
    job : Job or None
        What the run going on resamples (None when idle).
    detached : bool
        True once the widget went: no slot touches its Qt widgets any more.
    """

    def __init__(self, status_line: StatusLine, on_idle: Callable[[], None]) -> None:
        self.status_line = status_line
        self.on_idle = on_idle
        self.run_button = PushButton(
            name="run_button",
            text=RUN_TEXT,
            tooltip="Resample in the background; while it runs, this button cancels it.",
        )
        # no label: the bar needs none, and magicgui would show its name for an empty one
        self.progress_bar = ProgressBar(
            name="progress_bar", value=0, min=0, max=100, tooltip="Resampling progress."
        )
        self.progress_bar.visible = False  # until a run starts: an empty bar says nothing
        self.worker: Any = None
        self.cancel_event: threading.Event | None = None
        self.activity: Any = None
        self.job: Job | None = None
        self.detached = False
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._next_activity = 0.0

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The row's widgets, in their order in the dock."""
        return (self.run_button, self.progress_bar)

    def fit_to_dock(self) -> None:
        """The bar across the dock's full width (once it is in it)."""
        full_width(self.progress_bar)

    @property
    def running(self) -> bool:
        """True while a run goes on."""
        return self.worker is not None

    def sync(self, allowed: bool) -> None:
        """The button: Cancel while running, else Resample, enabled when *allowed*."""
        if self.running:
            self.run_button.text, self.run_button.enabled = CANCEL_TEXT, True
        else:
            self.run_button.text, self.run_button.enabled = RUN_TEXT, allowed

    def start(self, job: Job, on_result: Callable[[Job, Outcome], None]) -> Any:
        """Start *job* in a background thread and return its worker; *on_result* receives the
        outcome on the main thread (unless the run was cancelled)."""
        from napari.qt.threading import create_worker
        from qtpy.QtCore import QTimer
        from superqt.utils import ensure_main_thread

        cancel = threading.Event()
        self.progress_bar.value = 0
        to_main = ensure_main_thread(self.show_progress)
        posted = [0]

        def on_progress(fraction: float) -> None:  # in the worker: post whole percents only
            percent = round(min(max(fraction, 0.0), 1.0) * 100)
            if percent > posted[0] and not cancel.is_set():
                posted[0] = percent
                to_main(percent / 100)

        # errors are reported by _on_error below, not re-raised a second time
        worker = create_worker(
            run_job,
            job,
            progress=on_progress,
            cancel=cancel,
            _start_thread=False,
            _ignore_errors=True,
        )
        self._connections = [
            (worker.returned, lambda outcome: self._on_returned(job, outcome, cancel, on_result)),
            (worker.errored, self._on_error),
            (worker.finished, self._on_finished),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self.worker, self.cancel_event, self.job = worker, cancel, job
        self.progress_bar.visible = True
        self.on_idle()
        self.status_line.say(f"Resampling {job.layer.name} {job.where}...")
        worker.start()
        # napari's activity dock builds its bar in ~0.1 s: in an event of its own, so that the
        # event loop never stalls for that plus the start of the run
        QTimer.singleShot(0, lambda: self._open_activity(worker, job))
        return worker

    def cancel(self) -> bool:
        """Stop the run going on (within one slab); True if one was going on."""
        if self.cancel_event is None or not self.running:
            return False
        self.cancel_event.set()
        self.status_line.say("Cancelling...")
        return True

    @reported("Following a removed layer")
    def layer_removed(self, layer: Any) -> None:
        """*layer* left the viewer: when it is the one being resampled, its run is cancelled
        (the result would belong to no layer)."""
        job = self.job
        if job is not None and layer is job.layer and self.cancel():
            self.status_line.say(f"{job.layer.name!r} was removed: cancelling its resampling...")

    def detach(self) -> None:
        """The widget goes: cancel the run going on and disconnect it from the widget (the
        worker stops within one slab; what it still sends is dropped)."""
        self.detached = True
        if self.cancel_event is not None:
            self.cancel_event.set()
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []
        self._close_activity()
        self.worker = self.cancel_event = self.job = None

    def _close_activity(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    @reported("Showing the run in the activity dock")
    def _open_activity(self, worker: Any, job: Job) -> None:
        from napari.utils import progress

        if self.worker is worker and self.activity is None and not self.detached:
            bar = progress(total=100, desc=f"Resampling {job.layer.name}")
            if self.worker is not worker:  # finished while napari built the bar (it processes
                bar.close()  # events meanwhile)
                return
            self.activity = bar
            bar.update(int(self.progress_bar.value))

    @reported("Showing progress")
    def show_progress(self, fraction: float) -> None:
        """Show *fraction* in the widget's bar and the activity dock's; never backwards (Qt may
        deliver queued calls out of order)."""
        if self.detached:  # posted by the worker before the widget went
            return
        target = round(min(max(fraction, 0.0), 1.0) * 100)
        if self.running:
            self.progress_bar.value = max(int(self.progress_bar.value), target)
        bar = self.activity
        now = time.monotonic()
        # napari's activity bar repaints the viewer on each update (30-50 ms): a few a second
        if bar is not None and target > bar.n and (target == 100 or now >= self._next_activity):
            self._next_activity = now + ACTIVITY_INTERVAL
            bar.update(target - bar.n)

    @reported("Adding the resampled layer")
    def _on_returned(
        self,
        job: Job,
        outcome: Outcome,
        cancel: threading.Event,
        on_result: Callable[[Job, Outcome], None],
    ) -> None:
        if cancel.is_set():  # cancelled after the last slab: the user said no, nothing is added
            self.status_line.report("Resampling cancelled: nothing was added.", "info")
            return
        self.progress_bar.value = 100
        try:
            on_result(job, outcome)
        except Exception as exc:
            self.status_line.report(f"Could not add the resampled layer: {exc}", "error")

    @reported("Reporting the resampling's failure")
    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, ResamplingCancelled):
            self.status_line.report("Resampling cancelled: nothing was added.", "info")
        else:
            self.status_line.report(f"Resampling failed: {exc}", "error")

    @reported("Finishing the resampling")
    def _on_finished(self) -> None:
        self._close_activity()
        cancelled = self.cancel_event is not None and self.cancel_event.is_set()
        self.worker = self.cancel_event = self.job = None
        self._connections = []
        if cancelled:
            self.progress_bar.value = 0
        # a finished run shows its 100 %; a cancelled or failed one leaves no bar behind
        self.progress_bar.visible = int(self.progress_bar.value) == 100
        self.on_idle()
