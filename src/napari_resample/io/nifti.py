"""NIfTI input and output with nibabel, keeping every header field we can.

Reading returns the *stored* voxel values (``get_unscaled``: no float64 upcast, no scaling
applied) with the header, so that a resampled file can be written back in the same on-disk type,
byte order and scaling. Writing goes to a temporary file in the destination folder, renamed into
place only when complete, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import math
import os
import re
import shutil
import socket
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.spatialimages import HeaderDataError
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.geometry import voxel_transform
from napari_resample.engine.memory import check_memory, format_bytes
from napari_resample.engine.options import Anchor
from napari_resample.io.names import nifti_suffix

#: NIfTI qform / sform codes: world coordinates of the scanner, or aligned to another volume.
XFORM_SCANNER = 1
XFORM_ALIGNED = 2


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
        :data:`XFORM_ALIGNED` (2) for a volume made in a session, :data:`XFORM_SCANNER` (1) for
        one read from NRRD, MetaImage or DICOM, whose world is the scanner's
        (:mod:`napari_resample.io.formats`). Not used when *header* is set.
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

    The header is checked (:func:`check_header`) before any voxel is read, so an impossible
    geometry is refused before anything is allocated or written.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    NiftiVolume

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If the file is not a readable NIfTI image (whatever nibabel or the decompressor raised,
        named with the file), has an impossible header (:func:`check_header`), or holds a type
        we cannot resample (RGB, complex).
    MemoryError
        If the voxels do not fit in memory; the message names the file, shape and bytes.
    """
    path = os.fspath(path)
    img = _open_checked(path)
    header = img.header.copy()
    ignored = tuple(_repair_unused_forms(header, path))
    proxy: Any = img.dataobj
    try:
        data = _read_unscaled(path, proxy)
        slope, inter = float(proxy.slope), float(proxy.inter)
        affine = np.array(img.affine, dtype=np.float64)
    except MemoryError as exc:
        raise MemoryError(_too_big(path, header, exc)) from exc
    except Exception as exc:
        raise ValueError(f"cannot read {path!r} as NIfTI: {_describe(exc)}") from exc
    check_voxel_type(data.dtype, path)
    slope, inter = usable_scaling(slope, inter)
    ignored += tuple(ignored_header_fields(header, path))
    return NiftiVolume(data, affine, header, slope, inter, path, ignored)


def check_voxel_type(dtype: np.dtype, path: str) -> None:
    """Refuse a stored type we cannot resample (RGB, complex), naming it and *path*."""
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise ValueError(f"unsupported NIfTI data type {dtype} in {path!r}")


def usable_scaling(slope: float, inter: float) -> tuple[float, float]:
    """The scaling a reader applies: none for a zero or non-finite slope, no offset for a
    non-finite intercept (as nibabel reads such files)."""
    if not (np.isfinite(slope) and slope != 0):
        slope, inter = 1.0, 0.0
    if not np.isfinite(inter):
        inter = 0.0
    return slope, inter


def _open_checked(path: str) -> Any:
    """The nibabel image of a NIfTI file whose header passed :func:`check_header` (no voxel
    read yet); the exceptions of :func:`load_nifti`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIfTI file not found: {path!r}")
    try:
        stored = _stored_header(path)
    except MemoryError as exc:
        raise MemoryError(f"out of memory reading the header of {path!r}: {exc!r}") from exc
    except Exception as exc:
        raise ValueError(f"cannot read {path!r} as NIfTI: {_describe(exc)}") from exc
    if stored is not None:  # sizes and offset as written, before nibabel "fixes" them
        _check_layout(stored, path)
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ValueError(f"{type(img).__name__} is not a NIfTI-1/2 image")
    except MemoryError as exc:
        raise MemoryError(f"out of memory reading the header of {path!r}: {exc!r}") from exc
    except Exception as exc:
        raise ValueError(f"cannot read {path!r} as NIfTI: {_describe(exc)}") from exc
    check_header(img.header, path, stored=stored)
    return img


def load_nifti_grid(path: str | os.PathLike[str]) -> tuple[nib.Nifti1Header, NDArray[np.float64]]:
    """A NIfTI file's checked header and best affine, without reading its voxels (a reference
    grid needs only those); the exceptions of :func:`load_nifti`."""
    img = _open_checked(os.fspath(path))
    header = img.header.copy()
    _repair_unused_forms(header, os.fspath(path))
    return header, np.array(img.affine, dtype=np.float64)


def _describe(exc: BaseException) -> str:
    """An exception as text for a message: its own message, else its type's name."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _too_big(path: str, header: nib.Nifti1Header, exc: MemoryError) -> str:
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        need = f"{shape} voxels of {dtype} ({size:,} bytes)"
    except Exception:  # the message must not fail in turn
        need = "its voxels"
    why = f": {exc}" if str(exc) else ""
    return f"not enough memory to read {path!r}: {need} do not fit{why}"


