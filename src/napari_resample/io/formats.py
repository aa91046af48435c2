"""Every 3D medical format SimpleITK reads, as :class:`~napari_resample.io.nifti.NiftiVolume`.

NIfTI (``.nii``, ``.nii.gz``) goes through :func:`napari_resample.io.nifti.load_nifti`, which keeps
the header. NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and DICOM series (a
folder) go through SimpleITK; their voxels come in (i, j, k) order with a voxel -> RAS affine,
converted from ITK's LPS world by :mod:`napari_resample.io.itk` (the one module that reverses axes
and negates x and y). Such a volume has no NIfTI header (``header`` is None) and
``xform_code`` 1 (scanner), so that a NIfTI file written from it carries qform and sform code 1.

SimpleITK is imported inside the functions: it takes ~0.3 s to import.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_resample.io.atomic import atomic_output
from napari_resample.io.header import XFORM_SCANNER, storable
from napari_resample.io.itk import array_from_image, image_from_array
from napari_resample.io.names import ITK_SUFFIXES, VOLUME_SUFFIXES, nifti_suffix, volume_suffix
from napari_resample.io.nifti import NiftiVolume, apply_scaling, load_nifti, native, spatial_volume

#: Suffixes :func:`save_itk` writes (single files; ``.nhdr`` / ``.mhd`` would need two).
ITK_OUTPUT_SUFFIXES: tuple[str, ...] = (".nrrd", ".mha")
#: DICOM tag of the series description (shown to tell series apart).
SERIES_DESCRIPTION = "0008|103e"
#: Files sniffed by :func:`looks_like_dicom_folder` before it gives up.
_SNIFFED_FILES = 16
_FORMAT_NAMES = {".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}


class DicomSeries(NamedTuple):
    """One DICOM series in a folder, as :func:`list_dicom_series` finds it."""

    uid: str
    description: str
    n_files: int


def load_volume(path: str | os.PathLike[str], *, series: str | None = None) -> NiftiVolume:
    """Read a 3D volume from NIfTI, NRRD, MetaImage or a folder holding a DICOM series.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` / ``.nii.gz`` file (read by :func:`napari_resample.io.nifti.load_nifti`, header
        kept), a ``.nrrd`` / ``.nhdr`` / ``.mha`` / ``.mhd`` file, or a folder of DICOM files.
    series : str, optional
        The SeriesInstanceUID to read when the folder holds several series.

    Returns
    -------
    NiftiVolume
        ``data`` (I, J, K) in the stored type (SimpleITK keeps it); ``affine`` voxel -> RAS mm;
        for non-NIfTI input ``header`` None, ``xform_code`` 1 (scanner), no scaling. DICOM
        voxels are the rescaled values (RescaleSlope / RescaleIntercept are applied by
        SimpleITK and GDCM, so CT is in Hounsfield units; the type is widened when needed);
        ``ignored`` notes slices that are not evenly spaced.

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        Naming the file: a format that is not one of these, a file SimpleITK cannot read, an
        image that is not one 3D volume (2D, or 4D with more than one volume) or has several
        components per voxel (RGB, vectors), a folder with no DICOM series, several series and
        no *series*, or a *series* the folder does not hold.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path!r}")
    if os.path.isdir(path):
        return _load_dicom(path, series)
    if series is not None:
        raise ValueError(f"series={series!r} applies to a folder of DICOM files, not {path!r}")
    if nifti_suffix(path) is not None:
        return load_nifti(path)
    suffix = volume_suffix(path)
    if suffix not in ITK_SUFFIXES:
        raise ValueError(
            f"cannot read {path!r}: expected a file ending in {', '.join(VOLUME_SUFFIXES)} "
            "or a folder of DICOM files"
        )
    return _load_itk_file(path, _FORMAT_NAMES[suffix])


def read_itk_information(path: str, kind: str = "an image") -> Any:
    """A SimpleITK reader of *path* that has read its header (size, spacing, origin, direction,
    components), not its voxels: what a caller checks before anything large is read.

    Parameters
    ----------
    path : str
        A file SimpleITK reads (NRRD, MetaImage, ...).
    kind : str
        What the file was read as, for the message: ``"NRRD"``, ``"MetaImage"``.

    Raises
    ------
    ValueError
        ``cannot read <path> as <kind>: <reason>``, the reason being the useful line of
        ITK's error, when SimpleITK cannot read the header.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _cannot_read(path, kind, exc) from exc
    return reader


def _load_itk_file(path: str, kind: str) -> NiftiVolume:
    reader = read_itk_information(path, kind)  # header only: refuse before reading voxels
    _check_information(
        path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents()
    )
    try:
        image = reader.Execute()
    except MemoryError as exc:
        raise MemoryError(f"not enough memory to read {path!r} (size {reader.GetSize()})") from exc
    except RuntimeError as exc:
        raise _cannot_read(path, kind, exc) from exc
    return _volume_from_image(image, path)


def _check_information(path: str, dimension: int, size: tuple[int, ...], components: int) -> None:
    if components != 1:
        raise ValueError(
            f"{path!r} holds {components} components per voxel (an RGB or vector image, "
            f"size {tuple(size)}); only single-valued (scalar) volumes can be resampled"
        )
    if dimension < 3 or (dimension > 3 and any(int(n) != 1 for n in size[3:])):
        raise ValueError(
            f"input must be a 3D volume, got a {dimension}D image of size {tuple(size)} "
            f"in {path!r}"
        )


def _volume_from_image(image: Any, path: str, ignored: tuple[str, ...] = ()) -> NiftiVolume:
    import SimpleITK as sitk

    if image.GetDimension() > 3:  # (X, Y, Z, 1, ...): the one volume it holds
        extent = list(image.GetSize()[:3]) + [0] * (image.GetDimension() - 3)
        image = sitk.Extract(image, extent, [0] * image.GetDimension())
    data, affine = array_from_image(image)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported voxel type {image.GetPixelIDTypeAsString()} in {path!r}")
    return NiftiVolume(data, affine, None, path=path, ignored=ignored, xform_code=XFORM_SCANNER)


def _cannot_read(path: str, kind: str, exc: BaseException) -> ValueError:
    """What SimpleITK's failure *exc* to read *path* as *kind* raises."""
    return ValueError(f"cannot read {path!r} as {kind}: {_itk_message(exc)}")


def _itk_message(exc: BaseException) -> str:
    """The useful line of an ITK exception (they hold the C++ file, line and a description)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("itk::error"):
            return line.split(":", 3)[-1].strip() or line
    return lines[-1] if lines else type(exc).__name__


def list_dicom_series(folder: str | os.PathLike[str]) -> list[DicomSeries]:
    """The DICOM series in *folder* (not its sub-folders), as GDCM groups them.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of DicomSeries
        ``(uid, description, n_files)`` per series: its SeriesInstanceUID, SeriesDescription
        (0008|103e, "" when absent) and number of files; empty when the folder holds none.

    Raises
    ------
    FileNotFoundError
        If *folder* is not a folder.
    """
    import SimpleITK as sitk

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder: {folder!r}")
    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
        found.append(DicomSeries(uid, _description(files[0]) if files else "", len(files)))
    return found


def _description(dicom_file: str) -> str:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(dicom_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    if not reader.HasMetaDataKey(SERIES_DESCRIPTION):
        return ""
    return reader.GetMetaData(SERIES_DESCRIPTION).strip()


def describe_series(found: list[DicomSeries]) -> str:
    """One line per series, for messages and choosers: ``UID 'description' (N files)``.

    Examples
    --------
    >>> describe_series([DicomSeries("1.2.3", "T1 axial", 40)])
    "1.2.3 'T1 axial' (40 files)"
    """
    return "\n".join(
        f"{s.uid} {s.description!r} ({s.n_files} file{'s' if s.n_files != 1 else ''})"
        for s in found
    )


def _load_dicom(folder: str, series: str | None) -> NiftiVolume:
    import SimpleITK as sitk

    found = list_dicom_series(folder)
    if not found:
        raise ValueError(f"no DICOM series found in the folder {folder!r}")
    if series is None:
        if len(found) > 1:
            raise ValueError(
                f"the folder {folder!r} holds {len(found)} DICOM series; choose one with "
                f"series=UID:\n{describe_series(found)}"
            )
        series = found[0].uid
    elif series not in {s.uid for s in found}:
        raise ValueError(
            f"no DICOM series {series!r} in the folder {folder!r}; it holds:\n"
            f"{describe_series(found)}"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series))
    try:
        image = reader.Execute()
    except MemoryError as exc:
        raise MemoryError(f"not enough memory to read the DICOM series in {folder!r}") from exc
    except RuntimeError as exc:
        raise ValueError(
            f"cannot read the DICOM series {series!r} in {folder!r}: {_itk_message(exc)}"
        ) from exc
    _check_information(
        folder, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel()
    )
    ignored: tuple[str, ...] = ()
    if image.HasMetaDataKey("ITK_non_uniform_sampling_deviation"):
        ignored = (
            f"the slices of the DICOM series in {folder!r} are not evenly spaced; SimpleITK "
            f"placed them {image.GetSpacing()[2]:g} mm apart, so positions across slices are "
            "approximate",
        )
    return _volume_from_image(image, folder, ignored)


def looks_like_dicom_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether *folder* seems to hold DICOM files: cheap (no SimpleITK, a few short reads).

    Up to 16 of its files (hidden ones, DICOMDIR indexes and files with a volume suffix
    skipped) are sniffed for the DICOM Part 10 marker (``DICM`` at byte 128) or, for files
    without the preamble, a first element of group 0008. Whether they form an image series is
    known only to GDCM (:func:`list_dicom_series`).
    """
    try:
        entries = os.scandir(folder)
    except OSError:
        return False
    sniffed = 0
    with entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.upper().startswith("DICOMDIR"):
                continue  # hidden, or an index of a whole file set (no voxels)
            if volume_suffix(name) is not None:
                continue
            try:
                if not entry.is_file():
                    continue
                with open(entry.path, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if head[128:132] == b"DICM" or head[:2] == b"\x08\x00":
                return True
            sniffed += 1
            if sniffed >= _SNIFFED_FILES:
                return False
    return False


def is_volume_input(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is something :func:`load_volume` reads: an existing file with a volume
    suffix, or a folder that looks like it holds DICOM files (:func:`looks_like_dicom_folder`;
    a folder of NIfTI files is a dataset, not a series). Cheap; never raises.

    Examples
    --------
    >>> is_volume_input("missing.nrrd")
    False
    """
    try:
        if os.path.isdir(path):
            return looks_like_dicom_folder(path)
        return volume_suffix(path) is not None and os.path.isfile(path)
    except (OSError, TypeError, ValueError):
        return False


def save_itk(
    path: str | os.PathLike[str],
    volume: NiftiVolume | ArrayLike,
    affine: ArrayLike | None = None,
) -> str:
    """Write a volume as NRRD (``.nrrd``) or MetaImage (``.mha``) with SimpleITK, compressed
    and atomically (a temporary file beside *path*, renamed into place when complete).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.nrrd`` or ``.mha``; its folder must exist.
    volume : NiftiVolume or (I, J, K) array_like
        The voxels (a NiftiVolume's scaling is applied: these formats hold none; an extra axis
        of size 1 is dropped). Booleans are written as uint8, float16 as float32.
    affine : (4, 4) array_like, voxel (i, j, k) -> RAS mm
        Required with an array, not allowed with a NiftiVolume (which has its own).

    Returns
    -------
    str
        *path*, as a string.

    Raises
    ------
    ValueError
        For another suffix, data that is not one 3D volume, or an affine with shear (an ITK
        image holds orthonormal directions only).
    """
    import SimpleITK as sitk

    path = os.fspath(path)
    suffix = volume_suffix(path)
    if suffix not in ITK_OUTPUT_SUFFIXES:
        raise ValueError(f"save_itk writes {' or '.join(ITK_OUTPUT_SUFFIXES)} files, got {path!r}")
    if isinstance(volume, NiftiVolume):
        if affine is not None:
            raise ValueError("pass an affine with an array only: a NiftiVolume has its own")
        data = apply_scaling(volume.data, volume.slope, volume.inter)
        affine = volume.affine
    elif affine is None:
        raise ValueError(f"writing an array to {path!r} needs its affine (voxel -> RAS)")
    else:
        data = np.asarray(volume)
    values = _writable(spatial_volume(np.asarray(data), path))
    try:
        image = image_from_array(values, affine)
    except ValueError as exc:
        raise ValueError(f"cannot write {path!r}: {exc}") from exc
    with atomic_output(path, suffix) as tmp:
        sitk.WriteImage(image, tmp, useCompression=True)
    return path


def _writable(data: NDArray) -> NDArray:
    """*data* in a native-order type SimpleITK writes (bool as uint8, float16 as float32)."""
    return native(storable(data))
