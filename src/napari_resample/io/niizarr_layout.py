"""The layout of the NIfTI-Zarr volumes we write: chunks, pyramid levels, OME metadata.

A ``.nii.zarr`` (NIfTI-Zarr v1.0 rc, on Zarr v3 with OME-NGFF 0.5 metadata) is a Zarr group
holding the NIfTI header byte for byte in a ``nifti`` array of bytes, and one array per
resolution level, ``0`` (the voxels) to ``n``, each in (z, y, x) = (k, j, i) order: the bytes of
a NIfTI volume's (I, J, K) voxels in F order are those of the (K, J, I) array in C order, so
planes go in and out without a copy.

Choices (docs/niizarr.md):

- chunks of 64 x 64 x 64 voxels: cubes serve block-wise readers (napari's 3D view, neuroglancer,
  the pyramid built here) and a reader of whole planes in k order decodes each chunk once. The
  writer holds one slab of chunks along k while the planes arrive, so the level-0 chunk depth
  halves (down to 1) while that slab would be over :data:`SLAB_CAP`; it depends on the shape
  and type only, never on a memory budget, so a volume always gives the same folder.
- Blosc with zstd at level :data:`ZSTD_LEVEL` (1) and byte shuffle (the NIfTI-Zarr draft's
  "blosc or zlib"; the reference implementation defaults to level 5, which compresses a CT's
  64^3 int16 chunks at 117 MB/s against level 1's 611 MB/s for 4 % smaller chunks: level 1 is
  1.5x faster than gzip's on the same chunks, and a 1600^3 result is 12 % smaller than as a
  ``.nii.gz``).
- levels halve every axis longer than one voxel (2 x 2 x 2 windows; an odd edge repeats its
  last voxel) until the largest side is at most :data:`THUMBNAIL`; images are averaged in
  float64 and cast back rounded and clamped, label maps take the most frequent label of each
  window (ties to the smallest), so a level only holds labels of the volume.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: zstd's level in Blosc (see the module docstring: speed over the last 4 % of size).
ZSTD_LEVEL = 1
#: Side of a chunk (voxels).
CHUNK = 64
#: Most bytes of the slab of level-0 planes the writer holds while planes arrive.
SLAB_CAP = 128 << 20
#: A pyramid stops at the first level whose largest side is at most this.
THUMBNAIL = 64
#: OME-NGFF names of the NIfTI spatial units (``xyzt_units & 7``); unknown is millimetres,
#: as NIfTI readers assume.
SPACE_UNITS = {0: "millimeter", 1: "meter", 2: "millimeter", 3: "micrometer"}


def level0_chunks(shape: tuple[int, int, int], itemsize: int) -> tuple[int, int, int]:
    """Chunks (z, y, x) of level 0 of an (I, J, K) volume of *itemsize*-byte voxels.

    Examples
    --------
    >>> level0_chunks((512, 512, 300), 2), level0_chunks((1600, 1600, 1600), 2)
    ((64, 64, 64), (16, 64, 64))
    """
    i, j, k = shape
    depth = min(CHUNK, k)
    while depth > 1 and i * j * depth * itemsize > SLAB_CAP:
        depth //= 2
    return depth, min(CHUNK, j), min(CHUNK, i)


def level_chunks(shape_zyx: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of a pyramid level above 0: cubes of :data:`CHUNK`, cut to the level's shape."""
    return tuple(min(CHUNK, n) for n in shape_zyx)


