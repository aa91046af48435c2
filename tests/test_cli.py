"""The command line: exit codes, one-line errors, sample mode, batch folders."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_resample.cli import main
from napari_resample.io.phantom import LABELS, PHANTOM_SHAPE, PHANTOM_SPACING, make_phantom


def _write(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def test_cli_resamples_a_file(tmp_path, capsys):
    src = _write(
        tmp_path / "scan.nii.gz",
        np.arange(8 * 6 * 4, dtype=np.int16).reshape(8, 6, 4),
        np.diag([0.5, 0.5, 2.0, 1.0]),
    )
    out_dir = tmp_path / "out"
    code = main([src, str(out_dir), "--size", "4", "3", "8", "--debug"])
    assert code == 0
    out = out_dir / "scan_resampled.nii.gz"
    assert (
        f"Resampled image saved at: '{os.path.join(str(out_dir), out.name)}'"
        in capsys.readouterr().out
    )
    img = nib.load(out)
    assert img.shape == (4, 3, 8)
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))


def test_cli_batch_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        _write(src / f"{name}.nii.gz", np.ones((4, 4, 4), np.uint8), np.eye(4))
    (src / "notes.txt").write_text("not a volume")
    # Default --workers: a process pool (one worker per core).
    assert main([str(src), str(tmp_path / "out"), "--size", "2", "2", "2", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == [
        "a_resampled.nii.gz",
        "b_resampled.nii.gz",
        "resampling_manifest.jsonl",
    ]


def test_cli_batch_goes_on_after_a_bad_file(tmp_path, capsys):
    # A batch with unreadable files (not gzip; a header nibabel refuses with its own
    # HeaderDataError, which used to stop the batch with a traceback) processes the others,
    # reports one line per bad file and exits 1.
    import gzip

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "c", "e"):
        _write(src / f"{name}.nii.gz", np.ones((4, 4, 4), np.uint8), np.eye(4))
    (src / "b.nii.gz").write_bytes(b"not gzip")
    raw = bytearray(gzip.decompress((src / "a.nii.gz").read_bytes()))
    raw[70:72] = (999).to_bytes(2, "little")  # unknown datatype code
    (src / "d.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    args = ["--size", "2", "2", "2", "--quiet", "--workers", "1"]
    assert main([str(src), str(tmp_path / "out"), *args]) == 1
    assert sorted(os.listdir(tmp_path / "out")) == [
        *(f"{n}_resampled.nii.gz" for n in ("a", "c", "e")),
        "resampling_manifest.jsonl",
    ]
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert "b.nii.gz" in errors[0] and "d.nii.gz" in errors[1]
    assert all(e.startswith("napari-resample: error: ") for e in errors)


def test_cli_batch_shows_progress_and_a_summary(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        _write(src / f"{name}.nii.gz", np.ones((4, 4, 4), np.uint8), np.eye(4))
    out = tmp_path / "out"
    assert main([str(src), str(out), "--size", "2", "2", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    starts = [line.split(" ", 1)[0] for line in printed if line.startswith("[")]
    assert starts == ["[1/3]", "[2/3]", "[3/3]"]
    assert printed[-1] == (
        f"3 files: 3 resampled, 0 skipped as already done, 0 failed; results in {out}"
    )
    # A rerun skips them all, says so, and still exits 0.
    assert main([str(src), str(out), "--size", "2", "2", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") and "already done" in line for line in printed) == 3
    assert printed[-1].startswith("3 files: 0 resampled, 3 skipped as already done, 0 failed")


def test_cli_unexpected_error_is_one_line_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    # Whatever goes wrong with one file (here an error of an unexpected type) is reported on
    # one line, without a traceback, and the next file is still processed.
    from napari_resample.dataset import task as _task

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        _write(src / f"{name}.nii.gz", np.ones((4, 4, 4), np.uint8), np.eye(4))
    real = _task.resample_file
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated")
        return real(*args, **kwargs)

    monkeypatch.setattr(_task, "resample_file", flaky)
    args = ["--size", "2", "2", "2", "--quiet", "--workers", "1"]
    assert main([str(src), str(tmp_path / "out"), *args]) == 1
    assert sorted(os.listdir(tmp_path / "out")) == [
        "b_resampled.nii.gz",
        "resampling_manifest.jsonl",
    ]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: simulated" in err and "a.nii.gz" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["missing.nii.gz", "out", "--size", "2", "2", "2"],
            1,
            "does not exist: 'missing.nii.gz'",
        ),
        (["a", "b", "--size", "2", "2"], 2, "--size: expected 3 arguments"),
        (["a", "b", "--size", "2", "2", "x"], 2, "invalid int value: 'x'"),
        (["only_one", "--size", "2", "2", "2"], 2, "expected INPUT OUTPUT_DIR, got 1 path"),
        (["x.nii.gz", "out", "--size", "2", "0", "2"], 2, None),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, code, message):
    if args[0] == "x.nii.gz":
        _write(tmp_path / "x.nii.gz", np.ones((4, 4, 4), np.uint8), np.eye(4))
        message = "bad value 0"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_resample", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_sample_mode(tmp_path, capsys):
    assert main(["--sample", str(tmp_path), "--size", "64", "64", "32"]) == 0
    printed = capsys.readouterr().out
    assert "FOV 80x96x160 mm" in printed
    image = nib.load(tmp_path / "phantom_resampled.nii.gz")
    labels = nib.load(tmp_path / "phantom_labels_resampled.nii.gz")
    assert image.shape == labels.shape == (64, 64, 32)
    assert image.get_data_dtype() == np.int16
    assert labels.get_data_dtype() == np.uint8
    fov = np.array(PHANTOM_SHAPE) * np.array(PHANTOM_SPACING)
    np.testing.assert_allclose(np.array(image.shape) * image.header.get_zooms(), fov)
    assert set(np.unique(np.asarray(labels.dataobj)).tolist()) <= set(LABELS)
    # The same sample as napari's Open Sample: the written source files carry its header.
    source = nib.load(tmp_path / "phantom_labels.nii.gz").header
    assert int(source["intent_code"]) == 1002
    assert source.get_xyzt_units()[0] == "mm"


def test_phantom_is_deterministic_and_labelled():
    a, la, aff = make_phantom((40, 48, 16))
    b, lb, _ = make_phantom((40, 48, 16))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert sorted(np.unique(la).tolist()) == sorted(LABELS)
    # Anatomy is where the labels say: skull bright, air dark, brain soft tissue.
    assert a[la == 1].mean() > 500
    assert a[la == 0].mean() < -800
    assert -20 < np.median(a[la == 2]) < 80
    np.testing.assert_allclose(np.diag(aff)[:3], PHANTOM_SPACING)


def test_cli_default_interpolation_keeps_a_label_map_s_labels(tmp_path):
    # A uint8 file whose header says it is a label map (intent 1002) keeps exactly its labels
    # with default options (--interpolation auto), where B-spline would invent 2..6.
    data = np.zeros((12, 10, 8), dtype=np.uint8)
    data[3:9, 2:8, 2:6] = 1
    data[6:12, 5:10, 4:8] = 7
    img = nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0]))
    img.header["intent_code"] = 1002
    nib.save(img, tmp_path / "seg.nii.gz")
    seg, size = str(tmp_path / "seg.nii.gz"), ["--size", "17", "9", "13"]
    assert main([seg, str(tmp_path / "out"), *size]) == 0
    out = np.asarray(nib.load(tmp_path / "out" / "seg_resampled.nii.gz").dataobj)
    assert set(np.unique(out).tolist()) == {0, 1, 7}
    # B-spline, asked for explicitly, still applies to every file.
    assert main([seg, str(tmp_path / "bs"), *size, "--interpolation", "bspline"]) == 0
    out = np.asarray(nib.load(tmp_path / "bs" / "seg_resampled.nii.gz").dataobj)
    assert set(np.unique(out).tolist()) > {0, 1, 7}


def test_every_front_door_runs_the_one_pipeline(tmp_path, monkeypatch):
    # resampling() and the CLI both go through _pipeline.resample_file, with the same default
    # ("auto"): streamed in one read on a small volume whose voxels decide (held and counted).
    from napari_resample import api as _api
    from napari_resample import resampling
    from napari_resample.dataset import task as _task
    from napari_resample.pipeline.run import resample_file

    calls = []

    def spy(*args, **kwargs):
        result = resample_file(*args, **kwargs)
        calls.append((kwargs["interpolation"], result.interpolation, result.streamed))
        return result

    monkeypatch.setattr(_api, "resample_file", spy)
    monkeypatch.setattr(_task, "resample_file", spy)
    src = _write(tmp_path / "a.nii.gz", np.ones((4, 4, 4), np.int16), np.eye(4))
    resampling(src, tmp_path / "o1", (2, 2, 2))
    assert main([src, str(tmp_path / "o2"), "--size", "2", "2", "2", "--quiet"]) == 0
    # one value: a label map, by the core's rule
    assert calls == [("auto", "label", True)] * 2


def test_cli_version_and_usage_name_the_arguments(capsys):
    from napari_resample import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-resample {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert "napari-resample INPUT OUTPUT_DIR --size X Y Z" in usage
    assert "napari-resample INPUT OUTPUT_DIR --spacing SX SY SZ" in usage
    assert "napari-resample INPUT OUTPUT_DIR --like REFERENCE" in usage


def test_cli_says_when_it_replaces_an_output(tmp_path, capsys):
    src = _write(tmp_path / "scan.nii.gz", np.ones((4, 4, 4), np.int16), np.eye(4))
    out = str(tmp_path / "out")
    assert main([src, out, "--size", "2", "2", "2"]) == 0
    assert "(replaced)" not in capsys.readouterr().out
    assert main([src, out, "--size", "3", "3", "3"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "-> (replaced) " in line and "scan_resampled.nii.gz" in line
    assert nib.load(os.path.join(out, "scan_resampled.nii.gz")).shape == (3, 3, 3)


# ----------------------------------------------------------------- one meaning, one format


def _exit_code(argv) -> int:
    """main's exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture
