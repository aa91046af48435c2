"""The small dataset run with seeded faults that the QC pictures show (imported by
``make_qc_screenshot.py`` and ``make_browser_screenshot.py``, not run alone).

Three cases of the built-in head phantom, each a CT and its label map (intent LABEL), are
resampled as a dataset to 128 x 128 x 64; then faults are seeded into outputs as a broken tool
would leave them, and :func:`napari_resample.qc_dataset` checks the finished run (as
``napari-resample qc OUTPUT_DIR`` does), writing ``qc/index.html`` and ``qc/qc.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_resample import qc_dataset, resampling_dataset
from napari_resample.io.phantom import make_phantom

#: The target of the run and the phantom's grid (a thick-slice CT).
TARGET = (128, 128, 64)
SHAPE, SPACING = (176, 208, 48), (0.45, 0.45, 3.0)
#: A CT multiplied by this in 32 bits and cast back to int16 (a unit mistake) wraps round.
WRAP = 40
Fault = Callable[[np.ndarray], np.ndarray]
#: Faults by output name: an all-zero CT, wrapped integers, a label map without its ventricles.
FAULTS: dict[str, Fault] = {
    "all_zero": np.zeros_like,
    "wrapped": lambda d: (d.astype(np.int32) * WRAP).astype(d.dtype),
    "lost_label": lambda d: np.where(d == 3, 2, d),
}


def faulty_run(folder: Path, faults: Mapping[str, Fault]) -> Path:
    """Write the dataset into *folder*/in, resample it into *folder*/out, apply *faults*
    (output file name -> fault) and check the run; return the output folder."""
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
    for name, fault in faults.items():
        path = dst / name
        img = nib.load(path)
        data = fault(np.asarray(img.dataobj)).astype(img.get_data_dtype())
        nib.save(nib.Nifti1Image(data, img.affine, img.header), path)
    qc_dataset(dst)
    return dst
