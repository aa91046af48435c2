"""NIfTI volumes read and written with nibabel, keeping every header field we can.

Reading returns the *stored* voxel values (``get_unscaled``: no float64 upcast, no scaling
applied) with the header, so that a resampled file can be written back in the same on-disk type,
byte order and scaling. The header is checked before any voxel is read
(:mod:`napari_resample.io.checks`); a ``.nii.gz`` is read to the end of its gzip stream and
checked (:mod:`napari_resample.io.gzip`). Writing goes to a temporary file in the destination
folder, renamed into place only when complete (:mod:`napari_resample.io.atomic`), so a failure
never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.memory import check_memory
from napari_resample.engine.threads import engine_threads
from napari_resample.io.atomic import atomic_output, make_dirs, remove_stale_temps
from napari_resample.io.checks import (
    check_claimed_size,
    check_voxel_type,
    ignored_header_fields,
    open_checked,
    repair_unused_forms,
    usable_scaling,
    wrap_read_errors,
)
from napari_resample.io.gzip import fastest_zlib, gunzip, read_gz_fast
from napari_resample.io.gzip_write import GzipWriter
from napari_resample.io.names import nifti_suffix


@dataclass(frozen=True)
class NiftiVolume:
    """A NIfTI image as stored on disk.

    Attributes
    ----------
    data : (I, J, K) or (I, J, K, T) ndarray
        Stored voxel values in NIfTI voxel order, in the on-disk data type (possibly
        big-endian); ``scl_slope`` / ``scl_inter`` are *not* applied.
    affine : (4, 4) ndarray, voxel (i, j, k) -> RAS+ mm
        nibabel's best affine: the sform when its code is set, else the qform, else pixdim.
    header : nibabel.Nifti1Header or None
        A copy of the full header; None for a volume that did not come from a file (a napari
        layer made in a session), whose header is then made from *affine*.
    slope, inter : float
        The stored scaling (1 and 0 when the file has none).
    path : str or None
        Where the volume was read from.
    ignored : tuple of str
        What of the header was ignored or replaced on reading (an unknown units code, a
        non-finite unused field), as sentences naming the file, for a reader to report.
    xform_code : int
        The qform / sform code a header made from *affine* gets when *header* is None:
        :data:`~napari_resample.io.header.XFORM_ALIGNED` (2) for a volume made in a session,
        :data:`~napari_resample.io.header.XFORM_SCANNER` (1) for one read from NRRD,
        MetaImage or DICOM, whose world is the scanner's (:mod:`napari_resample.io.formats`).
        Not used when *header* is set.
    """

    data: NDArray
    affine: NDArray[np.float64]
    header: nib.Nifti1Header | None
    slope: float = 1.0
    inter: float = 0.0
    path: str | None = None
    ignored: tuple[str, ...] = ()
    xform_code: int = 2

    @property
    def is_scaled(self) -> bool:
        """True when the stored values need ``value * slope + inter``."""
        return (self.slope, self.inter) != (1.0, 0.0)

    def scaled_data(self) -> NDArray:
        """Voxel values with the scaling applied: float32 for scaled files, else stored type."""
        return apply_scaling(self.data, self.slope, self.inter)


def apply_scaling(stored: NDArray, slope: float, inter: float) -> NDArray:
    """Stored values with NIfTI scaling ``value * slope + inter`` applied, in float32.

    Unscaled data (slope 1, inter 0) is returned unchanged. The one definition of the
    arithmetic, so that :func:`napari_resample.plugin.layout.stored_from_display` can check
    exactness.

    Examples
    --------
    >>> apply_scaling(np.array([0, 10], dtype=np.int16), 0.5, -1.0).tolist()
    [-1.0, 4.0]
    """
    if (slope, inter) == (1.0, 0.0):
        return stored
    out = stored.astype(np.float32)
    out *= np.float32(slope)
    out += np.float32(inter)
    return out


def holds_one_volume(shape: Sequence[int]) -> bool:
    """Whether an image of *shape* is one 3D volume: 3 axes, or more whose extras are all 1."""
    return len(shape) >= 3 and all(int(n) == 1 for n in shape[3:])


def spatial_volume(data: NDArray, path: str | None = None) -> NDArray:
    """The 3D volume held by *data*: axes past the third that are all 1 are dropped.

    The one rule for what counts as a 3D volume: ``(X, Y, Z)``, ``(X, Y, Z, 1)`` and
    ``(X, Y, Z, 1, 1)`` do; ``(X, Y)`` and ``(X, Y, Z, T)`` with ``T > 1`` do not.

    Raises
    ------
    ValueError
        Naming the shape (and *path*) otherwise.

    Examples
    --------
    >>> spatial_volume(np.zeros((6, 6, 6, 1, 1))).shape
    (6, 6, 6)
    """
    return data.reshape(spatial_shape(data.shape, path))


def spatial_shape(shape: Sequence[int], path: str | None = None) -> tuple[int, int, int]:
    """The (I, J, K) of an image of *shape* that holds one 3D volume (:func:`spatial_volume`).

    Raises
    ------
    ValueError
        Naming the shape (and *path*) when it is not one volume.

    Examples
    --------
    >>> spatial_shape((6, 5, 4, 1))
    (6, 5, 4)
    """
    if holds_one_volume(shape):
        i, j, k = (int(n) for n in shape[:3])
        return i, j, k
    where = f" in {path!r}" if path else ""
    raise ValueError(f"input must be a 3D volume, got an image of shape {tuple(shape)}{where}")


def load_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI-1 or NIfTI-2 file without converting its voxel type.

    The header is checked (:func:`~napari_resample.io.checks.check_header`) before any voxel
    is read, so an impossible geometry is refused before anything is allocated or written.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (a ``.nii.zarr`` folder is
        :func:`napari_resample.io.niizarr_read.load_niizarr`'s).

    Returns
    -------
    NiftiVolume

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If the file is not a readable NIfTI image (whatever nibabel or the decompressor raised,
        named with the file), has an impossible header
        (:func:`~napari_resample.io.checks.check_header`), or holds a type we cannot resample
        (RGB, complex).
    MemoryError
        If the voxels do not fit in memory; the message names the file, shape and bytes.
    """
    path = os.fspath(path)
    if nifti_suffix(path) == ".nii.zarr":  # its reader is above this module
        raise ValueError(
            f"{path!r} is a NIfTI-Zarr folder: read it with napari_resample.io.niizarr_read."
            "load_niizarr (or napari_resample.io.formats.load_volume)"
        )
    img = open_checked(path)
    header = img.header.copy()
    ignored = tuple(repair_unused_forms(header, path))
    proxy: Any = img.dataobj
    with wrap_read_errors(path, lambda exc: _too_big(path, header, exc)):
        data = _read_unscaled(path, proxy)
        slope, inter = float(proxy.slope), float(proxy.inter)
        affine = np.array(img.affine, dtype=np.float64)
    check_voxel_type(data.dtype, path)
    slope, inter = usable_scaling(slope, inter)
    ignored += tuple(ignored_header_fields(header, path))
    return NiftiVolume(data, affine, header, slope, inter, path, ignored)


