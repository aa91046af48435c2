"""Quality control wired into the runs: summaries gathered as the voxels pass equal a second
read, ``resampling_dataset(qc=True)``, :func:`napari_resample.qc_dataset` on a finished run,
and the command line (``--qc``, ``--strict``, ``napari-resample qc``)."""

from __future__ import annotations

import json
import os
import threading

import nibabel as nib
import numpy as np
import pytest

from napari_resample import qc_dataset, resampling_dataset
from napari_resample.cli import main
from napari_resample.pipeline.run import SizeTarget, SpacingTarget, resample_file
from napari_resample.qc.run import FileWatch
from napari_resample.qc.summary import (
    Summarizer,
    VolumeSummary,
    add_header,
    nifti_header,
    summarize_file,
)


def _write(path, data, affine, intent=0):
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if intent:
        img.header.set_intent(intent)
    nib.save(img, str(path))
    return str(path)


def _ct(shape, seed=0):
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, shape[0])[:, None, None]
    y = np.linspace(-1, 1, shape[1])[None, :, None]
    x = np.linspace(-1, 1, shape[2])[None, None, :]
    body = (z**2 + y**2 + 0.5 * x**2) < 0.7
    data = np.where(body, 40.0, -1000.0) + rng.normal(0, 20, shape)
    return data.astype(np.int16)


def _labels(shape):
    data = np.zeros(shape, np.uint8)
    data[5:20, 6:18, 4:14] = 1
    data[20:30, 10:25, 8:20] = 2
    return data


def _same(a: VolumeSummary, b: VolumeSummary) -> None:
    assert a.facts() == b.facts()
    assert a.mids.keys() == b.mids.keys() == {"i", "j", "k"}
    for cut in a.mids:
        np.testing.assert_array_equal(a.mids[cut], b.mids[cut])


@pytest.mark.parametrize("budget", [None, "4M"])
@pytest.mark.parametrize("kind", ["image", "labels", "float_nan", "scaled"])
def test_watched_summaries_equal_a_second_read(tmp_path, kind, budget) -> None:
    """What the observers gather while the file is resampled (streamed, or in memory for a
    float volume with NaN) is what reading input and output again gives; a scaled file's
    summary has its file's scaling."""
    affine = np.diag([0.8, 0.9, 2.0, 1.0])
    if kind in ("image", "scaled"):
        data = _ct((40, 36, 30))
    elif kind == "labels":
        data = _labels((40, 36, 30))
    else:
        data = _ct((40, 36, 30)).astype(np.float32)
        data[3, 4, 5] = np.nan
    src = _write(tmp_path / "in.nii.gz", data, affine, 1002 if kind == "labels" else 0)
    if kind == "scaled":  # the stored values unchanged, scaled by the header
        img = nib.load(src)
        img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
        img.header.set_slope_inter(0.25, -40.0)
        nib.save(img, src)
    out = str(tmp_path / "out.nii.gz")
    watch = FileWatch(src, out)
    result = resample_file(
        src,
        out,
        SizeTarget((20, 30, 17)),
        interpolation="auto",
        max_memory=budget,
        observers=watch.observers,
    )
    inp, res = watch.summaries()
    labels = kind == "labels"
    assert inp.label_map is res.label_map is labels
    assert result.streamed is (kind != "float_nan")
    _same(inp, summarize_file(src, label_map=labels))
    _same(res, summarize_file(out, label_map=labels))
    if labels:
        assert set(inp.labels) == {0, 1, 2}
        assert sum(inp.labels.values()) == data.size
    if kind == "float_nan":
        assert inp.nan == 1
    if kind == "scaled":
        assert (inp.slope, inp.inter) == (res.slope, res.inter) == (0.25, -40.0)
        assert inp.facts()["min"] == float(data.min()) * 0.25 - 40.0


def test_observers_start_over_when_a_stream_falls_back(tmp_path) -> None:
    """A streamed run that finds NaN late starts over in memory: the summaries count once."""
    data = _ct((30, 30, 40)).astype(np.float32)
    data[:, :, -1] = np.nan  # found by the stream's last block
    src = _write(tmp_path / "in.nii.gz", data, np.eye(4))
    out = str(tmp_path / "out.nii.gz")
    watch = FileWatch(src, out)
    resample_file(
        src,
        out,
        SpacingTarget((2.0, 2.0, 2.0)),
        interpolation="bspline",
        max_memory="4M",
        observers=watch.observers,
    )
    inp, _ = watch.summaries()
    assert inp.nan == 30 * 30
    _same(inp, summarize_file(src, label_map=False))


