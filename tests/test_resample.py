"""The array engine ``resample_array`` (docs/decisions.md, D1-D5 and D9).

Every test states an invariant that a wrong engine breaks: output shape and dtype, identity is
bit-for-bit lossless, clamping to the input range, rounding to nearest, label sets preserved,
anti-aliasing, local non-finite values, no 0-slabs when upsampling, and agreement with
SimpleITK's ResampleImageFilter (the upstream specification's reference implementation).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from _references import itk_resample
from conftest import label_volume, smooth_volume
from napari_resample import resample_array
from napari_resample.engine.geometry import grid_positions, sample_positions

INTERPOLATIONS = ["bspline", "linear", "nearest", "label"]
ANCHORS = ["origin", "center"]
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64]
DTYPES += [np.float32, np.float64]
SIZES = [(18, 16, 12), (4, 3, 2), (9, 8, 6), (1, 1, 1), (27, 5, 6), (3, 24, 7)]


def random_volume(dtype, shape=(9, 8, 6), seed=0) -> np.ndarray:
    """Rough data spanning a good part of *dtype*'s range (negative values when signed)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-500, 1500, shape).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -30000), min(info.max, 30000)
    return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)


def step_volume(dtype, shape=(8, 8, 8), lo=0, hi=None) -> np.ndarray:
    """Sharp-edged cube: the worst case for B-spline overshoot.

    The cube holds the type's maximum for 8- and 16-bit integers (so overshoot would wrap),
    1000 otherwise (wider integers at their maximum: see test_wide_integer_extremes_*).
    """
    if hi is None:
        small = np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize <= 2
        hi = np.iinfo(dtype).max if small else 1000
    vol = np.full(shape, lo, dtype=dtype)
    vol[2:5, 3:6, 2:6] = hi
    return vol


def nearest_input_index(n_in: int, n_out: int, anchor: str) -> np.ndarray:
    return np.clip(np.floor(sample_positions(n_in, n_out, anchor) + 0.5), 0, n_in - 1)


# --------------------------------------------------------------------------- shape and dtype


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_and_dtype(dtype, size, interpolation: str) -> None:
    data = random_volume(dtype)
    if interpolation == "label":  # a label map, not noise
        data = label_volume(data.shape).astype(dtype)
    out, affine = resample_array(data, size, interpolation=interpolation)
    assert out.shape == size
    assert out.dtype == np.dtype(dtype)
    assert affine.shape == (4, 4)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_big_endian_array_gives_native_same_type(interpolation: str) -> None:
    data = random_volume(np.int16).astype(">i2")
    if interpolation == "label":
        data = label_volume(data.shape).astype(">i2")
    out, _ = resample_array(data, (5, 12, 6), interpolation=interpolation)
    assert out.dtype == np.dtype("=i2")
    ref, _ = resample_array(data.astype("<i2"), (5, 12, 6), interpolation=interpolation)
    np.testing.assert_array_equal(out, ref)


