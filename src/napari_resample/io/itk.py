"""SimpleITK <-> NIfTI conventions: the one place that reverses axes and negates x and y.

SimpleITK arrays are (k, j, i) (``GetArrayFromImage`` reverses the index order) and its world
is LPS+ (x and y negated relative to nibabel's RAS+). Our volumes are (i, j, k) arrays with a
voxel -> RAS affine. An ITK image holds ``spacing`` (per index axis), ``origin`` (LPS) and a
``direction`` of unit columns, so its voxel -> LPS map is ``direction @ diag(spacing)`` plus
``origin``; the RAS affine is that map with its first two rows negated.

SimpleITK is imported inside the functions: it takes ~0.3 s to import.

Examples
--------
>>> import SimpleITK as sitk
>>> image = image_from_array(np.zeros((4, 3, 2), np.int16), np.diag([2.0, 3.0, 4.0, 1.0]))
>>> image.GetSize(), image.GetSpacing(), image.GetDirection()[0]
((4, 3, 2), (2.0, 3.0, 4.0), -1.0)
>>> data, affine = array_from_image(image)
>>> data.shape, np.diag(affine).tolist()
((4, 3, 2), [2.0, 3.0, 4.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: RAS <-> LPS: x and y change sign (its own inverse).
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(spacing: ArrayLike, origin: ArrayLike, direction: ArrayLike) -> NDArray[np.float64]:
    """The voxel -> RAS affine of an ITK image's geometry (LPS ``origin`` and ``direction``).

    Parameters
    ----------
    spacing : (3,) sequence of float, mm per index axis (i, j, k)
    origin : (3,) sequence of float, LPS mm
    direction : (9,) or (3, 3) sequence of float, unit columns per index axis (row-major)

    Returns
    -------
    (4, 4) ndarray of float64, voxel -> RAS mm

    Examples
    --------
    >>> ras_affine((1, 1, 2), (10, 20, 30), np.eye(3).ravel()).tolist()[0]
    [-1.0, 0.0, 0.0, -10.0]
    """
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(
        spacing, dtype=np.float64
    )
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_FROM_RAS @ lps


def itk_geometry(
    affine: ArrayLike,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing, origin, direction)`` of an ITK image for a voxel -> RAS *affine*.

    Raises
    ------
    ValueError
        If the affine has shear (ITK directions are orthonormal) or a zero column.

    Examples
    --------
    >>> spacing, origin, direction = itk_geometry(np.diag([2.0, 3.0, 4.0, 1.0]))
    >>> spacing, origin, direction[:3]
    ((2.0, 3.0, 4.0), (0.0, 0.0, 0.0), (-1.0, 0.0, 0.0))
    """
    lps = LPS_FROM_RAS @ np.asarray(affine, dtype=np.float64)
    linear = lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(spacing > 0):
        raise ValueError(f"the affine has a zero voxel axis: {np.asarray(affine).tolist()}")
    direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise ValueError(
            "the affine has shear, which an ITK image (orthonormal directions) cannot hold: "
            f"{np.asarray(affine).tolist()}"
        )
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in lps[:3, 3]),
        tuple(float(d) for d in direction.ravel()),
    )


def image_from_array(data: ArrayLike, affine: ArrayLike | None = None) -> Any:
    """A SimpleITK image of an (i, j, k) array, with the geometry of *affine* (voxel -> RAS).

    Without *affine* the image lies on its voxel grid: unit spacing, zero origin, identity
    direction (so SimpleITK's interpolators work in voxel coordinates). Big-endian data
    (which SimpleITK refuses: ``dtype: >i2 is not supported``) is converted to native order.
    """
    import SimpleITK as sitk

    arr = np.asarray(data)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    if affine is not None:
        spacing, origin, direction = itk_geometry(affine)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
    return image


def array_from_image(image: Any) -> tuple[NDArray, NDArray[np.float64]]:
    """The (i, j, k) array of a 3D SimpleITK image and its voxel -> RAS affine (a view when
    SimpleITK allows it: the array is the image's buffer reversed, Fortran-ordered)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    return arr, ras_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
