"""Resampling onto another image's grid (a reference): the pipeline and its two engines.

World positions are matched in world space: output voxel ``v`` of the reference samples the
input at the continuous index ``inv(A_in) @ A_ref @ v`` (:func:`_grid.voxel_map`), whatever the
two orientations. When that map is axis-aligned (scaling and shift, axes possibly permuted or
flipped), the separable engine does the work on the input transposed by the permutation; when
it is oblique, SimpleITK's ``ResampleImageFilter`` does, on the input's voxel grid (unit
spacing, identity direction: :func:`_itk.image_from_array`) with the composed map as an
``AffineTransform``, so no LPS/RAS conversion is involved at all.

Both engines give the same answer where both apply (the tests force either), with the same
rules: B-spline with mirror boundaries, values clamped to the input's range and rounded for
integer types, ``fill_value`` outside the input's field of view (beyond half a voxel from its
outer voxel centres: no extrapolation over a large region).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.clamp import Finisher, fill_nonfinite, value_range, work_dtype
from napari_resample.engine.grid import (
    Grid,
    aligned_positions,
    format_bounds,
    overlap_fraction,
    voxel_map,
    world_bounds,
)
from napari_resample.engine.options import AutoInterpolation, Interpolation, check_choice
from napari_resample.engine.progress import CancelSignal, ProgressCallback, cancel_check
from napari_resample.engine.resample import sample_grid
from napari_resample.io.header import (
    XFORM_ALIGNED,
    XFORM_SCANNER,
    header_for_affine,
    set_stored_dtype,
    storable_dtype,
)
from napari_resample.io.names import nifti_suffix
from napari_resample.io.nifti import NiftiVolume, load_nifti_grid, spatial_volume
from napari_resample.pipeline.rules import resolve_interpolation

Method = Literal["auto", "separable", "itk"]
#: Warn when the input covers less than this fraction of the reference's field of view.
LOW_OVERLAP = 0.5


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
        If it cannot be read as an image, is not 3D, or is a folder holding no DICOM series or
        several (they are listed).
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        from napari_resample.io.formats import load_volume

        volume = load_volume(p)
        shape = volume.data.shape
        return _scanner_grid((shape[0], shape[1], shape[2]), volume.affine, p)
    if nifti_suffix(p) is not None:
        header, affine = load_nifti_grid(p)
        shape = tuple(int(n) for n in header.get_data_shape())
        if len(shape) < 3 or any(n != 1 for n in shape[3:]):
            raise ValueError(f"the reference must be a 3D image, got shape {shape} in {p!r}")
        return Grid((shape[0], shape[1], shape[2]), affine, header, p)
    return _itk_grid(p)


def _itk_grid(path: str) -> Grid:
    import SimpleITK as sitk

    from napari_resample.io.itk import ras_affine

    if not os.path.exists(path):
        raise FileNotFoundError(f"reference file not found: {path!r}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ValueError(f"cannot read {path!r} as an image: {exc}") from exc
    size = reader.GetSize()
    if len(size) != 3:
        raise ValueError(f"the reference must be a 3D image, got size {size} in {path!r}")
    affine = ras_affine(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    return _scanner_grid((size[0], size[1], size[2]), affine, path)


def _scanner_grid(shape: tuple[int, int, int], affine: NDArray[np.float64], name: str) -> Grid:
    """A grid read from a non-NIfTI file: its world is the scanner's (codes 1), in mm."""
    header = header_for_affine(affine, shape, code=XFORM_SCANNER)
    header.set_xyzt_units(xyz="mm")
    return Grid(shape, np.asarray(affine, dtype=np.float64), header, name)


def check_overlap(volume: NiftiVolume, grid: Grid, shape: tuple[int, ...]) -> float:
    """The fraction of *grid*'s voxels inside the volume's field of view, checked.

    Raises
    ------
    ValueError
        When nothing overlaps: names both and their world bounding boxes.

    Warns
    -----
    UserWarning
        When under :data:`LOW_OVERLAP` of the reference's voxels are covered (with the %).
    """
    fraction = overlap_fraction(shape, volume.affine, grid.shape, grid.affine)
    name = repr(volume.path) if volume.path else "the input"
    if fraction == 0.0:
        raise ValueError(
            f"{name} and {grid.name!r} do not overlap: the input spans "
            f"{format_bounds(world_bounds(shape, volume.affine))}, the reference spans "
            f"{format_bounds(world_bounds(grid.shape, grid.affine))}"
        )
    if fraction < LOW_OVERLAP:
        warnings.warn(
            f"{name} covers only {100 * fraction:.1f}% of the field of view of "
            f"{grid.name!r}; the rest of the output holds the fill value",
            UserWarning,
            stacklevel=3,
        )
    return fraction


