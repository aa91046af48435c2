"""Target grids other than a size: a target spacing, and another image's grid (a reference).

Pure geometry (numpy only). A grid is a shape and a voxel -> RAS affine; the voxels of the
output grid are mapped into the input's voxel space by ``inv(A_in) @ A_ref``
(:func:`voxel_map`). When that map is a per-axis scaling and shift, possibly with permuted or
flipped axes (:func:`aligned_positions`), the separable engine does the work; otherwise the
grid is oblique to the input and SimpleITK does (:mod:`napari_resample.pipeline.reference`).

The field of view of a grid is its voxels' extent: half a voxel beyond the outer voxel centres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_resample.engine.geometry import Positions, fov_limits
from napari_resample.engine.options import validate_spacing


@dataclass(frozen=True)
class Grid:
    """A voxel grid in the world: what a reference contributes to a resampling.

    Attributes
    ----------
    shape : (3,) tuple of int, voxel order (i, j, k)
    affine : (4, 4) ndarray, voxel -> RAS mm
    header : nibabel.Nifti1Header or None
        The header whose qform, sform, codes and pixdim are copied to the output: the
        reference file's own for NIfTI, one made for its geometry (codes 1, scanner) for NRRD,
        MetaImage and DICOM; None for a grid made in a session (a layer), whose output header
        is made from the affine.
    name : str
        How messages name the grid (a file path, a layer name).
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]
    header: Any = None
    name: str = "the reference"


def voxel_spacing(affine: ArrayLike) -> NDArray[np.float64]:
    """Voxel sizes (mm) along i, j, k: the lengths of the affine's first three columns.

    Examples
    --------
    >>> voxel_spacing(np.diag([-0.5, 0.5, 2.5, 1.0])).tolist()
    [0.5, 0.5, 2.5]
    """
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def spacing_size(
    shape: Sequence[int], affine: ArrayLike, spacing: object
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """The size reaching *spacing* (mm) with the field of view kept, and the spacing it gives.

    Per axis ``size = max(1, round(n * old_spacing / spacing))``; the field of view is kept
    exactly, so the achieved spacing is ``old_spacing * n / size``, within half a voxel over the
    field of view of the request.

    Parameters
    ----------
    shape : (3,) sequence of int, voxel order (i, j, k)
    affine : (4, 4) array_like, voxel -> RAS mm
    spacing : (3,) sequence of float, mm, in the same (i, j, k) order

    Returns
    -------
    size : (3,) tuple of int
    achieved : (3,) tuple of float, mm

    Raises
    ------
    ValueError
        If *spacing* is not three positive finite numbers.

    Examples
    --------
    >>> spacing_size((512, 512, 300), np.diag([0.7, 0.7, 1.0, 1.0]), (1, 1, 1))
    ((358, 358, 300), (1.001117318435754, 1.001117318435754, 1.0))
    """
    target = np.asarray(validate_spacing(spacing))
    old = voxel_spacing(affine)
    n = np.asarray(shape[:3], dtype=np.float64)
    size = tuple(max(1, math.floor(v + 0.5)) for v in n * old / target)
    achieved = tuple(float(a) for a in old * n / np.asarray(size, dtype=np.float64))
    return (size[0], size[1], size[2]), (achieved[0], achieved[1], achieved[2])


def voxel_map(in_affine: ArrayLike, ref_affine: ArrayLike) -> NDArray[np.float64]:
    """(4, 4) map from output (reference) voxel indices to input continuous voxel indices.

    Examples
    --------
    >>> voxel_map(np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([1.0, 1.0, 4.0, 1.0])).diagonal().tolist()
    [0.5, 0.5, 2.0, 1.0]
    """
    a_in = np.asarray(in_affine, dtype=np.float64)
    try:
        inverse = np.linalg.inv(a_in)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"the input's affine cannot be inverted: {a_in.tolist()}") from exc
    return np.asarray(inverse @ np.asarray(ref_affine, dtype=np.float64), dtype=np.float64)


#: How far (in input voxels, over the whole output grid) dropping a map's off-axis terms may
#: move a sample for the map to count as axis-aligned (not a field-of-view rule: that is
#: :data:`napari_resample.engine.geometry.FOV_TOL`).
ALIGNED_TOL = 1e-3


