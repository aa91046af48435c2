"""File names: which files are volumes (NIfTI, NRRD, MetaImage), what a result is called.

Pure string rules: nothing here touches the file system (whether a folder holds a DICOM series
is :func:`napari_resample.io.formats.is_volume_input`'s question).

Every front door (``resampling()``, the dataset runner, the command line, the napari reader,
writer and widget) names files through these functions.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

from napari_resample.engine.options import check_choice

#: NIfTI suffixes (matched case-insensitively; ``.nii.gz`` before ``.nii``). A ``.nii.zarr``
#: (NIfTI-Zarr, :mod:`napari_resample.io.niizarr_write`) is a folder, the others files.
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nii.zarr")
#: The suffix of a NIfTI-Zarr volume (a folder).
ZARR_SUFFIX = ".nii.zarr"
#: Suffixes of the other single-volume formats read through SimpleITK: NRRD (``.nrrd``, and
#: ``.nhdr`` with detached data) and MetaImage (``.mha``, and ``.mhd`` with detached data).
ITK_SUFFIXES: tuple[str, ...] = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Every volume file suffix this package reads, longest first per format.
VOLUME_SUFFIXES: tuple[str, ...] = NIFTI_SUFFIXES + ITK_SUFFIXES
#: What a resampled file's name ends with: ``<PREFIX>_resampled.nii.gz``.
OUTPUT_SUFFIX = "_resampled.nii.gz"
#: What a file resampled onto a reference grid is called: ``<PREFIX>_resampled_to_ref.nii.gz``.
REFERENCE_SUFFIX = "_resampled_to_ref.nii.gz"

OutputFormat = Literal["nii.gz", "nii.zarr"]
#: What the file front doors write: ``"nii.gz"`` (the default) or ``"nii.zarr"`` (NIfTI-Zarr).
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)


def check_output_format(value: object) -> OutputFormat:
    """*value* if it is one of :data:`OUTPUT_FORMATS`, else ValueError naming it.

    Examples
    --------
    >>> check_output_format("nii.zarr")
    'nii.zarr'
    >>> check_output_format("zarr")
    Traceback (most recent call last):
    ...
    ValueError: output_format must be one of ('nii.gz', 'nii.zarr'), got 'zarr'
    """
    check_choice("output_format", value, OUTPUT_FORMATS)
    return value  # type: ignore[return-value]  # checked just above


def output_suffix(reference: bool = False, output_format: str = "nii.gz") -> str:
    """What a result's name ends with: ``_resampled`` (``_resampled_to_ref`` for a *reference*
    grid) and the suffix of *output_format*.

    Examples
    --------
    >>> output_suffix(), output_suffix(True, "nii.zarr")
    ('_resampled.nii.gz', '_resampled_to_ref.nii.zarr')
    """
    base = REFERENCE_SUFFIX if reference else OUTPUT_SUFFIX
    return base[: -len(".nii.gz")] + "." + check_output_format(output_format)


def is_zarr_name(path: str | os.PathLike[str]) -> bool:
    """Whether *path* names a NIfTI-Zarr volume (``.nii.zarr``, a folder), case-insensitively.

    Examples
    --------
    >>> is_zarr_name("out/ct_resampled.NII.ZARR/"), is_zarr_name("ct.nii.gz")
    (True, False)
    """
    return nifti_suffix(path) == ZARR_SUFFIX


def nifti_suffix(path: str | os.PathLike[str]) -> str | None:
    """``".nii.gz"``, ``".nii"`` or ``".nii.zarr"`` if *path* names a NIfTI volume
    (case-insensitive; a trailing separator of a folder ignored), else None.

    Examples
    --------
    >>> nifti_suffix("scan_042.NII.GZ"), nifti_suffix("scan.nii"), nifti_suffix("scan.gz")
    ('.nii.gz', '.nii', None)
    >>> nifti_suffix("big.nii.zarr/")
    '.nii.zarr'
    """
    name = _trimmed(path)
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def _trimmed(path: str | os.PathLike[str]) -> str:
    """*path* in lower case without the trailing separators a folder's name may have."""
    name = os.fspath(path).lower()
    return name.rstrip("/" + os.sep) or name


def strip_nifti_suffix(path: str | os.PathLike[str]) -> str:
    """The file name of *path* without its folder and NIfTI suffix.

    Examples
    --------
    >>> strip_nifti_suffix("scans/scan_042.nii.gz"), strip_nifti_suffix("notes.txt")
    ('scan_042', 'notes.txt')
    """
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    suffix = nifti_suffix(name)
    return name[: -len(suffix)] if suffix else name


def volume_suffix(path: str | os.PathLike[str]) -> str | None:
    """The volume file suffix of *path* (one of :data:`VOLUME_SUFFIXES`, lower case), or None.

    Examples
    --------
    >>> volume_suffix("a/CT.NRRD"), volume_suffix("b.mhd"), volume_suffix("c.nii.gz")
    ('.nrrd', '.mhd', '.nii.gz')
    >>> volume_suffix("d.dcm") is None
    True
    """
    name = _trimmed(path)
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def volume_name(path: str | os.PathLike[str]) -> str:
    """The PREFIX of a volume's outputs: the file name without its folder and volume suffix,
    or the name of a folder (a DICOM series); other names are kept whole.

    Examples
    --------
    >>> volume_name("scans/scan_042.nii.gz"), volume_name("ct.mha"), volume_name("dicom/CT5N/")
    ('scan_042', 'ct', 'CT5N')
    """
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


def output_name(nii_path: str | os.PathLike[str], suffix: str = OUTPUT_SUFFIX) -> str:
    """File name of the result: ``<PREFIX>_resampled.nii.gz`` (or ``<PREFIX>`` + *suffix*,
    e.g. :data:`REFERENCE_SUFFIX`), the PREFIX by :func:`volume_name`.

    Examples
    --------
    >>> output_name("scans/scan_042.nii.gz"), output_name("ct.nii", REFERENCE_SUFFIX)
    ('scan_042_resampled.nii.gz', 'ct_resampled_to_ref.nii.gz')
    >>> output_name("scans/CT5N"), output_name("big.nii.zarr", output_suffix(False, "nii.zarr"))
    ('CT5N_resampled.nii.gz', 'big_resampled.nii.zarr')
    """
    return volume_name(nii_path) + suffix


def is_output_name(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is named like a result of this package (``*_resampled.nii.gz`` or
    ``*_resampled_to_ref.nii.gz``, or the same in ``.nii.zarr``).

    Examples
    --------
    >>> is_output_name("out/scan_resampled.nii.gz"), is_output_name("scan.nii.gz")
    (True, False)
    >>> is_output_name("out/scan_resampled_to_ref.nii.gz")
    True
    """
    name = os.path.basename(_trimmed(path))
    return name.endswith(
        tuple(output_suffix(ref, fmt) for ref in (False, True) for fmt in OUTPUT_FORMATS)
    )
