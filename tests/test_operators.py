"""The per-axis operators are built sparse (docs/decisions.md, D13): the same weights as the dense
construction they replace, in memory that grows with the output size, not ``n_out x n_in``."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy.linalg import solve_banded

from napari_resample.engine.geometry import sample_positions, scale_factor
from napari_resample.engine.operators import _truncate, axis_operator

# --------------------------------------------------------------------------- dense reference
# The construction the engine used before the operators were built sparse: every matrix dense,
# the B-spline prefilter inverted by a banded solve on the dense taps.


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _dense(rows, cols, vals, n_out: int, n_in: int) -> np.ndarray:
    m = np.zeros((n_out, n_in))
    np.add.at(m, (rows.ravel(), cols.ravel()), vals.ravel())
    return m


def dense_bspline(n_in: int, x: np.ndarray) -> np.ndarray:
    fl = np.floor(x)
    t = (x - fl)[:, None]
    j = fl.astype(np.int64)[:, None] - 1 + np.arange(4)
    w = np.concatenate(
        [(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], axis=1
    )
    rows = np.broadcast_to(np.arange(x.size)[:, None], j.shape)
    taps = _dense(rows, _mirror(j, n_in), w / 6, x.size, n_in)
    if n_in == 1:
        return taps
    ab = np.empty((3, n_in))
    ab[0], ab[1], ab[2] = 1 / 6, 4 / 6, 1 / 6
    ab[0, -1] = ab[2, 0] = 2 / 6
    return solve_banded((1, 1), ab, taps.T).T


def dense_linear(n_in: int, x: np.ndarray) -> np.ndarray:
    xc = np.clip(x, 0, n_in - 1)
    j0 = np.minimum(np.floor(xc).astype(np.int64), n_in - 1)
    j1 = np.minimum(j0 + 1, n_in - 1)
    t = xc - j0
    rows = np.repeat(np.arange(x.size)[:, None], 2, axis=1)
    return _dense(rows, np.stack([j0, j1], 1), np.stack([1 - t, t], 1), x.size, n_in)


def dense_gaussian(n: int, sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(4 * sigma))
    k = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    g /= g.sum()
    rows = np.repeat(np.arange(n)[:, None], k.size, axis=1)
    return _dense(rows, _mirror(rows + k, n), np.broadcast_to(g, rows.shape), n, n)


def dense_operator(n_in, n_out, interpolation, anchor, antialias) -> np.ndarray:
    x = sample_positions(n_in, n_out, anchor)
    m = dense_bspline(n_in, x) if interpolation == "bspline" else dense_linear(n_in, x)
    f = scale_factor(n_in, n_out)
    if antialias and f > 1:
        m = m @ dense_gaussian(n_in, (f - 1) / 2)
    return m


SIZES = [
    (n_in, n_out)
    for n_in in (1, 2, 3, 7, 100)
    for n_out in sorted({1, 2, 3, max(1, n_in // 3), n_in + 1, 2 * n_in, 5 * n_in + 3})
    if n_out != n_in
]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
@pytest.mark.parametrize(("n_in", "n_out"), SIZES)
def test_sparse_operator_equals_the_dense_construction(
    n_in, n_out, interpolation, anchor, antialias
) -> None:
    expected = dense_operator(n_in, n_out, interpolation, anchor, antialias)
    got = axis_operator(n_in, n_out, interpolation, anchor, antialias)
    assert got.shape == (n_out, n_in)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got.toarray(), expected, rtol=0, atol=1e-12 * scale)
    # What the engine applies: the same weights, those under 1e-9 dropped.
    kept = _truncate(got.copy()).toarray()
    np.testing.assert_array_equal(kept == 0, np.abs(expected) < 1e-9)


def test_sparse_operator_rows_sum_to_one() -> None:
    # Interpolation reproduces constants; a wrong mirror fold or window would break it.
    for n_in, n_out in [(2, 9), (5, 61), (64, 7), (300, 1001)]:
        for interpolation in ("bspline", "linear"):
            m = axis_operator(n_in, n_out, interpolation, "center", antialias=True)
            np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- memory


def _peak_bytes(n_in: int, n_out: int, interpolation: str) -> int:
    axis_operator(5, 9, interpolation, "origin", False)  # imports and caches outside the trace
    tracemalloc.start()
    try:
        axis_operator(n_in, n_out, interpolation, "origin", False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
@pytest.mark.parametrize(
    ("n_in", "n_out", "bound"),
    [
        # Many rows from few columns: the rows' taps are all there is, ~100 bytes each.
        (4, 200_000, 80 * 2**20),
        # Few rows from many columns: a dense matrix (640 KB) is 2x over the bound.
        (20_000, 4, 320 * 2**10),
        # Both large: a dense matrix is 800 MB.
        (2_000, 50_000, 200 * 2**20),
    ],
)
def test_operator_memory_grows_with_the_output_not_n_out_x_n_in(
    n_in, n_out, bound, interpolation
) -> None:
    peak = _peak_bytes(n_in, n_out, interpolation)
    assert peak < bound, f"{peak / 2**20:.1f} MiB to build a {n_out} x {n_in} operator"
