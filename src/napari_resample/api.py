"""The file-level front doors: ``resampling()`` (the specification's contract: a ``.nii.gz``
file), and ``resample_to_spacing()`` / ``resample_to_reference()`` for the two other kinds of
grid, which read every format :func:`napari_resample.io.formats.load_volume` reads (NIfTI, NRRD,
MetaImage, a DICOM series folder) and always write NIfTI."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

from napari_resample.engine.memory import parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    AUTO_INTERPOLATIONS,
    Anchor,
    AutoInterpolation,
    check_choice,
    validate_size,
    validate_spacing,
)
from napari_resample.io.atomic import make_dirs, remove_empty_dirs, remove_stale_temps
from napari_resample.io.formats import is_volume_input
from napari_resample.io.names import (
    VOLUME_SUFFIXES,
    ZARR_SUFFIX,
    OutputFormat,
    check_output_format,
    nifti_suffix,
    output_name,
    output_suffix,
    volume_suffix,
)
from napari_resample.pipeline.reference import reference_grid
from napari_resample.pipeline.run import FileResult, resample_file
from napari_resample.pipeline.targets import (
    GridTarget,
    SizeTarget,
    SpacingTarget,
    Target,
    describe_spacing,
)


def resampling(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    desired_volume: Sequence[int],
    debug: bool = False,
    *,
    interpolation: AutoInterpolation = "auto",
    anchor: Anchor = "origin",
    antialias: bool = False,
    max_memory: int | str | None = None,
    check_disk: bool = True,
    output_format: OutputFormat = "nii.gz",
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
        is accepted), or a ``.nii.zarr`` NIfTI-Zarr folder. It is never modified.
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    desired_volume : (3,) sequence of int
        Target size ``(X, Y, Z)``, in the file's voxel order (i, j, k).
    debug : bool
        If True, print ``Resampled image saved at: '<path>'``.
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        ``"auto"`` (default): cubic B-spline for images (the specification's interpolation,
        exactly) and label-preserving voting for label maps (the rule of
        :mod:`napari_resample.engine.labels`: an integer type without scaling, and a label
        intent or few distinct values; a B-spline would invent labels, docs/decisions.md, D22).
        Or one for every volume: ``"bspline"``, trilinear, nearest neighbour or ``"label"``;
        ``"bspline"`` and ``"linear"`` on a label map warn.
    anchor : {"origin", "center"}
        ``"origin"`` (default) keeps the first voxel's centre; ``"center"`` keeps the outer edges
        of the field of view.
    antialias : bool
        Gaussian smoothing along downsampled axes before sampling (default False).
    max_memory : int or str, optional
        Memory the work may use (``"2G"``, ``"800M"`` or bytes); default: half of the memory
        available now. NIfTI files are streamed plane by plane (reading, resampling and writing
        at once), so volumes larger than memory work; when even a window of planes cannot fit,
        MemoryError says so before anything is written. What cannot be streamed (float volumes
        with NaN or Inf, oblique grids, other formats) must fit it in memory.
    check_disk : bool
        Refuse (OSError, before any work) a result whose uncompressed size is larger than the
        free space of *output_path* (default True); False writes anyway (a ``.nii.gz`` is often
        smaller than the bound).
    output_format : {"nii.gz", "nii.zarr"}
        ``"nii.gz"`` (default) writes ``<PREFIX>_resampled.nii.gz``; ``"nii.zarr"`` writes
        ``<PREFIX>_resampled.nii.zarr``, a NIfTI-Zarr folder (the same header and voxels,
        chunked, with a multiscale pyramid; docs/niizarr.md), chunk by chunk within
        *max_memory*.

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
        If the work cannot fit *max_memory* even streamed plane by plane (or, for a volume the
        in-memory pipeline must take, in memory); the message gives both sizes, raised before
        anything is written.
    OSError
        If the output cannot be written (a full disk: the path and the free space), or, with
        *check_disk*, before any work when its uncompressed size is over the free space of its
        folder (the result, both sizes and the folder).

    Warns
    -----
    UserWarning
        For ``"bspline"`` or ``"linear"`` on a volume the Labels rule calls a label map: the
        file and the rule that fired (its intent code, or its number of distinct values and
        share of equal neighbours). When the image has a single voxel along an axis the target
        makes longer (a 64 x 64 x 1 slice to 32 slices repeats the one slice): the file and the
        axis.

    Examples
    --------
    >>> resampling("scans/patient_001.nii.gz", "resampled/", (224, 224, 128))  # doctest: +SKIP
    """
    suffix = output_suffix(False, check_output_format(output_format))
    path, out_dir, out_file = _check_paths(nii_path, output_path, suffix, (".nii.gz", ZARR_SUFFIX))
    size = validate_size(desired_volume)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    target = SizeTarget(size, anchor, bool(antialias))
    _run(path, out_dir, out_file, target, interpolation, None, max_memory, check_disk)
    if debug:
        print(f"Resampled image saved at: '{out_file}'")


