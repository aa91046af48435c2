"""Datasets, round two of the hardening: every entry of a folder accounted for, DICOM
folders by a stated rule, verify then resume, the operating system's errors in one sentence,
FIFOs and devices, bad entries, two runs sharing an output folder, hand-edited manifests and
the command line's edges."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _datasets import write_image
from _formats import CT
from napari_resample import resampling_dataset, verify_dataset
from napari_resample.cli import main
from napari_resample.dataset.manifest import MANIFEST_NAME, read_manifest
from napari_resample.dataset.plan import plan_dataset
from napari_resample.io.atomic import atomic_output, held_dirs, make_dirs, write_error
from napari_resample.io.dicom import is_dicom_series_folder

SIZE = (6, 5, 4)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(src, out, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return resampling_dataset(src, out, SIZE, **kwargs)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def by_name(out: Path) -> dict[str, dict]:
    """The latest record of each entry, by its file name."""
    return {os.path.basename(r["input"]): r for r in records(out)}


def dicom_files() -> list[Path]:
    return sorted(p for p in CT.iterdir() if p.is_file())


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-m", "napari_resample", *args],
        capture_output=True,
        env=env,
        check=False,
        timeout=kwargs.pop("timeout", 180),
        **kwargs,
    )


# 1. One stray DICOM file never swallows a folder -------------------------------------------


def test_a_stray_dicom_file_leaves_the_volumes_inputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    write_image(src / "b.nii.gz", seed=1)
    shutil.copy(dicom_files()[0], src / "scout.dcm")  # a leftover slice
    (src / "notes.txt").write_text("not a volume")
    out = tmp_path / "out"
    done = run(src, out)
    assert [os.path.basename(p) for p in done] == [
        "a_resampled.nii.gz",
        "b_resampled.nii.gz",
        "scout_resampled.nii.gz",  # the DICOM file is its own series: an input too
    ]
    series = [r for r in records(out) if (r.get("params") or {}).get("series")]
    assert [(r["input"], r["status"]) for r in series] == [(str(src), "done")]
    latest = by_name(out)
    assert latest["notes.txt"]["status"] == "skipped"
    assert "not a volume file" in latest["notes.txt"]["error"]


def test_loose_dicom_files_group_by_series_and_the_rest_is_listed(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    for path in dicom_files():
        shutil.copy(path, src / f"ct_{path.name}.dcm")
    # The DICOM marker, then nothing GDCM can read: a DICOM file of no image series.
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    skipped = []
    jobs, _ = plan_dataset(src, tmp_path / "out", SIZE, skipped=skipped)
    assert [os.path.basename(j.output) for j in jobs] == [
        "a_resampled.nii.gz",
        f"ct_{dicom_files()[0].name}_resampled.nii.gz",
    ]
    series = jobs[1]
    assert series.input == str(src) and series.series is not None
    assert [(os.path.basename(s.path), s.reason) for s in skipped] == [
        ("broken.dcm", "a DICOM file in no image series")
    ]
    out = tmp_path / "out"
    assert main([str(src), str(out), "--size", *map(str, SIZE), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped: {src / 'broken.dcm'}: a DICOM file in no image series" in printed
    assert printed.splitlines()[-1].startswith(
        "2 files: 2 resampled, 0 skipped as already done, 0 failed, 1 other entry left out"
    )
    # The two inputs of one folder keep two records, told apart by their series.
    assert len(read_manifest(out / MANIFEST_NAME)) == 3


def test_a_dicom_file_in_no_series_is_listed_without_itk_text(tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    skipped = []
    jobs, _ = plan_dataset(src, tmp_path / "out", SIZE, skipped=skipped)
    assert [os.path.basename(j.input) for j in jobs] == ["a.nii.gz"]
    assert [s.reason for s in skipped] == ["a DICOM file in no image series"]
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_the_rule_of_dicom_folders(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    for path in dicom_files():
        shutil.copy(path, series / path.name)
    (series / ".DS_Store").write_bytes(b"hidden: not part of a dataset")
    assert is_dicom_series_folder(series)
    # Anything else beside the DICOM files makes it a dataset folder.
    for extra, make in [
        ("note.txt", lambda p: p.write_text("x")),
        ("scan.nii.gz", write_image),
        ("sub", Path.mkdir),
    ]:
        make(series / extra)
        assert not is_dicom_series_folder(series), extra
        (shutil.rmtree if (series / extra).is_dir() else os.remove)(series / extra)
    assert is_dicom_series_folder(series)
    assert not is_dicom_series_folder(tmp_path / "missing")
    # A pure DICOM folder given as the dataset is its one input, named after the folder.
    jobs, _ = plan_dataset(series, tmp_path / "out", SIZE)
    assert [(j.input, j.series, os.path.basename(j.output)) for j in jobs] == [
        (str(series), None, "series_resampled.nii.gz")
    ]


# 2. A failed verify makes the next run redo the file ----------------------------------------


def test_a_failed_verify_makes_the_next_run_redo_the_file(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    write_image(src / "b.nii.gz", seed=1)
    out = tmp_path / "out"
    run(src, out)
    # Change the output in place: same size, modification time put back (the quick check
    # of a rerun cannot see it; the full hash can).
    target = out / "a_resampled.nii.gz"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert main([str(src), str(out), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "output changed since it was resampled" in captured.err
    assert captured.out.strip().endswith(
        "2 done files checked against the manifest: 1 mismatch"
        "; the next run redoes the files that do not match"
    )
    # Reported again until a run redoes it.
    assert verify_dataset(out) and verify_dataset(out)[0].endswith("the next run redoes it)")
    n = len(records(out))
    run(src, out)
    redone = records(out)[n:]
    assert [(os.path.basename(r["input"]), r["status"]) for r in redone] == [("a.nii.gz", "done")]
    assert verify_dataset(out) == []
    assert main([str(src), str(out), "--verify"]) == 0
    assert "2 done files checked against the manifest: 0 mismatches" in capsys.readouterr().out


# 3. The operating system's errors: one sentence naming the folder -------------------------


def test_write_errors_name_the_folder_never_a_temporary_file(tmp_path):
    path = str(tmp_path / "x_resampled.nii.gz")
    for code, reason in [
        (13, "permission denied"),
        (30, "read-only file system"),
    ]:
        with pytest.raises(OSError) as caught:
            with atomic_output(path, ".nii.gz") as tmp:
                raise OSError(code, os.strerror(code), tmp)
        assert str(caught.value) == f"cannot write into {str(tmp_path)!r}: {reason}"
        assert caught.value.errno == code and ".tmp" not in str(caught.value)
    assert os.listdir(tmp_path) == []
    # A folder that cannot be made: the real error of the system, in one sentence.
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"^cannot write into .*file': a part of its"):
        make_dirs(str(tmp_path / "file" / "sub"), [])
    assert str(write_error(ValueError("other"), path)) == "other"


def test_a_refused_write_is_one_line_at_the_command_line(tmp_path, capsys, monkeypatch):
    write_image(tmp_path / "a.nii.gz")
    from napari_resample.io import atomic

    real_replace = os.replace

    def refusing(source, target, *args, **kwargs):
        if ".tmp." in os.fspath(source):  # the folder refuses the rename
            raise PermissionError(13, "Permission denied", os.fspath(source), os.fspath(target))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", refusing)
    out = tmp_path / "out"
    code = main([str(tmp_path / "a.nii.gz"), str(out), "--size", "40", "40", "20"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0, err
    assert f"cannot write into {str(out)!r}: permission denied" in err
    assert ".tmp" not in err


# 4 and 5. FIFOs, devices and bad entries never stop a dataset --------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifos_devices_and_bad_links_are_listed_and_never_opened(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    os.mkfifo(src / "fifo.nii.gz")
    os.mkfifo(src / "pipe")  # no volume name: skipped
    os.symlink("/dev/zero", src / "zero.nii.gz")
    os.symlink(src / "gone.nii.gz", src / "dangling.nii.gz")
    os.symlink(src / "loop.nii.gz", src / "loop.nii.gz")
    out = tmp_path / "out"
    proc = cli(str(src), str(out), "--size", *map(str, SIZE), "--workers", "1", timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err
    latest = by_name(out)
    assert latest["a.nii.gz"]["status"] == "done"
    expected = {
        "fifo.nii.gz": ("failed", "not a regular file but a FIFO (named pipe) (never opened)"),
        "pipe": ("skipped", "not a regular file but a FIFO (named pipe) (never opened)"),
        "zero.nii.gz": ("failed", "not a regular file but a character device (never opened)"),
        "dangling.nii.gz": ("failed", "a symbolic link to a missing path ("),
        "loop.nii.gz": ("failed", "a symbolic link loop"),
    }
    for name, (status, reason) in expected.items():
        assert latest[name]["status"] == status, name
        assert latest[name]["error"].startswith(reason), latest[name]["error"]
        if status == "failed":
            assert f"napari-resample: error: {src / name}: " in err
    assert "5 files: 1 resampled, 0 skipped as already done, 4 failed, 1 other entry left out" in (
        proc.stdout.decode()
    )


def test_an_input_that_cannot_be_read_fails_alone(tmp_path, monkeypatch):
    from napari_resample.dataset import run as dataset_run

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    write_image(src / "locked.nii.gz", seed=1)
    real = dataset_run.input_fingerprint

    def fingerprint(path):
        if path.endswith("locked.nii.gz"):  # the tests run as root: chmod cannot lock it
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(dataset_run, "input_fingerprint", fingerprint)
    out = tmp_path / "out"
    assert [os.path.basename(p) for p in run(src, out)] == ["a_resampled.nii.gz"]
    locked = by_name(out)["locked.nii.gz"]
    assert locked["status"] == "failed"
    assert locked["error"] == "cannot read the input: Permission denied"


# 6. Two runs sharing a new output folder ---------------------------------------------------


def test_a_held_folder_survives_another_runs_cleanup(tmp_path):
    folder = str(tmp_path / "out" / "case")
    made_by_other: list[str] = []
    script = (
        "import sys, time\n"
        "from napari_resample.io.atomic import held_dirs\n"
        "with held_dirs([sys.argv[1]], []):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    make_dirs(folder, made_by_other)  # this run made it
    holder = subprocess.Popen(
        [sys.executable, "-c", script, folder],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        with held_dirs([folder], made_by_other):
            pass  # ends: removes only what it made and what is empty
        assert os.path.isdir(folder)  # the other process still holds it
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT as on POSIX")
def test_an_interrupted_run_never_removes_what_another_run_writes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in range(10):
        write_image(src / f"s{n}.nii.gz", shape=(80, 72, 40), seed=n)
    out = tmp_path / "out"
    manifest = out / MANIFEST_NAME
    command = [sys.executable, "-m", "napari_resample", str(src), str(out)]
    command += ["--size", "320", "288", "160", "--saving-mode", "case", "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=SRC)
    first = subprocess.Popen([*command, "--quiet"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the first run has made the ten case folders
    second = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # The second run has resampled a file: it is mid-way, the folders of its next files empty.
    for line in second.stdout:
        if line.startswith("[") and "already done" not in line:
            break
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    for n in range(10):
        assert (out / f"s{n}" / f"s{n}_resampled.nii.gz").is_file(), n
    assert not list(out.rglob(".*"))  # no hold and no temporary file left


# 7. Hand-edited manifests, bad values, closed outputs, names, Ctrl-C -----------------------


def test_bad_manifest_lines_are_ignored_with_their_line_number(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    out = tmp_path / "out"
    run(src, out)
    good = (out / MANIFEST_NAME).read_bytes()
    bad = [
        json.dumps({"input": str(src / "a.nii.gz"), "status": "done"}).encode(),  # no output
        b"null",
        b'{"input": "\xff\xfe", "status": "done"}',  # not UTF-8
        json.dumps({"input": 3, "status": "done", "output": "x"}).encode(),
    ]
    (out / MANIFEST_NAME).write_bytes(good + b"\n".join(bad) + b"\n")
    with pytest.warns(UserWarning) as caught:
        assert verify_dataset(out) == []
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "line 2 is ignored: no output path",
        "line 3 is ignored: not a record but NoneType",
        "line 4 is ignored: not UTF-8",
        "line 5 is ignored: no input path",
    ]
    assert main([str(src), str(out), "--verify"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("napari-resample: warning: ") == 4 and "line 4 is ignored" in err
    with pytest.warns(UserWarning) as caught:
        assert run(src, out)  # the run goes on, the file still done
    assert len(caught) == 4 and "line 3 is ignored" in str(caught[1].message)


def test_a_symlinked_manifest_is_never_written_through(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    os.symlink(victim, out / MANIFEST_NAME)
    with pytest.raises(OSError, match="is a symbolic link; it is never followed"):
        run(src, out)
    assert main([str(src), str(out), "--size", *map(str, SIZE)]) == 1
    assert "is a symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "keep me\n"
    assert sorted(os.listdir(out)) == [MANIFEST_NAME]  # nothing written, nothing resampled


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "0", "1", "2"],
        ["--size", "-3", "4", "4"],
        ["--spacing", "nan", "1", "1"],
        ["--spacing", "1", "inf", "1"],
        ["--spacing", "0", "1", "1"],
        ["--size", "4", "4", "4", "--workers", "-1"],
        ["--size", "4", "4", "4", "--workers", "0"],
        ["--size", "4", "4", "4", "--max-memory", "abc"],
        ["--size", "4", "4", "4", "--max-memory", "0"],
        ["--size", "4", "4", "4", "--max-memory", "1e400"],
        ["--size", "4", "4", "4", "--series", ""],
    ],
)
def test_every_bad_option_value_is_bad_usage(tmp_path, capsys, args):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.nii.gz")
    with pytest.raises(SystemExit) as caught:
        main([str(src), str(tmp_path / "out"), *args])
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("napari-resample: error: --")
    assert err[0].endswith("(see --help)")
    assert not (tmp_path / "out").exists()


def _three_files(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for n in range(3):
        write_image(src / f"s{n}.nii.gz", seed=n)
    return src


def test_a_closed_pipe_on_stdout_never_stops_the_run(tmp_path):
    src = _three_files(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=SRC)
    command = [sys.executable, "-m", "napari_resample", str(src), str(out), "--size", "6", "5"]
    proc = subprocess.Popen(
        [*command, "4", "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline().startswith(b"[1/3]")  # then `| head -1` goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert len(list(out.glob("*_resampled.nii.gz"))) == 3


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full is Linux's")
def test_a_full_or_closed_stdout_never_stops_the_run(tmp_path):
    src = _three_files(tmp_path)
    command = f'"{sys.executable}" -m napari_resample "{src}" "{tmp_path}/{{}}" --size 6 5 4'
    for out, redirect in [("full", ">/dev/full"), ("closed", ">&-")]:
        proc = subprocess.run(
            f"{command.format(out)} --workers 1 {redirect}",
            shell=True,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=SRC),
            check=False,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""
        assert len(list((tmp_path / out).glob("*_resampled.nii.gz"))) == 3


@pytest.mark.skipif(sys.platform != "linux", reason="names are bytes on Linux")
def test_a_name_that_is_not_utf8_is_an_input_like_any_other(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    name = os.fsdecode(b"scan_\xff\xfe.nii.gz")
    write_image(src / name)
    out = tmp_path / "out"
    assert [os.path.basename(p) for p in run(src, out)] == [
        os.fsdecode(b"scan_\xff\xfe_resampled.nii.gz")
    ]
    assert os.fsencode(name.replace(".nii.gz", "_resampled.nii.gz")) in os.listdir(
        os.fsencode(out)
    )
    text = (out / MANIFEST_NAME).read_bytes()
    text.decode("ascii")  # ASCII JSON: the undecodable bytes as \udcXX escapes
    assert verify_dataset(out) == []
    n = len(records(out))
    run(src, out)
    assert len(records(out)) == n  # done: skipped on resume


def test_ctrl_c_while_the_modules_load_is_one_line(tmp_path):
    write_image(tmp_path / "a.nii.gz")
    # SIGINT exactly when nibabel starts loading (what the console script imports first).
    code = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nibabel':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from napari_resample.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "a.nii.gz", "out", "--size", "2", "2", "2"],
        capture_output=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=SRC),
        check=False,
        timeout=120,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 130, err
    assert err == "napari-resample: error: interrupted\n"


# 8. A bar for one long file on a terminal --------------------------------------------------


def test_one_file_shows_a_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    from napari_resample.dataset import report

    write_image(tmp_path / "a.nii.gz")
    monkeypatch.setattr(report, "is_terminal", lambda stream: True)
    args = [str(tmp_path / "a.nii.gz"), str(tmp_path / "out"), "--size", "30", "20", "10"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "a.nii.gz" in err and "100%" in err
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(report, "is_terminal", lambda stream: False)
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_the_bar_hears_the_fraction_done():
    import io

    from napari_resample.dataset.report import file_progress

    stream = io.StringIO()
    progress, close = file_progress(stream, "x")
    for fraction in (0.25, 0.5, 0.5, 1.0):
        progress(fraction)
    close()
    assert "100%" in stream.getvalue()


def test_the_lazy_package_gives_every_public_name():
    import napari_resample

    assert callable(napari_resample.resampling) and napari_resample.ResamplingCancelled
    assert set(napari_resample.__all__) <= set(dir(napari_resample))
    for name in napari_resample.__all__:
        assert getattr(napari_resample, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        napari_resample.nothing  # noqa: B018
