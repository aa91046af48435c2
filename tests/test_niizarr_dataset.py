"""Datasets with NIfTI-Zarr results (and inputs): a folder has a fingerprint and a hash over
every file below it, so resume skips what is done, verify finds what changed, and QC reads the
results."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np

from napari_resample import qc_dataset, resampling_dataset, verify_dataset


def _inputs(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in range(2):
        data = (rng.normal(0, 100, (40, 30, 20))).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.9, 1.5, 1])), str(folder / f"c{n}.nii.gz"))
    return folder


def _lines(out):
    return [json.loads(x) for x in (out / "resampling_manifest.jsonl").read_text().splitlines()]


def test_zarr_results_resume_verify_and_qc(tmp_path) -> None:
    src, out = _inputs(tmp_path / "in"), tmp_path / "out"
    kwargs = dict(output_format="nii.zarr", workers=1, progress=False)
    done = resampling_dataset(src, out, (20, 15, 10), qc=True, **kwargs)
    assert len(done) == 2 and all(os.path.isdir(p) for p in done)
    assert len(_lines(out)) == 2
    # resume: nothing redone, no new line
    assert resampling_dataset(src, out, (20, 15, 10), **kwargs) == done
    assert len(_lines(out)) == 2
    # verify: every file below the folders hashed; nothing reported on untouched results
    assert verify_dataset(out) == []
    assert qc_dataset(out).counts == {"ok": 2, "warning": 0, "error": 0}
    # a chunk changed deep inside one result: verify says so, and the next run redoes it
    chunk = next(
        os.path.join(root, f)
        for root, _, files in os.walk(done[0])
        for f in files
        if f not in ("zarr.json",) and "/0/" in os.path.join(root, f)
    )
    data = bytearray(open(chunk, "rb").read())
    data[-1] ^= 0xFF
    with open(chunk, "wb") as fh:
        fh.write(bytes(data))
    problems = verify_dataset(out)
    assert len(problems) == 1 and "output changed" in problems[0] and "c0_resampled" in problems[0]
    resampling_dataset(src, out, (20, 15, 10), **kwargs)
    latest = {r["input"]: r for r in _lines(out)}
    assert latest[str(src / "c0.nii.gz")]["status"] == "done"
    assert verify_dataset(out) == []


def test_a_changed_zarr_input_is_redone(tmp_path) -> None:
    """A .nii.zarr input whose chunk files change (size or time) is redone on resume."""
    src = _inputs(tmp_path / "in")
    mid = tmp_path / "mid"
    resampling_dataset(src, mid, (30, 20, 15), output_format="nii.zarr", workers=1, progress=False)
    zin = tmp_path / "zin"
    zin.mkdir()
    os.rename(mid / "c0_resampled.nii.zarr", zin / "c0.nii.zarr")  # an input, not a result
    out = tmp_path / "out"
    resampling_dataset(zin, out, (10, 10, 10), workers=1, progress=False)
    assert len(_lines(out)) == 1
    resampling_dataset(zin, out, (10, 10, 10), workers=1, progress=False)
    assert len(_lines(out)) == 1  # skipped
    chunk = next(
        os.path.join(root, f) for root, _, files in os.walk(zin) for f in files if f != "zarr.json"
    )
    os.utime(chunk, ns=(1, 1))
    resampling_dataset(zin, out, (10, 10, 10), workers=1, progress=False)
    assert len(_lines(out)) == 2  # redone
