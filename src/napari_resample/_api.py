"""The file-level front doors: ``resampling()`` (the specification's contract), and
``resample_to_spacing()`` / ``resample_to_reference()`` for the two other kinds of grid."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

from napari_resample._grid import spacing_size
from napari_resample._io import NiftiVolume, load_nifti, remove_empty_dirs, save_volume_into
from napari_resample._names import OUTPUT_SUFFIX, REFERENCE_SUFFIX, nifti_suffix, output_name
from napari_resample._options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    Anchor,
    AutoInterpolation,
    check_choice,
    validate_size,
    validate_spacing,
)
from napari_resample._pipeline import resample_volume
from napari_resample._reference import reference_grid, resample_volume_to_grid


def resampling(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int],
    debug: bool = False,
    *,
    interpolation: AutoInterpolation = "bspline",
    anchor: Anchor = "origin",
    antialias: bool = False,
) -> None:
    """Resample a 3D ``.nii.gz`` volume to a target size, keeping its field of view.

    The new voxel spacing is ``old_spacing * old_size / new_size`` per axis, so
    ``size * spacing`` (the field of view) is unchanged. Origin, direction, data type and the
    other header fields are kept. The result is written to
    ``<output_path>/<PREFIX>_resampled.nii.gz``.

    Parameters
    ----------
    nii_path : str or os.PathLike
        Input volume, a ``.nii.gz`` file holding a 3D image (a 4D file with a single volume
        is accepted). It is never modified.
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    desired_volume : (3,) sequence of int
        Target size ``(X, Y, Z)``, in the file's voxel order (i, j, k).
    debug : bool
        If True, print ``Resampled image saved at: '<path>'``.
    interpolation : {"bspline", "linear", "nearest", "label", "auto"}
        Cubic B-spline (default, the specification's), trilinear, nearest neighbour,
        label-preserving voting for segmentations, or ``"auto"``: voting for label maps
        (the rule of :mod:`napari_resample._labels`), B-spline for images.
    anchor : {"origin", "center"}
        ``"origin"`` (default) keeps the first voxel's centre; ``"center"`` keeps the outer edges
        of the field of view.
    antialias : bool
        Gaussian smoothing along downsampled axes before sampling (default False).

    Returns
    -------
    None

    Raises
    ------
    FileNotFoundError
        If *nii_path* does not exist.
    ValueError
        If *nii_path* does not end in ``.nii.gz`` or cannot be read as a NIfTI image; if
        *desired_volume* is not exactly three positive integers; if the image is not 3D; if
        *output_path* is an existing file; if the output would overwrite the input; if an
        option is not one of its allowed values. Each message names the file and the value.
    MemoryError
        If reading the volume or resampling it needs more memory than is available now (the
        message gives both sizes); raised before allocating.
    OSError
        If the output cannot be written (a full disk: the path and the free space).

    Examples
    --------
    >>> resampling("scans/patient_001.nii.gz", "resampled/", (224, 224, 128))  # doctest: +SKIP
    """
    path, out_dir, out_file = _check_paths(nii_path, output_path, OUTPUT_SUFFIX, ".nii.gz")
    size = validate_size(desired_volume)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    result = resample_volume(
        load_nifti(path), size, interpolation=interpolation, anchor=anchor, antialias=antialias
    )
    _save(out_dir, out_file, result)
    if debug:
        print(f"Resampled image saved at: '{out_file}'")


def resample_to_spacing(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    spacing: Sequence[float],
    debug: bool = False,
    *,
    interpolation: AutoInterpolation = "bspline",
    anchor: Anchor = "origin",
    antialias: bool = False,
) -> str:
    """Resample a 3D NIfTI volume to a target voxel spacing, keeping its field of view.

    The size per axis is ``max(1, round(size * old_spacing / spacing))``; the field of view is
    kept exactly, as in :func:`resampling`, so the spacing achieved is
    ``old_spacing * old_size / new_size``: within half a voxel over the field of view of the
    request. The result is written to ``<output_path>/<PREFIX>_resampled.nii.gz``.

    Parameters
    ----------
    nii_path : str or os.PathLike
        A ``.nii.gz`` or ``.nii`` file holding a 3D image; never modified.
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    spacing : (3,) sequence of float
        Target spacing in mm, in the file's voxel order (i, j, k); positive and finite.
    debug : bool
        If True, print where the result was saved, and the requested and achieved spacing.
    interpolation, anchor, antialias
        As :func:`resampling`.

    Returns
    -------
    str
        The path of the result.

    Raises
    ------
    FileNotFoundError, ValueError, MemoryError, OSError
        As :func:`resampling`; ValueError also for a *spacing* that is not three positive
        finite numbers.

    Examples
    --------
    >>> resample_to_spacing("ct.nii.gz", "iso/", (1.0, 1.0, 1.0), debug=True)  # doctest: +SKIP
    Resampled image saved at: 'iso/ct_resampled.nii.gz'
    Spacing requested (1, 1, 1) mm, achieved (1.00112, 1.00112, 1) mm, size (358, 358, 300)
    """
    path, out_dir, out_file = _check_paths(nii_path, output_path, OUTPUT_SUFFIX)
    target = validate_spacing(spacing)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    volume = load_nifti(path)
    size, achieved = spacing_size(volume.data.shape, volume.affine, target)
    result = resample_volume(
        volume, size, interpolation=interpolation, anchor=anchor, antialias=antialias
    )
    _save(out_dir, out_file, result)
    if debug:
        print(f"Resampled image saved at: '{out_file}'")
        print(describe_spacing(target, achieved, size))
    return out_file


def describe_spacing(
    requested: Sequence[float], achieved: Sequence[float], size: Sequence[int]
) -> str:
    """``Spacing requested (...) mm, achieved (...) mm, size (...)``: one line for the front
    doors.

    Examples
    --------
    >>> describe_spacing((1, 1, 1), (1.0011173, 1.0011173, 1.0), (358, 358, 300))
    'Spacing requested (1, 1, 1) mm, achieved (1.00112, 1.00112, 1) mm, size (358, 358, 300)'
    """

    def mm(values: Sequence[float]) -> str:
        return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"

    size_text = "(" + ", ".join(str(int(n)) for n in size) + ")"
    return f"Spacing requested {mm(requested)} mm, achieved {mm(achieved)} mm, size {size_text}"


def resample_to_reference(
    nii_path: str | os.PathLike[str],
    reference_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    interpolation: AutoInterpolation = "linear",
    debug: bool = False,
    *,
    fill_value: float = 0,
) -> str:
    """Resample a 3D NIfTI volume onto the grid of a reference image.

    The result lies voxel for voxel on the reference: same shape, same affine, qform and sform
    (with their codes) and pixdim; every other header field, the data type and the scaling are
    the input's. World positions are matched in world space whatever the two orientations
    (flipped, permuted, oblique, different origins): axis-aligned grids go through the separable
    engine, oblique ones through SimpleITK. The result is written to
    ``<output_path>/<PREFIX>_resampled_to_ref.nii.gz``.

    Parameters
    ----------
    nii_path : str or os.PathLike
        A ``.nii.gz`` or ``.nii`` file holding a 3D image; never modified.
    reference_path : str or os.PathLike
        The image whose grid is wanted: NIfTI, or NRRD / MetaImage (``.nrrd``, ``.nhdr``,
        ``.mha``, ``.mhd``; its geometry only: output codes 1, scanner). Only its header is read.
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    interpolation : {"linear", "bspline", "nearest", "label", "auto"}
        Trilinear (default), cubic B-spline, nearest neighbour, label voting for segmentations,
        or ``"auto"`` (voting for label maps, B-spline for images).
    debug : bool
        If True, print where the result was saved and how much of the reference it covers.
    fill_value : float
        Value of the output voxels outside the input's field of view (in the image's values,
        scaling applied). The data type must hold it.

    Returns
    -------
    str
        The path of the result.

    Raises
    ------
    FileNotFoundError
        If *nii_path* or *reference_path* does not exist.
    ValueError
        As :func:`resampling`; also when the two fields of view do not overlap at all (the
        message names both files and their world bounding boxes), when the reference is not a
        3D image, or when the data type cannot hold *fill_value*. Before any output exists.
    MemoryError, OSError
        As :func:`resampling`.

    Warns
    -----
    UserWarning
        When the input covers under 50% of the reference's field of view (with the percentage).

    Examples
    --------
    >>> resample_to_reference("seg.nii.gz", "t1.nii.gz", "out/", "label")  # doctest: +SKIP
    'out/seg_resampled_to_ref.nii.gz'
    """
    path, out_dir, out_file = _check_paths(nii_path, output_path, REFERENCE_SUFFIX)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
        raise ValueError(f"fill_value must be a number, got {fill_value!r}")
    grid = reference_grid(reference_path)
    result, overlap = resample_volume_to_grid(
        load_nifti(path), grid, interpolation=interpolation, fill_value=float(fill_value)
    )
    _save(out_dir, out_file, result)
    if debug:
        print(f"Resampled image saved at: '{out_file}'")
        print(f"The input covers {100 * overlap:.1f}% of the reference's field of view")
    return out_file


def _check_paths(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    suffix: str,
    only: str | None = None,
) -> tuple[str, str, str]:
    """``(input, output folder, output file)`` checked: the input exists and is NIfTI (*only*
    this suffix, if given), the output folder is not a file, the output is not the input."""
    path = os.fspath(nii_path)
    out_dir = os.fspath(output_path)
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise ValueError(f"nii_path must be a NIfTI file, got a folder: {path!r}")
        raise FileNotFoundError(f"input file does not exist: {path!r}")
    found = nifti_suffix(path)
    if only is not None and found != only:
        raise ValueError(f"input must be a {only} file, got {path!r}")
    if found is None:
        raise ValueError(f"input must be a .nii.gz or .nii file, got {path!r}")
    out_file = os.path.join(out_dir, output_name(path, suffix))
    if os.path.exists(out_file) and os.path.samefile(out_file, path):
        raise ValueError(f"output would overwrite the input file: {out_file!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_path must be a folder, got a file: {out_dir!r}")
    return path, out_dir, out_file


def _save(out_dir: str, out_file: str, result: NiftiVolume) -> None:
    """Write *result* to *out_file*, removing the folders made for it if that fails."""
    made: list[str] = []
    try:
        save_volume_into(out_dir, out_file, result, made)
    except BaseException:
        remove_empty_dirs(made)
        raise