def test_accepts_nested_lists_and_numpy_ints() -> None:
    data = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    out, _ = resample_array(data.tolist(), np.array([4, 3, 2], dtype=np.int64))
    assert out.shape == (4, 3, 2)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((4, 4)), r"3D array .*got shape \(4, 4\)"),
        (np.zeros((4, 4, 4, 2)), r"3D array .*got shape \(4, 4, 4, 2\)"),
        (np.zeros((4, 4, 4), dtype=np.complex64), r"integers or floats, got dtype complex64"),
        (np.zeros((0, 4, 4)), r"must not be empty, got shape \(0, 4, 4\)"),
    ],
)
def test_bad_data_raises(data, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resample_array(data, (2, 2, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interpolation": "cubic"}, r"interpolation must be one of .*'cubic'"),
        ({"anchor": "corner"}, r"anchor must be one of .*'corner'"),
    ],
)
def test_bad_option_raises(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resample_array(np.zeros((4, 4, 4)), (2, 2, 2), **kwargs)


@pytest.mark.parametrize("size", [(2, 2), (2, 2, 0), (2, -2, 2), (2.0, 2, 2), (True, 2, 2), "222"])
def test_bad_size_raises(size) -> None:
    with pytest.raises(ValueError, match="desired_volume must hold exactly 3 positive integers"):
        resample_array(np.zeros((4, 4, 4)), size)


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_size_is_bit_for_bit_lossless(dtype, interpolation, anchor, antialias) -> None:
    data = random_volume(dtype)
    if data.dtype.kind == "f":
        data.flat[[3, 17, 40]] = [np.nan, np.inf, -0.0]
    out, affine = resample_array(
        data, data.shape, interpolation=interpolation, anchor=anchor, antialias=antialias
    )
    assert out.dtype == data.dtype
    assert out.tobytes() == data.tobytes()  # bit for bit, NaN payload and -0.0 included
    assert not np.shares_memory(out, data)
    np.testing.assert_array_equal(affine, np.eye(4))


# --------------------------------------------------------------------------- value range


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("size", [(19, 21, 23), (3, 4, 5), (16, 4, 11)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_output_stays_in_input_range(dtype, size, interpolation, anchor, antialias) -> None:
    # docs/decisions.md, D3: clamped to the input's [min, max], so no negatives from non-negative
    # data and no integer wrap-around (uint8 255 + overshoot must not become a small number).
    data = step_volume(dtype)
    out, _ = resample_array(
        data, size, interpolation=interpolation, anchor=anchor, antialias=antialias
    )
    assert out.min() >= data.min()
    assert out.max() <= data.max()
    # The bright cube survives: wrap-around or truncation to 0 would lose it.
    if interpolation != "nearest" or size[0] > 3:
        assert out.max() >= data.max() * 0.5


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64])
def test_wide_integer_extremes_do_not_wrap(dtype, interpolation: str) -> None:
    # docs/decisions.md, D3 (no integer wrap) at the type's limits: a cube at iinfo.max keeps that
    # value in its interior (the neighbourhood is uniform) and nothing falls below the input
    # minimum.
    data = step_volume(dtype, hi=np.iinfo(dtype).max)
    out, _ = resample_array(data, (16, 16, 16), interpolation=interpolation)
    assert out.min() >= 0
    assert out[6, 8, 6] == np.iinfo(dtype).max


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64])
def test_wide_integer_constant_volume_is_kept(dtype) -> None:
    # A constant volume resamples to the same constant; 2**24 + 1 is not a float32 number.
    data = np.full((6, 5, 4), 2**24 + 1, dtype=dtype)
    out, _ = resample_array(data, (3, 10, 7))
    np.testing.assert_array_equal(out, 2**24 + 1)


