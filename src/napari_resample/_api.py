"""``resampling()``: the file-level contract of the specification."""

from __future__ import annotations

import os
from collections.abc import Sequence

from napari_resample._io import load_nifti, remove_empty_dirs, save_volume_into
from napari_resample._names import nifti_suffix, output_name
from napari_resample._options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    Anchor,
    AutoInterpolation,
    check_choice,
    validate_size,
)
from napari_resample._pipeline import resample_volume


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
    path = os.fspath(nii_path)
    out_dir = os.fspath(output_path)
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise ValueError(f"nii_path must be a .nii.gz file, got a folder: {path!r}")
        raise FileNotFoundError(f"input file does not exist: {path!r}")
    if nifti_suffix(path) != ".nii.gz":
        raise ValueError(f"input must be a .nii.gz file, got {path!r}")
    size = validate_size(desired_volume)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    out_file = os.path.join(out_dir, output_name(path))
    if os.path.exists(out_file) and os.path.samefile(out_file, path):
        raise ValueError(f"output would overwrite the input file: {out_file!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_path must be a folder, got a file: {out_dir!r}")

    result = resample_volume(
        load_nifti(path), size, interpolation=interpolation, anchor=anchor, antialias=antialias
    )
    made: list[str] = []
    try:
        save_volume_into(out_dir, out_file, result, made)
    except BaseException:
        remove_empty_dirs(made)
        raise
    if debug:
        print(f"Resampled image saved at: '{out_file}'")
