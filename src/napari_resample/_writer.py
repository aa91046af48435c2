"""napari writer: Image and Labels layers to ``.nii.gz`` (default) or ``.nii``.

The geometry is the layer's *current* one (scale, translate, rotate, shear, affine), converted by
:mod:`napari_resample._layout`; from the reader's metadata only the storage axis order, the
header template (codes, units, description, intent, time step, on-disk type) and the scaling
are taken; when the layer's geometry is still the template's, the template's qform, sform, codes
and pixdim are written unchanged. A layer that did not come from a NIfTI file is written as
(z, y, x) = (k, j, i) with its scale as spacing and its translate as origin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_resample._io import header_for_affine, nifti_suffix, save_nifti
from napari_resample._layout import (
    METADATA_KEY,
    StorageOrder,
    nifti_from_napari,
    stored_from_display,
)


def write_nifti(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write one Image or Labels layer as NIfTI; npe2 single-layer writer.

    Parameters
    ----------
    path : str
        Destination; ``.nii.gz`` is appended when it has no NIfTI suffix.
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
        For multiscale data, or data that is not 3D or 4D.
    """
    path = os.fspath(path)
    if nifti_suffix(path) is None:
        path += ".nii.gz"
    if isinstance(data, list | tuple):
        raise ValueError(
            f"cannot write a multiscale layer as NIfTI ({len(data)} levels); "
            "write its first level instead"
        )
    array = np.asarray(data)
    if array.ndim not in (3, 4):
        raise ValueError(f"a NIfTI volume needs a 3D or 4D layer, got shape {array.shape}")
    info = (meta.get("metadata") or {}).get(METADATA_KEY) or {}
    storage = StorageOrder.from_dict(info.get("storage"))
    stored, affine = nifti_from_napari(array, storage, meta)
    template = info.get("header")
    slope, inter = float(info.get("slope", 1.0)), float(info.get("inter", 0.0))
    values = None
    if template is not None and info.get("stored_dtype"):
        values = stored_from_display(stored, slope, inter, np.dtype(info["stored_dtype"]))
    if values is None:
        # Not the source's values any more (or no source): write what the layer holds.
        values, slope, inter = stored, 1.0, 0.0
    values = storable(values)
    header = header_for_layer(affine, stored.shape, template)
    if header.get_data_dtype().newbyteorder("=") != values.dtype.newbyteorder("="):
        header.set_data_dtype(values.dtype)
    if template is None:
        header.set_xyzt_units("mm", "sec")
    if stored.ndim == 4:
        _set_time_step(header, meta, template)
    return [save_nifti(path, values, header, slope=slope, inter=inter)]


def same_grid(template: Any, affine: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether *template* describes this grid: its best affine is *affine* and its spatial
    size is *shape*'s (to 1e-6 mm), i.e. the layer's geometry was not changed since reading."""
    if template is None:
        return False
    old = tuple(int(n) for n in template.get_data_shape()[:3])
    new = tuple(int(n) for n in shape[:3])
    if old + (1,) * (3 - len(old)) != new + (1,) * (3 - len(new)):
        return False
    best = np.asarray(template.get_best_affine(), dtype=np.float64)
    return bool(np.allclose(best, affine, rtol=1e-9, atol=1e-6))


def header_for_layer(affine: np.ndarray, shape: tuple[int, ...], template: Any) -> Any:
    """Header for voxels of *shape* at *affine*, from the reader's *template* if any.

    An unchanged geometry keeps the template's own qform, sform, codes and pixdim as they
    were (a qform that disagrees with the sform, codes 0/0, a sheared sform's qform zooms);
    a changed one is rewritten from *affine* with the template's codes.
    """
    if same_grid(template, affine, shape):
        header = template.copy()
        header.set_data_shape(shape)
        return header
    return header_for_affine(affine, shape, template)


def storable_dtype(dtype: np.dtype) -> np.dtype:
    """The NIfTI data type that holds values of *dtype* exactly.

    NIfTI has no boolean or half-precision type: booleans become uint8, float16 becomes
    float32; every other numeric type is kept.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


def storable(data: np.ndarray) -> np.ndarray:
    """*data* in a type NIfTI can hold (see :func:`storable_dtype`); unchanged when it can."""
    dtype = storable_dtype(data.dtype)
    return data if dtype == data.dtype else data.astype(dtype)


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