def resample_to_spacing(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    spacing: Sequence[float],
    debug: bool = False,
    *,
    interpolation: AutoInterpolation = "auto",
    anchor: Anchor = "origin",
    antialias: bool = False,
    series: str | None = None,
    max_memory: int | str | None = None,
    check_disk: bool = True,
    output_format: OutputFormat = "nii.gz",
) -> str:
    """Resample a 3D volume to a target voxel spacing, keeping its field of view.

    The size per axis is ``max(1, round(size * old_spacing / spacing))``; the field of view is
    kept exactly, as in :func:`resampling`, so the spacing achieved is
    ``old_spacing * old_size / new_size``: within half a voxel over the field of view of the
    request. The result is written to ``<output_path>/<PREFIX>_resampled.nii.gz``, always
    NIfTI-1 (see *nii_path*).

    Parameters
    ----------
    nii_path : str or os.PathLike
        The 3D image, never modified: a NIfTI volume (``.nii.gz``, ``.nii``, a ``.nii.zarr``
        folder; its header is kept),
        a NRRD or MetaImage file (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) or a folder holding
        a DICOM series (PREFIX is the folder's name). A non-NIfTI input gives a NIfTI file with
        qform and sform code 1 (scanner) at the same world positions, LPS converted to RAS.
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    spacing : (3,) sequence of float
        Target spacing in mm, in the file's voxel order (i, j, k); positive and finite.
    debug : bool
        If True, print where the result was saved, and the requested and achieved spacing.
    interpolation, anchor, antialias
        As :func:`resampling`.
    series : str, optional
        The SeriesInstanceUID to read when *nii_path* is a folder holding several DICOM series
        (the error without it lists them).
    max_memory, check_disk, output_format
        As :func:`resampling`.

    Returns
    -------
    str
        The path of the result.

    Raises
    ------
    FileNotFoundError, ValueError, MemoryError, OSError
        As :func:`resampling`, but for the formats accepted; ValueError also for a *spacing*
        that is not three positive finite numbers, a file or folder that cannot be read as one
        scalar 3D volume, or a DICOM folder with several series and no (or a wrong) *series*.

    Warns
    -----
    UserWarning
        As :func:`resampling`.

    Examples
    --------
    >>> resample_to_spacing("ct.nii.gz", "iso/", (1.0, 1.0, 1.0), debug=True)  # doctest: +SKIP
    Resampled image saved at: 'iso/ct_resampled.nii.gz'
    Spacing requested (1, 1, 1) mm, achieved (1.00112, 1.00112, 1) mm, size (358, 358, 300)
    """
    suffix = output_suffix(False, check_output_format(output_format))
    path, out_dir, out_file = _check_paths(nii_path, output_path, suffix)
    target = validate_spacing(spacing)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    result = _run(
        path,
        out_dir,
        out_file,
        SpacingTarget(target, anchor, bool(antialias)),
        interpolation,
        series,
        max_memory,
        check_disk,
    )
    if debug:
        print(f"Resampled image saved at: '{out_file}'")
        print(describe_spacing(target, result.info["spacing_achieved"], result.after["shape"]))
    return out_file


