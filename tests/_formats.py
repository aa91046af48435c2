"""DICOM series and ITK files shared by tests/test_formats.py and tests/test_formats_wiring.py:
pydicom's test series, an oblique ITK geometry, and SimpleITK's own reading and writing (the
reference the reader is compared with)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _dicom_series import oblique_series
from _plugin_fixtures import rotation

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")

DICOM = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
CT = DICOM / "98892001" / "CT5N"  # 16 x 16 x 5, 0.49 x 0.49 x 2.5 mm, rescaled to HU
OBLIQUE_MR = oblique_series()  # 16 x 16 x 7, oblique: MR700's pixels, made one volume
UNEVEN = DICOM / "77654033" / "CT2"  # 16 x 16 x 4: a 202.5 mm gap, then 1.25 mm steps
SEVERAL = DICOM / "98892003" / "MR2"  # three series, two with the same description

#: LPS <-> RAS
FLIP = np.array([-1.0, -1.0, 1.0])


def read_series_with_sitk(folder: Path, uid: str | None = None):
    uid = uid or sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def write_sitk(path: Path, data: np.ndarray, spacing, origin, direction) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    sitk.WriteImage(image, str(path))
    return path


#: An oblique, anisotropic ITK geometry (LPS): spacing, origin, direction.
OBLIQUE = (
    (0.7, 1.3, 2.9),
    (-12.5, 40.25, 7.0),
    rotation("x", 23.0) @ rotation("z", -11.0) @ np.diag([1.0, -1.0, 1.0]),
)
