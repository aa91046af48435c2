"""Progress per slab and a cancel between slabs (docs/decisions.md, D18), in both engines."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from napari_resample import ResamplingCancelled, resample_array
from napari_resample.engine import stream_plan as _stream_plan
from napari_resample.engine import threads as _threads
from napari_resample.engine.stream import stream_axes
from napari_resample.io.nifti import NiftiVolume
from napari_resample.pipeline.run import resample_volume


def _volume(shape=(40, 36, 30), dtype=np.int16) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 1000, size=shape).astype(dtype)


@pytest.mark.parametrize("interpolation", ["bspline", "linear", "label"])
def test_progress_is_reported_per_slab_and_is_monotone(monkeypatch, interpolation) -> None:
    monkeypatch.setattr(_stream_plan, "CHUNK_BYTES", 1)  # one output plane per chunk
    data = _volume()
    seen: list[float] = []
    out, _ = resample_array(data, (30, 50, 20), interpolation=interpolation, progress=seen.append)
    assert out.shape == (30, 50, 20)
    assert len(seen) >= 20, seen
    assert all(b >= a for a, b in itertools.pairwise(seen)), seen
    assert 0 < seen[0] < 0.5 and seen[-1] == 1.0
    assert all(0 <= f <= 1 for f in seen)


@pytest.mark.parametrize("interpolation", ["bspline", "label"])
@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_the_run_within_a_slab(monkeypatch, interpolation, kind) -> None:
    monkeypatch.setattr(_threads, "SLAB_ELEMENTS", 1)
    data = _volume()
    stop = threading.Event()
    seen: list[float] = []

    def progress(fraction: float) -> None:
        seen.append(fraction)
        stop.set()  # cancel as soon as the first slab is done

    cancel = stop if kind == "event" else stop.is_set
    with pytest.raises(ResamplingCancelled):
        resample_array(
            data, (30, 50, 20), interpolation=interpolation, progress=progress, cancel=cancel
        )
    # stopped within one slab per engine thread: far from the whole job
    assert 1 <= len(seen) <= 2 * _threads.engine_threads() + 1, seen
    assert max(seen) < 0.5


def test_a_cancel_set_before_the_start_computes_nothing() -> None:
    stop = threading.Event()
    stop.set()
    seen: list[float] = []
    with pytest.raises(ResamplingCancelled):
        resample_array(_volume(), (8, 8, 8), progress=seen.append, cancel=stop)
    assert seen == []


def test_resample_volume_passes_the_cancel_on() -> None:
    stop = threading.Event()
    stop.set()
    volume = NiftiVolume(_volume(), np.eye(4), None, None, None)
    with pytest.raises(ResamplingCancelled):
        resample_volume(volume, (8, 8, 8), cancel=stop)
    assert resample_volume(volume, (8, 8, 8), cancel=threading.Event()).data.shape == (8, 8, 8)


@pytest.mark.parametrize("interpolation", ["bspline", "label"])
def test_streamed_progress_is_the_one_formula_per_chunk(monkeypatch, interpolation) -> None:
    # One Ticker for every engine: after chunk n of N output planes, n / (N + 1); 1.0 at the
    # end (the in-memory engine counts slabs with the same formula).
    # The planes counted are those of the streamed axis: i for a C-ordered array interpolated.
    monkeypatch.setattr(_stream_plan, "CHUNK_BYTES", 1)  # one output plane per chunk
    size = (30, 50, 20)
    seen: list[float] = []
    out = np.empty(size, np.int16)
    resample_array(_volume(), size, interpolation=interpolation, out=out, progress=seen.append)
    planes = size[stream_axes(_volume())[2]]
    assert seen == [n / (planes + 1) for n in range(1, planes + 1)] + [1.0]
    expected, _ = resample_array(_volume(), size, interpolation=interpolation)
    np.testing.assert_array_equal(out, expected)


def test_cancel_stops_a_streamed_run_after_the_chunk_in_hand(monkeypatch) -> None:
    monkeypatch.setattr(_stream_plan, "CHUNK_BYTES", 1)
    stop = threading.Event()
    seen: list[float] = []

    def progress(fraction: float) -> None:
        seen.append(fraction)
        stop.set()

    out = np.zeros((30, 50, 20), np.int16)
    with pytest.raises(ResamplingCancelled):
        resample_array(_volume(), out.shape, out=out, progress=progress, cancel=stop)
    assert seen == [1 / (out.shape[stream_axes(_volume())[2]] + 1)]
