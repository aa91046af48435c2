"""Axis order and geometry between NIfTI files and napari layers: the one place that owns them.

NIfTI stores voxels in (i, j, k[, t]) order with a 4x4 affine taking (i, j, k) to RAS+ world
millimetres. napari wants (z, y, x) data whose world axes come in the same reversed order, so a
layer's world coordinate ``w`` satisfies ``w[::-1] == RAS``.

Reading (:func:`napari_from_nifti`)
    1. ``nibabel.orientations.io_orientation`` finds the permutation and flips that bring the
       stored grid closest to RAS; ``apply_orientation`` applies them as a *view* (a transpose
       and flips, no interpolation, no copy). Flipped (LAS, LPS) and permuted (LSA, ...) files
       become plain RAS-ordered grids whose affine has a positive diagonal.
    2. The axes are reversed to napari's (z, y, x) = (S, A, R) order (time, if any, first).
    3. The remaining linear part is split, as napari composes it, into
       ``rotate @ shear @ diag(scale)``; the origin becomes ``translate``. For every
       axis-aligned file this is exactly ``scale`` + ``translate`` and ``rotate`` / ``shear``
       stay the identity: napari never receives a permutation matrix (which crashes its
       slicing).

Oblique files keep exact world coordinates: the residual rotation (and shear, for sheared
sforms) left after step 1 goes into the layer's ``rotate`` / ``shear``, so
``layer.data_to_world`` equals the NIfTI world of every voxel. napari's 2D view slices the
layer's own grid and ignores out-of-plane rotation (napari issues 2616 and 7310), so 2D slices of
an oblique volume are shown in its voxel grid, not resliced along world planes; 3D rendering and
every coordinate read-out are exact.

Writing (:func:`nifti_from_napari`)
    The inverse: the layer's *current* scale, translate, rotate, shear and affine give the
    RAS-ordered affine; the orientation stored at read time (:class:`StorageOrder`) restores the
    file's own axis order and flips. A layer that never came from a file is taken as
    (z, y, x) = (k, j, i) with its scale as spacing.

What a layer keeps of its file (header, scaling, source path) and how a layer becomes a NIfTI
volume or a grid to match is :mod:`napari_resample.plugin.layer_volume`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform
from numpy.typing import ArrayLike, NDArray

from napari_resample.io.nifti import holds_one_volume, native

#: World axis names in napari order (z, y, x): the direction each coordinate increases towards.
SPATIAL_AXIS_LABELS: tuple[str, str, str] = ("superior", "anterior", "right")

_IDENTITY_ORNT = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
#: napari units of the NIfTI ``xyzt_units`` codes: space ``code & 7``, time ``code & 56``; an
#: unknown space code is taken as mm (see :func:`napari_resample.io.nifti.ignored_header_fields`).
_SPACE_UNITS = {1: "m", 2: "mm", 3: "um"}
_TIME_UNITS = {8: "s", 16: "ms", 24: "us"}


@dataclass(frozen=True)
class StorageOrder:
    """How the file stored its voxels relative to the RAS-ordered grid shown in napari.

    Attributes
    ----------
    ornt : (3, 2) ndarray
        nibabel orientation of the stored (i, j, k) axes: row ``n`` is
        ``(RAS axis, +1 or -1)`` for stored axis ``n``. Identity for RAS-stored files.
    ndim : int
        Number of axes on disk: a 2D file, or a file holding one volume with extra axes of size
        1 (``(X, Y, Z, 1)``), is shown as 3D and written back with its own number of axes.
    """

    ornt: NDArray[np.float64]
    ndim: int = 3

    @classmethod
    def identity(cls) -> StorageOrder:
        """The order of a layer that did not come from a file: (z, y, x) = (k, j, i)."""
        return cls(_IDENTITY_ORNT.copy(), 3)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for layer metadata."""
        return {"ornt": self.ornt.tolist(), "ndim": self.ndim}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> StorageOrder:
        """Inverse of :meth:`to_dict`; None or an empty mapping gives :meth:`identity`."""
        if not value:
            return cls.identity()
        ornt = np.asarray(value["ornt"], dtype=np.float64)
        if ornt.shape != (3, 2):
            raise ValueError(f"storage orientation must be a (3, 2) array, got {ornt.tolist()!r}")
        return cls(ornt, int(value.get("ndim", 3)))