def test_clamp_test_has_teeth() -> None:
    # Unclamped cubic B-spline interpolation of the step volume does overshoot below 0 and above
    # the maximum, so test_output_stays_in_input_range checks something real.
    from scipy import ndimage

    data = step_volume(np.float64)
    coords = np.meshgrid(*[sample_positions(8, 19, "origin")] * 3, indexing="ij")
    raw = ndimage.map_coordinates(data, coords, order=3, mode="mirror")
    assert raw.min() < -10 and raw.max() > 1010


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("size", [(17, 5, 13), (4, 16, 9), (19, 21, 23)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32])
def test_integers_are_rounded_to_nearest(dtype, size, anchor, interpolation) -> None:
    # docs/decisions.md, D3: the integer result is the float result rounded to nearest (not
    # truncated). The same computation on float64 data is the exact value; float32 work on values
    # up to 3e4 carries at most ~1e-2 of rounding error, hence 0.5 + 1e-2.
    data = random_volume(dtype, seed=3)
    exact, _ = resample_array(
        data.astype(np.float64), size, interpolation=interpolation, anchor=anchor
    )
    out, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    err = out.astype(np.float64) - exact
    assert np.abs(err).max() <= 0.5 + 1e-2
    # Teeth: truncation toward 0 would miss by more than 0.5 on these voxels.
    frac = np.abs(exact - np.trunc(exact))
    assert (frac > 0.6).sum() > 10


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("size", [(18, 16, 12), (4, 3, 2), (5, 11, 6), (27, 8, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_label_mode_keeps_a_subset_of_labels(dtype, size, anchor: str) -> None:
    # docs/decisions.md, D4: output labels are a subset of the input labels, no in-between values.
    data = label_volume((9, 8, 6)).astype(dtype)
    data[data == 7] = -3 if np.dtype(dtype).kind in "if" else 200
    out, _ = resample_array(data, size, interpolation="label", anchor=anchor)
    assert out.dtype == data.dtype
    assert set(np.unique(out)) <= set(np.unique(data))
    if min(size) >= 5:  # upsampling keeps every label
        assert set(np.unique(out)) == set(np.unique(data))


def test_label_mode_keeps_uniform_regions() -> None:
    # Far from any boundary the label is the one of the nearest input voxel.
    data = label_volume((9, 8, 6))
    size = (20, 17, 13)
    lab, _ = resample_array(data, size, interpolation="label")
    near, _ = resample_array(data, size, interpolation="nearest")
    from scipy import ndimage

    # Output voxels whose whole 2x2x2 linear support has a single label must agree.
    uniform = ndimage.maximum_filter(data, size=3) == ndimage.minimum_filter(data, size=3)
    idx = [
        nearest_input_index(n, s, "origin").astype(int)
        for n, s in zip(data.shape, size, strict=True)
    ]
    keep = uniform[np.ix_(*idx)]
    assert keep.sum() > 20
    np.testing.assert_array_equal(lab[keep], near[keep])


def test_label_mode_is_smoother_than_nearest() -> None:
    # docs/decisions.md, D4: "smoother than nearest". A ball of radius 5 voxels upsampled 2.5x:
    # compared with the ball drawn directly on the output grid, per-label voting errs on fewer
    # voxels.
    n, m = 14, 35
    c = (n - 1) / 2
    grid = np.indices((n, n, n)).astype(float)
    ball = (((grid - c) ** 2).sum(0) <= 5.0**2).astype(np.uint8)
    x = sample_positions(n, m, "center")
    gx = np.meshgrid(x, x, x, indexing="ij")
    truth = (sum((g - c) ** 2 for g in gx) <= 5.0**2).astype(np.uint8)
    lab, _ = resample_array(ball, (m, m, m), interpolation="label", anchor="center")
    near, _ = resample_array(ball, (m, m, m), interpolation="nearest", anchor="center")
    assert (lab != truth).sum() < (near != truth).sum()


def voting_reference(data: np.ndarray, size, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    """The definition in docs/decisions.md, D4, computed naively in float64: every label's
    indicator resampled linearly, the largest weight wins (smallest label on ties). Returns the
    labels and the gap between the two best weights (ties are where it is ~0)."""
    from napari_resample.engine.operators import _linear_matrix

    labels = np.unique(data)
    weights = []
    for label in labels:
        w = (data == label).astype(np.float64)
        for axis in range(3):
            m = _linear_matrix(
                data.shape[axis], sample_positions(data.shape[axis], size[axis], anchor)
            ).toarray()
            w = np.moveaxis(np.tensordot(m, np.moveaxis(w, axis, 0), axes=1), 0, axis)
        weights.append(w)
    stack = np.stack(weights)
    ranked = np.sort(stack, axis=0)
    gap = ranked[-1] - ranked[-2] if labels.size > 1 else np.ones(size)
    return labels[np.argmax(stack, axis=0)], gap


@pytest.mark.parametrize("seed", range(12))
def test_label_mode_is_per_label_linear_voting(seed: int) -> None:
    # docs/decisions.md, D4 / README: each output voxel takes the label whose linearly interpolated
    # indicator is largest. Random label maps (negative labels, many labels, odd sizes, both
    # anchors) against the naive definition, except at exact ties.
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 12, 3))
    size = tuple(int(n) for n in rng.integers(1, 20, 3))
    anchor = ANCHORS[seed % 2]
    dtype = [np.int16, np.uint8, np.int32, np.float32][seed % 4]
    data = (rng.integers(-4, 6 + 10 * seed, shape) * 3).astype(dtype)
    out, _ = resample_array(data, size, interpolation="label", anchor=anchor)
    ref, gap = voting_reference(data, size, anchor)
    clear = gap > 1e-9
    assert clear.sum() >= 10
    np.testing.assert_array_equal(out[clear], ref[clear])


@pytest.mark.parametrize(
    "pair, winner",
    [
        ((5, 2), 2),
        ((2, 5), 2),
        ((-3, 4), -3),
        ((np.nan, 2), 2),
        ((2, np.nan), 2),
        ((np.nan, -7), -7),
    ],
)
def test_label_mode_ties_go_to_the_smallest_label_nan_last(pair, winner) -> None:
    # docs/decisions.md, D4: two voxels halved with anchor="center" sample exactly half-way,
    # an exact tie; the smallest label wins, and NaN loses to any number.
    data = np.array(pair, dtype=np.float32).reshape(2, 1, 1)
    out, _ = resample_array(data, (1, 1, 1), interpolation="label", anchor="center")
    assert out.ravel()[0] == winner


def traced_lines(run) -> int:
    """Python lines executed by ``run()`` in napari_resample, numpy and scipy, in every thread.

    A measure of work that does not depend on timing: any pass per label written in Python
    (or calling numpy/scipy's Python-level functions) executes its lines once per label.
    """
    import os
    import sys
    import threading

    import scipy

    import napari_resample

    roots = tuple(os.path.dirname(m.__file__) for m in (napari_resample, np, scipy))
    counter = itertools.count()

    def count(frame, event, arg):
        if event == "line":
            next(counter)  # atomic under the GIL, unlike += from several threads
        return count

    def start(frame, event, arg):
        return count if frame.f_code.co_filename.startswith(roots) else None

    previous = sys.gettrace()
    threading.settrace(start)  # the engines' worker threads are started inside run()
    sys.settrace(start)
    try:
        run()
    finally:
        sys.settrace(previous)
        threading.settrace(None)
    return next(counter)


def test_label_mode_cost_does_not_grow_with_the_number_of_labels() -> None:
    # A segmentation with hundreds of labels (TotalSegmentator: 117; cell maps: thousands) took
    # one full-volume linear resampling per label (118 labels, 256x256x150 -> 224x224x128:
    # ~5 s instead of ~0.05 s). Counted, not timed: the Python lines executed for 100 labels
    # are those executed for 2 (a pass per label would multiply them by ~50). The
    # tolerance only allows for a branch taken differently on some slab.
    rng = np.random.default_rng(0)
    resample_array(np.zeros((4, 4, 4), np.int16), (3, 5, 2), interpolation="label")  # warm up
    lines = {}
    for n_labels in (2, 100):
        data = rng.integers(0, n_labels, (24, 22, 20)).astype(np.int16)
        assert np.unique(data).size == n_labels
        out = []
        lines[n_labels] = traced_lines(
            lambda data=data, out=out: out.append(
                resample_array(data, (13, 27, 9), interpolation="label")[0]
            )
        )
        assert set(np.unique(out[0])) <= set(np.unique(data))
    assert lines[2] > 100  # the probe sees the engine at all
    assert lines[100] <= 1.1 * lines[2], lines


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ([5, 3], [5, 3, 3, 3]),  # output voxel 1 samples x = 0.5: weight 1/2 for 5 and for 3
        ([3, 5], [3, 3, 5, 5]),  # the same tie with the corners in the other order
        ([np.nan, 2.0], [np.nan, 2.0, 2.0, 2.0]),  # NaN sorts last
        ([2.0, np.nan], [2.0, 2.0, np.nan, np.nan]),
    ],
)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_label_ties_go_to_the_smallest_label(pattern, expected, axis: int) -> None:
    # docs/decisions.md, D4: "ties go to the smallest label (NaN last)". Two voxels along one
    # axis, upsampled 2 -> 4 with anchor "origin": the samples are at 0, 0.5, 1 and 1.5
    # (clamped to 1), so the second output voxel has exactly equal weights for both labels.
    dtype = np.float32 if np.isnan(pattern).any() else np.int16
    shape = [1, 1, 1]
    shape[axis] = 2
    data = np.array(pattern, dtype=dtype).reshape(shape)
    size = [1, 1, 1]
    size[axis] = 4
    assert sample_positions(2, 4, "origin").tolist() == [0.0, 0.5, 1.0, 1.5]
    out, _ = resample_array(data, tuple(size), interpolation="label")
    np.testing.assert_array_equal(out.ravel(), np.array(expected, dtype=dtype))