def scans(tmp_path):
    """A file, a dataset folder of two files and a reference, in tmp_path."""
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    one = _write(tmp_path / "scan.nii.gz", np.ones((8, 6, 4), np.int16), affine)
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("a", "b"):
        _write(folder / f"{name}.nii.gz", np.ones((8, 6, 4), np.int16), affine)
    ref = _write(tmp_path / "ref.nii.gz", np.zeros((4, 3, 2), np.uint8), affine)
    return {"file": one, "folder": str(folder), "ref": ref}


SIZE = ["--size", "2", "2", "2"]


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        (
            "file",
            [*SIZE, "--fill-value", "5"],
            "--fill-value applies only with --like, not with --size",
        ),
        ("file", ["--spacing", "1", "1", "1", "--fill-value", "0"], "--fill-value applies only"),
        ("folder", [*SIZE, "--fill-value", "5"], "--fill-value applies only with --like"),
        ("file", ["--like", "REF", "--anchor", "center"], "--anchor applies only with --size or"),
        ("file", ["--like", "REF", "--anchor", "origin"], "--anchor applies only with --size or"),
        ("folder", ["--like", "REF", "--antialias"], "--antialias applies only with --size or"),
        ("file", [*SIZE, "--series", "1.2.3"], "--series '1.2.3' applies to folders of DICOM"),
        ("folder", [*SIZE, "--series", "1.2.3"], "none of the 2 input(s) is one"),
        ("file", [*SIZE, "--workers", "2"], "--workers applies to a folder of volumes"),
        ("file", [*SIZE, "--workers", "2"], "--workers applies to a folder of volumes"),
        ("file", [*SIZE, "--scheduler", "tcp://nowhere:1"], "--scheduler applies to a folder"),
        ("file", [*SIZE, "--saving-mode", "folder"], "--saving-mode applies to a folder"),
        ("file", [*SIZE, "--recursive", "--no-resume"], "--recursive --no-resume applies to"),
        ("folder", [*SIZE, "--workers", "1", "--scheduler", "x"], "not allowed with argument"),
        ("file", [*SIZE, "--verify"], "--verify re-hashes OUTPUT_DIR's manifest and takes no "),
        ("file", ["--verify", "--interpolation", "auto"], "but --quiet, got --interpolation"),
        (None, ["--sample", *SIZE, "--recursive"], "--recursive walks the subfolders of INPUT"),
        (None, ["--sample", *SIZE, "--fill-value", "0"], "--fill-value applies only with --like"),
    ],
)
def test_options_that_do_nothing_are_bad_usage(tmp_path, scans, capsys, source, extra, message):
    # An option the call would ignore is refused, exit 2, one line, before anything is made.
    extra = [scans["ref"] if arg == "REF" else arg for arg in extra]
    paths = [] if source is None else [scans[source]]
    out = tmp_path / "out"
    assert _exit_code([*paths, str(out), *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("napari-resample: error: ")
    assert message in err[0] and err[0].endswith("(see --help)")
    assert not out.exists()


def test_the_same_options_used_where_they_apply_are_accepted(tmp_path, scans):
    # The counterpart of each refusal above: each option does something in its own call.
    out = str(tmp_path / "o")
    assert main([scans["file"], out, "--like", scans["ref"], "--fill-value", "5", "--quiet"]) == 0
    assert main([scans["file"], out, *SIZE, "--anchor", "center", "--antialias", "--quiet"]) == 0
    dataset = [*SIZE, "--workers", "1", "--saving-mode", "case", "--recursive", "--no-resume"]
    assert main([scans["folder"], out, *dataset, "--quiet"]) == 0
    assert os.path.isfile(os.path.join(out, "a", "a_resampled.nii.gz"))
    assert main(["unused", out, "--verify", "--quiet"]) == 0


def test_one_saving_mode_default_for_python_and_the_command_line(tmp_path, scans, capsys):
    import inspect

    from napari_resample import resampling_dataset
    from napari_resample.dataset.plan import DEFAULT_SAVING_MODE

    python = inspect.signature(resampling_dataset).parameters
    assert python["saving_mode"].default == DEFAULT_SAVING_MODE == "folder"
    assert python["interpolation"].default == "auto"
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    assert main([scans["folder"], str(cli_out), *SIZE, "--workers", "1", "--quiet"]) == 0
    resampling_dataset(scans["folder"], py_out, (2, 2, 2), workers=1, progress=False)
    assert sorted(os.listdir(cli_out)) == sorted(os.listdir(py_out))
    assert "a_resampled.nii.gz" in os.listdir(cli_out)
    # --help states the default and why.
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "folder (default, as in Python's resampling_dataset)" in text
    assert "an image and its label map stay side by side" in text


def test_every_long_option_is_named_after_its_dest():
    # given_options() spells what the user typed from the namespace: it relies on this.
    from napari_resample.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            assert action.option_strings[-1] == "--" + action.dest.replace("_", "-")


def _corrupt(path):
    path.write_bytes(b"not gzip")
    return str(path)


@pytest.mark.parametrize(
    "case",
    [
        "parse",
        "usage",
        "unused",
        "missing_input",
        "failed_file",
        "failed_in_dataset",
        "verify_mismatch",
        "verify_no_manifest",
        "interrupted",
    ],
)
def test_every_error_line_comes_from_print_error(tmp_path, scans, capsys, monkeypatch, case):
    # Every line on standard error, on every error path, is "napari-resample: error: ..." and
    # was written by print_error (spied in both modules that call it).
    from napari_resample.cli import parser as cli_parser
    from napari_resample.cli import run as cli_run

    out = str(tmp_path / "out")
    argv = {
        "parse": [scans["file"], out, "--size", "2", "2"],
        "usage": [scans["file"], out],
        "unused": [scans["file"], out, *SIZE, "--fill-value", "1"],
        "missing_input": [str(tmp_path / "nowhere.nii.gz"), out, *SIZE],
        "failed_file": [_corrupt(tmp_path / "bad.nii.gz"), out, *SIZE],
        "failed_in_dataset": [scans["folder"], out, *SIZE, "--workers", "1", "--quiet"],
        "verify_mismatch": [scans["folder"], out, "--verify"],
        "verify_no_manifest": [scans["folder"], str(tmp_path), "--verify"],
        "interrupted": [scans["folder"], out, *SIZE, "--workers", "1", "--quiet"],
    }[case]
    if case == "failed_in_dataset":
        _corrupt(tmp_path / "folder" / "c.nii.gz")
    if case == "verify_mismatch":
        assert main([scans["folder"], out, *SIZE, "--workers", "1", "--quiet"]) == 0
        with open(os.path.join(out, "a_resampled.nii.gz"), "ab") as fh:
            fh.write(b"\0")
    if case == "interrupted":
        from napari_resample.dataset import run as dataset_run

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(dataset_run, "execute_jobs", interrupt)
    capsys.readouterr()
    written = []
    real = cli_parser.print_error

    def spy(message):
        written.append(f"napari-resample: error: {message}")
        real(message)

    monkeypatch.setattr(cli_parser, "print_error", spy)
    monkeypatch.setattr(cli_run, "print_error", spy)
    code = _exit_code(argv)
    expected = {"parse": 2, "usage": 2, "unused": 2, "interrupted": 130}.get(case, 1)
    assert code == expected
    err = capsys.readouterr().err.splitlines()
    assert err and err == written
    assert all(line.startswith("napari-resample: error: ") for line in err)
