"""Resampling onto another image's grid (a reference): reading the grid, and the volume door.

World positions are matched in world space: output voxel ``v`` of the reference samples the
input at the continuous index ``inv(A_in) @ A_ref @ v`` (:func:`napari_resample.engine.grid.
voxel_map`), whatever the two orientations. The target resolves into an
:class:`napari_resample.pipeline.targets.OutputGrid` (:func:`~napari_resample.pipeline.targets.
resolve_target`); when its map is axis-aligned (scaling and shift, axes possibly permuted or
flipped), the separable engine does the work on the input transposed by the permutation; when it
is oblique, SimpleITK does (:mod:`napari_resample.pipeline.oblique`).

Both engines give the same answer where both apply (the tests force either), with the same
rules: B-spline with mirror boundaries, values clamped to the input's range and rounded for
integer types, ``fill_value`` outside the input's field of view (beyond half a voxel from its
outer voxel centres: no extrapolation over a large region).
"""

from __future__ import annotations

import os

import numpy as np
from nibabel.spatialimages import HeaderDataError
from numpy.typing import NDArray

from napari_resample.engine.grid import Grid
from napari_resample.engine.options import AutoInterpolation, check_choice
from napari_resample.engine.progress import CancelSignal, ProgressCallback
from napari_resample.io.header import XFORM_SCANNER, header_for_affine
from napari_resample.io.names import is_zarr_name, nifti_suffix
from napari_resample.io.nifti import NiftiVolume
from napari_resample.io.volume_io import load_grid
from napari_resample.pipeline.rules import resolve_interpolation
from napari_resample.pipeline.run import METHODS, Method, resample_onto
from napari_resample.pipeline.targets import (
    LOW_OVERLAP,
    GridTarget,
    Source,
    resolve_target,
)

__all__ = ["LOW_OVERLAP", "reference_grid", "resample_volume_to_grid"]


def reference_grid(path: str | os.PathLike[str]) -> Grid:
    """The grid of an image file, or of a folder holding a DICOM series.

    A NIfTI file keeps its header (its qform, sform, codes and pixdim go to the output); only
    the header is read. NRRD and MetaImage files (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``)
    give their geometry from their header only, LPS converted to RAS; a DICOM folder gives the
    geometry of its series (read whole by :func:`napari_resample.io.formats.load_volume`). For
    these the grid's ``header`` is one made from the affine with qform and sform codes 1
    (scanner) and millimetres, so that an output on the grid says the same.

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If it cannot be read as an image, is not 3D, has a size a NIfTI-1 header cannot hold
        (over 32767 voxels along an axis), or is a folder holding no DICOM series or several
        (they are listed).
    """
    p = os.fspath(path)
    if os.path.isdir(p) and not is_zarr_name(p):
        from napari_resample.io.formats import load_volume

        volume = load_volume(p)
        shape = volume.data.shape
        return _scanner_grid((shape[0], shape[1], shape[2]), volume.affine, p)
    if nifti_suffix(p) is not None:
        header, affine = load_grid(p)  # a .nii.zarr's too
        shape = tuple(int(n) for n in header.get_data_shape())
        if len(shape) < 3 or any(n != 1 for n in shape[3:]):
            raise ValueError(f"the reference must be a 3D image, got shape {shape} in {p!r}")
        return Grid((shape[0], shape[1], shape[2]), affine, header, p)
    return _itk_grid(p)


def _itk_grid(path: str) -> Grid:
    from napari_resample.io.formats import read_itk_information
    from napari_resample.io.itk import ras_affine

    if not os.path.exists(path):
        raise FileNotFoundError(f"reference file not found: {path!r}")
    reader = read_itk_information(path)
    size = reader.GetSize()
    if len(size) != 3:
        raise ValueError(f"the reference must be a 3D image, got size {size} in {path!r}")
    affine = ras_affine(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    return _scanner_grid((size[0], size[1], size[2]), affine, path)


def _scanner_grid(shape: tuple[int, int, int], affine: NDArray[np.float64], name: str) -> Grid:
    """A grid read from a non-NIfTI file: its world is the scanner's (codes 1), in mm."""
    try:
        header = header_for_affine(affine, shape, code=XFORM_SCANNER)
    except HeaderDataError as exc:  # over 32767 voxels along an axis: no NIfTI-1 result
        raise ValueError(f"the grid of {name!r} cannot be a NIfTI-1 header: {exc}") from exc
    header.set_xyzt_units(xyz="mm")
    return Grid(shape, np.asarray(affine, dtype=np.float64), header, name)


def resample_volume_to_grid(
    volume: NiftiVolume,
    grid: Grid,
    *,
    interpolation: AutoInterpolation = "auto",
    fill_value: float = 0.0,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    method: Method = "auto",
) -> tuple[NiftiVolume, float]:
    """Resample *volume* onto *grid*: same shape and affine as the grid, the volume's values.

    Parameters
    ----------
    volume : NiftiVolume
    grid : Grid
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        ``"auto"`` (default): label voting for label maps, B-spline for images
        (:func:`napari_resample.pipeline.rules.choose_interpolation`).
    fill_value : float
        Value of output voxels outside the input's field of view, in the image's values
        (scaling applied).
    progress, cancel
        As :func:`napari_resample.pipeline.run.resample_volume`. The oblique path (SimpleITK)
        reports 0 and 1 only, and is cancelled before or after its one call.
    method : {"auto", "separable", "itk"}
        ``"auto"``: the separable engine when the grids are axis-aligned, else SimpleITK.
        The others force one (``"separable"`` raises ValueError for an oblique grid).

    Returns
    -------
    volume : NiftiVolume
        The data on the reference grid in the input's type, its affine the grid's, the header
        from :func:`napari_resample.pipeline.targets.reference_header`.
    overlap : float
        Fraction of the reference's voxels inside the input's field of view.

    Raises
    ------
    ValueError
        Bad option, no overlap at all (both bounding boxes named), a fill value the data type
        cannot hold, a volume that is not 3D; all before any voxel is computed.
    """
    check_choice("method", method, METHODS)
    mode = resolve_interpolation(interpolation, volume)
    out = resolve_target(GridTarget(grid, fill_value), Source.of_volume(volume))
    if method == "separable" and out.perm is None:
        raise ValueError(f"the grid of {grid.name!r} is oblique to the input's voxel grid")
    itk = method == "itk"
    result = resample_onto(volume, out, mode, progress=progress, cancel=cancel, force_itk=itk)
    return result, float(out.info["overlap"])
