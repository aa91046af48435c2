"""``resampling_dataset``: layouts, label maps, failures, parallel runs, resume and verify."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _datasets import make_dataset, tree_digest, write_image, write_labels
from napari_resample import resampling_dataset, verify_dataset
from napari_resample.dataset.manifest import MANIFEST_NAME, input_fingerprint, read_manifest
from napari_resample.dataset.pool import pool_plan

SIZE = (14, 12, 9)


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def run(src, out, **kwargs):
    if "executor" not in kwargs:  # workers sizes the local pool: not with an executor
        kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return resampling_dataset(src, out, SIZE, **kwargs)


def test_case_layout_returns_done_outputs_in_input_order(tmp_path):
    src = make_dataset(tmp_path / "in", images=3, labels=1)
    out = tmp_path / "out"
    done = run(src, out, saving_mode="case")
    names = ["scan_00", "scan_00_seg", "scan_01", "scan_02"]
    assert done == [os.path.join(str(out), n, f"{n}_resampled.nii.gz") for n in names]
    # Besides the outputs and the manifest, nothing: no folder for the broken file, no state.
    assert sorted(os.listdir(out)) == sorted([*names, MANIFEST_NAME])
    for path in done:
        assert nib.load(path).shape == SIZE
    records = lines(out)
    assert len(records) == 5 and sum(r["status"] == "failed" for r in records) == 1


def test_folder_layout_is_the_default_and_takes_explicit_lists(tmp_path):
    src = make_dataset(tmp_path / "in", images=2, labels=0, corrupt=False)
    done = run(src, tmp_path / "flat")  # "folder", as on the command line
    assert sorted(os.listdir(tmp_path / "flat")) == [
        MANIFEST_NAME,
        "scan_00_resampled.nii.gz",
        "scan_01_resampled.nii.gz",
    ]
    listed = run([src / "scan_01.nii.gz"], tmp_path / "one", saving_mode="folder")
    assert listed == [os.path.join(str(tmp_path / "one"), "scan_01_resampled.nii.gz")]
    assert (
        tree_digest(tmp_path / "one")["scan_01_resampled.nii.gz"]
        == (tree_digest(tmp_path / "flat")["scan_01_resampled.nii.gz"])
    )
    assert done[1].endswith("scan_01_resampled.nii.gz")


def test_recursive_mirrors_the_tree_and_takes_nii_too(tmp_path):
    src = tmp_path / "in"
    (src / "site_a").mkdir(parents=True)
    (src / "site_b" / "deep").mkdir(parents=True)
    write_image(src / "top.nii.gz")
    write_image(src / "site_a" / "x.nii")  # .nii is accepted for datasets
    write_image(src / "site_b" / "deep" / "x.nii.gz")
    write_image(src / "site_a" / ".hidden.nii.gz")
    write_image(src / "site_a" / "old_resampled.nii.gz")  # a result: not an input
    assert run(src, tmp_path / "flat", saving_mode="folder") == [
        os.path.join(str(tmp_path / "flat"), "top_resampled.nii.gz")
    ]
    done = run(src, tmp_path / "tree", saving_mode="folder", recursive=True)
    rel = [os.path.relpath(p, tmp_path / "tree") for p in done]
    assert rel == [
        "top_resampled.nii.gz",
        os.path.join("site_a", "x_resampled.nii.gz"),
        os.path.join("site_b", "deep", "x_resampled.nii.gz"),
    ]


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path):
    src = make_dataset(tmp_path / "in", images=2, labels=0, corrupt=False)
    run(src, src / "out", recursive=True)
    again = run(src, src / "out", recursive=True)
    assert len(again) == 2 and len(lines(src / "out")) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"desired_volume": (4, 4)}, ValueError, "exactly 3 positive integers"),
        ({"desired_volume": (4, 0, 4)}, ValueError, "bad value 0"),
        ({"saving_mode": "cases"}, ValueError, "saving_mode must be one of .*'cases'"),
        ({"interpolation": "cubic"}, ValueError, "interpolation must be one of"),
        ({"nii_folder": "missing"}, FileNotFoundError, "does not exist: .*missing"),
        (
            {"nii_folder": "empty"},
            FileNotFoundError,
            "no volume file .* and no DICOM series in .*empty",
        ),
        ({"nii_folder": ["missing.nii.gz"]}, FileNotFoundError, "missing.nii.gz"),
        ({"output_path": "a_file"}, ValueError, "output_path must be a folder, got a file"),
    ],
)
def test_bad_arguments_raise_before_anything_is_created(tmp_path, kwargs, error, match):
    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    args = {"nii_folder": src, "output_path": tmp_path / "new" / "out", "desired_volume": SIZE}
    for key, value in kwargs.items():
        if key in ("nii_folder", "output_path") and isinstance(value, str):
            value = tmp_path / value
        args[key] = value
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=match):
        resampling_dataset(**args, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_two_inputs_writing_one_output_are_refused_naming_both(tmp_path):
    a = write_image((tmp_path / "a").mkdir() or tmp_path / "a" / "scan.nii.gz")
    b = write_image((tmp_path / "b").mkdir() or tmp_path / "b" / "scan.nii.gz")
    with pytest.raises(ValueError, match=f"{a}.* and .*{b}"):
        run([a, b], tmp_path / "out", saving_mode="folder")
    write_image(tmp_path / "a" / "scan.nii", seed=1)  # same prefix, other suffix
    with pytest.raises(ValueError, match="same output"):
        run(tmp_path / "a", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_auto_votes_label_maps_and_pairs_share_the_grid(tmp_path):
    src = make_dataset(tmp_path / "in", images=1, labels=1, corrupt=False)
    out = tmp_path / "out"
    image_path, label_path = run(src, out)[:2]
    seg = nib.load(label_path)
    img = nib.load(image_path)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) == {0, 1, 7}
    assert img.shape == seg.shape == SIZE
    assert np.array_equal(img.affine, seg.affine)  # bit for bit
    assert np.array_equal(img.header.get_sform(), seg.header.get_sform())
    used = {Path(r["input"]).name: r["interpolation_used"] for r in lines(out)}
    assert used == {"scan_00.nii.gz": "bspline", "scan_00_seg.nii.gz": "label"}
    # An explicit mode applies to every file: B-spline invents in-between labels.
    bs = run(src, tmp_path / "bs", interpolation="bspline")[1]
    assert len(np.unique(np.asarray(nib.load(bs).dataobj))) > 3


def test_manifest_records_everything_asked(tmp_path):
    src = make_dataset(tmp_path / "in", images=1, labels=0)
    out = tmp_path / "out"
    run(src, out, anchor="center", antialias=True)
    done, failed = sorted(lines(out), key=lambda r: r["status"])
    assert failed["status"] == "failed" and "broken.nii.gz" in failed["error"]
    assert failed["error"].startswith("ValueError: ")
    src_file = src / "scan_00.nii.gz"
    assert done["input"] == str(src_file.resolve())
    assert done["input_size"] == src_file.stat().st_size
    assert done["input_mtime_ns"] == src_file.stat().st_mtime_ns
    assert len(done["input_sha256"]) == 64 and len(done["output_sha256"]) == 64
    assert done["params"] == {
        "desired_volume": list(SIZE),
        "interpolation": "auto",
        "anchor": "center",
        "antialias": True,
    }
    assert done["version"] and done["seconds"] >= 0 and done["error"] is None
    before, after = done["before"], done["after"]
    assert before["shape"] == [28, 24, 12] and after["shape"] == list(SIZE)
    np.testing.assert_allclose(before["fov"], after["fov"])
    np.testing.assert_allclose(after["spacing"], np.array(before["fov"]) / SIZE)
    assert before["dtype"] == after["dtype"] == "int16"


def test_workers_and_executors_give_identical_bytes(tmp_path):
    src = make_dataset(tmp_path / "in", images=3, labels=1)
    run(src, tmp_path / "one", workers=1)
    run(src, tmp_path / "pool", workers=2)
    with ThreadPoolExecutor(2) as pool:
        run(src, tmp_path / "ex", executor=pool)
    outputs = {k: v for k, v in tree_digest(tmp_path / "one").items() if k != MANIFEST_NAME}
    assert len(outputs) == 4
    for other in ("pool", "ex"):
        digest = tree_digest(tmp_path / other)
        assert {k: v for k, v in digest.items() if k != MANIFEST_NAME} == outputs


def test_local_pools_do_not_oversubscribe_the_cores():
    from napari_resample.engine.threads import available_cores

    cores = available_cores()
    for workers in (None, 1, 2, 3, 64):
        for n_jobs in (1, 2, 100):
            n, threads = pool_plan(workers, n_jobs)
            assert 1 <= n <= n_jobs and (n * threads <= cores or threads == 1)
    assert pool_plan(1, 10) == (1, cores)


def test_engine_threads_follow_the_limit(monkeypatch):
    from napari_resample import resample_array
    from napari_resample.engine import stream as _stream
    from napari_resample.engine.threads import limit_engine_threads

    seen = []
    real = _stream.ThreadPoolExecutor

    def spy(max_workers):
        seen.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(_stream, "ThreadPoolExecutor", spy)
    with limit_engine_threads(1):
        resample_array(np.ones((6, 6, 6), np.float32), (3, 4, 5))
    assert seen == [1]


def test_resume_skips_done_files_and_adds_no_line(tmp_path):
    src = make_dataset(tmp_path / "in", images=2, labels=1)
    out = tmp_path / "out"
    first = run(src, out)
    mtimes = {p: os.stat(p).st_mtime_ns for p in first}
    n_lines = len(lines(out))
    assert run(src, out) == first
    assert {p: os.stat(p).st_mtime_ns for p in first} == mtimes  # not rewritten
    # Only the broken file (failed before) is tried again.
    assert len(lines(out)) == n_lines + 1 and lines(out)[-1]["status"] == "failed"


def test_resume_redoes_what_changed(tmp_path):
    src = make_dataset(tmp_path / "in", images=4, labels=0)
    out = tmp_path / "out"
    run(src, out, saving_mode="case")
    outputs = {Path(p).parent.name: Path(p) for p in run(src, out, saving_mode="case")}
    start = len(lines(out))
    write_image(src / "scan_00.nii.gz", seed=99)  # changed input
    outputs["scan_01"].write_bytes(outputs["scan_01"].read_bytes()[:-10])  # truncated output
    data = outputs["scan_02"].read_bytes()  # replaced output, same size, new time
    time.sleep(0.01)
    outputs["scan_02"].write_bytes(data)
    outputs["scan_03"].unlink()  # missing output
    write_image(src / "broken.nii.gz", seed=5)  # failed before, now a good file
    run(src, out, saving_mode="case")
    redone = sorted(Path(r["input"]).name for r in lines(out)[start:])
    assert redone == [
        f"{n}.nii.gz" for n in ("broken", "scan_00", "scan_01", "scan_02", "scan_03")
    ]
    assert all(r["status"] == "done" for r in lines(out)[start:])
    # Other parameters: everything again. resume=False: everything again.
    start = len(lines(out))
    run(src, out, saving_mode="case", anchor="center")
    assert len(lines(out)) == start + 5
    run(src, out, saving_mode="case", anchor="center", resume=False)
    assert len(lines(out)) == start + 10


def test_half_a_manifest_line_from_a_killed_run_is_ignored(tmp_path):
    src = make_dataset(tmp_path / "in", images=2, labels=0, corrupt=False)
    out = tmp_path / "out"
    run(src, out)
    manifest = out / MANIFEST_NAME
    text = manifest.read_text().splitlines(keepends=True)
    manifest.write_text(text[0] + text[1][: len(text[1]) // 2])  # killed mid-line
    run(src, out)
    text = manifest.read_text().splitlines()
    assert len(text) == 3 and json.loads(text[2])["input"].endswith("scan_01.nii.gz")
    with pytest.warns(UserWarning, match=r"line 2 is ignored: not JSON"):
        assert len(read_manifest(manifest)) == 2  # the half line is ignored


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    from napari_resample.io.atomic import temp_name

    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    out = tmp_path / "out" / "scan_00"
    out.mkdir(parents=True)
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "from napari_resample.io.atomic import temp_name; "
            "print(temp_name('scan_00_resampled.nii.gz', '.nii.gz'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (out / dead).write_bytes(b"half a file")
    ours = temp_name("scan_00_resampled.nii.gz", ".nii.gz")  # this process: alive
    (out / ours).write_bytes(b"being written")
    run(src, tmp_path / "out", saving_mode="case")
    assert sorted(os.listdir(out)) == sorted([ours, "scan_00_resampled.nii.gz"])


def test_verify_rehashes_without_recomputing(tmp_path):
    src = make_dataset(tmp_path / "in", images=2, labels=0)
    out = tmp_path / "out"
    done = run(src, out)
    assert verify_dataset(out) == []
    path = Path(done[0])
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old time
    write_image(src / "scan_01.nii.gz", seed=42)
    problems = verify_dataset(out)
    assert len(problems) == 2
    assert any("output changed" in p and str(path.resolve()) in p for p in problems)
    assert any("input changed" in p and "scan_01.nii.gz" in p for p in problems)
    with pytest.raises(FileNotFoundError, match=MANIFEST_NAME):
        verify_dataset(tmp_path / "in")


def test_fingerprint_reads_a_bounded_amount(tmp_path, monkeypatch):
    big = tmp_path / "big.nii"
    big.write_bytes(os.urandom(8 << 20))
    read = []
    real_open = open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    first = input_fingerprint(str(big))
    assert sum(read) <= 256 << 10
    monkeypatch.undo()
    data = bytearray(big.read_bytes())
    data[3 << 20] ^= 1  # a byte in no sampled block: only size/time/verify can tell
    assert input_fingerprint(str(big))["sample_hash"] == first["sample_hash"]
    data[0] ^= 1
    big.write_bytes(bytes(data))
    assert input_fingerprint(str(big))["sample_hash"] != first["sample_hash"]


def test_debug_prints_the_spec_line_per_file(tmp_path, capsys):
    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    done = run(src, "rel_out" if False else tmp_path / "out", debug=True)
    assert capsys.readouterr().out == f"Resampled image saved at: '{done[0]}'\n"


def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    src = make_dataset(tmp_path / "in", images=2, labels=0)
    run(src, tmp_path / "out", progress=True)
    err = capsys.readouterr().err.splitlines()
    heads = [line.split(" ", 1)[0] for line in err if line.startswith("[")]
    assert heads == ["[1/3]", "[2/3]", "[3/3]"]
    assert any("FAILED" in line and "broken.nii.gz" in line for line in err)


def test_label_pairs_written_by_hand_share_the_grid(tmp_path):
    # The same rule for a label map without an intent code: few distinct values.
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "ct.nii.gz")
    write_labels(src / "mask.nii.gz", labels=(0, 3, 4))
    img = nib.load(src / "mask.nii.gz")
    img.header["intent_code"] = 0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), src / "m2.nii.gz")
    done = run(src, tmp_path / "out", saving_mode="folder")
    values = np.unique(np.asarray(nib.load(done[1]).dataobj))
    assert set(values.tolist()) <= {0, 3, 4}


def test_a_script_without_a_main_guard_runs_a_pool(tmp_path):
    # On Linux, a process with no other thread forks its workers: a plain script calling
    # resampling_dataset at top level works (with "spawn" every worker would re-run the script
    # and die, leaving every file "worker lost").
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("fork is used on Linux only")
    src = make_dataset(tmp_path / "in", images=3, labels=0, corrupt=False)
    script = tmp_path / "script.py"
    script.write_text(
        "from napari_resample import resampling_dataset\n"
        f"done = resampling_dataset({str(src)!r}, {str(tmp_path / 'out')!r}, {SIZE!r}, "
        "workers=2, progress=False)\n"
        "print(len(done))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr


def test_a_killed_but_unreaped_writer_counts_as_gone(tmp_path):
    # A worker killed with its parent is not reaped at once (a zombie, where PID 1 does not reap):
    # its temporary file is stale all the same.
    import subprocess
    import sys

    from napari_resample.io.atomic import remove_stale_temps

    code = (
        "from napari_resample.io.atomic import temp_name; import os, sys; "
        "open(os.path.join(sys.argv[1], temp_name('x.nii.gz', '.nii.gz')), 'w').close()"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not list(tmp_path.iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # poll() reaped it; make a zombie explicitly: a second child we do not wait for.
    zombie = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # it exits; not reaped: os.kill(pid, 0) still succeeds
    os.kill(zombie.pid, 0)
    assert len(remove_stale_temps(tmp_path)) == 2
    assert list(tmp_path.iterdir()) == []
    zombie.wait()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fill_value": 5}, "fill_value applies only with reference, not with desired_volume"),
        ({"reference": "REF", "anchor": "center"}, "anchor applies only with desired_volume or"),
        ({"reference": "REF", "antialias": True}, "antialias applies only with desired_volume"),
        ({"series": "1.2.3"}, "series '1.2.3' applies to folders of DICOM files"),
        ({"workers": 2, "executor": "POOL"}, "workers=2 sizes the local pool, and executor"),
    ],
)
def test_options_that_would_do_nothing_are_refused(tmp_path, kwargs, match):
    # Silently ignoring them would let a caller believe they were applied.
    from napari_resample.dataset.plan import UnusedOptionError

    src = make_dataset(tmp_path / "in", images=1, labels=0, corrupt=False)
    ref = write_image(tmp_path / "ref.nii.gz", shape=(6, 5, 4))
    args = {"desired_volume": None if "reference" in kwargs else SIZE, "progress": False}
    with ThreadPoolExecutor(1) as pool:
        for key, value in kwargs.items():
            args[key] = {"REF": ref, "POOL": pool}.get(value, value)
        with pytest.raises(UnusedOptionError, match=match):
            resampling_dataset(src, tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()
    # Left at their defaults (or given where they apply), the same options are accepted.
    assert run(src, tmp_path / "ok", fill_value=0, anchor="origin", antialias=False)
    ok = resampling_dataset(src, tmp_path / "r", reference=ref, fill_value=5, progress=False)
    assert len(ok) == 1
