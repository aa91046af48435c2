"""Progress of a dataset run: one plain line per file, or a tqdm bar on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

#: Called with each finished (or skipped) file's record, the count done so far and the total.
ProgressReporter = Callable[[dict[str, Any], int, int], None]


class Reporter:
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
        """Close the bar, if any."""
        if self.bar is not None:
            self.bar.close()


def stderr_reporter(total: int) -> Reporter:
    """A :class:`Reporter` of *total* files on standard error, a bar if it is a terminal."""
    return Reporter(total, sys.stderr, sys.stderr if sys.stderr.isatty() else None)


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
