"""napari reader for ``.nii`` / ``.nii.gz``: true world coordinates, stored data type.

Axis order and geometry come from :mod:`napari_resample._layout`; reading from
:mod:`napari_resample._io`. This module only decides the layer type and assembles LayerData.

Layer type rule
---------------
A volume opens as a **Labels** layer when its stored type is an integer type, it has no
``scl_slope`` / ``scl_inter`` scaling, and either

* its intent code is ``NIFTI_INTENT_LABEL`` (1002) or ``NIFTI_INTENT_NEURONAME`` (1003), or
* it holds at most :data:`FEW_LABELS` (32) distinct values, or
* it holds at most :data:`MAX_LABELS` (256) distinct values *and* is piecewise constant: at
  least :data:`MIN_EQUAL_NEIGHBOURS` (60 %) of neighbouring voxel pairs that are not both 0 hold
  the same value (sampled on up to 64 slices). Segmentations are made of uniform regions
  (a 117-label whole-body segmentation scores about 0.95); images, even 8-bit ones with few grey
  levels, change from voxel to voxel (a smooth 8-bit CT scores about 0.45, MR lower).

Everything else opens as an **Image** layer (float segmentations included).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_resample._io import (
    NIFTI_INTENT_LABEL,
    NIFTI_INTENT_NEURONAME,
    NiftiVolume,
    load_nifti,
    nifti_suffix,
)
from napari_resample._layout import METADATA_KEY, napari_from_nifti

LABEL_INTENTS = frozenset({NIFTI_INTENT_LABEL, NIFTI_INTENT_NEURONAME})
FEW_LABELS = 32
MAX_LABELS = 256
MIN_EQUAL_NEIGHBOURS = 0.6

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return :func:`read_nifti` if *path* names an existing NIfTI file, else None.

    Cheap (the name and one ``stat``; nothing is opened) and never raises. Folders and missing
    files named like NIfTI files get None, so napari can try other readers or say the file was
    not found. napari passes a list of several paths only to stack them into one layer, which
    this reader does not do: such lists get None too (a one-path list is that path).
    """
    try:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        if len(paths) != 1 or nifti_suffix(paths[0]) is None or not os.path.isfile(paths[0]):
            return None
    except Exception:
        return None
    return read_nifti


def read_nifti(path: str | list[str]) -> list[LayerData]:
    """Read one or several NIfTI files as napari LayerData tuples.

    A file that cannot be read gets a napari error notification naming it; the other files
    are still returned. When no file could be read, napari's "nothing to add" value
    ``[(None,)]`` is returned, so napari reports no second, generic error.
    """
    from napari.utils.notifications import show_error

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            layers.append(layer_data_from_volume(load_nifti(p)))
        except Exception as exc:
            show_error(f"napari-resample could not open {os.fspath(p)!r}: {exc}")
    return layers or [(None,)]  # type: ignore[list-item]


def is_label_volume(data: NDArray, intent_code: int = 0, scaled: bool = False) -> bool:
    """Whether stored voxels are a segmentation, by the rule in this module's docstring.

    Examples
    --------
    >>> is_label_volume(np.array([0, 1, 2, 1], dtype=np.int16))
    True
    >>> is_label_volume(np.linspace(0, 1000, 500).astype(np.int16))
    False
    >>> is_label_volume(np.arange(100, dtype=np.uint8), intent_code=1002)
    True
    >>> ids = np.arange(64, dtype=np.uint8).reshape(4, 4, 4)
    >>> is_label_volume(np.kron(ids, np.ones((4, 4, 4), np.uint8)))  # 64 labels, 4-voxel blocks
    True
    """
    if data.dtype.kind not in "iu" or scaled:
        return False
    if int(intent_code) in LABEL_INTENTS:
        return True
    distinct = count_distinct(data, MAX_LABELS + 1)
    if distinct <= FEW_LABELS:
        return True
    return distinct <= MAX_LABELS and equal_neighbours(data) >= MIN_EQUAL_NEIGHBOURS