def stored_fill(fill_value: float, volume: NiftiVolume, dtype: np.dtype) -> float | int:
    """*fill_value* (in the image's values, scaling applied) as a stored value of *dtype*.

    Raises
    ------
    ValueError
        If the stored type cannot hold it (an integer type and a fractional or out-of-range
        value, or NaN).

    Examples
    --------
    >>> v = NiftiVolume(np.zeros((1, 1, 1), np.int16), np.eye(4), None, slope=2.0, inter=-1024.0)
    >>> stored_fill(-1024, v, np.dtype(np.int16)), stored_fill(0, v, np.dtype(np.int16))
    (0, 512)
    """
    value = float(fill_value)
    stored = (value - volume.inter) / volume.slope
    if dtype.kind == "f":
        return stored
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    rounded = round(stored) if np.isfinite(stored) else None
    if (
        rounded is None
        or abs(stored - rounded) > 1e-6 * max(1.0, abs(stored))
        or (info is not None and not info.min <= rounded <= info.max)
        or (dtype.kind == "b" and rounded not in (0, 1))
    ):
        raise ValueError(
            f"fill_value {fill_value!r} cannot be stored in the input's data type {dtype}"
            + (f" (scaling {volume.slope} * x + {volume.inter})" if volume.is_scaled else "")
        )
    return int(rounded)


def reference_header(
    template: Any | None,
    grid: Grid,
    shape: tuple[int, int, int],
    *,
    code: int = XFORM_ALIGNED,
) -> Any:
    """The output header: the reference's geometry exactly, every other field the input's.

    From a grid with a header (a NIfTI reference, or the header :func:`reference_grid` makes
    for NRRD, MetaImage and DICOM, codes 1, scanner): its qform and sform with their codes, and
    its pixdim (spacing and qfac) and spatial units. From a grid without one (a layer made in a
    session): a header made from its affine with the *template*'s codes, or *code* for both
    without a template (the input volume's ``xform_code``). The data type, scaling, intent,
    description and time fields stay the input's.
    """
    if grid.header is None:
        made = header_for_affine(grid.affine, shape, template, code=code)
        if template is None:  # an affine is in mm (a NIfTI file made from nothing says unknown)
            made.set_xyzt_units(xyz="mm")
        return made
    ref = grid.header
    hdr = template.copy() if template is not None else type(ref)()
    pixdim = np.array(hdr["pixdim"], dtype=np.float64)  # set_data_shape resets the time step
    hdr.set_data_shape(shape)
    hdr.set_sform(ref.get_sform(coded=False), code=int(ref["sform_code"]))
    hdr.set_qform(ref.get_qform(coded=False), code=int(ref["qform_code"]))
    pixdim[:4] = np.asarray(ref["pixdim"], dtype=np.float64)[:4]
    hdr["pixdim"] = pixdim
    space = ref.get_xyzt_units()[0]
    hdr.set_xyzt_units(xyz=space, t=hdr.get_xyzt_units()[1])
    return hdr


