"""Which reader and writer a NIfTI volume gets: the one place where its format is chosen.

The suffix decides: ``.nii`` / ``.nii.gz`` go through
:class:`~napari_resample.io.plane_reader.PlaneReader`,
:class:`~napari_resample.io.plane_writer.PlaneWriter` and
:func:`~napari_resample.io.nifti.save_volume`; ``.nii.zarr`` (a folder) through
:class:`~napari_resample.io.niizarr_read.ZarrPlaneReader`,
:class:`~napari_resample.io.niizarr_write.ZarrPlaneWriter` and
:func:`~napari_resample.io.niizarr_write.save_niizarr` (whose pyramid votes for a label map).
Whole volumes of every format are read by :func:`napari_resample.io.formats.load_volume`.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.io.names import is_zarr_name
from napari_resample.io.nifti import NiftiVolume, load_nifti_grid, save_volume
from napari_resample.io.niizarr_read import open_zarr_planes, read_niizarr_header
from napari_resample.io.niizarr_write import ZarrPlaneWriter, save_niizarr, writer_memory
from napari_resample.io.plane_reader import BLOCK_BYTES, open_planes
from napari_resample.io.plane_source import PlaneSource
from napari_resample.io.plane_writer import PlaneWriter


def open_volume_planes(
    path: str | os.PathLike[str], *, block_bytes: int = BLOCK_BYTES, queue_blocks: int = 2
) -> PlaneSource:
    """The planes of the NIfTI volume *path*, in k order
    (:func:`~napari_resample.io.plane_reader.open_planes`, or
    :func:`~napari_resample.io.niizarr_read.open_zarr_planes` for a ``.nii.zarr``)."""
    if is_zarr_name(path):
        return open_zarr_planes(path, block_bytes=block_bytes, queue_blocks=queue_blocks)
    return open_planes(path, block_bytes=block_bytes, queue_blocks=queue_blocks)


def load_grid(path: str | os.PathLike[str]) -> tuple[nib.Nifti1Header, NDArray[np.float64]]:
    """The checked header and best affine of the NIfTI volume *path*, no voxel read."""
    if is_zarr_name(path):
        header = read_niizarr_header(os.fspath(path))[0]
        return header, np.array(header.get_best_affine(), dtype=np.float64)
    return load_nifti_grid(path)


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


def write_volume(
    path: str | os.PathLike[str], volume: NiftiVolume, *, labels: bool = False
) -> str:
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
