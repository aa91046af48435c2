"""Every 3D medical format SimpleITK reads, as :class:`~napari_resample.io.nifti.NiftiVolume`.

NIfTI (``.nii``, ``.nii.gz``) goes through :func:`napari_resample.io.nifti.load_nifti`, which keeps
the header. NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and DICOM series (a
folder) go through SimpleITK; their voxels come in (i, j, k) order with a voxel -> RAS affine,
converted from ITK's LPS world by :mod:`napari_resample.io.itk` (the one module that reverses axes
and negates x and y). Such a volume has no NIfTI header (``header`` is None) and
``xform_code`` 1 (scanner), so that a NIfTI file written from it carries qform and sform code 1.

SimpleITK never reads a header we have not checked: NRRD and MetaImage headers are read in
Python first (:mod:`napari_resample.io.itk_headers`; data files only inside the header's folder,
:mod:`napari_resample.io.untrusted`), every slice header of a DICOM series too
(:mod:`napari_resample.io.dicom`), and the voxels they claim are checked against the bytes that
exist and the memory budget before SimpleITK allocates them. It reads in this process: the
checks make the known crash classes of its readers unreachable (docs/decisions.md).

SimpleITK is imported inside the functions: it takes ~0.3 s to import.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.memory import check_memory, format_bytes
from napari_resample.io.atomic import atomic_output
from napari_resample.io.dicom import (
    SERIES_DESCRIPTION,
    DicomSeries,
    choose_series,
    describe_series,
    is_dicom_series_folder,
    itk_message,
    list_dicom_series,
    quiet_itk,
)
from napari_resample.io.dicom_slices import check_no_slice_dropped, check_slices, read_slice_info
from napari_resample.io.header import XFORM_SCANNER, storable
from napari_resample.io.itk import array_from_image, image_from_array
from napari_resample.io.itk_headers import check_itk_header
from napari_resample.io.names import (
    ITK_SUFFIXES,
    VOLUME_SUFFIXES,
    is_zarr_name,
    nifti_suffix,
    volume_suffix,
)
from napari_resample.io.nifti import NiftiVolume, apply_scaling, load_nifti, native, spatial_volume
from napari_resample.io.niizarr_read import load_niizarr
from napari_resample.io.untrusted import check_regular_file

__all__ = [
    "ITK_OUTPUT_SUFFIXES",
    "SERIES_DESCRIPTION",
    "DicomSeries",
    "describe_series",
    "is_dicom_series_folder",
    "is_volume_input",
    "list_dicom_series",
    "load_volume",
    "read_itk_information",
    "save_itk",
]

#: Suffixes :func:`save_itk` writes (single files; ``.nhdr`` / ``.mhd`` would need two).
ITK_OUTPUT_SUFFIXES: tuple[str, ...] = (".nrrd", ".mha")
_FORMAT_NAMES = {".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}


def load_volume(
    path: str | os.PathLike[str], *, series: str | None = None, max_memory: int | None = None
) -> NiftiVolume:
    """Read a 3D volume from NIfTI, NRRD, MetaImage or a folder holding a DICOM series.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` / ``.nii.gz`` file (read by :func:`napari_resample.io.nifti.load_nifti`) or a
        ``.nii.zarr`` folder (:func:`napari_resample.io.niizarr_read.load_niizarr`), header
        kept, a ``.nrrd`` / ``.nhdr`` / ``.mha`` / ``.mhd`` file, or a folder of DICOM files.
    series : str, optional
        The SeriesInstanceUID to read when the folder holds several series.
    max_memory : int, optional
        Bytes the voxels of a NRRD, MetaImage or DICOM input may take while SimpleITK reads
        them (its image and the array copied from it); by default only the memory available
        now bounds them.

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
        Naming the file: a format that is not one of these, something other than a regular
        file or a folder (a FIFO, a device), a header refused by
        :func:`~napari_resample.io.itk_headers.check_itk_header` (fields, data files, bytes),
        a file SimpleITK cannot read, an image that is not one 3D volume (2D, or 4D with more
        than one volume) or has several components per voxel (RGB, vectors), a folder with no
        DICOM series, several series and no *series*, a *series* the folder does not hold, or
        DICOM slices that are not one volume (:mod:`napari_resample.io.dicom`).
    MemoryError
        If the voxels of a NRRD, MetaImage or DICOM input exceed *max_memory* or the memory
        available now; nothing large was allocated.

    Warns
    -----
    UserWarning
        When the slices of a DICOM series are not evenly spaced (naming the folder, the
        largest gap and the typical step; also in ``ignored``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path!r}")
    if os.path.isdir(path) and not is_zarr_name(path):
        volume = _load_dicom(path, series, max_memory)
        for note in volume.ignored:
            warnings.warn(note, UserWarning, stacklevel=2)
        return volume
    if series is not None:
        raise ValueError(f"series={series!r} applies to a folder of DICOM files, not {path!r}")
    if is_zarr_name(path):
        return load_niizarr(path)
    check_regular_file(path, "the input")
    if nifti_suffix(path) is not None:
        return load_nifti(path)
    suffix = volume_suffix(path)
    if suffix not in ITK_SUFFIXES:
        raise ValueError(
            f"cannot read {path!r}: expected a file ending in {', '.join(VOLUME_SUFFIXES)} "
            "or a folder of DICOM files"
        )
    return _load_itk_file(path, _FORMAT_NAMES[suffix], max_memory)


def read_itk_information(path: str, kind: str = "an image") -> Any:
    """A SimpleITK reader of *path* that has read its header (size, spacing, origin, direction,
    components), not its voxels: what a caller checks before anything large is read. A NRRD or
    MetaImage header is checked in Python first
    (:func:`~napari_resample.io.itk_headers.check_itk_header`).

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
        ITK's error, when SimpleITK cannot read the header; the refusals of
        :func:`~napari_resample.io.itk_headers.check_itk_header`.
    """
    import SimpleITK as sitk

    if kind in ("NRRD", "MetaImage"):
        check_itk_header(path, kind)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _cannot_read(path, kind, exc) from exc
    return reader


def check_voxel_budget(nbytes: int, max_memory: int | None, what: str) -> None:
    """Refuse reading *nbytes* of voxels through SimpleITK (twice: its image and our array)
    over *max_memory* or the memory available now; MemoryError naming *what* and the sizes."""
    needed = 2 * nbytes
    if max_memory is not None and needed > max_memory:
        raise MemoryError(
            f"{what} needs {format_bytes(needed)} ({needed} bytes: its voxels twice, "
            f"SimpleITK's image and the array), over max_memory {format_bytes(max_memory)}"
        )
    check_memory(needed, what)


def _load_itk_file(path: str, kind: str, max_memory: int | None) -> NiftiVolume:
    what = f"reading the voxels of {path!r}"
    claimed = check_itk_header(  # before SimpleITK parses a byte of it
        path, kind, lambda nbytes: check_voxel_budget(nbytes, max_memory, what)
    )
    reader = read_itk_information(path, kind)
    _check_information(
        path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents()
    )
    if tuple(reader.GetSize()) != claimed.shape:  # SimpleITK read another header than ours
        raise ValueError(
            f"cannot read {path!r} as {kind}: SimpleITK reads size {tuple(reader.GetSize())} "
            f"where the header says {claimed.shape}"
        )
    try:
        with quiet_itk():
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
    geometry = (*image.GetSpacing(), *image.GetOrigin(), *image.GetDirection())
    if not (np.all(np.isfinite(geometry)) and min(image.GetSpacing()) > 0):
        raise ValueError(
            f"impossible geometry in {path!r}: spacing {image.GetSpacing()}, origin "
            f"{image.GetOrigin()}, direction {image.GetDirection()}"
        )
    data, affine = array_from_image(image)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported voxel type {image.GetPixelIDTypeAsString()} in {path!r}")
    return NiftiVolume(data, affine, None, path=path, ignored=ignored, xform_code=XFORM_SCANNER)


def _cannot_read(path: str, kind: str, exc: BaseException) -> ValueError:
    """What SimpleITK's failure *exc* to read *path* as *kind* raises."""
    return ValueError(f"cannot read {path!r} as {kind}: {itk_message(exc)}")


def _load_dicom(folder: str, series: str | None, max_memory: int | None) -> NiftiVolume:
    import SimpleITK as sitk

    uid = choose_series(folder, series)
    with quiet_itk():
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
    check_no_slice_dropped(folder, uid, files)
    slices = [read_slice_info(f, folder) for f in files]
    notes = check_slices(folder, slices)
    first = slices[0]
    shape = (*first.size[:2], sum(s.size[2] if len(s.size) > 2 else 1 for s in slices))
    nbytes = int(np.prod(shape, dtype=np.int64)) * first.itemsize
    what = f"reading the DICOM series in {folder!r} ({shape[0]} x {shape[1]} x {shape[2]})"
    check_voxel_budget(nbytes, max_memory, what)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with quiet_itk():
            image = reader.Execute()
    except MemoryError as exc:
        raise MemoryError(f"not enough memory to read the DICOM series in {folder!r}") from exc
    except RuntimeError as exc:
        raise ValueError(
            f"cannot read the DICOM series {uid!r} in {folder!r}: {itk_message(exc)}"
        ) from exc
    _check_information(
        folder, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel()
    )
    ignored = tuple(
        f"{note}; SimpleITK placed them {image.GetSpacing()[2]:g} mm apart, so positions "
        "across slices are approximate"
        for note in notes
    )
    return _volume_from_image(image, folder, ignored)


def is_volume_input(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is something :func:`load_volume` reads: an existing file with a volume
    suffix, a ``.nii.zarr`` folder holding a Zarr group, or a folder that is one DICOM series
    by the rule of DICOM folders (:func:`napari_resample.io.dicom.is_dicom_series_folder`).
    Cheap; never raises.

    Examples
    --------
    >>> is_volume_input("missing.nrrd")
    False
    """
    try:
        if os.path.isdir(path):
            if is_zarr_name(path):
                return os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(
                    os.path.join(path, ".zgroup")
                )
            return is_dicom_series_folder(path)
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