def load_nifti_grid(path: str | os.PathLike[str]) -> tuple[nib.Nifti1Header, NDArray[np.float64]]:
    """A NIfTI file's checked header and best affine, without reading its voxels (a reference
    grid needs only those); the exceptions of :func:`load_nifti`."""
    img = open_checked(os.fspath(path))
    header = img.header.copy()
    repair_unused_forms(header, os.fspath(path))
    return header, np.array(img.affine, dtype=np.float64)


def _too_big(path: str, header: nib.Nifti1Header, exc: MemoryError) -> str:
    """What a MemoryError reading the voxels of *path* says: the shape, type and bytes."""
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        need = f"{shape} voxels of {dtype} ({size:,} bytes)"
    except Exception:  # the message must not fail in turn
        need = "its voxels"
    why = f": {exc}" if str(exc) else ""
    return f"not enough memory to read {path!r}: {need} do not fit{why}"


def _read_unscaled(path: str, proxy: object) -> NDArray:
    """Stored voxel values of *proxy* (nibabel's ``get_unscaled()``), checked against the file.

    Before anything is allocated, the size the header claims must fit in the file
    (:func:`~napari_resample.io.checks.check_claimed_size`) and, for a ``.nii.gz`` (read into
    memory, where a ``.nii`` is memory-mapped), in the memory available now. A ``.nii.gz`` is
    then decompressed to the end of its gzip stream (:func:`~napari_resample.io.gzip.gunzip`),
    so a damaged file is refused instead of being read as whatever its voxel bytes decompress
    to.

    Raises
    ------
    ValueError
        The header claims more data than the file can hold, or the gzip stream is damaged.
    MemoryError
        The voxel data would not fit in the memory available now (naming the sizes).
    """
    gz = nifti_suffix(path) == ".nii.gz"
    nbytes = check_claimed_size(path, proxy, gz)
    if not gz:
        return np.asarray(proxy.get_unscaled())  # type: ignore[attr-defined]
    check_memory(nbytes, f"reading the voxel data of {path!r}")
    if _plain_proxy(proxy):
        return read_gz_fast(path, proxy)
    with open(path, "rb") as fh:  # nibabel reads only what it needs and checks no trailer
        gunzip(fh, fastest_zlib(), lambda data: None)
    return np.asarray(proxy.get_unscaled())  # type: ignore[attr-defined]


