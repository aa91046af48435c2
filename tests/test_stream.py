"""The streamed engine: the same answer as the in-memory one, bit for bit, within a budget.

The streamed engine (k-planes in, k-planes out) is checked against ``resample_array``'s
in-memory engine on a matrix of shapes, data types, modes, anchors and antialiasing, with the
work cut in many ways (blocks of 1 to all planes, tiny chunks, clamp range known or held); then
through ``resample_array`` with zarr arrays in and out, and for its memory: the peak RSS of a
child process resampling a volume several times larger than its budget.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr

from napari_resample import resample_array
from napari_resample.engine import stream_plan as _stream_plan
from napari_resample.engine.geometry import grid_positions
from napari_resample.engine.stream import NonFiniteInput, array_blocks, run_stream, stream_axes
from napari_resample.engine.stream_plan import plan_stream

CASES = [
    ((20, 17, 13), (9, 11, 7)),  # down on every axis
    ((8, 9, 10), (15, 4, 23)),  # up and down
    ((30, 24, 40), (30, 24, 17)),  # k only
    ((12, 10, 6), (5, 4, 6)),  # in-plane only
    ((5, 6, 1), (7, 3, 4)),  # one input plane
    ((9, 7, 12), (9, 7, 1)),  # one output plane
]
DTYPES = [np.int16, np.uint8, np.float32, np.float64, np.int32, np.bool_]
MODES = ["bspline", "linear", "nearest", "label"]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype == np.uint8:
        return rng.integers(0, 6, shape).astype(np.uint8)
    return (rng.normal(size=shape) * 300).astype(dtype)


def _streamed(data, size, mode, anchor, antialias, planes, known_range):
    """run_stream over *data*'s planes along the axis the engine streams it (k, or i for a
    C-ordered array interpolated)."""
    axes = stream_axes(data)
    positions = grid_positions(data.shape, size, anchor)
    plan = plan_stream(data.shape, data.dtype, positions, mode, antialias, axes)
    assert plan is not None and plan.size == size
    out = np.full(size, 99, dtype=data.dtype.newbyteorder("="))
    axis = axes[2]
    written = []

    def emit(k0, block):
        assert k0 == (written[-1] if written else 0)  # in order, no gap
        n = block.shape[axis]
        out[tuple(slice(k0, k0 + n) if a == axis else slice(None) for a in range(3))] = block
        written.append(k0 + n)

    value_range = None
    if known_range and data.dtype != np.bool_:
        kind = int if data.dtype.kind in "iu" else float
        value_range = (kind(data.min()), kind(data.max()))
    run_stream(
        array_blocks(data, data.shape, planes, axis),
        plan,
        emit,
        out_dtype=data.dtype,
        value_range=value_range,
    )
    assert written[-1] == size[axis]
    return out


@pytest.mark.parametrize(("shape", "size"), CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
def test_streamed_equals_in_memory_bit_for_bit(shape, size, dtype, mode, monkeypatch) -> None:
    monkeypatch.setattr(_stream_plan, "CHUNK_BYTES", 1)  # one output plane per chunk
    # A C-ordered array streams along i, a Fortran-ordered one along k: in memory too.
    for data in (_data(shape, dtype), np.asfortranarray(_data(shape, dtype))):
        for anchor in ("origin", "center"):
            for antialias in (False, True) if mode in ("bspline", "linear") else (False,):
                ref, _ = resample_array(
                    data, size, interpolation=mode, anchor=anchor, antialias=antialias
                )
                for planes, known in ((1, False), (3, True), (data.shape[2], False)):
                    got = _streamed(data, size, mode, anchor, antialias, planes, known)
                    np.testing.assert_array_equal(got, ref, err_msg=f"{anchor} {antialias}")


def test_chunks_of_many_planes_give_the_same_bits() -> None:
    data = _data((40, 36, 64), np.int16)
    size = (17, 50, 29)
    ref, _ = resample_array(data, size)
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, size, "origin"), "bspline"
    )
    assert _stream_plan.chunk_planes(plan, data.dtype) > 4  # the default cuts several planes
    np.testing.assert_array_equal(_streamed(data, size, "bspline", "origin", False, 5, False), ref)


def test_units_of_one_output_plane_give_the_same_values(monkeypatch) -> None:
    # Big planes make units of one output plane (a sparse product): the same bits streamed
    # and in memory, and the values of the dense units to within float32 rounding.
    data = np.asfortranarray(_data((30, 26, 40), np.float32))
    size = (13, 11, 17)
    dense, _ = resample_array(data, size)
    monkeypatch.setattr(_stream_plan, "UNIT_PLANES", 1)
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, size, "origin"), "bspline"
    )
    assert plan is not None and plan.units is not None and plan.unit_planes == 1
    single, _ = resample_array(data, size)
    np.testing.assert_array_equal(
        _streamed(data, size, "bspline", "origin", False, 3, False), single
    )
    np.testing.assert_allclose(single, dense, rtol=0, atol=1e-5 * np.ptp(data))


def test_a_flipped_k_axis_has_no_streamed_plan() -> None:
    x = np.arange(4.0)
    assert plan_stream((4, 4, 4), np.dtype(np.int16), (x, x, x[::-1]), "linear") is None


def test_non_finite_input_is_reported_before_anything_is_emitted() -> None:
    data = _data((6, 6, 8), np.float32)
    data[2, 3, 6] = np.nan
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, (3, 3, 4), "origin"), "bspline"
    )
    emitted = []
    with pytest.raises(NonFiniteInput):
        run_stream(
            array_blocks(data, data.shape, 1),
            plan,
            lambda k, b: emitted.append(k),
            out_dtype=data.dtype,
        )
    assert emitted == []


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_integer_chunks_inside_the_range_seen_are_emitted_before_the_last_plane(dtype) -> None:
    # Held output whose values lie within the input's range seen so far cannot change once the
    # range is complete, so integer input emits it early (the writer compresses meanwhile), the
    # same bits as finished at the end; float input emits nothing until all planes are in.
    rng = np.random.default_rng(4)
    data = np.asfortranarray((rng.normal(size=(20, 18, 60)) * 100).astype(dtype))
    data[:, :, -1] = 4000  # the range's top arrives last (Fortran order: streamed along k)
    size = (9, 8, 25)
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, size, "center"), "linear"
    )
    fed, first, out = [0], [], np.zeros(size, dtype)

    def blocks():
        for k0, block in array_blocks(data, data.shape, 2):
            fed[0] = k0 + block.shape[2]
            yield k0, block

    def emit(k0, block):
        first.append(fed[0])
        out[:, :, k0 : k0 + block.shape[2]] = block

    run_stream(blocks(), plan, emit, out_dtype=data.dtype)
    ref, _ = resample_array(data, size, interpolation="linear", anchor="center")
    np.testing.assert_array_equal(out, ref)
    if dtype == np.int16:
        assert first[0] < data.shape[2] // 2, first
    else:
        assert min(first) == data.shape[2], first


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.float32])
def test_the_first_pass_range_is_the_in_memory_clamp_range(dtype) -> None:
    # Both engines clamp to one range (engine/clamp.py): read plane by plane it is the whole
    # volume's, exact for integers float64 cannot hold (2**62 + 1 is not a float64).
    from napari_resample.engine.clamp import value_range
    from napari_resample.engine.stream import value_range_of

    data = _data((5, 4, 7), np.int16).astype(dtype)
    if np.dtype(dtype).kind in "iu":
        data[1, 2, 5] = 2**62 + 1
    got = value_range_of(data, data.shape, data.dtype)
    assert got == value_range(data) == (data.min().item(), data.max().item())
    assert type(got[1]) is (int if np.dtype(dtype).kind in "iu" else float)
    if np.dtype(dtype).kind == "f":  # a NaN or Inf has no clamp range here: not streamed
        data[0, 0, 3] = np.inf
        with pytest.raises(NonFiniteInput):
            value_range_of(data, data.shape, data.dtype)


def test_planes_out_of_order_are_refused() -> None:
    data = _data((4, 4, 4), np.int16)
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, (2, 2, 2), "origin"), "linear"
    )
    blocks = [(0, data[:, :, :2]), (3, data[:, :, 3:])]
    with pytest.raises(ValueError, match="expected plane 2, got 3"):
        run_stream(blocks, plan, lambda k, b: None, out_dtype=data.dtype)


# --------------------------------------------------------------------------- resample_array


@pytest.mark.parametrize("mode", MODES)
def test_resample_array_streams_zarr_to_zarr(tmp_path, mode) -> None:
    data = _data((40, 30, 50), np.int16, seed=3)
    src = zarr.open_array(
        tmp_path / "in.zarr", mode="w", shape=data.shape, chunks=(40, 30, 7), dtype=data.dtype
    )
    src[...] = data
    size = (25, 41, 33)
    dst = zarr.open_array(
        tmp_path / "out.zarr", mode="w", shape=size, chunks=(25, 41, 5), dtype=data.dtype
    )
    got, affine = resample_array(
        src, size, interpolation=mode, out=dst, affine=np.diag([2.0, 1.0, 0.5, 1.0])
    )
    assert got is dst
    # A zarr array streams along k (its chunks' order), as the same values Fortran-ordered do.
    ref, ref_affine = resample_array(
        np.asfortranarray(data), size, interpolation=mode, affine=np.diag([2.0, 1.0, 0.5, 1.0])
    )
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[...], ref)
    np.testing.assert_array_equal(affine, ref_affine)


def test_a_small_max_memory_streams_with_the_same_result() -> None:
    data = _data((64, 64, 48), np.float32, seed=4)
    ref, _ = resample_array(data, (100, 90, 80))
    got, _ = resample_array(data, (100, 90, 80), max_memory="6M")
    np.testing.assert_array_equal(got, ref)


def test_out_must_have_the_target_shape() -> None:
    with pytest.raises(ValueError, match=r"out must have the shape \(2, 2, 2\)"):
        resample_array(np.zeros((4, 4, 4)), (2, 2, 2), out=np.zeros((2, 2, 3)))


def test_a_budget_smaller_than_one_window_is_refused_with_the_numbers() -> None:
    with pytest.raises(MemoryError, match=r"even streamed plane by plane .* over the budget of"):
        resample_array(np.zeros((300, 300, 20), np.int16), (600, 600, 40), max_memory="2M")


def test_non_finite_floats_fall_back_to_memory_or_are_refused() -> None:
    data = _data((30, 30, 30), np.float32)
    data[4, 5, 6] = np.inf
    ref, _ = resample_array(data, (20, 20, 20))
    out = np.empty((20, 20, 20), np.float32)
    got, _ = resample_array(data, (20, 20, 20), out=out)  # streamed first: falls back
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(MemoryError, match="NaN or Inf values, which are resampled in memory"):
        resample_array(data, (20, 20, 20), out=out, max_memory=200_000)


@pytest.mark.parametrize("bad", ["lots", 0, -5, "0M", True, 1.5])
def test_max_memory_must_be_a_size(bad) -> None:
    with pytest.raises(ValueError, match="max_memory must be a positive size"):
        resample_array(np.zeros((4, 4, 4)), (2, 2, 2), max_memory=bad)


def test_peak_memory_stays_within_the_budget(tmp_path) -> None:
    """A child process resamples a 256^3 int16 zarr volume to 512^3 (in memory: 32 MiB in,
    256 MiB out, and float32 intermediates: over 500 MiB) with max_memory=96M, zarr in and out;
    its peak RSS above what it used after its imports stays under the budget."""
    code = f"""
        import resource, numpy as np, zarr
        from napari_resample import resample_array
        from napari_resample.engine.stream_plan import plan_stream  # imported before the baseline
        shape, size = (256, 256, 256), (512, 512, 512)
        src = zarr.open_array({str(tmp_path / "in.zarr")!r}, mode="w", shape=shape,
                              chunks=(256, 256, 8), dtype="int16")
        for k in range(0, 256, 8):
            g = np.indices((256, 256, 8)).sum(axis=0) + k
            src[:, :, k:k + 8] = (np.sin(g / 9.0) * 1000).astype("int16")
        dst = zarr.open_array({str(tmp_path / "out.zarr")!r}, mode="w", shape=size,
                              chunks=(512, 512, 4), dtype="int16")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        resample_array(src, size, out=dst, max_memory="96M")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print("EXTRA", peak - base)
        print("CHECK", int(dst[100, 200, 300]), int(dst[511, 511, 511]))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    extra = int(result.stdout.split("EXTRA")[1].split()[0])
    assert extra < 96 * 2**20, f"peak RSS grew by {extra / 2**20:.0f} MiB over a 96 MiB budget"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_a_memmap_streams_along_its_own_slowest_axis_as_in_memory(tmp_path, mode, order):
    # One engine: a memmap (read a block of planes at a time, into out=, within a small
    # budget) and the same array in memory read along the same axis give the same bits.
    data = np.asarray(_data((33, 28, 19), np.int16, seed=5), order=order)
    mm = np.lib.format.open_memmap(tmp_path / "in.npy", "w+", np.int16, data.shape, order == "F")
    mm[...] = data
    mm.flush()
    source = np.load(tmp_path / "in.npy", mmap_mode="r")
    assert isinstance(source, np.memmap) and source.flags[f"{order}_CONTIGUOUS"]
    size = (21, 40, 12)
    out = np.zeros(size, np.int16)
    resample_array(source, size, interpolation=mode, out=out, max_memory="2M")
    ref, _ = resample_array(data, size, interpolation=mode)
    np.testing.assert_array_equal(out, ref)
    # read along i for C order, k for F order
    assert stream_axes(source)[2] == (0 if order == "C" else 2)