def _stored_header(path: str) -> nib.Nifti1Header | None:
    """The header as written in *path*, without nibabel's fixes (None: not NIfTI-1/2 sized)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(path) as fh:
        block = fh.read(nib.Nifti2Header.template_dtype.itemsize)
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        for order in "<>":
            if len(block) >= size and np.frombuffer(block, order + "i4", 1)[0] == size:
                return klass(block[:size], endianness=order, check=False)
    return None


def check_header(
    header: nib.Nifti1Header, path: str | None = None, *, stored: nib.Nifti1Header | None = None
) -> None:
    """Refuse a header whose geometry is impossible; nothing is read but the header.

    Checked: the number of dimensions (1 to 7) and every size (at least 1); ``vox_offset``
    past the header of a single file (352 for NIfTI-1, 544 for NIfTI-2); the sform when
    ``sform_code`` is set, the qform (quaternion, offsets and ``pixdim[0:4]``) when
    ``qform_code`` is set, the ``pixdim`` affine when both codes are 0, and the affine actually
    used: every entry finite, no voxel axis of zero length, a non-zero determinant. Fields the
    geometry does not use (``pixdim[4:]``, a matrix whose code is 0, units) are not checked.

    Parameters
    ----------
    header : nibabel.Nifti1Header or nibabel.Nifti2Header
        As nibabel reads it (with its fixes: an invalid code becomes 0, say).
    path : str, optional
        Named in the messages.
    stored : nibabel.Nifti1Header or nibabel.Nifti2Header, optional
        The header as written in the file, whose sizes and ``vox_offset`` are checked instead
        (nibabel replaces a ``vox_offset`` of 0 by 352).

    Raises
    ------
    ValueError
        Naming the field, the file and the value received.

    Examples
    --------
    >>> header = nib.Nifti1Header()
    >>> header.set_data_shape((4, 0, 3))
    >>> check_header(header, "x.nii")
    Traceback (most recent call last):
    ...
    ValueError: zero-size or negative dimension in 'x.nii': dim[1:4] = [4, 0, 3]
    """
    where = f" in {path!r}" if path else ""
    _check_layout(header if stored is None else stored, path)
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    try:
        if scode:
            _check_matrix(f"sform (sform_code {scode})", header.get_sform(), where)
        if qcode:
            quat = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")]
            offsets = [float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
            pixdim = [float(v) for v in header["pixdim"][:4]]
            if not np.all(np.isfinite(quat + offsets + pixdim)):
                raise ValueError(
                    f"non-finite qform (qform_code {qcode}){where}: quatern_bcd = {quat}, "
                    f"qoffset = {offsets}, pixdim[0:4] = {pixdim}"
                )
            _check_matrix(f"qform (qform_code {qcode})", header.get_qform(), where)
        if not (qcode or scode):
            pixdim = [float(v) for v in header["pixdim"][1:4]]
            if not (np.all(np.isfinite(pixdim)) and all(v != 0 for v in pixdim)):
                raise ValueError(
                    f"voxel sizes pixdim[1:4] must be finite and non-zero (qform_code and "
                    f"sform_code are 0){where}, got {pixdim}"
                )
        _check_matrix("affine", header.get_best_affine(), where)
    except (HeaderDataError, ArithmeticError) as exc:  # nibabel's own refusal of the qform
        raise ValueError(f"impossible qform or sform{where}: {exc}") from exc


def _check_layout(header: nib.Nifti1Header, path: str | None) -> None:
    """The sizes and the voxel offset of :func:`check_header`."""
    where = f" in {path!r}" if path else ""
    dim = [int(n) for n in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise ValueError(f"number of dimensions dim[0] must be 1 to 7{where}, got {dim[0]}")
    shape = dim[1 : dim[0] + 1]
    if any(n < 1 for n in shape):
        raise ValueError(f"zero-size or negative dimension{where}: dim[1:{dim[0] + 1}] = {shape}")
    offset = float(header["vox_offset"])
    minimum = int(header.single_vox_offset)
    if not (np.isfinite(offset) and offset >= minimum):
        raise ValueError(
            f"vox_offset must be at least {minimum} (past the header) in a single-file NIfTI"
            f"{where}, got {offset:g}"
        )


def _check_matrix(name: str, matrix: ArrayLike, where: str) -> None:
    m = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"non-finite {name}{where}: {m[:3].tolist()}")
    linear = m[:3, :3]
    with np.errstate(all="ignore"):
        lengths = np.sqrt(np.sum(linear * linear, axis=0))
        det = float(np.linalg.det(linear))
    if not (np.all(lengths > 0) and np.all(np.isfinite(lengths))):
        raise ValueError(
            f"{name} has a voxel axis of zero (or overflowing) length{where}: {m[:3].tolist()}"
        )
    if not (np.isfinite(det) and det != 0 and np.linalg.matrix_rank(linear) == 3):
        raise ValueError(f"{name} is singular (determinant {det:g}){where}: {m[:3].tolist()}")


def _repair_unused_forms(header: nib.Nifti1Header, path: str | None = None) -> list[str]:
    """Replace a qform / sform whose code is 0 (unused) but that cannot be a geometry
    (non-finite, singular) by the best affine, code still 0, so that it can be moved when
    resampling; return what was replaced. *header* is changed in place."""
    notes: list[str] = []
    where = f" in {path!r}" if path else ""
    best = header.get_best_affine()
    for name, code, get, put in (
        ("qform", int(header["qform_code"]), header.get_qform, header.set_qform),
        ("sform", int(header["sform_code"]), header.get_sform, header.set_sform),
    ):
        if code:
            continue
        try:
            with np.errstate(all="ignore"):
                matrix = get(coded=False)
            _check_matrix(name, matrix, where)
        except (ValueError, HeaderDataError, ArithmeticError):
            put(best, code=0)
            notes.append(f"ignored the unusable {name} (its {name}_code is 0){where}")
    return notes


#: NIfTI ``xyzt_units`` codes (the space part is ``code & 7``, time ``code & 56``).
_KNOWN_SPACE_CODES = (0, 1, 2, 3)
_KNOWN_TIME_CODES = (0, 8, 16, 24, 32, 40, 48)


def ignored_header_fields(header: nib.Nifti1Header, path: str | None = None) -> list[str]:
    """What of *header* a reader ignores and assumes instead, as sentences naming *path*.

    An unknown ``xyzt_units`` code (millimetres and seconds are assumed) and non-finite
    ``pixdim[4:]`` (not used for a 3D volume; a time step of 1 is shown for 4D data).

    Examples
    --------
    >>> header = nib.Nifti1Header()
    >>> header["xyzt_units"] = 7
    >>> ignored_header_fields(header, "x.nii.gz")
    ["ignored unknown xyzt_units code 7 in 'x.nii.gz'; assuming mm"]
    """
    where = f" in {path!r}" if path else ""
    notes = []
    code = int(header["xyzt_units"])
    space, time = code & 0x07, code & ~0x07
    if space not in _KNOWN_SPACE_CODES:
        notes.append(f"ignored unknown xyzt_units code {code}{where}; assuming mm")
    elif time not in _KNOWN_TIME_CODES:
        notes.append(f"ignored unknown time unit in xyzt_units code {code}{where}; assuming s")
    pixdim = np.asarray(header["pixdim"], dtype=np.float64)
    bad = [i for i in range(4, pixdim.size) if not np.isfinite(pixdim[i])]
    if bad:
        values = ", ".join(f"pixdim[{i}] = {pixdim[i]}" for i in bad)
        notes.append(f"ignored non-finite {values}{where}")
    return notes


def resampled_header(
    header: nib.Nifti1Header,
    old_shape: Sequence[int],
    new_shape: Sequence[int],
    anchor: Anchor = "origin",
) -> nib.Nifti1Header:
    """Header of a resampled volume: geometry updated, every other field kept.

    qform and sform are each moved with the same voxel-space transform, so both keep their
    meaning (and their codes) even when they disagreed in the source. ``pixdim[1:4]`` becomes the
    new spacing; the time step ``pixdim[4]``, units, description and intent are kept.

    Parameters
    ----------
    header : nibabel.Nifti1Header
    old_shape, new_shape : (3,) sequence of int, voxel order (i, j, k)
    anchor : {"origin", "center"}

    Returns
    -------
    nibabel.Nifti1Header
        A new header; the input is not modified.
    """
    hdr = header.copy()
    t = voxel_transform(old_shape, new_shape, anchor)
    pixdim = np.array(hdr["pixdim"], dtype=np.float64)
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    qform = hdr.get_qform(coded=False) @ t
    sform = hdr.get_sform(coded=False) @ t
    hdr.set_data_shape(tuple(int(n) for n in new_shape))
    hdr.set_sform(sform, code=scode)
    hdr.set_qform(qform, code=qcode)
    # set_qform wrote pixdim[1:4] = old pixdim * f: the qform's own zooms (pixdim is part of the
    # qform), so size * get_zooms() is kept whatever the sform says.
    new_pixdim = np.array(hdr["pixdim"], dtype=np.float64)
    new_pixdim[4:] = pixdim[4:]
    hdr["pixdim"] = new_pixdim
    return hdr


def header_for_affine(
    affine: ArrayLike,
    shape: tuple[int, ...],
    template: nib.Nifti1Header | None = None,
    *,
    code: int = XFORM_ALIGNED,
) -> nib.Nifti1Header:
    """Header describing *affine* for an array of *shape*, keeping *template*'s other fields.

    Used by the napari writer: the layer's current geometry wins over the stored one. The
    template's qform / sform codes are kept; a header without codes (no template, or codes
    0/0) gets *code* for both: ``aligned`` (2) by default, ``scanner`` (1) for a volume read
    from NRRD, MetaImage or DICOM (its :attr:`NiftiVolume.xform_code`).

    Examples
    --------
    >>> hdr = header_for_affine(np.diag([2.0, 2.0, 3.0, 1.0]), (4, 4, 4), code=XFORM_SCANNER)
    >>> int(hdr["qform_code"]), int(hdr["sform_code"]), [float(z) for z in hdr.get_zooms()]
    (1, 1, [2.0, 2.0, 3.0])
    """
    if code not in (XFORM_SCANNER, XFORM_ALIGNED, 3, 4, 5):
        raise ValueError(f"a NIfTI qform / sform code must be 1 to 5, got {code!r}")
    a = np.asarray(affine, dtype=np.float64)
    hdr = nib.Nifti1Header() if template is None else template.copy()
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if template is None or (qcode == 0 and scode == 0):
        qcode = scode = code
    old_pixdim = np.array(hdr["pixdim"], dtype=np.float64)
    hdr.set_data_shape(shape)
    hdr.set_sform(a, code=scode)
    hdr.set_qform(a, code=qcode)
    pixdim = np.array(hdr["pixdim"], dtype=np.float64)
    pixdim[1:4] = voxel_sizes(a)
    if len(shape) == 3:
        pixdim[4:] = old_pixdim[4:]
    hdr["pixdim"] = pixdim
    return hdr


def same_grid(template: nib.Nifti1Header | None, affine: NDArray, shape: Sequence[int]) -> bool:
    """Whether *template* describes this grid: its best affine is *affine* and its spatial
    size is *shape*'s (to 1e-6 mm), i.e. the geometry was not changed since reading."""
    if template is None:
        return False
    old = tuple(int(n) for n in template.get_data_shape()[:3])
    new = tuple(int(n) for n in shape[:3])
    if old + (1,) * (3 - len(old)) != new + (1,) * (3 - len(new)):
        return False
    best = np.asarray(template.get_best_affine(), dtype=np.float64)
    return bool(np.allclose(best, affine, rtol=1e-9, atol=1e-6))