def resample_to_reference(
    nii_path: str | os.PathLike[str],
    reference_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    interpolation: AutoInterpolation = "auto",
    debug: bool = False,
    *,
    fill_value: float = 0,
    series: str | None = None,
    max_memory: int | str | None = None,
    check_disk: bool = True,
    output_format: OutputFormat = "nii.gz",
) -> str:
    """Resample a 3D volume onto the grid of a reference image.

    The result lies voxel for voxel on the reference: same shape, same affine, qform and sform
    (with their codes) and pixdim; every other header field, the data type and the scaling are
    the input's. World positions are matched in world space whatever the two orientations
    (flipped, permuted, oblique, different origins): axis-aligned grids go through the separable
    engine, oblique ones through SimpleITK. The result is written to
    ``<output_path>/<PREFIX>_resampled_to_ref.nii.gz``, always NIfTI-1.

    Parameters
    ----------
    nii_path : str or os.PathLike
        The 3D image, never modified: a NIfTI file (``.nii.gz``, ``.nii``), a NRRD or
        MetaImage file (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) or a folder holding a DICOM
        series (PREFIX is the folder's name).
    reference_path : str or os.PathLike
        The image whose grid is wanted: a NIfTI file (its header only is read), a NRRD /
        MetaImage file (its header only; output codes 1, scanner) or a folder holding one DICOM
        series (read; output codes 1).
    output_path : str or os.PathLike
        Folder for the result; created (with parents) if missing, after the inputs are checked.
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        As :func:`resampling`: ``"auto"`` (default) votes for label maps and uses cubic
        B-spline for images.
    debug : bool
        If True, print where the result was saved and how much of the reference it covers.
    fill_value : float
        Value of the output voxels outside the input's field of view (in the image's values,
        scaling applied). The data type must hold it.
    series : str, optional
        The SeriesInstanceUID to read when *nii_path* is a folder holding several DICOM series.
    max_memory : int or str, optional
        As :func:`resampling` (an oblique reference grid is resampled in memory, within it).
    check_disk, output_format
        As :func:`resampling` (``<PREFIX>_resampled_to_ref.nii.zarr`` for ``"nii.zarr"``).

    Returns
    -------
    str
        The path of the result.

    Raises
    ------
    FileNotFoundError
        If *nii_path* or *reference_path* does not exist.
    ValueError
        As :func:`resample_to_spacing`; also when the two fields of view do not overlap at all
        (the message names both files, the count that decided, 0 of N reference voxel centres
        inside the input, and their world bounds), when the reference is not
        a 3D image (or a folder of several DICOM series, listed), or when the data type cannot
        hold *fill_value*. Before any output exists.
    MemoryError, OSError
        As :func:`resampling`.
    RuntimeError
        When SimpleITK fails on an oblique grid for a reason of its own (ValueError for data it
        refuses): the file and SimpleITK's reason.

    Warns
    -----
    UserWarning
        When the input covers under 50% of the reference's field of view (with the percentage);
        for ``"bspline"`` or ``"linear"`` on a label map and for a single-voxel axis the
        reference samples more than once (as :func:`resampling`).

    Examples
    --------
    >>> resample_to_reference("seg.nii.gz", "t1.nii.gz", "out/", "label")  # doctest: +SKIP
    'out/seg_resampled_to_ref.nii.gz'
    """
    suffix = output_suffix(True, check_output_format(output_format))
    path, out_dir, out_file = _check_paths(nii_path, output_path, suffix)
    check_choice("interpolation", interpolation, AUTO_INTERPOLATIONS)
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
        raise ValueError(f"fill_value must be a number, got {fill_value!r}")
    grid = reference_grid(reference_path)
    result = _run(
        path,
        out_dir,
        out_file,
        GridTarget(grid, float(fill_value)),
        interpolation,
        series,
        max_memory,
        check_disk,
    )
    if debug:
        print(f"Resampled image saved at: '{out_file}'")
        overlap = result.info["overlap"]
        print(f"The input covers {100 * overlap:.1f}% of the reference's field of view")
    return out_file


