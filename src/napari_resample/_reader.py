"""napari reader for ``.nii`` / ``.nii.gz``: true world coordinates, stored data type.

Axis order and geometry come from :mod:`napari_resample._layout`; reading from
:mod:`napari_resample._io`. This module only decides the layer type and assembles LayerData.

Layer type: a label map (the core's rule, :mod:`napari_resample._labels`) opens as a Labels
layer, everything else as an Image layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_resample._io import NiftiVolume, load_nifti
from napari_resample._labels import is_label_map
from napari_resample._layout import METADATA_KEY, napari_from_nifti
from napari_resample._names import nifti_suffix, strip_nifti_suffix

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
    are still returned. What was ignored in a file's header (an unknown units code, say) gets
    a warning notification naming the file. When no file could be read, napari's "nothing to
    add" value ``[(None,)]`` is returned, so napari reports no second, generic error.
    """
    from napari.utils.notifications import show_error, show_warning

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            volume = load_nifti(p)
            layers.append(layer_data_from_volume(volume))
        except Exception as exc:
            show_error(f"napari-resample could not open {os.fspath(p)!r}: {exc}")
            continue
        for note in volume.ignored:
            show_warning(f"napari-resample: {note}")
    if layers:
        from napari_resample._default_reader import offer_default_reader

        offer_default_reader()  # once a session, only when no NIfTI reader is set
    return layers or [(None,)]  # type: ignore[list-item]


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
        layer_type = "labels" if is_label_map(volume) else "image"
    if layer_type not in ("image", "labels"):
        raise ValueError(f"layer_type must be 'image' or 'labels', got {layer_type!r}")
    values = volume.scaled_data() if layer_type == "image" else volume.data
    layout = napari_from_nifti(values, volume.affine, header)
    if name is None:
        name = strip_nifti_suffix(volume.path) if volume.path else "volume"
    metadata = {
        METADATA_KEY: {
            "source_path": os.path.abspath(volume.path) if volume.path else None,
            "affine": np.array(volume.affine, dtype=np.float64),
            "header": None if header is None else header.copy(),
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
