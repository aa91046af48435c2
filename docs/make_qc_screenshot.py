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

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # faulty_run, beside this script
from faulty_run import FAULTS, faulty_run

DEFAULT_PATH = Path(__file__).with_name("images") / "qc-report.png"
#: The page's width in the picture, and the part of it kept (the table and the first cases).
WINDOW = (1280, 1480)
#: The README's picture stays small: a palette of this many colours.
COLOURS = 160


def make_run(folder: Path) -> Path:
    """The run of :mod:`faulty_run` with three faults: case 1's CT all zero, case 2's CT
    wrapped, case 3's label map without its ventricles; return its page's path."""
    dst = faulty_run(
        folder,
        {
            "case01_resampled.nii.gz": FAULTS["all_zero"],
            "case02_resampled.nii.gz": FAULTS["wrapped"],
            "case03_seg_resampled.nii.gz": FAULTS["lost_label"],
        },
    )
    return dst / "qc" / "index.html"


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