def _plain_proxy(proxy: object) -> bool:
    from nibabel.arrayproxy import ArrayProxy

    return type(proxy) is ArrayProxy and getattr(proxy, "order", "F") == "F"


def save_nifti(
    path: str | os.PathLike[str],
    data: NDArray,
    header: nib.Nifti1Header,
    *,
    slope: float = 1.0,
    inter: float = 0.0,
) -> str:
    """Write *data* with *header* atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.nii`` or ``.nii.gz``; its folder must exist.
    data : ndarray
        Stored values, cast to the header's data type (and byte order) on write.
    header : nibabel.Nifti1Header
        Written as given, except the shape, which follows *data*.
    slope, inter : float
        Scaling written to ``scl_slope`` / ``scl_inter``; ``data`` is then the unscaled values.

    Returns
    -------
    str
        *path*, as a string.
    """
    path = os.fspath(path)
    suffix = nifti_suffix(path)
    if suffix not in (".nii", ".nii.gz"):  # a .nii.zarr: napari_resample.io.volume_io
        raise ValueError(f"output file must end with .nii or .nii.gz, got {path!r}")
    img = image_to_write(data, header, slope, inter)
    with atomic_output(path, suffix) as tmp:
        _write_image(img, tmp, compress=suffix == ".nii.gz")
    return path


def image_to_write(
    data: Any, header: nib.Nifti1Header, slope: float = 1.0, inter: float = 0.0
) -> nib.Nifti1Image:
    """The nibabel image :func:`save_nifti` writes: *header* as given (a NIfTI-2 header makes a
    NIfTI-2 image), the shape of *data* (any object with ``shape``, ``dtype`` and
    ``__array__``), the header's data type and the scaling *slope*, *inter*."""
    hdr = header.copy()
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(data, None, header=hdr)
    # The header passed in carries the geometry; don't let nibabel recompute it.
    img.header.set_data_dtype(header.get_data_dtype())
    if (slope, inter) != (1.0, 0.0):
        img.header.set_slope_inter(slope, inter)
    else:
        img.header.set_slope_inter(1.0, 0.0)
    return img


def _write_image(img: Any, path: str, compress: bool) -> None:
    """Write *img* to *path* as it is produced (compressed on the fly at nibabel's level 1 by
    :class:`~napari_resample.io.gzip_write.GzipWriter` on the engine's threads; no
    uncompressed stage on disk), then fsync."""
    from nibabel.fileholders import FileHolder

    with open(path, "wb") as raw:
        if compress:
            with GzipWriter(raw, engine_threads()) as stream:
                holder = FileHolder(fileobj=stream)
                img.to_file_map({"image": holder, "header": holder})
        else:
            holder = FileHolder(fileobj=raw)
            img.to_file_map({"image": holder, "header": holder})
        raw.flush()
        os.fsync(raw.fileno())


def save_volume(path: str | os.PathLike[str], volume: NiftiVolume) -> str:
    """Write a volume with its header and scaling atomically (see :func:`save_nifti`)."""
    if volume.header is None:
        raise ValueError(f"cannot write {os.fspath(path)!r}: the volume has no header")
    return save_nifti(path, volume.data, volume.header, slope=volume.slope, inter=volume.inter)


def save_volume_into(
    folder: str,
    path: str | os.PathLike[str],
    volume: NiftiVolume,
    created: list[str],
    clean: bool = True,
) -> str:
    """Create *folder* (listing what was made in *created*) and write *volume* to *path* in it;
    with *clean*, first remove temporary files that killed processes left in it
    (:func:`~napari_resample.io.atomic.remove_stale_temps`; the dataset runner does that once
    per folder instead).

    Another process writing into the same new folder may remove it when it fails (it removes
    the empty folders it made): the folder is then made again, up to :data:`_FOLDER_RETRIES`
    times, instead of losing the work done.
    """
    for attempt in range(_FOLDER_RETRIES):
        make_dirs(folder, created)
        if clean:
            remove_stale_temps(folder)
        try:
            return save_volume(path, volume)
        except FileNotFoundError:
            if os.path.isdir(folder) or attempt == _FOLDER_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


#: Times :func:`save_volume_into` makes a vanished output folder again.
_FOLDER_RETRIES = 3


def native(data: NDArray) -> NDArray:
    """*data* in native byte order (a copy only for big-endian data on little-endian hosts)."""
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))
