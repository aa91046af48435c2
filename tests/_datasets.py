"""Small synthetic datasets for the dataset runner's tests: CT-like images, label maps whose
header says so, and a corrupt file, written with nibabel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np

SPACING = np.diag([0.8, 0.8, 2.5, 1.0])


def write_image(path: Path, shape=(28, 24, 12), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).sum(axis=0).astype(np.float32)
    data = (40 * np.sin(grid / 5.0) + rng.normal(0, 10, shape)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, SPACING), str(path))
    return path


def write_labels(path: Path, shape=(28, 24, 12), labels=(0, 1, 7)) -> Path:
    data = np.zeros(shape, dtype=np.uint8)
    data[3 : shape[0] - 4, 2 : shape[1] - 3, 2 : shape[2] - 2] = labels[1]
    data[shape[0] // 2 :, shape[1] // 3 :, shape[2] // 2 :] = labels[2]
    img = nib.Nifti1Image(data, SPACING)
    img.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    nib.save(img, str(path))
    return path


def make_dataset(folder: Path, images: int = 6, labels: int = 2, corrupt: bool = True) -> Path:
    """``folder`` with *images* images (scan_00.nii.gz, ...), *labels* label maps
    (scan_00_seg.nii.gz, ... on the same grid as their image) and a corrupt file."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(images):
        write_image(folder / f"scan_{n:02d}.nii.gz", seed=n)
    for n in range(labels):
        write_labels(folder / f"scan_{n:02d}_seg.nii.gz")
    if corrupt:
        (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 this is not a volume" * 10)
    return folder


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under *folder* (hidden files included)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
