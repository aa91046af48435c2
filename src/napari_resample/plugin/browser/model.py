"""What the QC browser lists, from a run's output folder: no Qt, no viewer.

A run's output folder holds the QC report ``qc/qc.json`` (when quality control ran) or at least
the dataset manifest ``resampling_manifest.jsonl``. :func:`read_listing` turns either into a
:class:`Listing`: one :class:`Entry` a file, errors first. From the manifest alone nothing was
checked: a file done is "not checked", a file that failed is "failed" with its error as its one
finding. :class:`Cursor` is the file shown, moved by a click or next / previous.

Examples
--------
>>> entries = [Entry("a.nii", "a_r.nii", "ok", None), Entry("b.nii", "b_r.nii", "error", None)]
>>> [e.input for e in errors_first(entries)]
['b.nii', 'a.nii']
>>> cursor = Cursor(2)
>>> cursor.move(+1), cursor.move(+1), cursor.move(+1), cursor.move(-1)
(0, 1, None, 0)
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

from napari_resample.dataset.manifest import MANIFEST_NAME, read_manifest
from napari_resample.qc.model import FileQC, Finding

#: Where a run's QC report lies in its output folder.
QC_JSON = os.path.join("qc", "qc.json")
NOT_CHECKED, FAILED = "not checked", "failed"
#: Statuses in the order the list shows them: what needs a look first.
STATUS_ORDER: tuple[str, ...] = ("error", FAILED, "warning", NOT_CHECKED, "ok")


@dataclass(frozen=True)
class Entry:
    """One file of a run as the browser lists it.

    Attributes
    ----------
    input : str
        The input's path (a volume file or a DICOM folder).
    output : str or None
        The result's path (None when the run wrote none).
    status : {"error", "failed", "warning", "not checked", "ok"}
    interpolation : str or None
        What the run used; ``"label"``: a label map, shown as Labels layers.
    findings : tuple of Finding
        The checks' verdicts (for a failed file: its error).
    paired_image : str or None
        For a label map paired with an image: that image's output path.
    series : str or None
        The DICOM series read from *input*, when the manifest names one.
    """

    input: str
    output: str | None
    status: str
    interpolation: str | None
    findings: tuple[Finding, ...] = ()
    paired_image: str | None = None
    series: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """The names of the checks that did not pass (or ``"failed"``), in report order."""
        return tuple(f.check for f in self.findings if f.severity != "ok")

    @property
    def is_label_map(self) -> bool:
        """True when the run resampled this file as a label map."""
        return self.interpolation == "label"

    @property
    def name(self) -> str:
        """The file's name as listed: the result's, or the input's when there is none."""
        return os.path.basename(os.path.normpath(self.output or self.input))

    @property
    def text(self) -> str:
        """The list's line: status, name, flags."""
        flags = f"  [{', '.join(self.flags)}]" if self.flags else ""
        return f"{self.status}  {self.name}{flags}"

    @property
    def sentences(self) -> str:
        """What the checks said, one finding a line (the ones that did not pass first)."""
        if not self.findings:
            return "Not checked: no QC report for this run (napari-resample qc OUTPUT_DIR)."
        shown = sorted(self.findings, key=lambda f: f.severity == "ok")
        return "\n".join(f"{f.severity}: {f.message}" for f in shown)


@dataclass(frozen=True)
class Listing:
    """The files of one output folder.

    Attributes
    ----------
    folder : str
    source : str
        The file they were read from (qc.json or the manifest).
    entries : tuple of Entry
        Errors first (:func:`errors_first`).
    """

    folder: str
    source: str
    entries: tuple[Entry, ...]

    @property
    def summary(self) -> str:
        """One line: how many files of each status, and where from."""
        counts = [
            f"{n} {status}"
            for status in STATUS_ORDER
            if (n := sum(e.status == status for e in self.entries))
        ]
        source = os.path.relpath(self.source, self.folder)
        return f"{len(self.entries)} files ({', '.join(counts) or 'none'}) from {source}"


