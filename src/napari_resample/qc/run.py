"""Quality control of a run: :class:`FileWatch` (one file, watched as it is resampled),
:func:`qc_record` (one finished file, read again) and :func:`qc_run` (the report of a run).

During a dataset run with ``qc=True`` each file is summarised as its planes pass
(:class:`FileWatch`), checked and drawn where it was resampled (a pool worker), and its
:class:`~napari_resample.qc.model.FileQC` travels in its manifest record; the report is then
assembled from the records (:func:`qc_run`). A finished run without QC is summarised by reading
its inputs and outputs again (:func:`qc_record`): nothing is resampled.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_resample.io.atomic import remove_stale_temps
from napari_resample.io.names import strip_nifti_suffix
from napari_resample.pipeline.observe import Observers, labels_counted
from napari_resample.qc.checks import run_checks
from napari_resample.qc.model import FileQC, Finding
from napari_resample.qc.pairs import PAIRING_RULE, check_pairing, pair_cases
from napari_resample.qc.summary import Summarizer, VolumeSummary, nifti_header, summarize_file

#: The report's folder inside a run's output folder.
QC_DIR = "qc"


class FileWatch:
    """The observers of one file's run (:class:`~napari_resample.pipeline.observe.Observers`
    for :func:`~napari_resample.pipeline.run.resample_file`) and the summaries they make."""

    def __init__(self, input_path: str, output_path: str) -> None:
        self.input = Summarizer(input_path)
        self.output = Summarizer(output_path)

    @property
    def observers(self) -> Observers:
        return Observers(self.input, self.output)

    def summaries(self) -> tuple[VolumeSummary, VolumeSummary]:
        """Both summaries, finished with their files' headers (read again, the header alone:
        :func:`~napari_resample.qc.summary.nifti_header`)."""
        return (
            self.input.finish(nifti_header(self.input.summary.path)),
            self.output.finish(nifti_header(self.output.summary.path)),
        )


def qc_file(
    record: Mapping[str, Any], inp: VolumeSummary, out: VolumeSummary, output_dir: str
) -> FileQC:
    """Check the resampled pair of *record* (a manifest record) summarised as *inp* and *out*,
    and draw its thumbnails into ``output_dir/qc/thumbs``."""
    from napari_resample.qc.thumbs import render_thumbs  # Pillow: only where QC runs

    fq = FileQC(
        input=str(record["input"]),
        output=str(record["output"]),
        interpolation=record.get("interpolation_used"),
        findings=run_checks(inp, out, dict(record)),
        before=inp.facts(),
        after=out.facts(),
    )
    render_thumbs(fq, inp, out, qc_folder(output_dir), thumb_stem(fq.output, output_dir))
    return fq


def qc_record(record: Mapping[str, Any], output_dir: str) -> FileQC:
    """:func:`qc_file` for a finished file: both volumes read again (plane by plane for
    NIfTI). A failed record, or one whose files cannot be read, gives a FileQC with one
    error finding that says why."""
    if record.get("status") != "done":
        return failed(record, "run", f"{record['input']} was not resampled: {record.get('error')}")
    try:
        dtype = np.dtype(str((record.get("before") or {}).get("dtype", "float32")))
        labels = labels_counted(str(record.get("interpolation_used")), dtype)
        inp = summarize_file(record["input"], label_map=labels)
        out = summarize_file(record["output"], label_map=labels)
    except (OSError, ValueError) as exc:
        return failed(record, "readable", f"{exc}")
    return qc_file(record, inp, out, output_dir)


def failed(record: Mapping[str, Any], check: str, message: str) -> FileQC:
    """A FileQC holding one error finding (a file that could not be checked)."""
    return FileQC(
        input=str(record["input"]),
        output=str(record.get("output") or ""),
        interpolation=record.get("interpolation_used"),
        findings=[Finding(check, "error", message)],
    )


@dataclass
class QCReport:
    """What :func:`qc_run` wrote: the page, the JSON and every file's verdict."""

    html: str
    json: str
    files: list[FileQC]

    @property
    def counts(self) -> dict[str, int]:
        found = {"ok": 0, "warning": 0, "error": 0}
        for fq in self.files:
            found[fq.status] += 1
        return found

    def summary(self) -> str:
        """One line for a terminal."""
        c = self.counts
        return (
            f"QC report: {self.html} ({len(self.files)} files: {c['error']} with errors, "
            f"{c['warning']} with warnings, {c['ok']} ok)"
        )


