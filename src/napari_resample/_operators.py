"""The 1-D resampling operators: one dense ``n_out x n_in`` matrix per axis.

The output grid is an axis-aligned scaling of the input grid in voxel space, so every
interpolator is *separable*: the 3D operation is one 1-D operation per axis, applied one axis
after the other. Along one axis, output sample ``i'`` reads the input at the continuous index
``x = o + f * i'`` (see :mod:`napari_resample._geometry`), and each 1-D operation is a sparse
``n_out x n_in`` matrix:

- ``"bspline"``: cubic B-spline. A recursive prefilter turns samples into spline coefficients
  (mirror boundaries, as ITK), then 4 weighted taps per output sample. Past the last voxel
  centre the spline continues mirrored, so upsampling never produces 0-slabs.
- ``"linear"``: 2 taps, holding the edge value past the last voxel.
- ``antialias``: a Gaussian (sigma ``(f - 1) / 2`` input voxels) applied before the
  interpolator along each downsampled axis.

The matrices are built dense in float64 here; :mod:`napari_resample._separable` turns them into
sparse matrices of the working type and applies them to the volume.

Examples
--------
>>> axis_matrix(4, 2, "linear", "center", antialias=False)
array([[0.5, 0.5, 0. , 0. ],
       [0. , 0. , 0.5, 0.5]])
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from napari_resample._geometry import sample_positions, scale_factor
from napari_resample._options import Anchor

#: Pole of the cubic B-spline prefilter: its inverse decays like ``|_POLE|`` (0.27) per voxel.
_POLE = math.sqrt(3.0) - 2.0


def _mirror(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Fold indices into [0, n) by mirroring about the end voxels (d c b | a b c d | c b a).

    Examples
    --------
    >>> _mirror(np.arange(-3, 7), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _taps_matrix(rows: NDArray, cols: NDArray, vals: NDArray, n_out: int, n_in: int) -> NDArray:
    """Dense (n_out, n_in) matrix from tap lists; repeated (row, col) pairs add up."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (rows.ravel(), cols.ravel()), vals.ravel())
    return m


def _bspline_taps(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 4 cubic B-spline weights per position *x*, on spline coefficients (mirrored)."""
    n_out = x.size
    fl = np.floor(x)
    t = (x - fl)[:, None]
    j = fl.astype(np.int64)[:, None] - 1 + np.arange(4)
    w = np.concatenate(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    rows = np.broadcast_to(np.arange(n_out)[:, None], j.shape)
    return _taps_matrix(rows, _mirror(j, n_in), w, n_out, n_in)


def _bspline_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cubic B-spline interpolation at positions *x*: taps times the inverse prefilter."""
    from scipy.linalg import solve_banded

    taps = _bspline_taps(n_in, x)
    if n_in == 1:
        return taps
    # Samples = B @ coefficients, with B the mirror-boundary (1, 4, 1) / 6 band; we need
    # taps @ inv(B), i.e. the transpose of inv(B.T) @ taps.T.
    ab = np.empty((3, n_in))
    ab[1] = 4 / 6
    ab[0] = 1 / 6
    ab[2] = 1 / 6
    ab[0, -1] = 2 / 6
    ab[2, 0] = 2 / 6
    return solve_banded((1, 1), ab, taps.T).T


def _linear_weights(
    n_in: int, x: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Linear interpolation at positions *x*: ``(1 - t) * in[j0] + t * in[j1]``, holding the
    edge value outside [0, n_in - 1].

    Examples
    --------
    >>> j0, j1, t = _linear_weights(3, np.array([-1.0, 0.25, 2.0, 5.0]))
    >>> j0.tolist(), j1.tolist(), t.tolist()
    ([0, 0, 2, 2], [1, 1, 2, 2], [0.0, 0.25, 0.0, 0.0])
    """
    xc = np.clip(x, 0, n_in - 1)
    j0 = np.minimum(np.floor(xc).astype(np.int64), n_in - 1)
    return j0, np.minimum(j0 + 1, n_in - 1), xc - j0


def _linear_matrix(n_in: int, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear interpolation at positions *x*, holding the edge value outside [0, n_in - 1]."""
    n_out = x.size
    j0, j1, t = _linear_weights(n_in, x)
    rows = np.repeat(np.arange(n_out)[:, None], 2, axis=1)
    return _taps_matrix(rows, np.stack([j0, j1], 1), np.stack([1 - t, t], 1), n_out, n_in)


def _gaussian_matrix(n: int, sigma: float) -> NDArray[np.float64]:
    """(n, n) Gaussian smoothing with mirror boundaries."""
    radius = max(1, math.ceil(4 * sigma))
    k = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    g /= g.sum()
    rows = np.repeat(np.arange(n)[:, None], k.size, axis=1)
    cols = _mirror(rows + k, n)
    return _taps_matrix(rows, cols, np.broadcast_to(g, rows.shape), n, n)


def axis_matrix(
    n_in: int, n_out: int, interpolation: str, anchor: Anchor, antialias: bool
) -> NDArray[np.float64]:
    """The dense (n_out, n_in) float64 matrix resampling one axis."""
    x = sample_positions(n_in, n_out, anchor)
    m = _bspline_matrix(n_in, x) if interpolation == "bspline" else _linear_matrix(n_in, x)
    f = scale_factor(n_in, n_out)
    if antialias and f > 1:
        m = m @ _gaussian_matrix(n_in, (f - 1) / 2)
    return m


def _truncate(m: NDArray[np.float64], tol: float = 1e-9) -> NDArray[np.float64]:
    """Drop weights too small to matter (the prefilter's inverse decays like 0.27^distance)."""
    return np.where(np.abs(m) < tol, 0.0, m)
