"""What a NIfTI file must pass before its voxels are read, and the wording of read errors.

The header is checked before anything is allocated: sizes, voxel offset, the geometry that is
used (:func:`check_header`), the stored type (:func:`check_voxel_type`) and the bytes of voxel
data it claims against the file's size (:func:`check_claimed_size`). What nibabel, the OS or a
decompressor raise while reading becomes a ValueError or MemoryError naming the file
(:func:`read_error`, :func:`wrap_read_errors`): the load of a whole volume, of a grid and the
plane reader all say it the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.spatialimages import HeaderDataError
from numpy.typing import ArrayLike

from napari_resample.engine.memory import format_bytes
from napari_resample.io.gzip import DEFLATE_MAX_RATIO


def read_error(
    path: str, exc: Exception, out_of_memory: Callable[[MemoryError], str] | None = None
) -> Exception:
    """The exception that reports *exc*, raised by nibabel, the OS or a decompressor while
    reading *path* as NIfTI: the one wording of every reader in :mod:`napari_resample.io`.

    Parameters
    ----------
    path : str
        The file being read, named in the message.
    exc : Exception
        What reading it raised.
    out_of_memory : callable, optional
        The message for a MemoryError, from that error (by default: out of memory reading the
        header of *path*).

    Returns
    -------
    MemoryError or ValueError
        A MemoryError for a MemoryError, else a ValueError naming the file and *exc* (its type
        and message); the caller raises it ``from exc``.

    Examples
    --------
    >>> read_error("x.nii", OSError("unexpected end of file"))
    ValueError("cannot read 'x.nii' as NIfTI: OSError: unexpected end of file")
    """
    if isinstance(exc, MemoryError):
        if out_of_memory is not None:
            return MemoryError(out_of_memory(exc))
        return MemoryError(f"out of memory reading the header of {path!r}: {exc!r}")
    return ValueError(f"cannot read {path!r} as NIfTI: {_describe(exc)}")


@contextlib.contextmanager
def wrap_read_errors(
    path: str, out_of_memory: Callable[[MemoryError], str] | None = None
) -> Iterator[None]:
    """Raise :func:`read_error`'s exception, chained, for any Exception the block raises while
    reading *path* (interrupts and other BaseExceptions pass unchanged)."""
    try:
        yield
    except Exception as exc:
        raise read_error(path, exc, out_of_memory) from exc


def _describe(exc: BaseException) -> str:
    """An exception as text for a message: its own message, else its type's name."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_checked(path: str) -> Any:
    """The nibabel image of a NIfTI file whose header passed :func:`check_header` (no voxel
    read yet); the exceptions of :func:`napari_resample.io.nifti.load_nifti`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIfTI file not found: {path!r}")
    with wrap_read_errors(path):
        stored = _stored_header(path)
    if stored is not None:  # sizes and offset as written, before nibabel "fixes" them
        _check_layout(stored, path)
    with wrap_read_errors(path):
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ValueError(f"{type(img).__name__} is not a NIfTI-1/2 image")
    check_header(img.header, path, stored=stored)
    return img


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


def repair_unused_forms(header: nib.Nifti1Header, path: str | None = None) -> list[str]:
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


def check_claimed_size(path: str, proxy: Any, gz: bool) -> int:
    """Bytes of voxel data the header claims; refuse a claim the file cannot hold.

    An uncompressed file must hold ``vox_offset + nbytes`` bytes; a gzip file cannot decompress
    to more than :data:`DEFLATE_MAX_RATIO` times its size.
    """
    shape, dtype = tuple(int(n) for n in proxy.shape), np.dtype(proxy.dtype)
    offset = int(proxy.offset)
    nbytes = math.prod(shape) * dtype.itemsize
    size = os.path.getsize(path)
    claim = (
        f"the header claims {format_bytes(nbytes)} ({nbytes} bytes) of voxel data "
        f"(shape {shape}, {dtype}) from byte {offset}"
    )
    if gz and offset + nbytes > DEFLATE_MAX_RATIO * size:
        raise ValueError(
            f"{claim}, but a gzip file of {size} bytes decompresses to at most "
            f"{format_bytes(DEFLATE_MAX_RATIO * size)} (deflate expands at most "
            f"{DEFLATE_MAX_RATIO}:1): the header is wrong or the file is truncated"
        )
    if not gz and offset + nbytes > size:
        raise ValueError(f"{claim}, but the file has only {size} bytes: truncated file?")
    return nbytes
