"""napari reader for 3D medical volumes: true world coordinates, stored data type.

NIfTI (``.nii`` / ``.nii.gz``) through :func:`read_nifti`; NIfTI-Zarr folders (``.nii.zarr``)
lazily, as multiscale layers, through :func:`read_niizarr` (:mod:`.zarr_layers`); NRRD
(``.nrrd`` / ``.nhdr``), MetaImage (``.mha`` / ``.mhd``) and folders holding a DICOM series
through :func:`read_volume` (:mod:`napari_resample.io.formats`). When a folder holds several
series, a small dialog asks which one (:func:`choose_series`). Axis order and geometry come
from :mod:`.layout`, so every format gives the same world coordinates:
``layer.data_to_world(index)[::-1]`` is RAS. This module only decides the layer type and
assembles LayerData.

Layer type: a label map (the core's rule, :mod:`napari_resample.engine.labels`) opens as a Labels
layer, everything else as an Image layer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_resample.io.formats import (
    DicomSeries,
    is_dicom_series_folder,
    list_dicom_series,
    load_volume,
)
from napari_resample.io.names import (
    ITK_SUFFIXES,
    is_zarr_name,
    nifti_suffix,
    volume_name,
    volume_suffix,
)
from napari_resample.io.nifti import NiftiVolume, load_nifti
from napari_resample.pipeline.rules import is_label_map
from napari_resample.plugin.layer_volume import METADATA_KEY
from napari_resample.plugin.layout import napari_from_nifti
from napari_resample.plugin.zarr_layers import is_niizarr_folder, niizarr_layer_data

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader if *path* names an existing volume file or a DICOM series folder.

    :func:`read_nifti` for NIfTI files, :func:`read_niizarr` for ``.nii.zarr`` folders holding a
    Zarr group, :func:`read_volume` for NRRD and MetaImage files and
    for folders in which GDCM finds a DICOM series; None otherwise, so napari can try other
    readers or say the file was not found. Never raises, and cheap: files are judged by name
    and one ``stat``; a folder's files are sniffed for the DICOM marker
    (:func:`napari_resample.io.dicom.is_dicom_series_folder`) and only a folder that has it is
    scanned by GDCM. napari passes a list of several paths only to stack them into one layer,
    which this reader does not do: such lists get None too (a one-path list is that path).
    """
    try:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        if len(paths) != 1:
            return None
        (one,) = paths
        if os.path.isdir(one):
            if is_zarr_name(one):
                return read_niizarr if is_niizarr_folder(one) else None
            return read_volume if _holds_dicom_series(one) else None
        if not os.path.isfile(one):
            return None
        if nifti_suffix(one) is not None and not is_zarr_name(one):
            return read_nifti
        if volume_suffix(one) in ITK_SUFFIXES:
            return read_volume
    except Exception:
        return None
    return None


def _holds_dicom_series(folder: str) -> bool:
    return is_dicom_series_folder(folder) and bool(list_dicom_series(folder))


def read_nifti(path: str | list[str]) -> list[LayerData]:
    """Read one or several NIfTI files as napari LayerData tuples.

    A file that cannot be read gets a napari error notification naming it; the other files
    are still returned. What was ignored in a file's header (an unknown units code, say) gets
    a warning notification naming the file. When no file could be read, napari's "nothing to
    add" value ``[(None,)]`` is returned, so napari reports no second, generic error.
    """
    layers = _read_each(path, _volume_layers(lambda p: [load_nifti(p)]))
    if layers:
        from napari_resample.plugin.default_reader import offer_default_reader

        offer_default_reader()  # once a session, only when no NIfTI reader is set
    return layers or [(None,)]  # type: ignore[list-item]