def _check_paths(
    nii_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    suffix: str,
    only: tuple[str, ...] | None = None,
) -> tuple[str, str, str]:
    """``(input, output folder, output file)`` checked: the input exists and is a NIfTI volume
    with one of the suffixes *only* if given, else anything :func:`load_volume` reads (a volume
    file, a NIfTI-Zarr or a DICOM folder); the output folder is not a file; the output is not
    the input."""
    path = os.fspath(nii_path)
    out_dir = os.fspath(output_path)
    if only is not None:
        _check_nifti_input(path, only)
    elif not is_volume_input(path):
        _refuse_input(path)
    out_file = os.path.join(out_dir, output_name(path, suffix))
    if os.path.exists(out_file) and os.path.samefile(out_file, path):
        raise ValueError(f"output would overwrite the input file: {out_file!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_path must be a folder, got a file: {out_dir!r}")
    return path, out_dir, out_file


def _check_nifti_input(path: str, only: tuple[str, ...]) -> None:
    suffix = nifti_suffix(path)
    if suffix == ZARR_SUFFIX and suffix in only:
        if not os.path.exists(path):
            raise FileNotFoundError(f"input does not exist: {path!r}")
        if not is_volume_input(path):
            raise ValueError(f"input must be a NIfTI-Zarr folder (a Zarr group), got {path!r}")
        return
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise ValueError(f"nii_path must be a NIfTI file, got a folder: {path!r}")
        raise FileNotFoundError(f"input file does not exist: {path!r}")
    if suffix not in only:
        also = f" (or a {' or '.join(only[1:])} folder)" if only[1:] else ""
        raise ValueError(f"input must be a {only[0]} file, got {path!r}{also}")


def _refuse_input(path: str) -> None:
    """Raise the error that says why *path* is not a volume :func:`load_volume` reads."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"input does not exist: {path!r}")
    if os.path.isdir(path):
        raise ValueError(
            f"the input folder {path!r} holds no DICOM file (a single volume is "
            "expected: a file, or a folder holding a DICOM series)"
        )
    if volume_suffix(path) is None:
        raise ValueError(
            f"input must be a file ending in {', '.join(VOLUME_SUFFIXES)} or a folder holding a "
            f"DICOM series, got {path!r}"
        )
    raise ValueError(f"input is not a regular file: {path!r}")


def _run(
    path: str,
    out_dir: str,
    out_file: str,
    target: Target,
    interpolation: AutoInterpolation,
    series: str | None,
    max_memory: int | str | None,
    check_disk: bool,
) -> FileResult:
    """Resample into *out_file* (:func:`_pipeline.resample_file`), making *out_dir* first and
    removing the folders made for it if that fails."""
    if max_memory is not None:
        parse_bytes(max_memory)  # a bad value is refused before anything is made
    made: list[str] = []
    try:
        for attempt in range(_FOLDER_RETRIES):
            make_dirs(out_dir, made)
            remove_stale_temps(out_dir)
            try:
                return resample_file(
                    path,
                    out_file,
                    target,
                    interpolation=interpolation,
                    series=series,
                    max_memory=max_memory,
                    check_disk=check_disk,
                )
            except FileNotFoundError:
                # another process writing into the same new folder removed it when it failed:
                # make it again rather than lose the work (docs/decisions.md, D7)
                if os.path.isdir(out_dir) or attempt == _FOLDER_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    except BaseException:
        remove_empty_dirs(made)
        raise


#: Times :func:`_run` makes a vanished output folder again.
_FOLDER_RETRIES = 3