def resample_volume_to_grid(
    volume: NiftiVolume,
    grid: Grid,
    *,
    interpolation: AutoInterpolation = "linear",
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
    interpolation : {"linear", "bspline", "nearest", "label", "auto"}
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
        from :func:`reference_header`.
    overlap : float
        Fraction of the reference's voxels inside the input's field of view.

    Raises
    ------
    ValueError
        Bad option, no overlap at all (both bounding boxes named), a fill value the data type
        cannot hold, a volume that is not 3D; all before any voxel is computed.
    """

    check_choice("method", method, ("auto", "separable", "itk"))
    mode = resolve_interpolation(interpolation, volume)
    data = spatial_volume(volume.data, volume.path)
    native = data.dtype.newbyteorder("=")
    fill = stored_fill(fill_value, volume, native)
    overlap = check_overlap(volume, grid, data.shape)
    mapping = voxel_map(volume.affine, grid.affine)
    aligned = aligned_positions(data.shape, mapping, grid.shape)
    if method == "separable" and aligned is None:
        raise ValueError(f"the grid of {grid.name!r} is oblique to the input's voxel grid")
    if aligned is not None and method != "itk":
        perm, positions = aligned
        out = sample_grid(
            data.transpose(perm),
            positions,
            interpolation=mode,
            fill_value=fill,
            progress=progress,
            cancel=cancel,
        )
    else:
        check = cancel_check(cancel)
        if check is not None:
            check()
        if progress is not None:
            progress(0.0)
        out = _itk_sample(data, mapping, grid.shape, mode, fill)
        if check is not None:
            check()
        if progress is not None:
            progress(1.0)
    header = reference_header(volume.header, grid, grid.shape, code=volume.xform_code)
    set_stored_dtype(header, storable_dtype(out.dtype))
    affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    result = NiftiVolume(
        out, affine, header, volume.slope, volume.inter, xform_code=volume.xform_code
    )
    return result, overlap


def _itk_sample(
    data: NDArray,
    mapping: NDArray[np.float64],
    shape: tuple[int, int, int],
    mode: Interpolation,
    fill: float | int,
) -> NDArray:
    """*data* sampled at ``mapping @ v`` for every voxel ``v`` of *shape*, by SimpleITK."""
    native = data.dtype.newbyteorder("=")
    if mode == "label":
        labels, index = np.unique(data, return_inverse=True)
        index_type = np.uint16 if labels.size < 65535 else np.uint32
        voted = _itk_run(
            index.reshape(data.shape).astype(index_type), mapping, shape, mode, labels.size
        )
        return np.append(labels, np.asarray(fill, dtype=native))[voted]
    if mode == "nearest":
        values = data.view(np.uint8) if data.dtype == np.bool_ else data.astype(native, copy=False)
        return _itk_run(values, mapping, shape, mode, fill).astype(native, copy=False)
    work = work_dtype(data.dtype)
    source = data
    nonfinite = None
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            nonfinite = ~finite
            source = fill_nonfinite(data, finite) if finite.any() else np.zeros_like(data)
    lo, hi = value_range(source)
    # NaN marks the outside (it survives clamping and rounding); the fill goes in last.
    # Stored integers go in as they are (no float copy); ITK interpolates in double and
    # writes the working type.
    values = source.view(np.uint8) if source.dtype == np.bool_ else source
    sampled = _itk_run(values, mapping, shape, mode, np.nan, out_type=work)
    outside = np.isnan(sampled)
    out = np.empty(shape, dtype=native)
    Finisher(lo, hi, native)(np.where(outside, lo, sampled), out)
    out[outside] = fill
    if nonfinite is not None:  # non-finite voxels go back by nearest neighbour, as in the engine
        hit = _itk_run(nonfinite.view(np.uint8), mapping, shape, "nearest", 0).astype(bool)
        out[hit] = _itk_run(data.astype(native, copy=False), mapping, shape, "nearest", 0)[hit]
    return out


def _itk_run(
    values: NDArray,
    mapping: NDArray[np.float64],
    shape: tuple[int, int, int],
    mode: str,
    default: float,
    out_type: np.dtype | None = None,
) -> NDArray:
    """One ``ResampleImageFilter`` call on the voxel grids (unit spacing, identity direction),
    its output in *out_type* (float32 or float64; default: the input's type)."""
    import SimpleITK as sitk

    from napari_resample.io.itk import array_from_image, image_from_array

    image = image_from_array(values)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(mapping[:3, :3].ravel().tolist())
    transform.SetTranslation(mapping[:3, 3].tolist())
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape])
    resampler.SetTransform(transform)
    resampler.SetInterpolator(_ITK_INTERPOLATORS[mode]())
    resampler.SetDefaultPixelValue(float(default))
    if out_type is None:
        resampler.SetOutputPixelType(image.GetPixelID())
    else:
        kind = sitk.sitkFloat32 if np.dtype(out_type) == np.float32 else sitk.sitkFloat64
        resampler.SetOutputPixelType(kind)
    out, _ = array_from_image(resampler.Execute(image))
    return out


def _sitk(name: str) -> Any:
    def get() -> Any:
        import SimpleITK as sitk

        return getattr(sitk, name)

    return get


#: SimpleITK's interpolator for each mode (``sitkBSpline`` is cubic, mirror boundaries;
#: ``sitkLabelLinear`` votes per label with linear weights, as our ``"label"``).
_ITK_INTERPOLATORS = {
    "linear": _sitk("sitkLinear"),
    "bspline": _sitk("sitkBSpline"),
    "nearest": _sitk("sitkNearestNeighbor"),
    "label": _sitk("sitkLabelLinear"),
}
