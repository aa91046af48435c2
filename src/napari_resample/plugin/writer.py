"""napari writers: Image and Labels layers to NIfTI (``.nii.gz``, default, ``.nii``, or a
NIfTI-Zarr folder ``.nii.zarr``), NRRD (``.nrrd``) and MetaImage (``.mha``).

The geometry is the layer's *current* one (scale, translate, rotate, shear, affine), converted
by :mod:`napari_resample.plugin.layer_volume`; from the reader's metadata only the storage axis
order, the header template (codes, units, description, intent, time step, on-disk type) and the
scaling are taken; when the layer's geometry is still the template's, the template's qform,
sform, codes and pixdim are written unchanged. A layer that did not come from a NIfTI file is
written as (z, y, x) = (k, j, i) with its scale as spacing and its translate as origin.

NRRD and MetaImage files are written by :func:`napari_resample.io.formats.save_itk` from the same
(i, j, k) voxels and voxel -> RAS affine (converted to ITK's LPS there); they hold no NIfTI
header, no scaling (the values shown are written) and no shear.

A ``.nii.zarr`` gets the same header and voxels as a ``.nii.gz`` through
:func:`napari_resample.io.volume_io.write_volume`, with its pyramid averaged for an Image layer
and voted for a Labels layer (:func:`write_nifti_labels`). Multiscale layers (a ``.nii.zarr``
opened here) are refused: writing one would load its full-resolution level whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_resample.io.header import header_for_grid, set_stored_dtype, storable
from napari_resample.io.names import nifti_suffix, volume_suffix
from napari_resample.io.nifti import NiftiVolume
from napari_resample.io.volume_io import write_volume
from napari_resample.plugin.layer_volume import volume_from_layer


def write_nifti(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one Image (or Labels) layer as NIfTI; npe2 single-layer writer.

    Parameters
    ----------
    path : str
        Destination; ``.nii.gz`` is appended when it has no NIfTI suffix (``.nii.gz``,
        ``.nii`` or ``.nii.zarr``). A ``.nii.zarr``'s pyramid is averaged.
    data : (Z, Y, X) or (T, Z, Y, X) array_like
        The layer's data.
    meta : mapping
        The layer's state (``scale``, ``translate``, ``rotate``, ``shear``, ``affine``,
        ``metadata``), as napari passes it to writers.

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    ValueError
        For multiscale data, or data that is not 3D or 4D (or, for a ``.nii.zarr``, not one
        volume).
    """
    return [_write_nifti(path, data, meta, labels=False)]


def write_nifti_labels(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one Labels layer as NIfTI: :func:`write_nifti`, except that a ``.nii.zarr``'s
    pyramid takes the most frequent label of each window instead of averaging."""
    return [_write_nifti(path, data, meta, labels=True)]


def _write_nifti(path: str, data: Any, meta: Mapping[str, Any], *, labels: bool) -> str:
    path = os.fspath(path)
    if nifti_suffix(path) is None:
        path += ".nii.gz"
    volume = volume_from_layer(_layer_array(data, "as NIfTI"), meta)
    values = storable(volume.data)
    header = header_for_grid(volume.affine, values.shape, volume.header, code=volume.xform_code)
    set_stored_dtype(header, values.dtype)
    if volume.header is None:
        header.set_xyzt_units("mm", "sec")
    if values.ndim == 4:
        _set_time_step(header, meta, volume.header)
    written = NiftiVolume(values, volume.affine, header, volume.slope, volume.inter)
    return write_volume(path, written, labels=labels)


def _set_time_step(header: Any, meta: Mapping[str, Any], template: Any) -> None:
    """``pixdim[4]`` from the layer's time scale (the template's when the layer has no time
    axis, or when the template's is unset, 0, and the layer's scale is the default 1)."""
    scale = meta.get("scale")
    kept = float(template["pixdim"][4]) if template is not None else 1.0
    if scale is not None and len(scale) == 4:
        step = float(scale[0])
        if template is not None and kept <= 0 and step == 1.0:
            step = kept
    else:
        step = kept
    pixdim = np.array(header["pixdim"], dtype=np.float64)
    pixdim[4] = step
    header["pixdim"] = pixdim


def write_nrrd(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one 3D Image or Labels layer as NRRD (``.nrrd`` appended when missing); npe2
    single-layer writer. See :func:`write_itk`."""
    return write_itk(path, data, meta, ".nrrd")


def write_mha(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one 3D Image or Labels layer as MetaImage (``.mha`` appended when missing); npe2
    single-layer writer. See :func:`write_itk`."""
    return write_itk(path, data, meta, ".mha")


def write_itk(path: str, data: Any, meta: Mapping[str, Any], default_suffix: str) -> list[str]:
    """Write one 3D layer as NRRD or MetaImage, in its current geometry.

    Parameters
    ----------
    path : str
        Destination ending in ``.nrrd`` or ``.mha``; *default_suffix* is appended otherwise.
    data : (Z, Y, X) array_like
        The layer's data (a 4D layer holding one volume is accepted).
    meta : mapping
        The layer's state, as for :func:`write_nifti`.
    default_suffix : {".nrrd", ".mha"}

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    ValueError
        For multiscale data, data that is not one 3D volume, or a layer whose geometry has
        shear (these formats hold orthonormal directions only).
    """
    from napari_resample.io.formats import ITK_OUTPUT_SUFFIXES, save_itk

    path = os.fspath(path)
    if volume_suffix(path) not in ITK_OUTPUT_SUFFIXES:
        path += default_suffix
    volume = volume_from_layer(_layer_array(data, f"to {path!r}"), meta)
    return [save_itk(path, volume)]


def _layer_array(data: Any, where: str) -> np.ndarray:
    """A layer's data as one 3D or 4D array, or ValueError saying why it cannot be written
    (*where*: ``"as NIfTI"``, ``"to 'x.nrrd'"``)."""
    if isinstance(data, Sequence) and not isinstance(data, str):  # a list, napari's MultiScaleData
        raise ValueError(
            f"cannot write a multiscale layer {where} ({len(data)} levels); "
            "write its first level instead"
        )
    array = np.asarray(data)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"cannot write {where}: it needs a 3D or 4D layer, got shape {array.shape}"
        )
    return array
