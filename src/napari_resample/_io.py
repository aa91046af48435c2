"""NIfTI input and output with nibabel, keeping every header field we can.

Reading returns the *stored* voxel values (``get_unscaled``: no float64 upcast, no scaling
applied) with the header, so that a resampled file can be written back in the same on-disk type,
byte order and scaling. Writing goes to a temporary file in the destination folder, renamed into
place only when complete, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from numpy.typing import ArrayLike, NDArray

from napari_resample._geometry import Anchor, spacing_of, voxel_transform

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")

#: NIfTI intent codes of label maps.
NIFTI_INTENT_LABEL = 1002
NIFTI_INTENT_NEURONAME = 1003

#: Header fields copied verbatim from a source file; the geometry fields are rewritten.
KEPT_FIELDS: tuple[str, ...] = (
    "xyzt_units",
    "descrip",
    "aux_file",
    "intent_code",
    "intent_p1",
    "intent_p2",
    "intent_p3",
    "intent_name",
    "cal_min",
    "cal_max",
    "slice_code",
    "slice_start",
    "slice_end",
    "slice_duration",
    "toffset",
    "dim_info",
)


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
    header : nibabel.Nifti1Header
        A copy of the full header.
    slope, inter : float
        The stored scaling (1 and 0 when the file has none).
    path : str or None
        Where the volume was read from.
    """

    data: NDArray
    affine: NDArray[np.float64]
    header: nib.Nifti1Header
    slope: float = 1.0
    inter: float = 0.0
    path: str | None = None

    @property
    def is_scaled(self) -> bool:
        """True when the stored values need ``value * slope + inter``."""
        return (self.slope, self.inter) != (1.0, 0.0)

    def scaled_data(self) -> NDArray:
        """Voxel values with the scaling applied: float32 for scaled files, else stored type."""
        if not self.is_scaled:
            return self.data
        out = self.data.astype(np.float32)
        out *= np.float32(self.slope)
        out += np.float32(self.inter)
        return out


def nifti_suffix(path: str | os.PathLike[str]) -> str | None:
    """``".nii.gz"`` or ``".nii"`` if *path* names a NIfTI file (case-insensitive), else None.

    Examples
    --------
    >>> nifti_suffix("scan_042.NII.GZ"), nifti_suffix("scan.nii"), nifti_suffix("scan.gz")
    ('.nii.gz', '.nii', None)
    """
    name = os.fspath(path).lower()
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def strip_nifti_suffix(path: str | os.PathLike[str]) -> str:
    """The file name of *path* without its folder and NIfTI suffix (``scan_042``)."""
    name = os.path.basename(os.fspath(path))
    suffix = nifti_suffix(name)
    return name[: -len(suffix)] if suffix else name


def load_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI-1 or NIfTI-2 file without converting its voxel type.

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
        If the file is not a readable NIfTI image, or holds a type we cannot resample
        (RGB, complex).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIfTI file not found: {path!r}")
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ValueError(f"{type(img).__name__} is not a NIfTI-1/2 image")
        proxy: Any = img.dataobj
        data = _read_unscaled(path, proxy)
        slope, inter = float(proxy.slope), float(proxy.inter)
        affine = np.array(img.affine, dtype=np.float64)
        header = img.header.copy()
    except (OSError, EOFError, ValueError, ImageFileError, HeaderDataError) as exc:
        raise ValueError(f"cannot read {path!r} as NIfTI: {exc}") from exc
    if data.dtype.fields is not None or data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported NIfTI data type {data.dtype} in {path!r}")
    if not (np.isfinite(slope) and slope != 0):
        slope, inter = 1.0, 0.0
    if not np.isfinite(inter):
        inter = 0.0
    return NiftiVolume(data, affine, header, slope, inter, path)


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
    pixdim[1:4] = spacing_of(a)
    if len(shape) == 3:
        pixdim[4:] = old_pixdim[4:]
    hdr["pixdim"] = pixdim
    return hdr


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
    # The temporary name must not be too long where the final one is not (255 bytes is the
    # usual limit on a name): the file's name is shortened in it, never the random part.
    stem = os.path.basename(path).encode()[:_TMP_STEM_BYTES].decode(errors="ignore")
    tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    raw = tmp[: -len(".gz")] if suffix == ".nii.gz" and _igzip() is not None else None
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
    return path


#: Bytes of the destination's name kept in a temporary file's name (``.<stem>.<12 hex>.tmp.nii.gz``
#: stays within 255 bytes).
_TMP_STEM_BYTES = 200


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
