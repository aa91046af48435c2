"""Progress of a dataset run: one plain line per file, or a tqdm bar on a terminal; the bar of
one long file.

Progress is never worth a failed run: a closed or full output (``| head -1``, a closed stdout)
stops the printing, not the work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from napari_resample.dataset.plan import Skipped

#: Called with each finished (or skipped) file's record, the count done so far and the total.
ProgressReporter = Callable[[dict[str, Any], int, int], None]


class Reporter:
    """Progress: a tqdm bar on *bar* (a terminal) if given, else one plain line per file on
    *lines*."""

    def __init__(self, total: int, lines: TextIO | None, bar: TextIO | None = None) -> None:
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
            try:
                self.bar.update(1)
                self.bar.set_postfix(failed=self.failed, refresh=False)
            except (OSError, ValueError):  # the terminal went away: the run goes on
                self.bar = None
            if record["status"] != "failed":
                return
        self.note(describe_record(record, done, total))

    def note(self, text: str) -> None:
        """Print *text* as a line of its own (above the bar, if any)."""
        if self.lines is None:
            return
        text = printable(text, self.lines)
        try:
            if self.bar is not None:
                self.bar.write(text, file=self.lines)
            else:
                print(text, file=self.lines, flush=True)
        except (OSError, ValueError):  # closed or full (a pipe to head): stop printing
            self.lines = None

    def close(self) -> None:
        """Close the bar, if any."""
        if self.bar is not None:
            try:
                self.bar.close()
            except (OSError, ValueError):
                pass
            self.bar = None


def stderr_reporter(total: int) -> Reporter:
    """A :class:`Reporter` of *total* files on standard error, a bar if it is a terminal."""
    return Reporter(total, sys.stderr, sys.stderr if is_terminal(sys.stderr) else None)


def printable(text: str, stream: TextIO | None) -> str:
    """*text* as *stream* can encode it: a file name that is not UTF-8 (its undecodable bytes
    kept as os.fsdecode gives them) is shown with ``\\xNN`` escapes instead of failing."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding, getattr(stream, "errors", None) or "strict")
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    return text


def is_terminal(stream: TextIO | None) -> bool:
    """Whether *stream* is an open terminal (False for None: Python's stream of a closed
    descriptor)."""
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def describe_entry(entry: Skipped) -> str:
    """One plain line for an entry of a dataset folder that is not an input."""
    return f"{'failed' if entry.failed else 'skipped'}: {entry.path}: {entry.reason}"


def file_progress(
    stream: TextIO, label: str
) -> tuple[Callable[[float], None], Callable[[], None]]:
    """A progress callback (the fraction done, in [0, 1]) drawing a tqdm bar of one file on
    *stream*, and the function that closes the bar."""
    from tqdm import tqdm

    bar = tqdm(total=100, file=stream, desc=label, unit="%", dynamic_ncols=True)
    state = {"shown": 0}

    def progress(fraction: float) -> None:
        step = int(100 * min(max(fraction, 0.0), 1.0))
        if step > state["shown"]:
            try:
                bar.update(step - state["shown"])
            except (OSError, ValueError):
                return
            state["shown"] = step

    def close() -> None:
        try:
            bar.close()
        except (OSError, ValueError):
            pass

    return progress, close


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
        from napari_resample.pipeline.targets import describe_spacing

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
