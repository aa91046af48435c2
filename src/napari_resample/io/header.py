"""NIfTI headers for output: moved with a resampling, made for an affine, typed for storage.

Every field we do not change is kept: a resampled header is the input's with its geometry moved
(qform and sform each by the same voxel transform, codes kept), so its description, intent,
units and time step survive.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.geometry import voxel_transform
from napari_resample.engine.options import Anchor

#: NIfTI qform / sform codes: world coordinates of the scanner, or aligned to another volume.
XFORM_SCANNER = 1
XFORM_ALIGNED = 2


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
    from NRRD, MetaImage or DICOM (its :attr:`napari_resample.io.nifti.NiftiVolume.xform_code`).

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