def aligned_positions(
    in_shape: Sequence[int], mapping: ArrayLike, out_shape: Sequence[int]
) -> tuple[tuple[int, int, int], Positions] | None:
    """The separable form of *mapping*, if it has one: ``(perm, positions)`` such that output
    axis ``c`` samples input axis ``perm[c]`` at ``positions[c]`` (so the input transposed by
    *perm* is resampled axis by axis); None for an oblique map.

    Examples
    --------
    >>> m = np.array([[0, 2.0, 0, 1], [-1.0, 0, 0, 9], [0, 0, 1, 0], [0, 0, 0, 1]])
    >>> perm, x = aligned_positions((10, 10, 4), m, (3, 2, 4))
    >>> perm, [p.tolist() for p in x]
    ((1, 0, 2), [[9.0, 8.0, 7.0], [1.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    """
    m = np.asarray(mapping, dtype=np.float64)
    linear = m[:3, :3]
    perm = tuple(int(r) for r in np.argmax(np.abs(linear), axis=0))
    if sorted(perm) != [0, 1, 2]:
        return None
    off = linear.copy()
    off[perm, range(3)] = 0.0
    extent = np.asarray(out_shape[:3], dtype=np.float64)
    if np.max(np.abs(off) @ extent) > ALIGNED_TOL:
        return None
    x0, x1, x2 = (
        m[perm[c], 3] + linear[perm[c], c] * np.arange(int(out_shape[c]), dtype=np.float64)
        for c in range(3)
    )
    return (perm[0], perm[1], perm[2]), (x0, x1, x2)


def world_bounds(shape: Sequence[int], affine: ArrayLike) -> NDArray[np.float64]:
    """(2, 3) RAS bounding box (min row, max row, mm) of a grid's field of view (voxel edges).

    Examples
    --------
    >>> world_bounds((10, 10, 4), np.diag([1.0, 1.0, 2.0, 1.0])).tolist()
    [[-0.5, -0.5, -1.0], [9.5, 9.5, 7.0]]
    """
    n = np.asarray(shape[:3], dtype=np.float64)
    corners = np.array(
        [[-0.5 + (n[a] if (c >> a) & 1 else 0.0) for a in range(3)] for c in range(8)]
    )
    world = corners @ np.asarray(affine, dtype=np.float64)[:3, :3].T + np.asarray(affine)[:3, 3]
    return np.stack([world.min(axis=0), world.max(axis=0)])


def format_bounds(bounds: NDArray[np.float64]) -> str:
    """``x [a, b], y [c, d], z [e, f] mm (RAS)`` for a :func:`world_bounds` box.

    Examples
    --------
    >>> format_bounds(np.array([[-0.5, 0, 1], [9.5, 10, 7.25]]))
    'x [-0.5, 9.5], y [0, 10], z [1, 7.25] mm (RAS)'
    """
    parts = [f"{ax} [{lo:.6g}, {hi:.6g}]" for ax, lo, hi in zip("xyz", *bounds, strict=True)]
    return ", ".join(parts) + " mm (RAS)"


def overlap_fraction(
    in_shape: Sequence[int], in_affine: ArrayLike, out_shape: Sequence[int], out_affine: ArrayLike
) -> float:
    """The fraction of the output grid's voxels whose centre lies in the input's field of view.

    Exact (no sampling): along each line of output voxels the input index is linear, so the
    voxels inside form an interval computed from the six faces of the input's field of view
    (within half a voxel of its outer voxel centres:
    :func:`napari_resample.engine.geometry.fov_limits`, the rule of
    :func:`napari_resample.engine.geometry.inside_positions`).

    Examples
    --------
    >>> a = np.eye(4)
    >>> overlap_fraction((10, 10, 10), a, (10, 10, 10), a)
    1.0
    >>> b = a.copy(); b[0, 3] = 5.0  # shifted by half the field of view along x
    >>> overlap_fraction((10, 10, 10), a, (10, 10, 10), b)
    0.5
    """
    m = voxel_map(in_affine, out_affine)
    n_in = [int(n) for n in in_shape[:3]]
    n0, n1, n2 = (int(n) for n in out_shape[:3])
    j = np.arange(n1, dtype=np.float64)[:, None]
    inside = 0
    for k in range(n2):  # one output plane at a time: memory of one plane
        lo = np.zeros((n1, 1))
        hi = np.full((n1, 1), n0 - 1.0)
        for r in range(3):
            start = m[r, 1] * j + m[r, 2] * k + m[r, 3]
            low, high = fov_limits(n_in[r])
            slope = m[r, 0]
            if abs(slope) < 1e-12:
                hi = np.where((start < low) | (start > high), -1.0, hi)
                continue
            t1, t2 = (low - start) / slope, (high - start) / slope
            lo = np.maximum(lo, np.minimum(t1, t2))
            hi = np.minimum(hi, np.maximum(t1, t2))
        inside += int(np.clip(np.floor(hi) - np.ceil(lo) + 1, 0, None).sum())
    return inside / (n0 * n1 * n2)
