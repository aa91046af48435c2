"""Voxel-space geometry of a resampling: sample positions and the new affine.

This module owns the affine <-> spacing / origin / direction convention. Everything is in
NIfTI voxel order (i, j, k) and nibabel's RAS+ world in millimetres.

The output grid is an axis-aligned scaling of the input grid in voxel space. With scale factors
``f = old_size / new_size``, output voxel ``i'`` samples the input at the continuous index
``i = o + f * i'`` where ``o = 0`` for ``anchor="origin"`` (first voxel centre kept) and
``o = (f - 1) / 2`` for ``anchor="center"`` (outer edges of the field of view kept). The new
affine is ``A @ [[diag(f), o], [0, 1]]``, valid for any affine (flipped, permuted, oblique,
sheared), because the whole operation happens in voxel space.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.options import ANCHORS, Anchor


def scale_factors(old_shape: ArrayLike, new_shape: ArrayLike) -> NDArray[np.float64]:
    """Per-axis zoom-out factors ``old_size / new_size``.

    Parameters
    ----------
    old_shape, new_shape : (3,) sequence of int
        Sizes in voxel order (i, j, k).

    Returns
    -------
    f : (3,) ndarray of float64
        ``f > 1`` downsamples, ``f < 1`` upsamples.

    Examples
    --------
    >>> scale_factors((512, 512, 300), (256, 256, 128)).tolist()
    [2.0, 2.0, 2.34375]
    """
    old = np.asarray(old_shape, dtype=np.float64)
    new = np.asarray(new_shape, dtype=np.float64)
    return old / new


def scale_factor(n_in: int, n_out: int) -> float:
    """The zoom-out factor ``old_size / new_size`` of one axis: :func:`scale_factors` for one axis.

    Examples
    --------
    >>> scale_factor(300, 128)
    2.34375
    """
    return float(scale_factors([n_in], [n_out])[0])


def index_offset(factors: ArrayLike, anchor: Anchor) -> NDArray[np.float64]:
    """Continuous input index sampled by output voxel 0, per axis.

    Parameters
    ----------
    factors : (3,) array_like of float
        ``old_size / new_size`` per axis.
    anchor : {"origin", "center"}
        ``"origin"`` keeps the first voxel centre, ``"center"`` keeps the outer edges of the
        field of view.

    Returns
    -------
    o : (3,) ndarray of float64
    """
    f = np.asarray(factors, dtype=np.float64)
    if anchor == "origin":
        return np.zeros_like(f)
    if anchor == "center":
        return (f - 1.0) / 2.0
    raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")


def sample_positions(n_in: int, n_out: int, anchor: Anchor) -> NDArray[np.float64]:
    """Continuous input indices sampled along one axis.

    Examples
    --------
    >>> sample_positions(4, 2, "origin").tolist()
    [0.0, 2.0]
    >>> sample_positions(4, 2, "center").tolist()
    [0.5, 2.5]
    """
    f = scale_factor(n_in, n_out)
    o = float(index_offset([f], anchor)[0])
    return o + f * np.arange(n_out, dtype=np.float64)


#: Continuous input indices sampled along each of the three axes (NIfTI order): the whole
#: description of a separable resampling (output size per axis = the number of positions).
Positions = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def grid_positions(old_shape: ArrayLike, new_shape: ArrayLike, anchor: Anchor) -> Positions:
    """:func:`sample_positions` of the three axes of a resampling to *new_shape*.

    Examples
    --------
    >>> [x.tolist() for x in grid_positions((2, 1, 3), (4, 1, 3), "origin")]
    [[0.0, 0.5, 1.0, 1.5], [0.0], [0.0, 1.0, 2.0]]
    """
    old, new = np.asarray(old_shape), np.asarray(new_shape)
    x, y, z = (sample_positions(int(n), int(m), anchor) for n, m in zip(old, new, strict=True))
    return x, y, z


def position_step(n_in: int, x: NDArray[np.float64]) -> float:
    """Input voxels between two samples along an axis: ``|x[1] - x[0]|``; for a single sample,
    the whole axis (``n_in``, as :func:`scale_factor` gives for an output size of 1).

    Examples
    --------
    >>> position_step(10, np.array([4.0, 2.0, 0.0])), position_step(10, np.array([3.0]))
    (2.0, 10.0)
    """
    return float(abs(x[1] - x[0])) if x.size > 1 else float(n_in)


def is_identity(n_in: int, x: NDArray[np.float64]) -> bool:
    """Whether sampling at *x* reads every input voxel once, in order (nothing to compute).

    Examples
    --------
    >>> is_identity(3, np.arange(3.0)), is_identity(3, np.arange(3.0)[::-1])
    (True, False)
    """
    return x.size == n_in and bool(np.array_equal(x, np.arange(n_in, dtype=np.float64)))


#: How far (in voxels) a position may lie past the half-voxel edge of the field of view and
#: still count as inside it: rounding in the affine algebra, not a margin. The one tolerance of
#: :func:`inside_positions` and :func:`napari_resample.engine.grid.overlap_fraction`.
FOV_TOL = 1e-6


def fov_limits(n_in: int) -> tuple[float, float]:
    """The continuous indices bounding the field of view of an *n_in*-voxel axis: half a voxel
    beyond the outer voxel centres, widened by :data:`FOV_TOL`.

    Examples
    --------
    >>> fov_limits(4)
    (-0.500001, 3.500001)
    """
    return -0.5 - FOV_TOL, n_in - 0.5 + FOV_TOL


def inside_positions(n_in: int, x: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which positions lie within the input's field of view along one axis: within half a
    voxel of a voxel centre, ``-1/2 <= x <= n_in - 1/2`` (:func:`fov_limits`).

    Examples
    --------
    >>> inside_positions(4, np.array([-0.6, -0.5, 3.5, 3.6])).tolist()
    [False, True, True, False]
    """
    low, high = fov_limits(n_in)
    return (x >= low) & (x <= high)


