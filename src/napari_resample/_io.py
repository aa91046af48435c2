"""NIfTI input and output with nibabel, keeping every header field we can.

Reading returns the *stored* voxel values (``get_unscaled``: no float64 upcast, no scaling
applied) with the header, so that a resampled file can be written back in the same on-disk type,
byte order and scaling. Writing goes to a temporary file in the destination folder, renamed into
place only when complete, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.spatialimages import HeaderDataError
from numpy.typing import ArrayLike, NDArray

from napari_resample._geometry import voxel_transform
from napari_resample._names import nifti_suffix
from napari_resample._options import Anchor


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
    """

    data: NDArray
    affine: NDArray[np.float64]
    header: nib.Nifti1Header | None
    slope: float = 1.0
    inter: float = 0.0
    path: str | None = None
    ignored: tuple[str, ...] = ()

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
    arithmetic, so that :func:`napari_resample._layout.stored_from_display` can check exactness.

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
    if holds_one_volume(data.shape):
        return data.reshape(data.shape[:3])
    where = f" in {path!r}" if path else ""
    raise ValueError(f"input must be a 3D volume, got an image of shape {data.shape}{where}")


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
    if data.dtype.fields is not None or data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported NIfTI data type {data.dtype} in {path!r}")
    if not (np.isfinite(slope) and slope != 0):
        slope, inter = 1.0, 0.0
    if not np.isfinite(inter):
        inter = 0.0
    ignored += tuple(ignored_header_fields(header, path))
    return NiftiVolume(data, affine, header, slope, inter, path, ignored)


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
    affine: ArrayLike, shape: tuple[int, ...], template: nib.Nifti1Header | None = None
) -> nib.Nifti1Header:
    """Header describing *affine* for an array of *shape*, keeping *template*'s other fields.

    Used by the napari writer: the layer's current geometry wins over the stored one. The
    template's qform / sform codes are kept (a header without codes gets ``aligned``, 2).
    """
    a = np.asarray(affine, dtype=np.float64)
    hdr = nib.Nifti1Header() if template is None else template.copy()
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if template is None or (qcode == 0 and scode == 0):
        qcode = scode = 2
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
    affine: NDArray, shape: tuple[int, ...], template: nib.Nifti1Header | None
) -> nib.Nifti1Header:
    """Header for voxels of *shape* at *affine*, from a file's *template* if any.

    An unchanged geometry (:func:`same_grid`) keeps the template's own qform, sform, codes and
    pixdim as they were (a qform that disagrees with the sform, codes 0/0, a sheared sform's
    qform zooms); a changed one is rewritten from *affine* with the template's codes.
    """
    if template is not None and same_grid(template, affine, shape):
        header = template.copy()
        header.set_data_shape(shape)
        return header
    return header_for_affine(affine, shape, template)


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
    folder = os.path.dirname(os.path.abspath(path))
    hdr = header.copy()
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(data, None, header=hdr)
    # The header passed in carries the geometry; don't let nibabel recompute it.
    img.header.set_data_dtype(header.get_data_dtype())
    if (slope, inter) != (1.0, 0.0):
        img.header.set_slope_inter(slope, inter)
    else:
        img.header.set_slope_inter(1.0, 0.0)
    tmp = os.path.join(folder, temp_name(os.path.basename(path), suffix))
    raw = tmp[: -len(".gz")] if suffix == ".nii.gz" and _igzip() is not None else None
    stages = [tmp] if raw is None else [tmp, raw]
    _IN_PROGRESS.update(stages)
    try:
        if raw is None:
            nib.save(img, tmp)
        else:
            nib.save(img, raw)
            _gzip_file(raw, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if raw is not None:
            Path(raw).unlink(missing_ok=True)
        _IN_PROGRESS.difference_update(stages)
    return path


def save_volume(path: str | os.PathLike[str], volume: NiftiVolume) -> str:
    """Write a volume with its header and scaling atomically (see :func:`save_nifti`)."""
    if volume.header is None:
        raise ValueError(f"cannot write {os.fspath(path)!r}: the volume has no header")
    return save_nifti(path, volume.data, volume.header, slope=volume.slope, inter=volume.inter)


#: Bytes of the destination's name kept in a temporary file's name (the whole name stays within
#: 255 bytes: ``.`` stem ``.`` host(32) ``-`` pid(10) ``-`` 12 hex ``.tmp.nii.gz``).
_TMP_STEM_BYTES = 180
#: A temporary file of :func:`save_nifti`: ``.<stem>.<host>-<pid>-<12 hex>.tmp.nii[.gz]`` (the
#: uncompressed stage of the isal path ends in ``.tmp.nii``).
_TMP_PATTERN = re.compile(
    r"^\..*\.(?P<host>[A-Za-z0-9_]*)-(?P<pid>\d+)-[0-9a-f]{12}\.tmp\.nii(\.gz)?$"
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
    return True


# --------------------------------------------------------------------------- fast gzip (optional)
#
# gzip dominates the file-level job once resampling is fast. When python-isal is installed, its
# igzip (same format, 2-5x faster than zlib) decompresses voxel data straight into the array and
# compresses the output (written by nibabel uncompressed) at nibabel's level 1. Without it, or on
# any surprise when reading, nibabel does all the work.


def _igzip() -> Any:
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


def _read_unscaled(path: str, proxy: object) -> NDArray:
    """Stored voxel values of *proxy* (nibabel's ``get_unscaled()``), through isal if it can."""
    igzip = _igzip()
    if igzip is not None and nifti_suffix(path) == ".nii.gz" and _plain_proxy(proxy):
        try:
            return _read_gz_fast(igzip, path, proxy)
        except Exception:  # nibabel, below, reports any problem its own way
            pass
    return np.asarray(proxy.get_unscaled())  # type: ignore[attr-defined]


def _plain_proxy(proxy: object) -> bool:
    from nibabel.arrayproxy import ArrayProxy

    return type(proxy) is ArrayProxy and getattr(proxy, "order", "F") == "F"


def _read_gz_fast(igzip: Any, path: str, proxy: Any) -> NDArray:
    """Decompress chunk by chunk straight into the array (no full-size intermediate)."""
    from isal import isal_zlib

    shape, dtype = tuple(proxy.shape), np.dtype(proxy.dtype)
    flat = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=dtype)
    dest = flat.view(np.uint8)
    skip, done = int(proxy.offset), 0
    inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)  # gzip container
    with open(path, "rb") as fh:
        while done < dest.size:
            chunk = fh.read(_GZ_CHUNK)
            if not chunk or inflate.eof:
                raise EOFError(f"expected {dest.size} bytes of voxel data, got {done}")
            out = inflate.decompress(chunk)
            if skip:
                cut = min(skip, len(out))
                out, skip = out[cut:], skip - cut
            n = min(len(out), dest.size - done)
            dest[done : done + n] = np.frombuffer(out, dtype=np.uint8, count=n)
            done += n
    return flat.reshape(shape, order="F")


#: Compressed bytes read per step by the fast reader.
_GZ_CHUNK = 1 << 18


def _gzip_file(src: str, dest: str) -> None:
    """gzip *src* into *dest* with isal at nibabel's level 1 and mtime 0 (deterministic)."""
    igzip = _igzip()
    with open(src, "rb") as fin, open(dest, "wb") as raw:
        # No file name in the gzip header (it would be the temporary one), like nibabel.
        with igzip.IGzipFile("", "wb", compresslevel=1, fileobj=raw, mtime=0) as fout:
            while chunk := fin.read(_GZ_CHUNK * 16):
                fout.write(chunk)


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
            os.mkdir(folder_)
            created.append(folder_)


def remove_empty_dirs(created: Sequence[str]) -> None:
    """Remove the folders of *created* (outermost first, as :func:`make_dirs` lists them) that
    are still empty, innermost first; a folder already gone or holding files is left as is."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:  # gone already, or not empty (then neither are its parents)
            continue