def qc_run(output_dir: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> QCReport:
    """Write the report of the run in *output_dir* whose manifest *records* are given: each
    file's FileQC from its record when the run made one (its thumbnails present), else by
    :func:`qc_record`; label maps paired with their images (:data:`PAIRING_RULE`); then
    ``qc/index.html`` and ``qc/qc.json`` (:func:`napari_resample.qc.report.write_report`)."""
    from napari_resample.qc.report import write_report  # jinja2: only where a report is made

    output_dir = os.fspath(output_dir)
    for folder in (qc_folder(output_dir), os.path.join(qc_folder(output_dir), "thumbs")):
        remove_stale_temps(folder)  # left by a killed writer of an earlier report
    files = []
    for record in records:
        if record.get("status") not in ("done", "failed"):
            continue  # an entry the run skipped (a note, a result): not a resampled pair
        kept = record.get("qc")
        if kept and _thumbs_present(kept, output_dir):
            files.append(FileQC.from_json(kept))
        else:
            files.append(qc_record(record, output_dir))
    pair(files)
    html, json_path = write_report(output_dir, files, pairing=PAIRING_RULE)
    return QCReport(html, json_path, files)


def warm_report() -> None:
    """Ready what QC needs before a run's workers start: import Pillow with its JPEG and PNG
    writers (:mod:`napari_resample.qc.thumbs`) and the page's template engine, and compile the
    template (:mod:`napari_resample.qc.report`).

    Done here, in the calling thread, on purpose. Workers forked afterwards inherit the
    imports instead of each paying them again, and the report at the end only renders. A
    background thread still running when the pool starts would make the pool start its workers
    by ``spawn`` instead of ``fork`` (forking a process with another thread is unsafe): each
    worker would then import everything again (numpy, scipy, nibabel: 0.3 s of CPU, 0.9 s
    without bytecode caches) and a script without an ``if __name__ == "__main__":`` guard
    would fail.
    """
    from PIL import Image

    from napari_resample.qc import thumbs  # noqa: F401  (Pillow's modules, for the workers)
    from napari_resample.qc.report import load_template

    Image.preinit()  # the writers Pillow imports on its first save (JPEG, PNG and 3 others)
    load_template()


def pair(files: list[FileQC]) -> None:
    """Pair each label map with its image by :data:`PAIRING_RULE`: the label map's FileQC
    gets the image's output path and the verdict of :func:`check_pairing`."""
    by_output = {fq.output: fq for fq in files if fq.after}
    for label, image in pair_cases(list(by_output)).items():
        fq = by_output[label]
        fq.paired_image = image
        fq.findings = [f for f in fq.findings if f.check != "pairing"]
        fq.findings.append(check_pairing(fq.after, by_output[image].after, label, image))


def qc_folder(output_dir: str) -> str:
    return os.path.join(output_dir, QC_DIR)


def thumb_stem(output: str, output_dir: str) -> str:
    """A file name stem for *output*'s thumbnails, unique within the run and readable."""
    try:
        rel = os.path.relpath(output, output_dir)
    except ValueError:  # another drive
        rel = os.path.basename(output)
    name = strip_nifti_suffix(rel).replace(os.sep, "__").replace("/", "__")
    digest = hashlib.sha1(os.path.abspath(output).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{name[-80:]}-{digest[:8]}"


def _thumbs_present(kept: Mapping[str, Any], output_dir: str) -> bool:
    folder = qc_folder(output_dir)
    paths = [p for role in (kept.get("thumbs") or {}).values() for p in role.values()]
    return bool(paths) and all(os.path.isfile(os.path.join(folder, p)) for p in paths)
