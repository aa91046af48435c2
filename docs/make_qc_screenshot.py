"""Make ``docs/images/qc-report.png``: the QC page of a small dataset with seeded faults, as
headless Chromium draws it.

Run from the repository's root (Debian's ``chromium`` must be installed; ``bash .ci/run``
installs it)::

    python docs/make_qc_screenshot.py [OUT.png]

The dataset is the built-in head phantom, three cases of CT and label map, resampled with the
library to 128 x 128 x 64; then faults are seeded into some outputs as a broken tool would
leave them: case 1's CT all zero, case 2's CT with its integers wrapped (int16 overflow) and
case 3's label map without its ventricles. The findings come from
:func:`napari_resample.qc.checks.run_checks` when that module is installed; without it the
script states the seeded faults itself, in the checks' words (a picture of the page, not a test
of the checks: tests/test_qc_checks.py is that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from napari_resample.api import resampling
from napari_resample.io.phantom import make_phantom
from napari_resample.qc.model import FileQC, Finding
from napari_resample.qc.report import write_report
from napari_resample.qc.summary import VolumeSummary, summarize_file
from napari_resample.qc.thumbs import render_thumbs

DEFAULT_PATH = Path(__file__).with_name("images") / "qc-report.png"
#: The target of the run and the phantom's grid (a thick-slice CT, smaller than the default).
TARGET = (128, 128, 64)
SHAPE, SPACING = (176, 208, 48), (0.45, 0.45, 3.0)
#: The page's width in the picture, and the part of it kept (the table and the first cases).
WINDOW = (1280, 1480)
#: The README's picture stays small: a palette of this many colours.
COLOURS = 160
#: Case 2's CT is multiplied by this in 32 bits and cast back to int16 (a unit mistake): air and
#: bone wrap round.
WRAP = 40
PAIRING = "a label map `<case>_seg` is paired with the image `<case>_ct` of its case."


def make_run(folder: Path) -> tuple[Path, list[FileQC]]:
    """Write the dataset into *folder*/in, resample it into *folder*/out, seed the faults and
    gather the QC of every pair (thumbnails written); return the output folder and the list."""
    src, dst = folder / "in", folder / "out"
    src.mkdir(parents=True)
    pairs = []
    for case, seed in (("case01", 0), ("case02", 1), ("case03", 2)):
        image, labels, affine = make_phantom(SHAPE, SPACING, seed=seed)
        for kind, data in (("ct", image), ("seg", labels)):
            img = nib.Nifti1Image(data, affine)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            if kind == "seg":
                img.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
            path = src / f"{case}_{kind}.nii.gz"
            nib.save(img, path)
            resampling(path, dst, TARGET)
            pairs.append((path, dst / f"{case}_{kind}_resampled.nii.gz"))
    _seed(dst / "case01_ct_resampled.nii.gz", np.zeros_like)
    _seed(
        dst / "case02_ct_resampled.nii.gz", lambda d: (d.astype(np.int32) * WRAP).astype(d.dtype)
    )
    _seed(dst / "case03_seg_resampled.nii.gz", lambda d: np.where(d == 3, 2, d))
    qc_dir = str(dst / "qc")
    files = [_qc(inp, out, qc_dir) for inp, out in pairs]
    outputs = {f.output: f for f in files}
    for f in files:
        image = f.output.replace("_seg_", "_ct_")
        if f.interpolation == "label" and image in outputs:
            f.paired_image = image
    return dst, files


def _seed(path: Path, fault) -> None:
    """Rewrite the output at *path* with *fault* applied to its voxels (header kept)."""
    img = nib.load(path)
    data = fault(np.asarray(img.dataobj)).astype(img.get_data_dtype())
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


def _qc(inp: Path, out: Path, qc_dir: str) -> FileQC:
    label_map = "_seg" in inp.name
    before = summarize_file(inp, label_map=label_map)
    after = summarize_file(out, label_map=label_map)
    fq = FileQC(str(inp), str(out), "label" if label_map else "bspline")
    fq.findings = _findings(before, after, fq)
    fq.before, fq.after = before.facts(), after.facts()
    render_thumbs(fq, before, after, qc_dir, out.name.split(".")[0])
    return fq


def _findings(before: VolumeSummary, after: VolumeSummary, fq: FileQC) -> list[Finding]:
    record = {
        "input": fq.input,
        "output": fq.output,
        "params": {"desired_volume": list(TARGET), "anchor": "origin", "antialias": False},
        "interpolation_used": fq.interpolation,
        "before": before.facts(),
        "after": after.facts(),
    }
    try:
        from napari_resample.qc.checks import run_checks  # type: ignore[import-not-found]
    except ImportError:
        return _stated_faults(before, after, fq)
    return list(run_checks(before, after, record))


def _stated_faults(before: VolumeSummary, after: VolumeSummary, fq: FileQC) -> list[Finding]:
    """The seeded faults in the checks' words (without the checks module)."""
    name = os.path.basename(fq.output)
    found = [Finding("fov", "ok", f"{name}: field of view {_fov(after)} mm kept")]
    if (
        before.lo is not None
        and after.lo is not None
        and (
            after.scaled(after.lo) < before.scaled(before.lo)
            or after.scaled(after.hi) > before.scaled(before.hi)
        )
    ):
        found.append(
            Finding(
                "value_range",
                "error",
                f"{name}: values {after.scaled(after.lo):g} .. {after.scaled(after.hi):g} "
                f"outside the input's {before.scaled(before.lo):g} .. "
                f"{before.scaled(before.hi):g} (an integer wrapped)",
            )
        )
    if after.hi == after.lo == 0 and before.hi != before.lo:
        found.append(
            Finding("not_constant", "error", f"{name}: every voxel is 0, the input's are not")
        )
    if before.labels and after.labels:
        lost = sorted(set(before.labels) - set(after.labels))
        if lost:
            found.append(
                Finding("label_set", "warning", f"{name}: label(s) {lost} lost in resampling")
            )
    return found


def _fov(summary: VolumeSummary) -> str:
    fov = (n * s for n, s in zip(summary.shape, summary.spacing, strict=True))
    return " x ".join(f"{v:g}" for v in fov)


def screenshot(page: str | Path, png: str | Path, window: tuple[int, int] = WINDOW) -> Path:
    """Draw *page* with headless Chromium into *png* (the top *window* = (width, height))."""
    chromium = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if chromium is None:
        raise FileNotFoundError("Debian's chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={window[0]},{window[1]}",
                Path(page).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return Path(png)


def make_screenshot(path: str | Path = DEFAULT_PATH) -> Path:
    """Run the dataset, write its report and save the page's picture (a palette PNG) at *path*."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        dst, files = make_run(Path(tmp))
        html, _ = write_report(dst, files, title="QC of a resampled dataset", pairing=PAIRING)
        raw = screenshot(html, Path(tmp) / "raw.png")
        with Image.open(raw) as im:
            small = im.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
        path.parent.mkdir(parents=True, exist_ok=True)
        small.save(path, optimize=True)
    return path


if __name__ == "__main__":
    out = make_screenshot(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)
    print(f"{out}: {out.stat().st_size // 1024} KiB")
