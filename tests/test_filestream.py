"""Files streamed through the one file pipeline: the same file as in memory, within a budget.

``resample_file`` streams NIfTI files (reading, resampling and writing at once) and falls back
to the in-memory pipeline for what it cannot stream; both must write the same file. The budget
is checked on a child process's peak RSS, not a timing.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import warnings

import nibabel as nib
import numpy as np
import pytest

from napari_resample import resample_to_reference, resample_to_spacing, resampling
from napari_resample.cli import main
from napari_resample.engine.grid import Grid
from napari_resample.pipeline import streamed as _filestream
from napari_resample.pipeline.run import GridTarget, SizeTarget, SpacingTarget, resample_file


def _volume(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 5, shape).astype(dtype)
    grid = np.indices(shape).sum(axis=0)
    return (np.sin(grid / 4.0) * 500 + rng.normal(0, 30, shape)).astype(dtype)


def _write(path, data, affine=None, **header):
    img = nib.Nifti1Image(data, np.diag([0.8, 0.7, 2.0, 1.0]) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return str(path)


def _bytes(path):
    with gzip.open(path, "rb") as fh:
        return fh.read()


def _both(tmp_path, monkeypatch, src, target, interpolation, name, **kwargs):
    """The file streamed and the file made in memory, as decompressed bytes, and the results."""
    streamed_out = str(tmp_path / f"s_{name}.nii.gz")
    memory_out = str(tmp_path / f"m_{name}.nii.gz")
    a = resample_file(src, streamed_out, target, interpolation=interpolation, **kwargs)
    # the in-memory side is held to the default budget: a budget the stream fits and the
    # in-memory engines do not is refused there, by design (limits.check_in_memory)
    in_memory = {key: value for key, value in kwargs.items() if key != "max_memory"}
    with monkeypatch.context() as m:
        m.setattr(_filestream, "stream_file", lambda *args, **kw: None)
        b = resample_file(src, memory_out, target, interpolation=interpolation, **in_memory)
    return _bytes(streamed_out), _bytes(memory_out), a, b


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("mode", ["bspline", "linear", "nearest", "label"])
def test_streamed_file_equals_the_in_memory_file(tmp_path, monkeypatch, dtype, mode) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((30, 26, 21), dtype))
    for n, target in enumerate(
        [
            SizeTarget((17, 40, 9)),
            SizeTarget((17, 40, 33), anchor="center", antialias=True),
            SpacingTarget((1.1, 0.5, 3.0)),
        ]
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s, m, a, b = _both(tmp_path, monkeypatch, src, target, mode, f"{n}")
        # uint8 here holds 5 values: a label map, which both engines warn about once each
        warned = 2 if dtype == np.uint8 and mode in ("bspline", "linear") else 0
        assert [str(w.message).count("5 distinct values") for w in caught] == [1] * warned
        assert a.streamed and not b.streamed
        assert s == m, f"{target}"
        assert a.after == b.after and a.info == b.info


@pytest.mark.parametrize("mode", ["bspline", "linear", "nearest", "label"])
def test_streamed_reference_grid_with_fill_equals_in_memory(tmp_path, monkeypatch, mode) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((30, 26, 21), np.int16))
    ref_affine = np.diag([-1.1, 0.9, 1.5, 1.0])  # flipped x, shifted: partly outside
    ref_affine[:3, 3] = (40.0, -3.0, 4.0)
    grid = Grid((25, 30, 20), ref_affine, None, "ref")
    with pytest.warns(UserWarning, match="covers only"):
        s, m, a, b = _both(tmp_path, monkeypatch, src, GridTarget(grid, -7.0), mode, "ref")
    assert a.streamed and not b.streamed
    assert s == m
    assert a.info["overlap"] == b.info["overlap"] < 0.5


def test_a_budget_too_small_for_the_held_output_makes_a_first_pass(tmp_path, monkeypatch) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((40, 40, 40), np.int16))
    s, m, a, _ = _both(
        tmp_path, monkeypatch, src, SizeTarget((80, 80, 80)), "bspline", "big", max_memory="2500K"
    )
    assert a.streamed and a.first_pass
    assert s == m


def test_auto_decides_like_the_in_memory_rule_in_its_first_pass(tmp_path, monkeypatch) -> None:
    def segmentation(n: int) -> np.ndarray:
        labels = np.zeros((n, n, n), np.int16)
        labels[n // 8 : 3 * n // 4, n // 5 : 7 * n // 8, n // 10 : 9 * n // 10] = 3
        labels[n // 2 :, :, n // 2 :] = 9
        return labels

    # small: held whole while the rule counts it (one read), then streamed
    src = _write(tmp_path / "seg.nii.gz", segmentation(40))
    small = resample_file(
        src, str(tmp_path / "a.nii.gz"), SizeTarget((20, 20, 20)), interpolation="auto"
    )
    assert (small.interpolation, small.streamed, small.first_pass) == ("label", True, False)
    # more than a quarter of the budget and too big for memory: the first pass decides
    src = _write(tmp_path / "big.nii.gz", segmentation(160))
    s, m, a, b = _both(
        tmp_path, monkeypatch, src, SizeTarget((40, 40, 40)), "auto", "auto", max_memory="4M"
    )
    assert (a.interpolation, a.streamed, a.first_pass) == ("label", True, True)
    assert b.interpolation == "label" and s == m


def test_auto_on_an_image_whose_first_planes_are_air_streams_in_one_read(tmp_path) -> None:
    # A CT's first planes may hold air alone (few values): the rule reads on, holding blocks,
    # until more than MAX_LABELS values make it an image, instead of reading the file twice.
    data = np.full((64, 64, 64), -1024, np.int16)
    rng = np.random.default_rng(0)
    data[:, :, 24:] = rng.integers(-1000, 2000, (64, 64, 40), dtype=np.int16)
    src = _write(tmp_path / "ct.nii.gz", data)
    result = resample_file(
        src, str(tmp_path / "o.nii.gz"), SizeTarget((32, 32, 32)), interpolation="auto"
    )
    assert (result.interpolation, result.streamed, result.first_pass) == ("bspline", True, False)


def test_non_finite_floats_are_resampled_in_memory(tmp_path) -> None:
    data = _volume((20, 20, 20), np.float32)
    data[3, 4, 5] = np.nan
    src = _write(tmp_path / "nan.nii.gz", data)
    result = resample_file(
        src, str(tmp_path / "o.nii.gz"), SizeTarget((10, 10, 10)), interpolation="bspline"
    )
    assert not result.streamed
    assert not any(name.endswith(".tmp.nii.gz") for name in os.listdir(tmp_path))


def test_a_damaged_file_fails_streamed_and_leaves_nothing(tmp_path) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((30, 30, 30), np.int16))
    raw = bytearray(open(src, "rb").read())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte: CRC-32 or inflate error
    with open(src, "wb") as fh:
        fh.write(raw)
    with pytest.raises(ValueError, match=r"in\.nii\.gz"):
        resampling(src, tmp_path / "out", (10, 10, 10))
    assert not (tmp_path / "out").exists()


def test_max_memory_at_the_front_doors(tmp_path, capsys) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((20, 20, 20), np.int16))
    with pytest.raises(ValueError, match="max_memory must be a positive size"):
        resampling(src, tmp_path / "never", (10, 10, 10), max_memory="lots")
    with pytest.raises(MemoryError, match="even streamed plane by plane"):
        resample_to_spacing(src, tmp_path / "never", (0.01, 0.01, 0.1), max_memory="1M")
    assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit) as bad_usage:
        main([src, str(tmp_path / "cli"), "--size", "8", "8", "8", "--max-memory", "x"])
    assert bad_usage.value.code == 2
    assert "--max-memory must be a positive size" in capsys.readouterr().err
    assert main([src, str(tmp_path / "cli"), "--size", "8", "8", "8", "--max-memory", "64M"]) == 0
    ref = _write(tmp_path / "ref.nii.gz", np.zeros((9, 9, 9), np.uint8))
    assert resample_to_reference(src, ref, tmp_path / "r", max_memory="64M").endswith(
        "in_resampled_to_ref.nii.gz"
    )


def test_peak_memory_of_a_streamed_file_stays_within_the_budget(tmp_path) -> None:
    """A child process resamples a 256^3 int16 .nii.gz to 512^3 (in memory: 32 MiB in, 256 MiB
    out and float32 intermediates, over 500 MiB) with max_memory=128M; its peak RSS above what it
    used after writing the input stays under the budget."""
    code = f"""
        import resource
        import numpy as np, nibabel as nib
        from napari_resample import resampling
        from napari_resample.io.plane_writer import PlaneWriter
        from napari_resample.pipeline.streamed import stream_file  # imports before the baseline
        header = nib.Nifti1Header()
        header.set_data_shape((256, 256, 256))
        header.set_data_dtype(np.int16)
        header.set_qform(np.eye(4), code=1)
        header.set_sform(np.eye(4), code=1)
        src = {str(tmp_path / "big.nii.gz")!r}
        with PlaneWriter(src, header) as out:
            for k in range(0, 256, 8):
                g = np.indices((256, 256, 8)).sum(axis=0) + k
                out.write((np.sin(g / 9.0) * 1000).astype(np.int16))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        resampling(src, {str(tmp_path / "out")!r}, (512, 512, 512), max_memory="128M")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print("EXTRA", peak - base)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    extra = int(result.stdout.split("EXTRA")[1].split()[0])
    assert extra < 128 * 2**20, f"peak RSS grew by {extra / 2**20:.0f} MiB over a 128 MiB budget"
    out = nib.load(tmp_path / "out" / "big_resampled.nii.gz")
    assert out.shape == (512, 512, 512)