@pytest.mark.parametrize("labels", [(5, 3), (3, 5), (np.nan, 2.0), (2.0, np.nan)])
def test_label_ties_among_eight_corners(labels) -> None:
    # A 2x2x2 checkerboard of two labels sampled at its centre: each label holds 4 corners of
    # weight 1/8, a tie whatever the corner order; the smaller label (not NaN) wins.
    dtype = np.float32 if np.isnan(labels).any() else np.uint8
    checker = np.indices((2, 2, 2)).sum(axis=0) % 2
    data = np.where(checker == 0, labels[0], labels[1]).astype(dtype)
    out, _ = resample_array(data, (4, 4, 4), interpolation="label")
    winner = 3 if 3 in labels else 2.0
    assert out[1, 1, 1] == winner
    np.testing.assert_array_equal(out[::2, ::2, ::2], data)  # knots kept


def test_nearest_takes_nearest_input_voxel() -> None:
    data = random_volume(np.int32, shape=(7, 5, 6))
    for anchor in ANCHORS:
        size = (15, 2, 6)
        out, _ = resample_array(data, size, interpolation="nearest", anchor=anchor)
        idx = [
            nearest_input_index(n, s, anchor).astype(int)
            for n, s in zip(data.shape, size, strict=True)
        ]
        np.testing.assert_array_equal(out, data[np.ix_(*idx)])


