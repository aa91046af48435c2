"""Reading spacing, origin and direction off an affine: test helpers (the package itself uses
``nibabel.affines.voxel_sizes``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def spacing_of(affine: ArrayLike) -> NDArray[np.float64]:
    """Voxel spacing in mm: the lengths of the affine's three voxel columns."""
    a = np.asarray(affine, dtype=np.float64)
    return np.sqrt((a[:3, :3] ** 2).sum(axis=0))


def origin_of(affine: ArrayLike) -> NDArray[np.float64]:
    """World position (RAS mm) of the centre of voxel (0, 0, 0)."""
    return np.asarray(affine, dtype=np.float64)[:3, 3].copy()


def direction_of(affine: ArrayLike) -> NDArray[np.float64]:
    """(3, 3) matrix of unit voxel axes in world space (the affine's columns normalised)."""
    a = np.asarray(affine, dtype=np.float64)
    s = spacing_of(a)
    return a[:3, :3] / np.where(s == 0, 1.0, s)


def ras_to_lps(affine: ArrayLike) -> NDArray[np.float64]:
    """The same voxel-to-world map expressed in ITK's LPS+ world (x and y negated)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
