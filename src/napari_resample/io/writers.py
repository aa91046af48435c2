"""Which writer a NIfTI output gets: the one place where the output's format is chosen.

The suffix decides: ``.nii`` / ``.nii.gz`` go through
:class:`~napari_resample.io.plane_writer.PlaneWriter` and
:func:`~napari_resample.io.nifti.save_volume`, ``.nii.zarr`` through
:class:`~napari_resample.io.niizarr_write.ZarrPlaneWriter` and
:func:`~napari_resample.io.niizarr_write.save_niizarr` (whose pyramid votes for a label map).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from napari_resample.io.names import is_zarr_name
from napari_resample.io.nifti import NiftiVolume, save_volume
from napari_resample.io.niizarr_write import ZarrPlaneWriter, save_niizarr, writer_memory
from napari_resample.io.plane_writer import PlaneWriter


def open_writer(
    path: str | os.PathLike[str],
    header: nib.Nifti1Header,
    *,
    slope: float = 1.0,
    inter: float = 0.0,
    labels: bool = False,
) -> PlaneWriter | ZarrPlaneWriter:
    """The plane writer of *path*: a NIfTI-Zarr's for ``.nii.zarr`` (its pyramid voting when
    *labels* or the header's intent is a label one), else a ``.nii`` / ``.nii.gz`` one."""
    if is_zarr_name(path):
        is_label = labels or None  # None: the header's intent decides
        return ZarrPlaneWriter(path, header, slope=slope, inter=inter, labels=is_label)
    return PlaneWriter(path, header, slope=slope, inter=inter)


def write_volume(path: str | os.PathLike[str], volume: NiftiVolume, *, labels: bool = False) -> str:
    """Write *volume* (with its header and scaling) to *path* atomically, in the format its
    suffix names; return *path* as a string."""
    if not is_zarr_name(path):
        return save_volume(path, volume)
    if volume.header is None:
        raise ValueError(f"cannot write {os.fspath(path)!r}: the volume has no header")
    return save_niizarr(
        path,
        volume.data,
        volume.header,
        slope=volume.slope,
        inter=volume.inter,
        labels=labels or None,
    )


def writer_need(path: str | os.PathLike[str], shape: tuple[int, int, int], dtype: np.dtype) -> int:
    """Bytes the writer of *path* holds beyond what it is given (a NIfTI-Zarr's slab of
    chunks; a ``.nii.gz`` writer's few queued blocks are the engine's own)."""
    return writer_memory(shape, dtype) if is_zarr_name(path) else 0