def header_for_grid(
    affine: NDArray,
    shape: tuple[int, ...],
    template: nib.Nifti1Header | None,
    *,
    code: int = XFORM_ALIGNED,
) -> nib.Nifti1Header:
    """Header for voxels of *shape* at *affine*, from a file's *template* if any.

    An unchanged geometry (:func:`same_grid`) keeps the template's own qform, sform, codes and
    pixdim as they were (a qform that disagrees with the sform, codes 0/0, a sheared sform's
    qform zooms); a changed one is rewritten from *affine* with the template's codes (*code*
    without a template, see :func:`header_for_affine`).
    """
    if template is not None and same_grid(template, affine, shape):
        header = template.copy()
        header.set_data_shape(shape)
        return header
    return header_for_affine(affine, shape, template, code=code)


def storable_dtype(dtype: np.dtype) -> np.dtype:
    """The NIfTI data type that holds values of *dtype* exactly.

    NIfTI has no boolean or half-precision type: booleans become uint8, float16 becomes
    float32; every other numeric type is kept.

    Examples
    --------
    >>> storable_dtype(np.dtype(bool)), storable_dtype(np.dtype(np.float16))
    (dtype('uint8'), dtype('float32'))
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


def storable(data: NDArray) -> NDArray:
    """*data* in a type NIfTI can hold (see :func:`storable_dtype`); unchanged when it can."""
    dtype = storable_dtype(data.dtype)
    return data if dtype == data.dtype else data.astype(dtype)


def set_stored_dtype(header: nib.Nifti1Header, dtype: np.dtype) -> None:
    """Make *header*'s on-disk type *dtype* unless it already is (byte order aside)."""
    if header.get_data_dtype().newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        header.set_data_dtype(dtype)


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
    if suffix is None:
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