def _dataset(folder):
    os.makedirs(folder, exist_ok=True)
    affine = np.diag([0.9, 0.9, 1.5, 1.0])
    for n in range(2):
        _write(folder / f"case{n}.nii.gz", _ct((40, 36, 30), seed=n), affine)
        _write(folder / f"case{n}_seg.nii.gz", _labels((40, 36, 30)), affine, 1002)
    return folder


def test_dataset_qc_writes_the_report(tmp_path) -> None:
    src = _dataset(tmp_path / "in")
    out = tmp_path / "out"
    done = resampling_dataset(src, out, (20, 18, 15), workers=1, qc=True, progress=False)
    assert len(done) == 4
    page, report = out / "qc" / "index.html", out / "qc" / "qc.json"
    assert page.is_file() and report.is_file()
    data = json.loads(report.read_text())
    assert data["counts"] == {"ok": 4, "warning": 0, "error": 0}, data["files"]
    by_name = {os.path.basename(f["output"]): f for f in data["files"]}
    seg = by_name["case0_seg_resampled.nii.gz"]
    assert seg["paired_image"].endswith("case0_resampled.nii.gz")
    assert any(f["check"] == "pairing" and f["severity"] == "ok" for f in seg["findings"])
    for entry in data["files"]:
        for role in entry["thumbs"].values():
            for rel in role.values():
                assert (out / "qc" / rel).is_file()
    # every record of the manifest carries its verdict and what it cost
    lines = (out / "resampling_manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all("qc" in r and r["qc_seconds"] >= 0 for r in records)


def test_qc_of_a_finished_run_gives_the_same_verdicts(tmp_path) -> None:
    """``qc_dataset`` reads a run made without QC again: the verdicts and facts are those of
    a run checked as it went."""
    src = _dataset(tmp_path / "in")
    live, later = tmp_path / "live", tmp_path / "later"
    resampling_dataset(src, live, (20, 18, 15), workers=1, qc=True, progress=False)
    resampling_dataset(src, later, (20, 18, 15), workers=1, progress=False)
    assert not (later / "qc").exists()
    report = qc_dataset(later)
    assert report.counts == {"ok": 4, "warning": 0, "error": 0}
    a = {os.path.basename(f["output"]): f for f in _files(live)}
    b = {os.path.basename(f["output"]): f for f in _files(later)}
    assert a.keys() == b.keys()
    for name in a:
        assert [f["check"] for f in a[name]["findings"]] == [
            f["check"] for f in b[name]["findings"]
        ]
        for side in ("before", "after"):
            fa, fb = dict(a[name][side]), dict(b[name][side])
            fa.pop("path"), fb.pop("path")
            assert fa == fb


def _files(out):
    return json.loads((out / "qc" / "qc.json").read_text())["files"]


def test_cli_qc_strict_finds_a_seeded_fault(tmp_path, capsys) -> None:
    src = _dataset(tmp_path / "in")
    out = tmp_path / "out"
    assert main([str(src), str(out), "--size", "20", "18", "15", "--workers", "1", "--qc"]) == 0
    assert "QC report:" in capsys.readouterr().out
    assert main(["qc", str(out), "--strict"]) == 0
    # an all-zero output: the run's own records are stale now, so check the files again
    victim = out / "case1_resampled.nii.gz"
    img = nib.load(str(victim))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine, img.header), victim)
    lines = [json.loads(x) for x in (out / "resampling_manifest.jsonl").read_text().splitlines()]
    with open(out / "resampling_manifest.jsonl", "w") as fh:
        for record in lines:
            record.pop("qc", None)
            fh.write(json.dumps(record) + "\n")
    capsys.readouterr()
    assert main(["qc", str(out)]) == 0  # without --strict, errors are reported, not an exit
    assert main(["qc", str(out), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "case1_resampled.nii.gz" in err and "napari-resample: error: qc:" in err


def test_cli_qc_usage_errors(tmp_path, capsys) -> None:
    src = _dataset(tmp_path / "in")
    with pytest.raises(SystemExit) as exc:
        main([str(src), str(tmp_path / "o"), "--size", "8", "8", "8", "--strict"])
    assert exc.value.code == 2
    assert "--strict" in capsys.readouterr().err
    assert main(["qc", str(tmp_path / "in")]) == 1
    err = capsys.readouterr().err
    assert "holds no resampling_manifest.jsonl" in err and str(tmp_path / "in") in err
    single = src / "case0.nii.gz"
    assert main([str(single), str(tmp_path / "o"), "--size", "8", "8", "8", "--qc"]) == 2
    assert "--qc applies to a folder of volumes" in capsys.readouterr().err


def test_a_killed_report_writer_leaves_nothing_behind(tmp_path) -> None:
    """Temporary thumbnails, pages and JSON of a writer that died are removed by the next
    report; a live process's are not."""
    import subprocess
    import sys

    src = _dataset(tmp_path / "in")
    out = tmp_path / "out"
    resampling_dataset(src, out, (20, 18, 15), workers=1, qc=True, progress=False)
    thumbs = out / "qc" / "thumbs"
    code = (
        "from napari_resample.io.atomic import temp_name; import os, sys; "
        "[open(os.path.join(sys.argv[i], temp_name(n, '.' + n.split('.')[-1])), 'w').close() "
        "for i, n in ((1, 'a.png'), (2, 'index.html'), (2, 'qc.json'))]"
    )
    subprocess.run([sys.executable, "-c", code, str(thumbs), str(out / "qc")], check=True)
    mine = out / "qc" / ".live.tmp"
    before = set(os.listdir(thumbs)) | set(os.listdir(out / "qc"))
    assert sum(".tmp." in name for name in before) == 3
    mine.write_text("")
    qc_dataset(out)
    after = set(os.listdir(thumbs)) | set(os.listdir(out / "qc"))
    assert not [name for name in after if ".tmp." in name]
    assert mine.exists()  # not a temporary name of ours: never touched


def test_qc_of_a_metaimage_input_as_the_run_goes(tmp_path) -> None:
    """A volume read whole by SimpleITK (here MetaImage) is watched on the in-memory path: its
    summary is what a second read gives, and the pair passes every check."""
    import SimpleITK as sitk

    src = tmp_path / "in"
    src.mkdir()
    image = sitk.GetImageFromArray(_ct((30, 36, 40)).transpose(2, 1, 0).copy())
    image.SetSpacing((0.9, 0.8, 1.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    sitk.WriteImage(image, str(src / "scan.mha"))
    out = tmp_path / "out"
    resampling_dataset(src, out, (20, 18, 15), workers=1, qc=True, progress=False)
    (entry,) = _files(out)
    assert entry["status"] == "ok", entry["findings"]
    assert entry["before"] == summarize_file(str(src / "scan.mha"), label_map=False).facts()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("labelled", [0.0, 0.03, 0.9])
def test_label_counts_are_exact(dtype, labelled) -> None:
    """A label map's counts, gathered block by block (mostly background: only the 8-byte words
    holding a label are counted), are np.unique's; odd sizes leave a tail of bytes."""
    rng = np.random.default_rng(7)
    shape = (37, 29, 23)  # 24679 voxels per plane block of 1: not a multiple of 8
    data = np.where(rng.random(shape) < labelled, rng.integers(1, 9, shape), 0).astype(dtype)
    data[5, 6, 7] = 100
    if dtype == np.int16:
        data[1, 1, 1] = -3
    data = np.asfortranarray(data)
    summarizer = Summarizer("x.nii.gz")
    summarizer.begin(data.shape, np.eye(4), data.dtype, True)
    for k0 in range(0, shape[2], 5):
        summarizer.add(k0, data[:, :, k0 : k0 + 5])
    summary = summarizer.finish()
    values, counts = np.unique(data, return_counts=True)
    assert summary.labels == {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    assert (summary.lo, summary.hi) == (float(values[0]), float(values[-1]))


@pytest.mark.parametrize("block", [1, 3, 8, 50])
def test_mid_planes_are_the_volumes_strided_planes(block) -> None:
    """The mid-planes kept as blocks of k-planes pass are the volume's, every ``step``-th
    voxel (a block starting between two kept planes included)."""
    rng = np.random.default_rng(3)
    shape = (300, 260, 50)  # longest side over THUMB_PIXELS (256): every 2nd voxel
    data = np.asfortranarray(rng.integers(-1000, 2000, shape).astype(np.int16))
    summarizer = Summarizer("x.nii.gz")
    summarizer.begin(shape, np.eye(4), data.dtype, False)
    for k0 in range(0, shape[2], block):
        summarizer.add(k0, data[:, :, k0 : k0 + block])
    summary = summarizer.finish()
    assert summary.steps == {"i": (2, 2), "j": (2, 2), "k": (2, 2)}
    np.testing.assert_array_equal(summary.mids["i"], data[150, ::2, ::2])
    np.testing.assert_array_equal(summary.mids["j"], data[::2, 130, ::2])
    np.testing.assert_array_equal(summary.mids["k"], data[::2, ::2, 25])
    assert (summary.lo, summary.hi) == (float(data.min()), float(data.max()))


def _header_facts(header) -> tuple:
    summary = VolumeSummary("x.nii", (1, 1, 1), "int16")
    add_header(summary, header)
    forms = [None if m is None else m.tolist() for m in (summary.qform, summary.sform)]
    return summary.slope, summary.inter, summary.qform_code, summary.sform_code, *forms


def _patched(path, offset, dtype, value):
    """Write *value* into the header of the uncompressed NIfTI *path* at *offset*."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.asarray(value, dtype=dtype).tobytes())
    return path


@pytest.mark.parametrize(
    "case", ["gz", "nii", "big_endian", "nifti2", "scaled", "forms_differ", "bad_code"]
)
def test_header_read_alone_gives_nibabels_facts(tmp_path, case) -> None:
    """QC reads a file's header alone (``qc.summary.nifti_header``, not ``nib.load``): the
    forms and codes it takes from it are those of ``nib.load(path).header`` (nibabel's fixes
    included), its scaling the one nibabel applies to the voxels."""
    data = _ct((6, 5, 4))
    affine = np.array([[0.8, 0, 0, -10], [0, 0.9, 0, 20], [0, 0, 2.0, 5], [0, 0, 0, 1.0]])
    suffix = ".nii.gz" if case == "gz" else ".nii"
    if case == "nifti2":
        img = nib.Nifti2Image(data, affine)
    elif case == "big_endian":
        img = nib.Nifti1Image(data.astype(">i2"), affine, nib.Nifti1Header(endianness=">"))
    else:
        img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    shifted = affine.copy()
    shifted[:3, 3] += 4.0 if case == "forms_differ" else 0.0
    img.set_sform(shifted, code=2)
    path = str(tmp_path / f"{case}{suffix}")
    nib.save(img, path)
    if case == "scaled":
        _patched(_patched(path, 112, "<f4", 2.5), 116, "<f4", -7.0)  # scl_slope, scl_inter
    if case == "bad_code":
        _patched(path, 252, "<i2", 9)  # qform_code 9: not a code, nibabel makes it 0
    loaded = nib.load(path)
    header = nifti_header(path)
    assert type(header) is type(loaded.header)
    facts = _header_facts(header)
    assert facts[:2] == (float(loaded.dataobj.slope), float(loaded.dataobj.inter))
    assert facts[2:] == _header_facts(loaded.header)[2:]
    if case == "big_endian":
        assert header.endianness == ">"
    if case == "scaled":
        assert facts[:2] == (2.5, -7.0)
    if case == "forms_differ":
        assert facts[4] != facts[5]
    if case == "bad_code":
        assert facts[2] == 0


def test_qc_starts_no_thread_before_the_workers(tmp_path, monkeypatch) -> None:
    """QC readies its imports in the calling thread: a thread still running when the pool
    starts would make the pool spawn its workers (each importing everything again, and a
    script without a main guard failing) instead of forking them."""
    from napari_resample.dataset import pool

    seen = []
    start_method = pool._start_method

    def recording() -> str:
        seen.append(threading.active_count())
        return start_method()

    monkeypatch.setattr(pool, "_start_method", recording)
    before = threading.active_count()
    done = resampling_dataset(
        str(_dataset(tmp_path / "in")),
        str(tmp_path / "out"),
        (20, 18, 15),
        workers=2,
        progress=False,
        qc=True,
    )
    assert len(done) == 4
    assert seen == [before]