def nearest_index(n_in: int, x: NDArray[np.float64]) -> NDArray[np.int64]:
    """The input voxel nearest to each position along one axis, edges held: the one rule of
    nearest-neighbour sampling (halves round up).

    Examples
    --------
    >>> nearest_index(4, grid_positions((4, 1, 1), (6, 1, 1), "origin")[0]).tolist()
    [0, 1, 1, 2, 3, 3]
    >>> nearest_index(3, np.array([-0.7, 0.5, 1.49, 9.0])).tolist()
    [0, 1, 1, 2]
    """
    return np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.int64)


def voxel_transform(old_shape: ArrayLike, new_shape: ArrayLike, anchor: Anchor) -> NDArray:
    """(4, 4) matrix taking output voxel indices to input voxel indices."""
    f = scale_factors(old_shape, new_shape)
    t = np.diag(np.append(f, 1.0))
    t[:3, 3] = index_offset(f, anchor)
    return t


def resampled_affine(
    affine: ArrayLike, old_shape: ArrayLike, new_shape: ArrayLike, anchor: Anchor = "origin"
) -> NDArray[np.float64]:
    """Voxel-to-world affine of the resampled grid.

    Parameters
    ----------
    affine : (4, 4) array_like, voxel (i, j, k) -> world mm
    old_shape, new_shape : (3,) sequence of int
    anchor : {"origin", "center"}

    Returns
    -------
    new_affine : (4, 4) ndarray of float64
        Columns scaled by ``old_size / new_size``; the origin kept (``"origin"``) or moved by
        ``direction @ (new_spacing - old_spacing) / 2`` (``"center"``).

    Examples
    --------
    >>> a = resampled_affine(np.diag([0.5, 0.5, 1.0, 1.0]), (512, 512, 300), (256, 256, 128))
    >>> np.diag(a).round(5).tolist()
    [1.0, 1.0, 2.34375, 1.0]
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 matrix, got shape {a.shape}")
    return a @ voxel_transform(old_shape, new_shape, anchor)
