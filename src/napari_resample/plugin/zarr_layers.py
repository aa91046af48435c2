"""napari layers of NIfTI-Zarr volumes (``.nii.zarr``): lazy, multiscale, in true world geometry.

A ``.nii.zarr`` opens as one multiscale layer whose levels are dask views of the group's Zarr
arrays: nothing of the voxels is read when the layer is made but a bounded sample (the smallest
level, or a few of its planes when even that is large), and napari then reads only the chunks
of the level and planes it shows. The geometry is the ``.nii.gz`` reader's, from the same
header: :func:`napari_resample.plugin.layout.napari_from_nifti` gives scale, translate, rotate
and shear for level 0 (on a stand-in array of the volume's shape, no voxel involved) and
:func:`~napari_resample.plugin.layout.napari_view` the same flips and axis order as lazy views
of every level; napari places the other levels by their shapes.

Layer type: the Labels rule (:func:`napari_resample.engine.labels.is_label_volume`) on the
header (type, scaling, intent code) and the sample. Contrast limits come from the sample, so
napari computes none over a level. Layer metadata is the ``.nii.gz`` reader's
(:func:`napari_resample.plugin.reader.layer_data_from_volume`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.labels import is_label_volume
from napari_resample.io.checks import ignored_header_fields, wrap_read_errors
from napari_resample.io.header import XFORM_ALIGNED
from napari_resample.io.names import volume_name
from napari_resample.io.nifti import apply_scaling
from napari_resample.io.niizarr_read import read_niizarr_header
from napari_resample.plugin.layer_volume import METADATA_KEY
from napari_resample.plugin.layout import napari_from_nifti, napari_view

#: Most voxels of the smallest level read whole to decide the layer type and contrast limits;
#: a larger smallest level (a pyramid of one level) is sampled by :data:`SAMPLE_PLANES` planes.
SAMPLE_VOXELS = 1 << 21
#: Planes (along k) of the smallest level sampled when it holds more than SAMPLE_VOXELS.
SAMPLE_PLANES = 8

LayerData = tuple[Any, dict[str, Any], str]


def is_niizarr_folder(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is a folder holding a Zarr group (v3 ``zarr.json`` or v2 ``.zgroup``):
    what the reader claims for a ``.nii.zarr`` name. Only two ``stat`` calls."""
    path = os.fspath(path)
    return any(os.path.isfile(os.path.join(path, name)) for name in ("zarr.json", ".zgroup"))


def niizarr_levels(path: str) -> tuple[Any, list[Any], tuple[float, float]]:
    """The checked header of the NIfTI-Zarr *path*, its resolution levels (Zarr arrays, level
    0 first, each ``(..., k, j, i)``) and its scaling ``(slope, inter)``; no voxel read.

    Raises
    ------
    FileNotFoundError, ValueError
        Those of :func:`napari_resample.io.niizarr_read.read_niizarr_header`, or a level whose
        number of axes or type is not level 0's (naming *path* and the level).
    """
    import zarr

    header, level0, scaling = read_niizarr_header(path)
    with wrap_read_errors(path):
        group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        attrs: Any = dict(group.attrs)
        datasets = attrs.get("ome", attrs)["multiscales"][0]["datasets"]
        levels = [level0] + [group[str(d["path"])] for d in datasets[1:]]
    for n, level in enumerate(levels):
        if level.ndim != level0.ndim or np.dtype(level.dtype) != np.dtype(level0.dtype):
            raise ValueError(
                f"level {n} of {path!r} is {level.shape} {level.dtype}, "
                f"level 0 {level0.shape} {level0.dtype}"
            )
    return header, levels, scaling


def lazy_level(level: Any) -> Any:
    """A (k, j, i) dask view of a Zarr *level* ``(..., k, j, i)`` (leading axes of length 1
    dropped), in native byte order, its chunks the Zarr chunks: nothing read."""
    import dask.array as da

    array = da.from_zarr(level)
    array = array[(0,) * (array.ndim - 3)]
    dtype = np.dtype(array.dtype)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def bounded_sample(level: Any) -> NDArray:
    """The voxels of *level* (``(..., k, j, i)``, the smallest) that decide the layer type and
    contrast limits, as (k, j, i): the whole level up to :data:`SAMPLE_VOXELS`, else
    :data:`SAMPLE_PLANES` planes evenly spread along k."""
    shape = tuple(int(n) for n in level.shape[-3:])
    lead = (0,) * (level.ndim - 3)
    if int(np.prod(shape)) <= SAMPLE_VOXELS:
        sample = np.asarray(level[lead])
    else:
        ks = np.unique(np.linspace(0, shape[0] - 1, SAMPLE_PLANES).astype(int))
        sample = np.stack([np.asarray(level[(*lead, int(k))]) for k in ks])
    return sample.astype(sample.dtype.newbyteorder("="), copy=False)


def contrast_limits(sample: NDArray) -> tuple[float, float]:
    """Minimum and maximum of the finite values of *sample* (shown values); ``(v, v + 1)`` for
    a constant sample, ``(0, 1)`` when no value is finite."""
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if lo < hi else (lo, lo + 1.0)


def niizarr_layer_data(
    path: str | os.PathLike[str], *, name: str | None = None
) -> tuple[LayerData, tuple[str, ...]]:
    """napari LayerData of the NIfTI-Zarr volume *path*, and the notes on its header.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii.zarr`` folder.
    name : str, optional
        Layer name; the file name without its suffix by default.

    Returns
    -------
    layer_data : (data, kwargs, layer_type)
        ``data`` a list of lazy (Z, Y, X) levels (one lazy array for a volume of one level),
        ``kwargs`` the geometry, ``multiscale``, contrast limits for an image and the metadata
        of :func:`napari_resample.plugin.reader.layer_data_from_volume`.
    notes : tuple of str
        What the header holds that is ignored (an unknown units code, say).

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`niizarr_levels`, before any voxel is read.
    """
    path = os.fspath(path)
    header, levels, (slope, inter) = niizarr_levels(path)
    dtype = np.dtype(levels[0].dtype).newbyteorder("=")
    affine = np.array(header.get_best_affine(), dtype=np.float64)
    stand_in = np.broadcast_to(np.zeros((), dtype=dtype), header.get_data_shape())
    layout = napari_from_nifti(stand_in, affine, header)
    with wrap_read_errors(path):
        sample = bounded_sample(levels[-1])
    scaled = (slope, inter) != (1.0, 0.0)
    kind = "labels" if is_label_volume(sample.T, int(header["intent_code"]), scaled) else "image"
    data = [napari_view(lazy_level(level), layout.storage) for level in levels]
    kwargs: dict[str, Any] = {"name": name or volume_name(path), **layout.kwargs}
    if kind == "image":
        if scaled:
            data = [d.map_blocks(apply_scaling, slope, inter, dtype=np.float32) for d in data]
        kwargs["colormap"] = "gray"
        kwargs["contrast_limits"] = contrast_limits(apply_scaling(sample, slope, inter))
    kwargs["multiscale"] = len(data) > 1
    kwargs["metadata"] = {
        METADATA_KEY: {
            "source_path": os.path.abspath(path),
            "affine": affine,
            "header": header.copy(),
            "storage": layout.storage.to_dict(),
            "slope": float(slope),
            "inter": float(inter),
            "stored_dtype": dtype.str,
            "xform_code": XFORM_ALIGNED,
        }
    }
    notes = tuple(ignored_header_fields(header, path))
    return (data if len(data) > 1 else data[0], kwargs, kind), notes
