"""``napari-resample qc OUTPUT_DIR [--strict]``: the quality-control report of a finished
dataset run, and the lines ``--qc`` prints after a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from napari_resample.cli.parser import EXIT_FAILED, EXIT_OK, PROG, Parser, print_error

if TYPE_CHECKING:
    from napari_resample.qc.run import QCReport

#: The errors printed one per line after a check; the rest are in qc/qc.json.
SHOWN_ERRORS = 20


def qc_main(argv: Sequence[str]) -> int:
    """Run ``napari-resample qc`` with *argv* (what follows ``qc``); return the exit code."""
    parser = Parser(
        prog=f"{PROG} qc",
        description="Check the results of a finished dataset run (from its manifest; nothing "
        "is resampled) and write OUTPUT_DIR/qc/index.html (one page that opens offline) and "
        "OUTPUT_DIR/qc/qc.json.",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="a dataset run's output folder")
    parser.add_argument(
        "--strict", action="store_true", help="exit with 1 when a check finds an error"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(list(argv))
    from napari_resample.dataset.run import qc_dataset

    try:
        report = qc_dataset(args.output_dir)
    except (OSError, ValueError) as exc:
        print_error(str(exc) or type(exc).__name__)
        return EXIT_FAILED
    return qc_outcome(report, strict=args.strict, quiet=args.quiet)


def qc_outcome(report: QCReport, *, strict: bool, quiet: bool) -> int:
    """Print *report*'s summary (unless *quiet*) and, with *strict*, its errors; the exit
    code: 1 with *strict* when a file has an error, else 0."""
    if not quiet:
        print(report.summary(), flush=True)
    errors = [f for fq in report.files for f in fq.findings if f.severity == "error"]
    if not strict or not errors:
        return EXIT_OK
    for finding in errors[:SHOWN_ERRORS]:
        print_error(f"qc: {finding.message}")
    if len(errors) > SHOWN_ERRORS:
        print_error(f"qc: {len(errors) - SHOWN_ERRORS} more errors in {report.json}")
    return EXIT_FAILED