@contextlib.contextmanager
def atomic_output(path: str, suffix: str) -> Iterator[str]:
    """A temporary file name beside *path* to write to; renamed onto *path* when the block
    ends without error, deleted when it fails (a full disk is reported with the free space).

    The temporary name comes from :func:`temp_name` (ending in ``.tmp`` + *suffix*, so a writer
    that picks its format by suffix sees the right one) and is listed for
    :func:`remove_files_in_progress` while it exists.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, temp_name(os.path.basename(path), suffix))
    _IN_PROGRESS.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
        _fsync_folder(folder)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (full := disk_full_error(exc, path, folder)) is not None:
            raise full from exc
        raise
    finally:
        _IN_PROGRESS.discard(tmp)


def disk_full_error(exc: BaseException, path: str, folder: str) -> OSError | None:
    """What a write to *path* (in *folder*) that failed with *exc* raises when the disk or quota
    is full: an OSError with the same errno naming the path and the free space; else None."""
    if not (isinstance(exc, OSError) and exc.errno in _DISK_FULL):
        return None
    return OSError(
        exc.errno, f"no space left to write {path!r}: {_free_space(folder)} free in {folder!r}"
    )


#: errno values of a full disk or an exhausted quota.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _write_image(img: Any, path: str, compress: bool) -> None:
    """Write *img* to *path* as it is produced (compressed on the fly with isal's gzip at
    nibabel's level 1, or zlib's without isal; no uncompressed stage on disk), then fsync."""
    from nibabel.fileholders import FileHolder

    with open(path, "wb") as raw:
        if compress:
            with gzip_writer(raw) as stream:
                holder = FileHolder(fileobj=stream)
                img.to_file_map({"image": holder, "header": holder})
        else:
            holder = FileHolder(fileobj=raw)
            img.to_file_map({"image": holder, "header": holder})
        raw.flush()
        os.fsync(raw.fileno())


def gzip_writer(raw: Any) -> Any:
    """A gzip stream compressing into the open binary file *raw* (left open when the stream is
    closed): isal's igzip if installed, else Python's gzip, both at nibabel's level 1."""
    igzip = _igzip()
    opener = igzip.IGzipFile if igzip is not None else gzip.GzipFile
    # No file name in the gzip header (it would be the temporary one), mtime 0: the same
    # volume always gives the same bytes.
    return opener("", "wb", compresslevel=1, fileobj=raw, mtime=0)