def equal_neighbours(data: NDArray, slices: int = 64) -> float:
    """Fraction of neighbouring voxel pairs holding the same value, pairs of two 0s left out.

    Pairs along the first two axes, on up to *slices* slices across the third (of the first
    volume of 4D data): a cheap measure of how piecewise constant the volume is.

    Examples
    --------
    >>> equal_neighbours(np.array([[[1], [1]], [[1], [2]]]))
    0.5
    """
    while data.ndim > 3:
        data = data[..., 0]
    while data.ndim < 3:
        data = data[..., None]
    n = data.shape[2]
    equal = total = 0
    for k in np.unique(np.linspace(0, n - 1, min(n, slices)).astype(np.int64)):
        plane = data[:, :, k]
        for a, b in ((plane[1:], plane[:-1]), (plane[:, 1:], plane[:, :-1])):
            both_zero = (a == 0) & (b == 0)
            total += a.size - int(np.count_nonzero(both_zero))
            equal += int(np.count_nonzero((a == b) & ~both_zero))
    return equal / total if total else 1.0


def count_distinct(data: NDArray, stop: int) -> int:
    """Number of distinct values in integer *data*, or any number >= *stop* once it is clear.

    A strided sample rules most images out before the whole volume is counted. The count runs
    over chunks of the stored order (a view, nothing the size of the volume is allocated): a
    narrow value range with ``bincount`` (linear time), a wide one by merging sorted uniques.
    """
    flat = data.reshape(-1, order="A")  # a view of C- or Fortran-ordered data
    if flat.size == 0:
        return 0
    step = max(1, flat.size // 100_000)
    if np.unique(flat[::step]).size >= stop:
        return stop
    lo, hi = int(flat.min()), int(flat.max())
    chunks = (flat[start : start + _CHUNK] for start in range(0, flat.size, _CHUNK))
    if hi - lo < 1 << 20:
        counts = np.zeros(hi - lo + 1, dtype=np.int64)
        for chunk in chunks:
            shifted = chunk.astype(np.int64)
            shifted -= lo
            counts += np.bincount(shifted, minlength=counts.size)
        return int(np.count_nonzero(counts))
    seen = np.empty(0, dtype=flat.dtype)
    for chunk in chunks:
        seen = np.union1d(seen, chunk)
        if seen.size >= stop:
            return stop
    return int(seen.size)


#: Voxels counted at a time by :func:`count_distinct` (2 MiB as int64).
_CHUNK = 1 << 18


def layer_data_from_volume(
    volume: NiftiVolume, *, name: str | None = None, layer_type: str | None = None
) -> LayerData:
    """napari LayerData for a loaded NIfTI volume.

    Parameters
    ----------
    volume : NiftiVolume
    name : str, optional
        Layer name; the file name without its suffix by default.
    layer_type : {"image", "labels"}, optional
        Forced type; by default the rule of this module's docstring decides.

    Returns
    -------
    (data, kwargs, layer_type)
        ``data`` in napari (Z, Y, X) / (T, Z, Y, X) order; ``kwargs["metadata"]
        ["napari_resample"]`` holds ``source_path``, ``affine`` (the file's voxel -> RAS
        affine), ``header`` (a copy of the full nibabel header), ``storage`` (axis order on
        disk), ``slope``, ``inter`` and ``stored_dtype``.
    """
    header = volume.header
    if layer_type is None:
        intent = int(header["intent_code"])
        layer_type = (
            "labels" if is_label_volume(volume.data, intent, volume.is_scaled) else "image"
        )
    if layer_type not in ("image", "labels"):
        raise ValueError(f"layer_type must be 'image' or 'labels', got {layer_type!r}")
    values = volume.scaled_data() if layer_type == "image" else volume.data
    layout = napari_from_nifti(values, volume.affine, header)
    if name is None:
        name = os.path.basename(volume.path) if volume.path else "volume"
        suffix = nifti_suffix(name)
        name = name[: -len(suffix)] if suffix else name
    metadata = {
        METADATA_KEY: {
            "source_path": os.path.abspath(volume.path) if volume.path else None,
            "affine": np.array(volume.affine, dtype=np.float64),
            "header": header.copy(),
            "storage": layout.storage.to_dict(),
            "slope": float(volume.slope),
            "inter": float(volume.inter),
            "stored_dtype": volume.data.dtype.str,
        }
    }
    kwargs: dict[str, Any] = {"name": name, "metadata": metadata, **layout.kwargs}
    if layer_type == "image":
        kwargs["colormap"] = "gray"
        if layout.data.dtype.kind == "f":
            # napari's own contrast-limit estimate does not skip NaN / Inf.
            finite = np.isfinite(layout.data)
            if not finite.all() and finite.any():
                values = layout.data[finite]
                if values.min() < values.max():
                    kwargs["contrast_limits"] = (float(values.min()), float(values.max()))
    return layout.data, kwargs, layer_type
