"""DICOM series for the tests, made from the real series pydicom ships as test data.

pydicom's ``MR700`` (dicomdirtests) holds seven projections of an MR localizer, each with its
own orientation: not a volume, and refused since the slices are checked. :func:`oblique_series`
makes a volume of its files: every slice takes the first one's oblique orientation and lies
3 mm further along its normal. :func:`edited_series` copies any series with an edit per file
(a gap, a duplicate, a truncated or damaged slice, a claimed size).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Slice step of :func:`oblique_series`, mm.
OBLIQUE_STEP = 3.0


def dicom_dir() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"


def edited_series(
    source: Path, dest: Path, edit: Callable[[int, object], object] | None = None
) -> Path:
    """Copy the series in *source* to *dest* (created), the files in GDCM's order of their
    names, each read by pydicom and passed to ``edit(index, dataset)`` before it is saved."""
    import pydicom

    dest.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(sorted(source.iterdir())):
        ds = pydicom.dcmread(path)
        if edit is not None:
            edit(n, ds)
        ds.save_as(dest / path.name)
    return dest


@functools.cache
def oblique_series() -> Path:
    """A 16 x 16 x 7 oblique MR volume (MR700's pixels, one orientation, 3 mm steps), written
    once per test session to a temporary folder named ``MR700``."""
    root = Path(tempfile.mkdtemp(prefix="napari-resample-dicom-"))
    atexit.register(shutil.rmtree, root, True)
    source = dicom_dir() / "98892003" / "MR700"
    import pydicom

    first = pydicom.dcmread(sorted(source.iterdir())[0], stop_before_pixels=True)
    cosines = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    origin = np.array([float(v) for v in first.ImagePositionPatient])

    def align(n: int, ds) -> None:
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in cosines]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + n * OBLIQUE_STEP * normal]

    return edited_series(source, root / "MR700", align)
