"""The three targets at every front door: command line (one file, folders) and datasets.

``--size | --spacing | --like`` (exactly one), ``resampling_dataset(spacing=...)`` /
``(reference=...)``: outputs, manifest records, resume, and the errors before anything exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _datasets import make_dataset, write_image
from napari_resample import resampling_dataset
from napari_resample.cli import main
from napari_resample.dataset.manifest import MANIFEST_NAME


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def _reference(path: Path, shape=(20, 16, 10), spacing=(1.2, 1.2, 3.0), origin=(2.0, 1.0, 0.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    img = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


# --------------------------------------------------------------------------- command line


def test_cli_spacing_prints_requested_and_achieved(tmp_path, capsys) -> None:
    src = write_image(tmp_path / "ct.nii.gz")  # 28 x 24 x 12 at 0.8 x 0.8 x 2.5 mm
    assert main([str(src), str(tmp_path / "out"), "--spacing", "1", "1", "1"]) == 0
    printed = capsys.readouterr().out
    # 28 x 0.8 mm / 22, 24 x 0.8 mm / 19, 12 x 2.5 mm / 30
    expected = (
        "Spacing requested (1, 1, 1) mm, achieved (1.01818, 1.01053, 1) mm, size (22, 19, 30)"
    )
    assert expected in printed
    img = nib.load(tmp_path / "out" / "ct_resampled.nii.gz")
    assert img.shape == (22, 19, 30)
    np.testing.assert_allclose(
        np.asarray(img.shape) * img.header.get_zooms()[:3], (22.4, 19.2, 30.0), rtol=1e-6
    )


def test_cli_like_writes_onto_the_reference_grid(tmp_path, capsys) -> None:
    src = write_image(tmp_path / "ct.nii.gz")
    ref = _reference(tmp_path / "refs" / "t1.nii.gz")
    assert main([str(src), str(tmp_path / "out"), "--like", str(ref), "--fill-value", "-5"]) == 0
    printed = capsys.readouterr().out
    assert "ct_resampled_to_ref.nii.gz" in printed
    assert "% of the reference's field of view" in printed
    got = nib.load(tmp_path / "out" / "ct_resampled_to_ref.nii.gz")
    assert got.shape == (20, 16, 10)
    np.testing.assert_array_equal(got.affine, nib.load(ref).affine)
    assert int(got.header["sform_code"]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "4", "4", "4", "--spacing", "1", "1", "1"],
        ["--spacing", "1", "1", "1", "--like", "ref.nii.gz"],
        [],
    ],
)
def test_cli_takes_exactly_one_target(tmp_path, capsys, args) -> None:
    src = write_image(tmp_path / "ct.nii.gz")
    with pytest.raises(SystemExit) as exit_:
        main([str(src), str(tmp_path / "out"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err or "one of --size X Y Z, --spacing" in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_bad_spacing_and_missing_reference(tmp_path, capsys) -> None:
    src = write_image(tmp_path / "ct.nii.gz")
    with pytest.raises(SystemExit) as bad_usage:  # a bad value is bad usage
        main([str(src), str(tmp_path / "out"), "--spacing", "1", "0", "1"])
    assert bad_usage.value.code == 2
    assert "--spacing must hold exactly 3 positive finite numbers" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere.nii.gz")
    assert main([str(src), str(tmp_path / "out"), "--like", missing]) == 1
    assert "nowhere.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_like_with_no_overlap_fails_naming_both(tmp_path, capsys) -> None:
    src = write_image(tmp_path / "ct.nii.gz")
    ref = _reference(tmp_path / "refs" / "far.nii.gz", origin=(900.0, 0.0, 0.0))
    assert main([str(src), str(tmp_path / "out"), "--like", str(ref)]) == 1
    err = capsys.readouterr().err
    assert "do not overlap" in err and "far.nii.gz" in err and "ct.nii.gz" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- datasets


def test_dataset_with_a_target_spacing_records_it_and_resumes(tmp_path) -> None:
    src = make_dataset(tmp_path / "in", images=2, labels=1, corrupt=False)
    out = tmp_path / "out"
    kwargs = {"saving_mode": "folder", "workers": 1, "progress": False}
    done = resampling_dataset(src, out, spacing=(1.0, 1.0, 1.0), **kwargs)
    assert len(done) == 3
    records = _records(out)
    for record in records:
        assert record["params"]["spacing"] == [1.0, 1.0, 1.0]
        assert record["spacing_requested"] == [1.0, 1.0, 1.0]
        assert record["after"]["shape"] == [22, 19, 30]
        np.testing.assert_allclose(record["spacing_achieved"], [22.4 / 22, 19.2 / 19, 1.0])
    # same target: skipped; another spacing: redone
    resampling_dataset(src, out, spacing=(1.0, 1.0, 1.0), **kwargs)
    assert len(_records(out)) == 3
    resampling_dataset(src, out, spacing=(2.0, 2.0, 2.0), **kwargs)
    assert len(_records(out)) == 6
    assert nib.load(done[0]).shape == (11, 10, 15)


def test_dataset_onto_a_reference(tmp_path) -> None:
    src = make_dataset(tmp_path / "in", images=2, labels=1, corrupt=False)
    # one more image far away from the reference: it fails, the others are done
    far = np.diag([0.8, 0.8, 2.5, 1.0])
    far[0, 3] = 1000.0
    data = np.ones((8, 8, 8), np.int16)
    nib.save(nib.Nifti1Image(data, far), str(src / "zz_far.nii.gz"))
    ref = _reference(tmp_path / "refs" / "atlas.nii.gz")
    out = tmp_path / "out"
    done = resampling_dataset(
        src, out, reference=ref, saving_mode="folder", workers=2, progress=False
    )
    assert sorted(os.path.basename(p) for p in done) == [
        "scan_00_resampled_to_ref.nii.gz",
        "scan_00_seg_resampled_to_ref.nii.gz",
        "scan_01_resampled_to_ref.nii.gz",
    ]
    by_name = {os.path.basename(r["input"]): r for r in _records(out)}
    assert by_name["zz_far.nii.gz"]["status"] == "failed"
    assert "do not overlap" in by_name["zz_far.nii.gz"]["error"]
    seg = by_name["scan_00_seg.nii.gz"]
    assert seg["interpolation_used"] == "label"
    assert 0 < seg["overlap"] <= 1
    labels = np.asarray(nib.load(out / "scan_00_seg_resampled_to_ref.nii.gz").dataobj)
    assert set(np.unique(labels)) <= {0, 1, 7}
    for path in done:
        np.testing.assert_array_equal(nib.load(path).affine, nib.load(ref).affine)
    # resume: nothing redone; a changed reference redoes every file
    os.remove(src / "zz_far.nii.gz")
    resampling_dataset(src, out, reference=ref, saving_mode="folder", workers=1, progress=False)
    assert len(_records(out)) == 4
    _reference(ref, shape=(10, 8, 5), spacing=(2.4, 2.4, 6.0))
    resampling_dataset(src, out, reference=ref, saving_mode="folder", workers=1, progress=False)
    assert len(_records(out)) == 7
    assert nib.load(done[0]).shape == (10, 8, 5)


def test_dataset_records_a_partial_overlap_warning(tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "ct.nii.gz")  # x from -0.4 to 22 mm
    ref = _reference(tmp_path / "refs" / "shifted.nii.gz", origin=(16.0, 1.0, 0.0))
    out = tmp_path / "out"
    resampling_dataset(src, out, reference=ref, workers=1, progress=False)
    (record,) = _records(out)
    assert record["status"] == "done" and record["overlap"] < 0.5
    assert any("covers only" in w for w in record["warnings"])


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({}, "give exactly one target: desired_volume .* got none"),
        ({"desired_volume": (4, 4, 4), "spacing": (1, 1, 1)}, "got desired_volume, spacing"),
        ({"spacing": (1, -1, 1)}, "spacing must hold exactly 3 positive finite numbers"),
    ],
)
def test_dataset_targets_are_checked_before_anything_exists(tmp_path, targets, message) -> None:
    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    with pytest.raises(ValueError, match=message):
        resampling_dataset(src, tmp_path / "never", progress=False, **targets)
    assert not (tmp_path / "never").exists()


def test_dataset_with_a_missing_reference_creates_nothing(tmp_path) -> None:
    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resampling_dataset(src, tmp_path / "never", reference=tmp_path / "nowhere.nii.gz")
    assert not (tmp_path / "never").exists()