# --------------------------------------------------------------------------- values vs geometry


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_linear_field_is_reproduced_at_world_positions(interpolation, anchor) -> None:
    # Values and affine agree: data that is a linear function of world coordinates comes out as
    # the same function evaluated at the new affine's voxel centres. Linear interpolation is exact
    # everywhere inside the grid; the cubic B-spline with mirror boundaries only in the interior.
    from conftest import make_affine, rotation

    affine = make_affine(rotation(0.3, -0.2, 0.5) @ np.diag([0.5, 0.75, 2.5]), (3.0, -2.0, 1.0))
    shape, size = (24, 22, 20), (10, 9, 8)  # downsampling: every sample inside the grid
    g = np.array([1.5, -2.0, 0.7])

    def field(aff, shp):
        idx = np.indices(shp).reshape(3, -1)
        world = aff[:3, :3] @ idx + aff[:3, 3:4]
        return (g @ world + 100.0).reshape(shp)

    data = field(affine, shape)
    out, new_affine = resample_array(
        data, size, affine=affine, interpolation=interpolation, anchor=anchor
    )
    expected = field(new_affine, size)
    atol = 1e-9
    if interpolation == "bspline":
        # The mirror boundary bends the ramp at the edges (error ~0.5 there); the prefilter
        # carries that inwards decaying by |pole| = 0.268 per voxel: < 5e-3 after 4 voxels.
        # A geometry off by even 0.1 voxel would miss by > 0.1.
        margin, atol = 4, 5e-3
        inside = [
            (sample_positions(n, s, anchor) >= margin)
            & (sample_positions(n, s, anchor) <= n - 1 - margin)
            for n, s in zip(shape, size, strict=True)
        ]
        sl = np.ix_(*inside)
        out, expected = out[sl], expected[sl]
        assert out.size > 100
    np.testing.assert_allclose(out, expected, rtol=0, atol=atol)


# --------------------------------------------------------------------------- no invented zeros


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("anchor", ANCHORS)
def test_upsampling_writes_no_zero_slabs(factor: int, anchor: str, interpolation: str) -> None:
    # docs/decisions.md, D2: samples past the last voxel centre are extrapolated from the edge.
    data = smooth_volume((6, 5, 4)).astype(np.float32)  # values in [100, 900]
    size = tuple(factor * n for n in data.shape)
    out, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    for axis in range(3):
        last = np.take(out, range(size[axis] - factor, size[axis]), axis=axis)
        first = np.take(out, range(factor), axis=axis)
        assert last.min() >= data.min() and first.min() >= data.min()


@pytest.mark.parametrize("factor", [2, 3])
def test_upsampling_extrapolates_the_edge(factor: int) -> None:
    # Linear and nearest hold the edge value past the last voxel centre: the last output slices
    # along an upsampled axis equal the last input slice (data constant along the other axes).
    profile = np.array([10.0, 40.0, 20.0, 70.0, 55.0])
    data = np.broadcast_to(profile[:, None, None], (5, 3, 3)).astype(np.float64)
    for interpolation in ["linear", "nearest"]:
        out, _ = resample_array(data, (5 * factor, 3, 3), interpolation=interpolation)
        past = sample_positions(5, 5 * factor, "origin") > 4
        assert past.sum() == factor - 1
        np.testing.assert_array_equal(out[past], 55.0)