def pyramid_shapes(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The (I, J, K) shape of every level, level 0 first.

    Examples
    --------
    >>> pyramid_shapes((250, 200, 1))
    [(250, 200, 1), (125, 100, 1), (63, 50, 1)]
    """
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > THUMBNAIL:
        shapes.append(tuple((n + 1) // 2 if n > 1 else 1 for n in shapes[-1]))
    return shapes  # type: ignore[return-value]  # three ints each


def multiscales(
    shapes: list[tuple[int, int, int]], spacing: NDArray, unit: str, name: str
) -> dict[str, Any]:
    """The group's ``ome`` attribute (OME-NGFF 0.5) for levels of *shapes* and level-0 voxel
    *spacing* (i, j, k) in *unit*: each level's scale is the spacing times its factor along the
    axis, its translation half a level-0 voxel per factor step (the centre of a window)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    datasets = []
    for level in range(len(shapes)):
        factor = np.array([_factor(shapes, level, axis) for axis in range(3)], dtype=np.float64)
        scale = (spacing * factor)[::-1]
        shift = ((factor - 1) / 2 * spacing)[::-1]
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(v) for v in scale]},
                    {"type": "translation", "translation": [float(v) for v in shift]},
                ],
            }
        )
    axes = [{"name": axis, "type": "space", "unit": unit} for axis in "zyx"]
    return {
        "version": "0.5",
        "multiscales": [
            {"name": name, "axes": axes, "datasets": datasets, "type": "2x2x2 window"}
        ],
    }


def _factor(shapes: list[tuple[int, int, int]], level: int, axis: int) -> int:
    """How many level-0 voxels along *axis* one voxel of *level* spans."""
    return math.prod(2 for n in range(level) if shapes[n][axis] > 1)


def halve(region: NDArray, halved: tuple[bool, bool, bool], labels: bool) -> NDArray:
    """One pyramid step on a (z, y, x) *region* whose halved axes start on an even index:
    2-voxel windows along the *halved* axes (an odd end repeats its last voxel), averaged, or
    for *labels* the most frequent value of each window (ties to the smallest).

    Examples
    --------
    >>> region, along_x = np.array([[[1, 2, 2, 7]]], dtype=np.uint8), (False, False, True)
    >>> halve(region, along_x, False).tolist(), halve(region, along_x, True).tolist()
    ([[[2, 4]]], [[[1, 2]]])
    """
    pad = [(0, n % 2 if h else 0) for n, h in zip(region.shape, halved, strict=True)]
    if any(p[1] for p in pad):
        region = np.pad(region, pad, mode="edge")
    steps = [2 if h else 1 for h in halved]
    split: list[int] = []
    for n, step in zip(region.shape, steps, strict=True):
        split += [n // step, step]
    if not labels:
        # the window's values added as strided views (in float64, exact for these types'
        # sums of 8): the same means as np.mean over a reshaped array, 6x faster
        sz, sy, sx = steps
        total = np.zeros(split[::2], dtype=np.float64)
        for dz, dy, dx in itertools.product(range(sz), range(sy), range(sx)):
            total += region[dz::sz, dy::sy, dx::sx]
        total /= sz * sy * sx
        return cast_back(total, region.dtype)
    votes = region.reshape(split).transpose(0, 2, 4, 1, 3, 5).reshape(*split[::2], -1)
    return most_frequent(votes)


def cast_back(values: NDArray[np.float64], dtype: np.dtype) -> NDArray:
    """Averages in *dtype*: integers rounded to nearest and clamped to the type's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        lo, hi = (0, 1) if info is None else (info.min, info.max)
        return np.clip(np.rint(values), lo, hi).astype(dtype)
    return values.astype(dtype)


def most_frequent(votes: NDArray) -> NDArray:
    """The most frequent value along the last axis of *votes* (ties to the smallest; NaN only
    where every value is NaN).

    Examples
    --------
    >>> most_frequent(np.array([[3, 1, 3, 1], [5, 2, 2, 5], [4, 4, 4, 9]])).tolist()
    [1, 2, 4]
    """
    ordered = np.sort(votes, axis=-1)
    width = ordered.shape[-1]
    counts = np.zeros(ordered.shape, dtype=np.int8)
    for t in range(width):
        counts += ordered == ordered[..., t : t + 1]
    best = np.argmax(counts, axis=-1)  # the first of the largest: the smallest value
    return np.take_along_axis(ordered, best[..., None], axis=-1)[..., 0]
