"""A napari layer as a NIfTI volume or as a grid to match: what the plugin keeps in a layer's
metadata and how the writer and the widget read it back.

Every layer the reader makes keeps its file's information under :data:`METADATA_KEY`:
``source_path``, ``affine``, ``header`` (the file's header, the template of every write),
``storage`` (:class:`napari_resample.plugin.layout.StorageOrder`), ``slope`` / ``inter``,
``stored_dtype`` and ``xform_code``. The axis order and geometry conversions themselves are
:mod:`napari_resample.plugin.layout`'s; this module adds the header, the scaling and the stored
values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.grid import Grid
from napari_resample.io.header import XFORM_ALIGNED, same_grid
from napari_resample.io.nifti import NiftiVolume, apply_scaling
from napari_resample.plugin.layout import (
    StorageOrder,
    nifti_affine_from_napari,
    nifti_from_napari,
    stored_shape,
)

#: Name of the key under which every layer made by this plugin keeps its NIfTI information.
METADATA_KEY = "napari_resample"


def plugin_info(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the plugin's entry in a layer's *metadata* (empty for a layer made elsewhere).

    Examples
    --------
    >>> plugin_info({METADATA_KEY: {"slope": 2.0}, "other": 1}), plugin_info(None)
    ({'slope': 2.0}, {})
    """
    return dict((metadata or {}).get(METADATA_KEY) or {})


def grid_of_layer(
    napari_shape: Sequence[int], state: Mapping[str, Any], name: str = "the reference"
) -> Grid:
    """The voxel grid a 3D layer shows, in its file's voxel order: what matching it resamples
    onto. Cheap: no voxel is read.

    The affine is the layer's *current* geometry (as :func:`volume_from_layer` takes it); the
    file's header (from the reader's metadata) comes along only while it still describes that
    grid (:func:`napari_resample.io.nifti.same_grid`), so that an output saved on it keeps the
    file's own qform, sform and codes.

    Parameters
    ----------
    napari_shape : (3,) sequence of int, the layer's (Z, Y, X) data shape
    state : mapping
        The layer's ``scale``, ``translate``, ``rotate``, ``shear``, ``affine`` and
        ``metadata``.
    name : str
        How messages name the grid.

    Raises
    ------
    ValueError
        If the layer is not 3D.

    Examples
    --------
    >>> grid = grid_of_layer((5, 6, 7), {"scale": (2.5, 0.8, 0.5)}, "seg")
    >>> grid.shape, np.diag(grid.affine).tolist(), grid.header is None
    ((7, 6, 5), [0.5, 0.8, 2.5, 1.0], True)
    """
    if len(napari_shape) != 3:
        raise ValueError(f"a grid to match must be a 3D layer, got shape {tuple(napari_shape)}")
    info = plugin_info(state.get("metadata"))
    storage = StorageOrder.from_dict(info.get("storage"))
    affine = nifti_affine_from_napari(napari_shape, storage, state)
    shape = stored_shape(napari_shape, storage)
    header = info.get("header")
    if not same_grid(header, affine, shape):
        header = None
    return Grid((shape[0], shape[1], shape[2]), affine, header, name)


def stored_from_display(
    values: NDArray, slope: float, inter: float, dtype: np.dtype
) -> NDArray | None:
    """The stored values of *dtype* that display as *values*, or None if there are none.

    For an unscaled source this is *values* itself when its type matches. For a scaled source
    the float values are unscaled, rounded, and accepted only if scaling them again gives
    *values* back exactly (a layer that napari or the user changed does not qualify).
    """
    dtype = np.dtype(dtype)
    if (slope, inter) == (1.0, 0.0):
        return values if values.dtype.newbyteorder("=") == dtype.newbyteorder("=") else None
    if dtype.kind not in "iu" or values.dtype != np.float32:
        return None
    info = np.iinfo(dtype)
    stored = np.rint((values.astype(np.float64) - inter) / slope)
    if not (np.all(np.isfinite(stored)) and stored.min() >= info.min and stored.max() <= info.max):
        return None
    stored = stored.astype(dtype.newbyteorder("="))
    if not np.array_equal(apply_scaling(stored, slope, inter), values):
        return None
    return stored


def volume_from_layer(
    data: ArrayLike, state: Mapping[str, Any], ndim: int | None = None
) -> NiftiVolume:
    """The NIfTI volume a napari layer holds, in the file's own voxel order.

    Parameters
    ----------
    data : (Z, Y, X) or (T, Z, Y, X) array_like
        The layer's data.
    state : mapping
        The layer's ``scale``, ``translate``, ``rotate``, ``shear``, ``affine`` and
        ``metadata`` (an npe2 writer's ``meta``); the reader's metadata, when present, gives the
        storage order, the header template and the scaling.
    ndim : int, optional
        Number of axes to give the stored volume (3 to resample a file's 3D view); by default
        the file's own.

    Returns
    -------
    NiftiVolume
        ``data`` the *stored* values when the layer still shows the file's values exactly
        (scaled files are unscaled back to their stored type), else the layer's values with no
        scaling; ``affine`` the layer's current geometry; ``header`` the file's header (None for
        a layer that came from no file); ``path`` the source file; ``xform_code`` the reader's
        (1 for NRRD, MetaImage and DICOM sources, see :mod:`napari_resample.io.formats`).
    """
    info = plugin_info(state.get("metadata"))
    storage = StorageOrder.from_dict(info.get("storage"))
    if ndim is not None:
        storage = StorageOrder(storage.ornt, ndim)
    stored, affine = nifti_from_napari(np.asarray(data), storage, state)
    template = info.get("header")
    slope, inter = float(info.get("slope", 1.0)), float(info.get("inter", 0.0))
    values = None
    if template is not None and info.get("stored_dtype"):
        values = stored_from_display(stored, slope, inter, np.dtype(info["stored_dtype"]))
    if values is None:  # not the file's values any more (or no file): what the layer holds
        values, slope, inter = stored, 1.0, 0.0
    code = int(info.get("xform_code", XFORM_ALIGNED))
    path = info.get("source_path")
    return NiftiVolume(values, affine, template, slope, inter, path, xform_code=code)