def test_an_output_over_the_hold_cap_takes_a_first_pass_instead(tmp_path, monkeypatch) -> None:
    src = _write(tmp_path / "in.nii.gz", _volume((30, 30, 30), np.int16))
    target = SizeTarget((40, 40, 40))
    held = resample_file(src, str(tmp_path / "held.nii.gz"), target, interpolation="linear")
    assert held.streamed and not held.first_pass  # 256 KiB held: under the cap
    monkeypatch.setattr(_filestream, "HOLD_CAP", 1000)
    read_twice = resample_file(src, str(tmp_path / "twice.nii.gz"), target, interpolation="linear")
    assert read_twice.streamed and read_twice.first_pass
    assert _bytes(tmp_path / "held.nii.gz") == _bytes(tmp_path / "twice.nii.gz")


@pytest.mark.parametrize(
    ("oblique", "mode"), [(False, "linear"), (True, "linear"), (False, "auto")]
)
def test_a_low_overlap_is_warned_once(tmp_path, oblique, mode) -> None:
    """Streamed, or in memory (oblique), the warning comes once: the target resolves once."""
    src = _write(tmp_path / "in.nii.gz", _volume((30, 26, 21), np.int16))
    affine = np.diag([1.1, 0.9, 1.5, 1.0])
    if oblique:
        c, s = np.cos(0.3), np.sin(0.3)
        affine[:2, :2] = np.array([[c, -s], [s, c]]) @ np.diag([1.1, 0.9])
    affine[:3, 3] = (18.0, -3.0, 4.0)
    ref = _write(tmp_path / "ref.nii.gz", np.zeros((25, 30, 20), np.uint8), affine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resample_to_reference(src, ref, tmp_path / "out", mode)
    assert [str(w.message).count("covers only") for w in caught] == [1]


def _ten_values(shape=(24, 20, 16)):
    """int16 holding 10 values in blocks: a label map by the counts unless scaled."""
    k = np.indices(shape).sum(axis=0) // 6
    return ((k % 10) * 100).astype(np.int16)


@pytest.mark.parametrize(
    ("header", "expected"),
    [({"scl_slope": 0.5, "scl_inter": -10.0}, "bspline"), ({}, "label")],
)
def test_streamed_auto_asks_the_one_rule(tmp_path, monkeypatch, header, expected) -> None:
    # Scaled integers are images whatever their values (the Labels rule's first condition):
    # streamed under a small budget, "auto" must give B-spline, as in memory.
    src = _write(tmp_path / "ten.nii.gz", _ten_values(), **header)
    s, m, a, b = _both(
        tmp_path, monkeypatch, src, SizeTarget((13, 11, 9)), "auto", "ten", max_memory="1M"
    )
    assert a.streamed and a.interpolation == expected
    assert b.interpolation == expected and s == m


def test_bspline_on_a_label_map_warns_once_naming_the_file_and_the_rule(tmp_path) -> None:
    seg = np.zeros((24, 20, 16), np.uint8)
    seg[4:12, 4:12, 4:10], seg[12:20, 6:14, 5:12] = 1, 7
    by_intent = _write(tmp_path / "by_intent.nii.gz", seg, intent_code=1002)
    by_counts = _write(tmp_path / "by_counts.nii.gz", seg)
    for src, rule in [(by_intent, "intent code 1002"), (by_counts, "3 distinct values")]:
        for budget in (None, "1M"):  # in memory and streamed
            out = tmp_path / f"out{budget}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                resampling(src, out, (13, 11, 9), interpolation="linear", max_memory=budget)
            assert len(caught) == 1, [str(w.message) for w in caught]
            message = str(caught[0].message)
            assert src in message and rule in message and "'linear'" in message
            assert caught[0].filename == __file__  # the caller's line, not ours
    # "auto" and "label" say nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resampling(by_counts, tmp_path / "quiet", (13, 11, 9), max_memory="1M")


def test_the_warning_names_equal_neighbours_when_they_decide(tmp_path) -> None:
    ids = np.arange(64, dtype=np.int16).reshape(4, 4, 4) + 1  # 64 labels in 5-voxel blocks
    seg = np.kron(ids, np.ones((6, 5, 4), np.int16))
    src = _write(tmp_path / "many.nii.gz", seg)
    with pytest.warns(UserWarning, match=r"64 distinct values and \d+% equal neighbours"):
        resample_to_spacing(src, tmp_path / "out", (1.0, 1.0, 3.0), interpolation="bspline")


def test_auto_streams_an_integer_image_without_a_first_pass(tmp_path, monkeypatch) -> None:
    # Over 256 values in the first block: an image whatever the rest holds, so "auto" streams it
    # at once (B-spline), as "bspline" would, instead of reading it whole or twice.
    src = _write(tmp_path / "ct.nii.gz", _volume((30, 26, 21), np.int16))
    s, m, a, b = _both(tmp_path, monkeypatch, src, SizeTarget((17, 40, 9)), "auto", "ct")
    assert (a.interpolation, a.streamed, a.first_pass) == ("bspline", True, False)
    assert b.interpolation == "bspline" and s == m


def test_a_read_out_resolves_without_warning_and_the_run_warns() -> None:
    from napari_resample.io.nifti import NiftiVolume
    from napari_resample.pipeline.rules import resolve_interpolation

    seg = NiftiVolume(
        np.kron(np.eye(3, dtype=np.uint8), np.ones((4, 4, 4), np.uint8)), np.eye(4), None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_interpolation("linear", seg, warn=False) == "linear"
        assert resolve_interpolation("auto", seg, warn=False) == "label"
    with pytest.warns(UserWarning, match=r"the volume is a label map \(2 distinct values"):
        assert resolve_interpolation("linear", seg) == "linear"