def read_volume(path: str | list[str]) -> list[LayerData]:
    """Read NRRD / MetaImage files or DICOM series folders as napari LayerData tuples.

    Errors and notes are reported as by :func:`read_nifti`. A folder holding several DICOM
    series asks which one to open (:func:`choose_series`); cancelling opens nothing.
    """
    return _read_each(path, _volume_layers(_read_one)) or [(None,)]  # type: ignore[list-item]


def read_niizarr(path: str | list[str]) -> list[LayerData]:
    """Read NIfTI-Zarr folders (``.nii.zarr``) as lazy multiscale napari layers
    (:func:`napari_resample.plugin.zarr_layers.niizarr_layer_data`); errors and notes are
    reported as by :func:`read_nifti`."""
    layers = _read_each(path, lambda p: [niizarr_layer_data(p)])
    return layers or [(None,)]  # type: ignore[list-item]


def _read_one(path: str) -> list[NiftiVolume | tuple[NiftiVolume, str]]:
    if os.path.isdir(path):
        found = list_dicom_series(path)
        if len(found) > 1:
            chosen = choose_series(path, found)
            if chosen is None:
                return []
            name = f"{volume_name(path)} {chosen.description}".strip()
            return [(load_volume(path, series=chosen.uid), name)]
    return [load_volume(path)]


def _volume_layers(
    read: Callable[[str], Sequence[NiftiVolume | tuple[NiftiVolume, str]]],
) -> Callable[[str], list[tuple[LayerData, Sequence[str]]]]:
    """*read* (volumes of a path, alone or with a layer name) as LayerData and header notes."""

    def layers(path: str) -> list[tuple[LayerData, Sequence[str]]]:
        out: list[tuple[LayerData, Sequence[str]]] = []
        for item in read(path):
            volume, name = item if isinstance(item, tuple) else (item, None)
            out.append((layer_data_from_volume(volume, name=name), volume.ignored))
        return out

    return layers


def _read_each(
    path: str | list[str], read: Callable[[str], Sequence[tuple[LayerData, Sequence[str]]]]
) -> list[LayerData]:
    """LayerData that *read* gives for each path, with the notes on its header; a path that
    fails is an error notification, the notes (ignored header fields) warnings."""
    from napari.utils.notifications import show_error, show_warning

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            # a reader's UserWarning (uneven DICOM slices) is also in the volume's notes:
            # each note is shown once, as a notification
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                items = list(read(os.fspath(p)))
            notes: list[str] = []
            for layer, ignored in items:
                layers.append(layer)
                notes += [note for note in ignored if note not in notes]
            notes += [str(w.message) for w in caught if str(w.message) not in notes]
            for note in notes:
                show_warning(f"napari-resample: {note}")
        except Exception as exc:
            show_error(f"napari-resample could not open {os.fspath(p)!r}: {exc}")
    return layers


def choose_series(folder: str, found: Sequence[DicomSeries]) -> DicomSeries | None:
    """Ask which DICOM series of *folder* to open (a Qt item dialog); None when cancelled.

    Series are listed by description and number of files; their UID tells apart series with
    the same description.
    """
    from qtpy.QtWidgets import QApplication, QInputDialog

    items = [f"{s.description or '(no description)'} - {s.n_files} files - {s.uid}" for s in found]
    item, ok = QInputDialog.getItem(
        QApplication.activeWindow(),
        "Open DICOM series",
        f"{os.path.basename(os.path.normpath(folder))} holds {len(found)} series; open:",
        items,
        0,
        False,
    )
    if not ok:
        return None
    return found[items.index(item)]


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
        name = volume_name(volume.path) if volume.path else "volume"
    metadata = {
        METADATA_KEY: {
            "source_path": os.path.abspath(volume.path) if volume.path else None,
            "affine": np.array(volume.affine, dtype=np.float64),
            "header": None if header is None else header.copy(),
            "storage": layout.storage.to_dict(),
            "slope": float(volume.slope),
            "inter": float(volume.inter),
            "stored_dtype": volume.data.dtype.str,
            "xform_code": int(volume.xform_code),
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