@pytest.mark.parametrize("factor", [2, 3])
def test_simpleitk_default_value_writes_zero_slabs(factor: int) -> None:
    # Teeth for the test above: the specification's reference (ResampleImageFilter, default value
    # 0) does write 0 on the last slices of the same request.
    sitk = pytest.importorskip("SimpleITK")
    data = smooth_volume((6, 5, 4)).astype(np.float32)
    size = tuple(factor * n for n in data.shape)
    ref = itk_resample(sitk, data, size, "origin", sitk.sitkBSpline)
    assert (ref[-1] == 0).all() and (ref[:, -1] == 0).all() and (ref[:, :, -1] == 0).all()


# --------------------------------------------------------------------------- anti-aliasing


def stripes(shape=(24, 6, 6), axis=0) -> np.ndarray:
    """0 / 100 alternating planes along *axis*: all energy at the Nyquist frequency."""
    s = [1, 1, 1]
    s[axis] = shape[axis]
    return np.broadcast_to(100.0 * (np.arange(shape[axis]) % 2).reshape(s), shape).copy()


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_antialias_removes_aliased_pattern(interpolation: str, anchor: str) -> None:
    # docs/decisions.md, D5: downsampling period-2 stripes by 3 without smoothing aliases them into
    # a full-contrast false pattern of period 6; with antialias the output is close to the mean.
    data = stripes()
    size = (8, 6, 6)
    raw, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    smooth, _ = resample_array(
        data, size, interpolation=interpolation, anchor=anchor, antialias=True
    )
    aliased, kept = raw[:, 3, 3].std(), smooth[:, 3, 3].std()
    assert aliased > 25.0  # the false pattern is real without anti-aliasing
    assert kept < 0.1 * aliased
    np.testing.assert_allclose(smooth.mean(), 50.0, atol=5.0)


def test_antialias_leaves_axes_that_are_not_downsampled() -> None:
    # Only downsampled axes are smoothed: stripes along axis 1 survive a 3x downsampling of
    # axis 0 and a 2x upsampling of axis 2.
    data = stripes((24, 6, 6), axis=1)
    plain, _ = resample_array(data, (8, 6, 12), interpolation="linear")
    smooth, _ = resample_array(data, (8, 6, 12), interpolation="linear", antialias=True)
    np.testing.assert_allclose(smooth, plain, atol=1e-4)
    np.testing.assert_allclose(smooth[3, :, 5], data[0, :, 0], atol=1e-4)


def test_antialias_has_no_effect_when_upsampling() -> None:
    data = smooth_volume((6, 5, 4))
    a, _ = resample_array(data, (12, 10, 8), antialias=False)
    b, _ = resample_array(data, (12, 10, 8), antialias=True)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- non-finite values


def nonfinite_volume() -> np.ndarray:
    data = smooth_volume((16, 14, 12)).astype(np.float32)
    data[3, 4, 3] = np.nan
    data[10, 9, 8] = np.inf
    data[13, 2, 9] = -np.inf
    return data


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS[:3])
@pytest.mark.parametrize("size", [(32, 28, 24), (40, 14, 12), (5, 5, 4), (7, 30, 11)])
def test_nonfinite_values_stay_local(size, interpolation, anchor) -> None:
    # docs/decisions.md, D9, as documented in resample_array: an output voxel whose nearest input
    # voxel is non-finite holds that voxel's value (NaN, +Inf or -Inf); every other output voxel is
    # finite and within the finite input range. A B-spline prefilter would instead spread NaN along
    # whole rows.
    data = nonfinite_volume()
    out, _ = resample_array(data, size, interpolation=interpolation, anchor=anchor)
    idx = [
        nearest_input_index(n, s, anchor).astype(int)
        for n, s in zip(data.shape, size, strict=True)
    ]
    nearest = data[np.ix_(*idx)]
    bad = ~np.isfinite(nearest)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(nearest))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(nearest))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(nearest))
    finite = data[np.isfinite(data)]
    assert np.isfinite(out[~bad]).all()
    assert out[~bad].min() >= finite.min() and out[~bad].max() <= finite.max()
    assert bad.sum() <= 3 * int(np.prod(np.ceil(np.array(size) / data.shape)))