def _fsync_folder(folder: str) -> None:
    """Make a rename in *folder* durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _free_space(folder: str) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "an unknown amount"
    return format_bytes(free)


def save_volume(path: str | os.PathLike[str], volume: NiftiVolume) -> str:
    """Write a volume with its header and scaling atomically (see :func:`save_nifti`)."""
    if volume.header is None:
        raise ValueError(f"cannot write {os.fspath(path)!r}: the volume has no header")
    return save_nifti(path, volume.data, volume.header, slope=volume.slope, inter=volume.inter)


#: Bytes of the destination's name kept in a temporary file's name (the whole name stays within
#: 255 bytes: ``.`` stem ``.`` host(32) ``-`` pid(10) ``-`` 12 hex ``.tmp.nii.gz``).
_TMP_STEM_BYTES = 180
#: A temporary file of :func:`atomic_output`: ``.<stem>.<host>-<pid>-<12 hex>.tmp<suffix>``, the
#: suffix one of ``.nii.gz``, ``.nii`` (also the uncompressed stage of the isal path), ``.nrrd``
#: and ``.mha`` (:func:`napari_resample.io.formats.save_itk`).
_TMP_PATTERN = re.compile(
    r"^\..*\.(?P<host>[A-Za-z0-9_]*)-(?P<pid>\d+)-[0-9a-f]{12}\.tmp\.(nii(\.gz)?|nrrd|mha)$"
)


#: Temporary files this process is writing now (see :func:`remove_files_in_progress`).
_IN_PROGRESS: set[str] = set()


def remove_files_in_progress() -> None:
    """Delete the temporary files this process is writing: for a signal handler that ends the
    process at once (a pool worker told to stop), where no ``finally`` clause will run."""
    for path in list(_IN_PROGRESS):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32]


def temp_name(name: str, suffix: str) -> str:
    """Name of a temporary file for the output *name*, recognisable as ours and stale later.

    It holds this machine's name and this process's id, so that a later run can tell that
    the process that made it is gone (:func:`remove_stale_temps`). The destination's name is
    shortened in it (never the unique part) so that it is not too long where the final one
    is not (255 bytes is the usual limit on a name).
    """
    stem = name.encode()[:_TMP_STEM_BYTES].decode(errors="ignore")
    return f".{stem}.{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{suffix}"


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files in *folder* left by processes of this machine that are gone
    (killed during a write); return their paths. Other machines' files are left alone."""
    removed: list[str] = []
    host = _host_tag()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TMP_PATTERN.match(name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        path = os.path.join(folder, name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but was not reaped yet (Linux; False where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # "pid (name) state ...": the name may hold spaces and ")"; the state follows the last ")".
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


# --------------------------------------------------------------------------- fast gzip (optional)
#
# gzip dominates the file-level job once resampling is fast. When python-isal is installed, its
# igzip (same format, 2-5x faster than zlib) compresses the output (written by nibabel
# uncompressed) at nibabel's level 1, and its inflater decompresses voxel data straight into the
# array (zlib's does without it). Reading goes to the end of the gzip stream and checks it, where
# nibabel stops once it has the voxel bytes and never sees a damaged trailer.


def _igzip() -> Any:
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


def _read_unscaled(path: str, proxy: object) -> NDArray:
    """Stored voxel values of *proxy* (nibabel's ``get_unscaled()``), checked against the file.

    Before anything is allocated, the size the header claims must fit in the file
    (:func:`_check_claimed_size`) and, for a ``.nii.gz`` (read into memory, where a ``.nii`` is
    memory-mapped), in the memory available now. A ``.nii.gz`` is then decompressed to the end
    of its gzip stream (:func:`_gunzip`), so a damaged file is refused instead of being read as
    whatever its voxel bytes decompress to.

    Raises
    ------
    ValueError
        The header claims more data than the file can hold, or the gzip stream is damaged.
    MemoryError
        The voxel data would not fit in the memory available now (naming the sizes).
    """
    gz = nifti_suffix(path) == ".nii.gz"
    nbytes = _check_claimed_size(path, proxy, gz)
    if not gz:
        return np.asarray(proxy.get_unscaled())  # type: ignore[attr-defined]
    check_memory(nbytes, f"reading the voxel data of {path!r}")
    if _plain_proxy(proxy):
        return _read_gz_fast(path, proxy)
    with open(path, "rb") as fh:  # nibabel reads only what it needs and checks no trailer
        _gunzip(fh, _inflater(), lambda data: None)
    return np.asarray(proxy.get_unscaled())  # type: ignore[attr-defined]


#: Most bytes one byte of deflate data can decompress to (a 258-byte match in under 2 bits:
#: 1032:1 is the format's limit, whatever the compressor).
_DEFLATE_MAX_RATIO = 1032


def _check_claimed_size(path: str, proxy: Any, gz: bool) -> int:
    """Bytes of voxel data the header claims; refuse a claim the file cannot hold.

    An uncompressed file must hold ``vox_offset + nbytes`` bytes; a gzip file cannot decompress
    to more than :data:`_DEFLATE_MAX_RATIO` times its size.
    """
    shape, dtype = tuple(int(n) for n in proxy.shape), np.dtype(proxy.dtype)
    offset = int(proxy.offset)
    nbytes = math.prod(shape) * dtype.itemsize
    size = os.path.getsize(path)
    claim = (
        f"the header claims {format_bytes(nbytes)} ({nbytes} bytes) of voxel data "
        f"(shape {shape}, {dtype}) from byte {offset}"
    )
    if gz and offset + nbytes > _DEFLATE_MAX_RATIO * size:
        raise ValueError(
            f"{claim}, but a gzip file of {size} bytes decompresses to at most "
            f"{format_bytes(_DEFLATE_MAX_RATIO * size)} (deflate expands at most "
            f"{_DEFLATE_MAX_RATIO}:1): the header is wrong or the file is truncated"
        )
    if not gz and offset + nbytes > size:
        raise ValueError(f"{claim}, but the file has only {size} bytes: truncated file?")
    return nbytes


def _plain_proxy(proxy: object) -> bool:
    from nibabel.arrayproxy import ArrayProxy

    return type(proxy) is ArrayProxy and getattr(proxy, "order", "F") == "F"


def _inflater() -> Any:
    """The zlib-compatible module that inflates fastest: ``isal.isal_zlib`` if installed."""
    if _igzip() is None:
        return zlib
    from isal import isal_zlib

    return isal_zlib


def _read_gz_fast(path: str, proxy: Any, inflater: Any = None) -> NDArray:
    """Decompress chunk by chunk straight into the array (no full-size intermediate), to the end
    of the gzip stream (:func:`_gunzip` checks it), with *inflater* (default :func:`_inflater`).
    """
    shape, dtype = tuple(proxy.shape), np.dtype(proxy.dtype)
    flat = np.empty(math.prod(shape), dtype=dtype)
    dest = flat.view(np.uint8)
    skip, done = int(proxy.offset), 0

    def sink(data: bytes) -> None:
        nonlocal skip, done
        view = memoryview(data)
        if skip:
            cut = min(skip, len(view))
            view, skip = view[cut:], skip - cut
        n = min(len(view), dest.size - done)
        if n:
            dest[done : done + n] = np.frombuffer(view, dtype=np.uint8, count=n)
            done += n

    with open(path, "rb") as fh:
        _gunzip(fh, inflater or _inflater(), sink)
    if done < dest.size:
        raise ValueError(short_gzip_message(done, dest.size))
    return flat.reshape(shape, order="F")


def short_gzip_message(done: int, total: int) -> str:
    """What a gzip stream that ends after *done* of the *total* voxel bytes is told."""
    return (
        f"the gzip data ends after {done} of the {total} bytes of voxel data the header "
        "claims: truncated file?"
    )


_GZIP_MAGIC = b"\x1f\x8b"
#: Most decompressed bytes produced per step (a bomb's chunk is not inflated all at once).
_GZ_OUT = 1 << 22


class _Input:
    """Bytes of an open file, read in chunks, with what was read but not used yet."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.buf = b""
        self.pos = 0  # file offset of buf[0]

    def fill(self, n: int) -> bool:
        """Have at least *n* bytes in :attr:`buf` if the file holds them; whether it does."""
        while len(self.buf) < n:
            chunk = self.fh.read(max(_GZ_CHUNK, n - len(self.buf)))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def take(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        self.pos += len(out)
        return out


def _gunzip(fh: Any, inflater: Any, sink: Any) -> None:
    """Decompress the whole gzip stream of *fh*, passing the data to *sink* in order.

    Every member's CRC-32 and length (ISIZE) are checked; several members follow one another
    (multi-member and bgzip files are gzip); zero padding after the last member is ignored, as
    gzip does; anything else after it is refused.

    Raises
    ------
    ValueError
        Naming what is wrong: not gzip data, a CRC or length that does not match, a stream that
        ends early or before its trailer, trailing data after the stream, corrupt deflate data.
    """
    src = _Input(fh)
    member = 0
    while True:
        _skip_gzip_header(src, member)
        inflate = inflater.decompressobj(-inflater.MAX_WBITS)
        crc = size = 0
        while not inflate.eof:
            if not src.buf and not src.fill(1):
                raise ValueError(
                    f"the gzip data ends in the middle of member {member + 1} "
                    f"(at byte {src.pos}): truncated file?"
                )
            data = src.buf
            try:
                out = inflate.decompress(data, _GZ_OUT)
            except Exception as exc:  # zlib.error, isal's IsalError
                raise ValueError(
                    f"corrupt deflate data in gzip member {member + 1}: {exc}"
                ) from exc
            left = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            src.pos += len(data) - len(left)
            src.buf = left
            if out:
                crc = inflater.crc32(out, crc)
                size += len(out)
                sink(out)
        if not src.fill(8):
            raise ValueError(
                f"the file ends before its gzip trailer (member {member + 1}: CRC-32 and "
                f"length missing, {len(src.buf)} of 8 bytes): truncated file?"
            )
        stored_crc, stored_size = struct.unpack("<II", src.take(8))
        if stored_crc != crc:
            raise ValueError(
                f"gzip CRC check failed (member {member + 1}: stored 0x{stored_crc:08x}, "
                f"data 0x{crc:08x}): the file is damaged"
            )
        if stored_size != size & 0xFFFFFFFF:
            raise ValueError(
                f"gzip length check failed (member {member + 1}: the trailer says "
                f"{stored_size} bytes mod 2^32, the data is {size}): the file is damaged"
            )
        while src.fill(1) and not src.buf.lstrip(b"\x00"):
            src.take(len(src.buf))  # zero padding, as gzip allows
        if not src.fill(1):
            return
        src.take(len(src.buf) - len(src.buf.lstrip(b"\x00")))
        member += 1


def _skip_gzip_header(src: _Input, member: int) -> None:
    """Read past the gzip member header at the start of *src* (RFC 1952, 2.3)."""
    start = src.pos
    if not src.fill(10) or src.buf[:2] != _GZIP_MAGIC:
        if member == 0:
            raise ValueError("not gzip data (no gzip magic bytes at the start)")
        raise ValueError(
            f"trailing data after the gzip stream (at byte {start}, not a gzip member)"
        )
    header = src.take(10)
    method, flags = header[2], header[3]
    if method != 8:
        raise ValueError(f"unknown gzip compression method {method} (member {member + 1})")
    truncated = ValueError(f"the file ends inside gzip header {member + 1}: truncated file?")
    if flags & 4:  # FEXTRA
        if not src.fill(2):
            raise truncated
        (extra,) = struct.unpack("<H", src.take(2))
        if not src.fill(extra):
            raise truncated
        src.take(extra)
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            while (end := src.buf.find(b"\x00")) < 0:
                src.take(len(src.buf))
                if not src.fill(1):
                    raise truncated
            src.take(end + 1)
    if flags & 2:  # FHCRC
        if not src.fill(2):
            raise truncated
        src.take(2)


#: Compressed bytes read per step by the fast reader.
_GZ_CHUNK = 1 << 18


def make_dirs(folder: str, created: list[str]) -> None:
    """Create *folder* and its missing parents as ``os.makedirs`` would, walking the path as
    given (``a/b/../c`` creates ``a/b``); append each folder created to *created*, outermost
    first, as soon as it exists (so a failure part-way still lists what to remove)."""
    missing = []
    current = folder
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder_ in reversed(missing):
        if not os.path.isdir(folder_):  # "a/b/.." exists once "a/b" does
            try:
                os.mkdir(folder_)
            except FileExistsError:  # another process made it just now: not ours to remove
                continue
            created.append(folder_)


def save_volume_into(
    folder: str,
    path: str | os.PathLike[str],
    volume: NiftiVolume,
    created: list[str],
    clean: bool = True,
) -> str:
    """Create *folder* (listing what was made in *created*) and write *volume* to *path* in it;
    with *clean*, first remove temporary files that killed processes left in it
    (:func:`remove_stale_temps`; the dataset runner does that once per folder instead).

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


def remove_empty_dirs(created: Sequence[str]) -> None:
    """Remove the folders of *created* (outermost first, as :func:`make_dirs` lists them) that
    are still empty, innermost first; a folder already gone or holding files is left as is."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:  # gone already, or not empty (then neither are its parents)
            continue


def native(data: NDArray) -> NDArray:
    """*data* in native byte order (a copy only for big-endian data on little-endian hosts)."""
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))
