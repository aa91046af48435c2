"""The one file pipeline: a NIfTI volume in, the resampled volume with its header out.

``resampling()``, the command line, the dataset runner and the napari widget's worker all call
:func:`resample_volume`; they differ only in where the volume comes from and where it goes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel.spatialimages import HeaderDataError

from napari_resample._io import (
    NiftiVolume,
    header_for_affine,
    resampled_header,
    same_grid,
    set_stored_dtype,
    spatial_volume,
    storable_dtype,
)
from napari_resample._labels import is_label_map
from napari_resample._options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    Anchor,
    AutoInterpolation,
    Interpolation,
    check_choice,
    validate_size,
)
from napari_resample._resample import CancelSignal, ProgressCallback, resample_array


def resolve_interpolation(interpolation: AutoInterpolation, volume: NiftiVolume) -> Interpolation:
    """The interpolation used for *volume*: ``"auto"`` is ``"label"`` for label maps (the rule
    of :mod:`napari_resample._labels`) and ``"bspline"`` for images; others are kept."""
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if interpolation == "auto":
        return "label" if is_label_map(volume) else "bspline"
    return interpolation


def resample_volume(
    volume: NiftiVolume,
    desired_volume: Sequence[int],
    *,
    interpolation: AutoInterpolation = "bspline",
    anchor: Anchor = "origin",
    antialias: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
) -> NiftiVolume:
    """Resample a 3D NIfTI volume to *desired_volume* voxels, keeping its field of view.

    Parameters
    ----------
    volume : NiftiVolume
        Stored voxels (unscaled) in NIfTI order with their affine, the file's header (or None
        for a volume that came from no NIfTI file) and scaling. A 4D volume counts when its extra
        axes are all 1 (:func:`napari_resample._io.spatial_volume`).
    desired_volume : (3,) sequence of int
        Target size (X, Y, Z) in the volume's voxel order (i, j, k).
    interpolation : {"bspline", "linear", "nearest", "label", "auto"}
        ``"auto"`` picks ``"label"`` for label maps and ``"bspline"`` otherwise.
    anchor : {"origin", "center"}
    antialias : bool
    progress : callable, optional
        Called with the fraction done (0 to 1) after every slab, monotone.
    cancel : threading.Event or callable returning bool, optional
        Checked between slabs: once set, the call raises
        :class:`napari_resample._resample.ResamplingCancelled` within one slab.

    Returns
    -------
    NiftiVolume
        ``data`` in the input's type (the header's on-disk type is the one NIfTI can store:
        bool -> uint8, float16 -> float32, converted on save),
        ``affine`` the new voxel -> RAS affine, ``header`` the header to write: when the volume's
        header still describes its grid, the file's header with qform and sform each moved by the
        same voxel transform (codes, units, intent, time step, other fields kept); otherwise one
        made from the new affine with the template's other fields (and, without a template,
        qform and sform codes ``volume.xform_code``, 1 (scanner) for a volume read from NRRD,
        MetaImage or DICOM, and units mm). Scaling and ``xform_code`` are kept.

    Raises
    ------
    ValueError
        For a bad option or size, a volume that is not 3D, or a header whose geometry cannot be
        resampled; before any voxel is computed.
    napari_resample._resample.ResamplingCancelled
        When *cancel* was set.
    """
    size = validate_size(desired_volume)
    check_choice("anchor", anchor, ANCHORS)
    mode = resolve_interpolation(interpolation, volume)
    data = spatial_volume(volume.data, volume.path)
    template = volume.header
    where = f" of {volume.path!r}" if volume.path else ""
    header = None
    if template is not None and same_grid(template, volume.affine, data.shape):
        try:
            header = resampled_header(template, data.shape, size, anchor)
        except (ValueError, HeaderDataError, np.linalg.LinAlgError) as exc:
            raise ValueError(f"cannot resample the geometry in the header{where}: {exc}") from exc
    out, new_affine = resample_array(
        data,
        size,
        affine=volume.affine,
        interpolation=mode,
        anchor=anchor,
        antialias=antialias,
        progress=progress,
        cancel=cancel,
    )
    if header is None:  # no NIfTI file, or a grid changed since reading: the new affine decides
        header = header_for_affine(new_affine, out.shape, template, code=volume.xform_code)
        if template is None:  # an affine is in mm (a NIfTI file made from nothing says unknown)
            header.set_xyzt_units(xyz="mm")
    else:  # codes 0/0 files: keep what nibabel will read back
        new_affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    set_stored_dtype(header, storable_dtype(out.dtype))  # bool, float16: converted on save
    return NiftiVolume(
        out, new_affine, header, volume.slope, volume.inter, xform_code=volume.xform_code
    )
