"""The command line: ``napari-resample INPUT OUTPUT_DIR --size X Y Z`` (``python -m`` too).

INPUT is one volume (a NIfTI, NRRD or MetaImage file, or a folder holding DICOM files: a series)
or a folder of volumes, which is a dataset run (:func:`napari_resample.resampling_dataset`:
parallel, resumable, with a manifest). Outputs are always NIfTI. ``--sample`` replaces INPUT
with the built-in phantom and its label map, written to OUTPUT_DIR first.

Every error line is ``napari-resample: error: <sentence>`` on standard error
(:func:`print_error`). An option that does nothing in a call (``--fill-value`` without
``--like``, a dataset option with one volume, anything but ``--quiet`` with ``--verify``) is
refused as bad usage (exit code 2), as a mistyped one is.

This module imports nothing heavy: :func:`main` loads the rest (numpy, nibabel) inside its
Ctrl-C handling, so that an early Ctrl-C is one line and the exit code 130, not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main", "print_error"]

#: Exit code of a run stopped by Ctrl-C (as :mod:`napari_resample.cli.parser` says).
_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see :func:`napari_resample.cli.run.main`)."""
    try:
        from napari_resample.cli.run import main as run_main

        return run_main(argv)
    except KeyboardInterrupt:  # while the modules load, before run_main's own handling
        try:
            print("napari-resample: error: interrupted", file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return _INTERRUPTED


def __getattr__(name: str) -> Any:
    if name in ("build_parser", "print_error"):
        from napari_resample.cli import parser

        return getattr(parser, name)
    raise AttributeError(f"module 'napari_resample.cli' has no attribute {name!r}")
