"""Make ``docs/images/qc-report.png``: the QC page of a small dataset with seeded faults, as
headless Chromium draws it.

Run from the repository's root (Debian's ``chromium`` must be installed; ``bash .ci/run``
installs it)::

    python docs/make_qc_screenshot.py [OUT.png]

The dataset is the built-in head phantom, three cases of CT and label map, resampled with the
library to 128 x 128 x 64; then faults are seeded into some outputs as a broken tool would
leave them: case 1's CT all zero, case 2's CT with its integers wrapped (int16 overflow) and
case 3's label map without its ventricles; then ``qc_dataset`` checks the finished run, as
``napari-resample qc OUTPUT_DIR`` would, and Chromium draws its page.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from napari_resample import qc_dataset, resampling_dataset
from napari_resample.io.phantom import make_phantom

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


def make_run(folder: Path) -> Path:
    """Write the dataset into *folder*/in, resample it into *folder*/out as a dataset, seed the
    faults into three outputs and write the run's report with :func:`napari_resample.qc_dataset`
    (the outputs are read again, as for any finished run); return the page's path."""
    src, dst = folder / "in", folder / "out"
    src.mkdir(parents=True)
    for case, seed in (("case01", 0), ("case02", 1), ("case03", 2)):
        image, labels, affine = make_phantom(SHAPE, SPACING, seed=seed)
        for name, data in ((case, image), (f"{case}_seg", labels)):
            img = nib.Nifti1Image(data, affine)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            if name.endswith("_seg"):
                img.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
            nib.save(img, src / f"{name}.nii.gz")
    resampling_dataset(src, dst, TARGET, workers=1, progress=False)
    _seed(dst / "case01_resampled.nii.gz", np.zeros_like)
    _seed(dst / "case02_resampled.nii.gz", lambda d: (d.astype(np.int32) * WRAP).astype(d.dtype))
    _seed(dst / "case03_seg_resampled.nii.gz", lambda d: np.where(d == 3, 2, d))
    return Path(qc_dataset(dst).html)


def _seed(path: Path, fault) -> None:
    """Rewrite the output at *path* with *fault* applied to its voxels (header kept)."""
    img = nib.load(path)
    data = fault(np.asarray(img.dataobj)).astype(img.get_data_dtype())
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


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
        raw = screenshot(make_run(Path(tmp)), Path(tmp) / "raw.png")
        with Image.open(raw) as im:
            small = im.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
        path.parent.mkdir(parents=True, exist_ok=True)
        small.save(path, optimize=True)
    return path


if __name__ == "__main__":
    out = make_screenshot(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)
    print(f"{out}: {out.stat().st_size // 1024} KiB")