@pytest.mark.parametrize("interpolation", ["bspline", "linear"])
def test_nonfinite_does_not_disturb_far_voxels(interpolation: str) -> None:
    # Away from the bad voxels the result is that of the clean volume: exactly for linear
    # (2-tap support), and for the B-spline up to the prefilter's decay (|pole| = 0.268 per
    # voxel: the nearest-neighbour fill differs from the clean value by ~20, which contributes
    # 20 * 0.268^3 < 0.5 at 3 voxels; NaN spreading would make whole rows non-finite).
    clean = smooth_volume((16, 14, 12)).astype(np.float32)
    data = nonfinite_volume()
    size = (24, 28, 18)
    out, _ = resample_array(data, size, interpolation=interpolation)
    ref, _ = resample_array(clean, size, interpolation=interpolation)
    pos = np.stack(
        np.meshgrid(
            *[sample_positions(n, s, "origin") for n, s in zip(data.shape, size, strict=True)],
            indexing="ij",
        )
    )
    dist = np.full(size, np.inf)
    for bad in np.argwhere(~np.isfinite(data)):
        d = np.abs(pos - bad[:, None, None, None]).max(axis=0)
        dist = np.minimum(dist, d)
    radius, atol = (1.0, 1e-3) if interpolation == "linear" else (3.0, 1.0)
    far = dist > radius
    assert far.mean() > 0.5
    np.testing.assert_allclose(out[far], ref[far], rtol=0, atol=atol)


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "nearest"])
def test_all_nonfinite_follows_the_nearest_rule(interpolation: str) -> None:
    # The rule of docs/decisions.md, D9 (an output voxel whose nearest input voxel is non-finite
    # gets that value) holds when no voxel is finite too, as it did for "nearest" (was a ValueError
    # for bspline and linear).
    data = np.full((4, 5, 3), np.nan, np.float32)
    data[1::2] = np.inf
    data[:, 3] = -np.inf
    size = (8, 3, 7)
    out, _ = resample_array(data, size, interpolation=interpolation)
    idx = [
        nearest_input_index(n, s, "origin").astype(int)
        for n, s in zip(data.shape, size, strict=True)
    ]
    np.testing.assert_array_equal(out, data[np.ix_(*idx)])
    assert out.dtype == np.float32


def test_label_mode_keeps_nan_as_a_label() -> None:
    # "label": output labels are input labels and whole regions survive; a NaN region is one
    # (it vanished: NaN == NaN is False, so its indicator was empty and it never won a vote).
    data = np.zeros((12, 10, 8), np.float32)
    data[2:7, 2:8, 2:6] = 1.0
    data[6:11, 1:6, 1:7] = np.nan
    out, _ = resample_array(data, (18, 15, 12), interpolation="label")
    ref, _ = resample_array(np.nan_to_num(data, nan=2.0), (18, 15, 12), interpolation="label")
    np.testing.assert_array_equal(np.isnan(out), ref == 2.0)
    np.testing.assert_array_equal(out[~np.isnan(out)], ref[ref != 2.0])


# --------------------------------------------------------------------------- SimpleITK reference


#: Relative tolerance (of the data range) per working precision. Both engines evaluate the same
#: cubic B-spline (same mirror boundary, same prefilter pole); ITK in float64 with a 1e-10
#: prefilter horizon, ours in float32 for float32 data (eps 1.2e-7, a few dozen multiply-adds:
#: 2e-6) and float64 for float64 data (weights truncated below 1e-9: 1e-8).
RTOL = {np.float32: 2e-6, np.float64: 1e-8}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("size", [(22, 27, 14), (5, 4, 6), (16, 6, 10), (11, 9, 7)])
@pytest.mark.parametrize("kind", ["bspline", "linear"])
@pytest.mark.parametrize("smooth", [True, False])
def test_agrees_with_simpleitk(kind: str, size, anchor: str, dtype, smooth: bool) -> None:
    # docs/decisions.md, D4 and D13: agreement with ResampleImageFilter (sitkBSpline = cubic,
    # sitkLinear). Compared wherever ITK interpolates, i.e. every sample whose continuous index is
    # < N - 1/2 on each axis (ITK writes its default 0 beyond). Sizes >= 4 on every input axis,
    # since ITK's mirror indexing differs on axes of length 2. ITK does not clamp, ours does
    # (docs/decisions.md, D3): the reference is clamped to the input range before comparing; the
    # smooth volume has no overshoot, so there the comparison is on raw ITK values.
    sitk = pytest.importorskip("SimpleITK")
    shape = (11, 9, 7)
    data = (smooth_volume(shape) if smooth else random_volume(np.float64, shape)).astype(dtype)
    ours, _ = resample_array(data, size, interpolation=kind, anchor=anchor)
    interp = sitk.sitkBSpline if kind == "bspline" else sitk.sitkLinear
    ref = itk_resample(sitk, data, size, anchor, interp)
    inside = np.ix_(
        *[sample_positions(n, s, anchor) < n - 0.5 for n, s in zip(shape, size, strict=True)]
    )
    lo, hi = float(data.min()), float(data.max())
    ref = np.clip(ref, lo, hi)
    np.testing.assert_allclose(ours[inside], ref[inside], rtol=0, atol=RTOL[dtype] * (hi - lo))
    assert ours[inside].size >= 0.5 * ours.size