@dataclass(frozen=True)
class NapariLayout:
    """A NIfTI volume converted for napari.

    Attributes
    ----------
    data : (Z, Y, X) or (T, Z, Y, X) ndarray
        A view of the stored voxels, reordered (no copy unless the byte order was swapped).
    kwargs : dict
        ``scale``, ``translate``, ``rotate``, ``shear``, ``units`` and ``axis_labels`` for the
        napari layer.
    storage : StorageOrder
        What the writer needs to restore the file's axis order.
    """

    data: NDArray
    kwargs: dict[str, Any]
    storage: StorageOrder


def storage_order_of(affine: ArrayLike) -> NDArray[np.float64]:
    """nibabel orientation bringing the grid of *affine* closest to RAS.

    A degenerate affine (a zero voxel column) keeps the stored order.

    Examples
    --------
    >>> storage_order_of(np.diag([-2.0, 2.0, 2.0, 1.0])).tolist()  # LAS: first axis flipped
    [[0.0, -1.0], [1.0, 1.0], [2.0, 1.0]]
    """
    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    if not np.all(np.isfinite(ornt)):
        return _IDENTITY_ORNT.copy()
    return ornt


def split_linear(linear: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
    """Split a 3x3 linear map into napari's ``rotate @ shear @ diag(scale)``.

    Parameters
    ----------
    linear : (3, 3) array_like

    Returns
    -------
    rotate : (3, 3) ndarray, orthonormal
    shear : (3, 3) ndarray, upper triangular with a unit diagonal
    scale : (3,) ndarray, positive

    Examples
    --------
    >>> r, s, k = split_linear(np.diag([2.5, 0.5, 0.5]))
    >>> r.tolist() == np.eye(3).tolist(), s.tolist() == np.eye(3).tolist(), k.tolist()
    (True, True, [2.5, 0.5, 0.5])
    """
    m = np.asarray(linear, dtype=np.float64)
    if np.count_nonzero(m - np.diag(np.diag(m))) == 0 and np.all(np.diag(m) > 0):
        return np.eye(3), np.eye(3), np.diag(m).copy()
    q, r = np.linalg.qr(m)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    q = q * signs
    r = signs[:, None] * r
    scale = np.diag(r).copy()
    if np.any(scale <= 0):
        raise ValueError(f"affine is singular (a voxel axis has zero length): {m.tolist()!r}")
    return q, r / scale, scale


def _units(header: Any | None) -> tuple[str, str | None]:
    if header is None:
        return "mm", None
    code = int(header["xyzt_units"])  # not get_xyzt_units(): it raises on unknown codes
    return _SPACE_UNITS.get(code & 0x07, "mm"), _TIME_UNITS.get(code & 0x38)


def napari_from_nifti(data: NDArray, affine: ArrayLike, header: Any | None = None) -> NapariLayout:
    """Convert stored NIfTI voxels and their affine into napari data and layer geometry.

    Parameters
    ----------
    data : (I, J), (I, J, K) or (I, J, K, T) ndarray
        Voxels in stored order (a 2D image is treated as one slice).
    affine : (4, 4) array_like, voxel (i, j, k) -> RAS+ mm
    header : nibabel.Nifti1Header, optional
        Supplies the units and, for 4D data, the time step ``pixdim[4]``.

    Returns
    -------
    NapariLayout
        ``layout.data`` is (Z, Y, X) or (T, Z, Y, X); for every voxel index ``n`` of it,
        ``napari_world(n)[::-1]`` is the RAS world of the stored voxel it shows.

    Raises
    ------
    ValueError
        For more than 4 axes, or an affine that is not 4x4 or is singular.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 matrix, got shape {a.shape}")
    ndim = data.ndim
    if ndim == 2:
        data = data[:, :, np.newaxis]
    elif ndim > 3 and holds_one_volume(data.shape):
        data = data.reshape(data.shape[:3])
    elif ndim not in (3, 4):
        raise ValueError(
            f"only 2D, 3D and 4D NIfTI images (or one volume with extra axes of size 1) can be "
            f"shown, got shape {data.shape}"
        )
    ornt = storage_order_of(a)
    data_ras = apply_orientation(native(data), ornt)
    aff_ras = a @ inv_ornt_aff(ornt, data.shape[:3])
    rotate, shear, scale = split_linear(aff_ras[:3, :3][::-1, ::-1])
    translate = aff_ras[:3, 3][::-1].copy()
    space_unit, time_unit = _units(header)
    labels: tuple[str, ...] = SPATIAL_AXIS_LABELS
    units: tuple[str, ...] = (space_unit,) * 3
    oblique = not (np.allclose(rotate, np.eye(3)) and np.allclose(shear, np.eye(3)))
    if data_ras.ndim == 4:
        data_nap = data_ras.transpose(3, 2, 1, 0)
        step = float(header["pixdim"][4]) if header is not None else 0.0
        scale = np.concatenate([[step if np.isfinite(step) and step > 0 else 1.0], scale])
        translate = np.concatenate([[0.0], translate])
        rotate, shear = _embed(rotate), _embed(shear)
        labels = ("time", *labels)
        units = (time_unit or "s", *units)
    else:
        data_nap = data_ras.transpose(2, 1, 0)
    kwargs: dict[str, Any] = {
        "scale": tuple(float(v) for v in scale),
        "translate": tuple(float(v) for v in translate),
        "units": units,
        "axis_labels": labels,
    }
    if oblique:
        kwargs["rotate"] = rotate
        kwargs["shear"] = shear
    return NapariLayout(data_nap, kwargs, StorageOrder(ornt, ndim))


def _embed(m: NDArray) -> NDArray:
    """A 3x3 spatial matrix as the 4x4 of a (t, z, y, x) layer, time untouched."""
    out = np.eye(4)
    out[1:, 1:] = m
    return out


def napari_matrix(
    ndim: int,
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    rotate: ArrayLike | None = None,
    shear: ArrayLike | None = None,
    affine: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """The (ndim + 1) square matrix napari applies from data index to world.

    ``affine @ [[rotate @ shear @ diag(scale), translate], [0, 1]]``, with napari's
    conventions: missing parts are identities; ``shear`` is either an upper-triangular matrix
    or the vector of its upper off-diagonal entries; ``affine`` is (ndim + 1) square or
    ndim square (linear only).
    """
    lin = np.diag(np.ones(ndim) if scale is None else np.asarray(scale, dtype=np.float64))
    if shear is not None:
        lin = _shear_matrix(shear, ndim) @ lin
    if rotate is not None:
        r = np.asarray(rotate, dtype=np.float64)
        if r.shape != (ndim, ndim):
            raise ValueError(f"rotate must be a {ndim}x{ndim} matrix here, got shape {r.shape}")
        lin = r @ lin
    m = np.eye(ndim + 1)
    m[:ndim, :ndim] = lin
    if translate is not None:
        m[:ndim, ndim] = np.asarray(translate, dtype=np.float64)
    if affine is not None:
        outer = np.asarray(affine, dtype=np.float64)
        if outer.shape == (ndim, ndim):
            outer = np.block([[outer, np.zeros((ndim, 1))], [np.zeros((1, ndim)), np.ones(1)]])
        if outer.shape != (ndim + 1, ndim + 1):
            raise ValueError(
                f"affine must be {ndim + 1}x{ndim + 1} for a {ndim}D layer, got {outer.shape}"
            )
        m = outer @ m
    return m


def _shear_matrix(shear: ArrayLike, ndim: int) -> NDArray[np.float64]:
    s = np.asarray(shear, dtype=np.float64)
    if s.ndim == 2:
        if s.shape != (ndim, ndim):
            raise ValueError(f"shear must be a {ndim}x{ndim} matrix here, got shape {s.shape}")
        return s
    out = np.eye(ndim)
    rows, cols = np.triu_indices(ndim, 1)
    if s.size != rows.size:
        raise ValueError(f"shear vector for {ndim}D must hold {rows.size} values, got {s.size}")
    out[rows, cols] = s
    return out


def nifti_affine_from_napari(
    napari_shape: Sequence[int], storage: StorageOrder, state: Mapping[str, Any]
) -> NDArray[np.float64]:
    """Voxel-to-RAS affine, in the file's storage order, of a layer's current geometry.

    Parameters
    ----------
    napari_shape : sequence of int
        The layer's data shape, (Z, Y, X) or (T, Z, Y, X).
    storage : StorageOrder
    state : mapping
        The layer's ``scale``, ``translate``, ``rotate``, ``shear`` and ``affine`` (as in
        ``layer.as_layer_data_tuple()[1]`` or an npe2 writer's ``meta``); missing keys are
        identities.

    Returns
    -------
    (4, 4) ndarray, stored voxel (i, j, k) -> RAS+ mm
    """
    ndim = len(napari_shape)
    if ndim not in (3, 4):
        raise ValueError(f"a NIfTI volume needs a 3D or 4D layer, got shape {tuple(napari_shape)}")
    m = napari_matrix(
        ndim,
        scale=state.get("scale"),
        translate=state.get("translate"),
        rotate=state.get("rotate"),
        shear=state.get("shear"),
        affine=state.get("affine"),
    )
    sp = list(range(ndim - 3, ndim))
    aff_ras = np.eye(4)
    aff_ras[:3, :3] = m[np.ix_(sp, sp)][::-1, ::-1]
    aff_ras[:3, 3] = m[sp, ndim][::-1]
    ras_shape = tuple(int(n) for n in napari_shape[-3:][::-1])
    back = ornt_transform(_IDENTITY_ORNT, storage.ornt)
    return aff_ras @ inv_ornt_aff(back, ras_shape)


def nifti_from_napari(
    data: NDArray, storage: StorageOrder, state: Mapping[str, Any]
) -> tuple[NDArray, NDArray[np.float64]]:
    """Voxels and affine, in the file's own storage order, of a napari layer.

    The inverse of :func:`napari_from_nifti`: ``data`` is a (Z, Y, X) or (T, Z, Y, X) array,
    returned as a view in (I, J, K[, T]) order with the number of axes the file had.

    Returns
    -------
    data : ndarray, stored order
    affine : (4, 4) ndarray, stored voxel (i, j, k) -> RAS+ mm
    """
    affine = nifti_affine_from_napari(data.shape, storage, state)
    back = ornt_transform(_IDENTITY_ORNT, storage.ornt)
    ras = data.transpose(tuple(range(data.ndim))[::-1])
    stored = apply_orientation(ras, back)
    if storage.ndim == 2 and stored.ndim == 3 and stored.shape[2] == 1:
        stored = stored[:, :, 0]
    elif storage.ndim > 3 and stored.ndim == 3:
        stored = stored.reshape(stored.shape + (1,) * (storage.ndim - 3))
    return stored, affine


def napari_from_stored(stored: NDArray, storage: StorageOrder) -> NDArray:
    """(Z, Y, X) napari data showing (I, J, K) *stored* voxels in *storage*'s order.

    The inverse of :func:`nifti_from_napari`'s data for a 3D layer: a view (no copy), so that
    voxels computed on a layer's file grid lie on that layer voxel for voxel.

    Examples
    --------
    >>> lsa = StorageOrder(np.array([[0.0, -1.0], [2.0, 1.0], [1.0, 1.0]]))
    >>> shown = np.arange(24).reshape(2, 3, 4)  # napari (S, A, R)
    >>> stored, _ = nifti_from_napari(shown, lsa, {})
    >>> stored.shape, np.array_equal(napari_from_stored(stored, lsa), shown)
    ((4, 2, 3), True)
    """
    if stored.ndim != 3:
        raise ValueError(f"napari_from_stored needs 3D voxels, got shape {stored.shape}")
    return apply_orientation(native(stored), storage.ornt).transpose(2, 1, 0)


def napari_view(stored_kji: Any, storage: StorageOrder) -> Any:
    """(Z, Y, X) napari data showing the (I, J, K) voxels of a file, given in (K, J, I) order.

    What :func:`napari_from_stored` does for numpy arrays, for any array with ``transpose`` and
    reversed slicing (a dask array of a NIfTI-Zarr level, whose storage order is (k, j, i)): the
    result stays a view, nothing is read. The flips and the permutation are nibabel's
    ``apply_orientation``'s (flip each stored axis whose orientation is -1, then reorder the
    axes to R, A, S).

    Examples
    --------
    >>> lsa = StorageOrder(np.array([[0.0, -1.0], [2.0, 1.0], [1.0, 1.0]]))
    >>> stored = np.arange(24).reshape(4, 2, 3)  # (I, J, K) = (L, S, A)
    >>> view = napari_view(stored.transpose(2, 1, 0), lsa)
    >>> view.shape, np.array_equal(view, napari_from_stored(stored, lsa))
    ((2, 3, 4), True)
    """
    ijk = stored_kji.transpose(2, 1, 0)
    flips = tuple(slice(None, None, -1 if sign < 0 else 1) for sign in storage.ornt[:, 1])
    ras = ijk[flips].transpose(tuple(int(a) for a in np.argsort(storage.ornt[:, 0])))
    return ras.transpose(2, 1, 0)


def stored_shape(napari_shape: Sequence[int], storage: StorageOrder) -> tuple[int, ...]:
    """Spatial (I, J, K) size in file voxel order of a layer with *napari_shape*.

    Examples
    --------
    >>> lsa = StorageOrder(np.array([[0.0, -1.0], [2.0, 1.0], [1.0, 1.0]]))
    >>> stored_shape((40, 200, 100), lsa)  # napari (S, A, R) -> stored (L, S, A)
    (100, 40, 200)
    """
    ras = [int(n) for n in napari_shape[-3:][::-1]]
    return tuple(ras[int(axis)] for axis in storage.ornt[:, 0])