def errors_first(entries: list[Entry]) -> tuple[Entry, ...]:
    """*entries* by :data:`STATUS_ORDER`, keeping their order within a status."""
    rank = {status: n for n, status in enumerate(STATUS_ORDER)}
    return tuple(sorted(entries, key=lambda e: rank.get(e.status, len(STATUS_ORDER))))


def read_listing(folder: str | os.PathLike[str]) -> Listing:
    """The files of the run whose output folder is *folder*: from ``qc/qc.json``, or else from
    ``resampling_manifest.jsonl``.

    Raises
    ------
    FileNotFoundError
        If *folder* does not exist, or holds neither file.
    NotADirectoryError
        If *folder* is not a folder.
    ValueError
        If ``qc/qc.json`` is not a QC report (not JSON, no list of files, a file without its
        input or output).
    """
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.exists(folder):
        raise FileNotFoundError(f"the folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder!r} is not a folder: open a run's output folder")
    report = os.path.join(folder, QC_JSON)
    if os.path.isfile(report):
        return Listing(folder, report, errors_first(entries_from_qc(report)))
    manifest = os.path.join(folder, MANIFEST_NAME)
    if os.path.isfile(manifest):
        return Listing(folder, manifest, errors_first(entries_from_manifest(manifest)))
    raise FileNotFoundError(
        f"{folder!r} holds neither {QC_JSON} nor {MANIFEST_NAME}: open the output folder of a "
        "dataset run"
    )


def entries_from_qc(path: str) -> list[Entry]:
    """The files of a QC report ``qc.json`` (see :meth:`napari_resample.qc.model.FileQC.to_json`).

    Raises
    ------
    ValueError
        If *path* is not a QC report.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        files = report["files"]
        if not isinstance(files, list):
            raise TypeError(f"'files' is a {type(files).__name__}, not a list")
        return [_entry_of(FileQC.from_json(item), item) for item in files]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path!r} is not a QC report: {type(exc).__name__}: {exc}") from exc


def _entry_of(fq: FileQC, item: dict[str, Any]) -> Entry:
    # the status written is the report's verdict; FileQC recomputes the same from the findings
    status = item.get("status") or fq.status
    return Entry(
        fq.input, fq.output, str(status), fq.interpolation, tuple(fq.findings), fq.paired_image
    )


def entries_from_manifest(path: str) -> list[Entry]:
    """The files of a dataset manifest: done ones "not checked", failed ones "failed" (their
    error their one finding); entries that were not inputs (skipped) are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a hand-edited line: not ours to report
        records = read_manifest(path)
    entries = []
    for record in records.values():
        if record["status"] == "skipped":
            continue
        params = record.get("params") or {}
        series = params.get("series") if isinstance(params.get("series"), str) else None
        output = record.get("output") if isinstance(record.get("output"), str) else None
        used = record.get("interpolation_used")
        if record["status"] == "failed":
            error = str(record.get("error") or "no error recorded")
            finding = Finding("failed", "error", f"{record['input']} failed: {error}")
            entries.append(Entry(record["input"], output, FAILED, used, (finding,), None, series))
        else:
            entries.append(Entry(record["input"], output, NOT_CHECKED, used, (), None, series))
    return entries


class Cursor:
    """The index of the file shown among *count* (None: none yet).

    Parameters
    ----------
    count : int
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.index: int | None = None

    def go(self, index: int) -> int | None:
        """Show file *index* (None when out of range: nothing changes)."""
        if not 0 <= index < self.count:
            return None
        self.index = index
        return index

    def move(self, step: int) -> int | None:
        """The index *step* files on (the first file when none is shown); None past either end
        (nothing changes: the last file stays shown)."""
        if self.index is None:
            return self.go(0 if step > 0 else self.count - 1)
        return self.go(self.index + step)