@pytest.mark.parametrize("anchor", ANCHORS)
def test_integer_bspline_agrees_with_simpleitk_rounded(anchor: str) -> None:
    # Same comparison for int16: ours = ITK's float result clamped and rounded to nearest
    # (ITK's own integer output truncates). Ties at .5 may round either way: tolerance 1.
    sitk = pytest.importorskip("SimpleITK")
    data = random_volume(np.int16, (11, 9, 7), seed=5)
    size = (17, 6, 13)
    ours, _ = resample_array(data, size, anchor=anchor)
    ref = itk_resample(sitk, data, size, anchor, sitk.sitkBSpline)
    inside = np.ix_(
        *[sample_positions(n, s, anchor) < n - 0.5 for n, s in zip(data.shape, size, strict=True)]
    )
    expected = np.rint(np.clip(ref, data.min(), data.max()))
    diff = np.abs(ours.astype(np.float64) - expected)[inside]
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99


# --------------------------------------------------------------------------- progress


def test_progress_is_monotonic_and_ends_at_one() -> None:
    seen: list[float] = []
    resample_array(smooth_volume((6, 5, 4)), (12, 3, 8), progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert all(0.0 <= a <= b <= 1.0 for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize("layout", ["F", "flipped", "strided"])
def test_label_mode_gives_the_same_votes_whatever_the_memory_layout(layout) -> None:
    # nibabel reads Fortran-ordered volumes and napari hands over flipped views: the votes
    # (float32 near-ties included) depend on the values only, not on the memory layout.
    rng = np.random.default_rng(3)
    data = rng.integers(0, 6, (23, 19, 17)).astype(np.int16)
    if layout == "F":
        other = np.asfortranarray(data)
    elif layout == "flipped":
        other = np.ascontiguousarray(data[::-1])[::-1]
    else:
        other = np.repeat(data, 2, axis=1)[:, ::2]
    assert np.array_equal(other, data) and not other.flags.c_contiguous
    for size in ((31, 11, 9), (12, 40, 17)):
        a, _ = resample_array(data, size, interpolation="label")
        b, _ = resample_array(other, size, interpolation="label")
        np.testing.assert_array_equal(a, b)


def test_label_votes_are_the_same_in_every_streamed_frame() -> None:
    # The engine votes on windows in its streamed frame (j, i, k for Fortran order, i, j, k
    # for C order): weights multiplied and corners scored in (i, j, k) order whatever the
    # frame, so float near-ties go the same way (scored in the frame's order, 8 votes of these
    # differ).
    from napari_resample.engine.operators import linear_weights
    from napari_resample.engine.vote import vote_taps

    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(4, 9, 3))
        size = tuple(int(n) for n in rng.integers(5, 23, 3))
        data = rng.integers(0, 3, shape).astype(np.int16)
        at = grid_positions(shape, size, "center")
        taps = [linear_weights(n, x) for n, x in zip(shape, at, strict=True)]
        expected = vote_taps(data, (taps[0], taps[1], taps[2]))
        for axes in ((2, 0, 1), (1, 0, 2), (2, 1, 0)):
            framed = vote_taps(
                data.transpose(axes), (taps[axes[0]], taps[axes[1]], taps[axes[2]]), axes=axes
            )
            np.testing.assert_array_equal(framed.transpose(np.argsort(axes)), expected)
