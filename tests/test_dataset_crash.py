"""A dataset run killed at random moments, then rerun, ends exactly as an uninterrupted run:
the same bytes, no temporary file, every file done exactly once. Ctrl-C and SIGTERM stop a run
cleanly with exit codes 130 and 143. The CLI runs in its own process group, killed whole (as a
crash or an out-of-memory kill takes the workers too)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _datasets import tree_digest, write_image
from napari_resample.dataset.manifest import MANIFEST_NAME

SIZE = ["--size", "160", "160", "96"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    src = tmp_path_factory.mktemp("crash") / "in"
    src.mkdir()
    for n in range(14):
        write_image(src / f"s{n:02d}.nii.gz", shape=(96, 96, 48), seed=n)
    (src / "broken.nii.gz").write_bytes(b"not a volume")
    return src


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = cli(dataset, out, "--workers", "1")
    assert proc.wait(TIMEOUT) == 1  # the broken file
    proc.stderr.close()
    return {k: v for k, v in tree_digest(out).items() if k != MANIFEST_NAME}


def cli(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "napari_resample", str(src), str(out), *SIZE, "--quiet", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a job in a terminal
        # As typed in a terminal: Ctrl-C not ignored (a shell's background jobs inherit SIG_IGN).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def manifest_lines(out: Path) -> list[dict]:
    path = out / MANIFEST_NAME
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # half a line, written when the kill came
    return records


def wait_for_first_file(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not any(r["status"] == "done" for r in manifest_lines(out)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def finish(src: Path, out: Path, workers: str) -> None:
    proc = cli(src, out, "--workers", workers)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, err.decode()  # only the broken file fails
    assert err.decode().count("\n") == 1 and "broken.nii.gz" in err.decode(), err.decode()


def check_like_uninterrupted(out: Path, reference: dict[str, str]) -> None:
    files = tree_digest(out)
    assert [name for name in files if Path(name).name.startswith(".")] == []  # no temp file
    assert {k: v for k, v in files.items() if k != MANIFEST_NAME} == reference
    done = [Path(r["input"]).name for r in manifest_lines(out) if r["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 14  # each done exactly once


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_at_random_moments_then_rerun(dataset, uninterrupted, tmp_path, workers):
    rng = random.Random(int(workers))
    out = tmp_path / "out"
    kills = 0
    for _ in range(3):
        proc = cli(dataset, out, "--workers", workers)
        wait_for_first_file(proc, out) if kills else None
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(TIMEOUT)
        proc.stderr.close()
    assert kills >= 2
    finish(dataset, out, workers)
    check_like_uninterrupted(out, uninterrupted)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_interrupt_stops_cleanly(dataset, uninterrupted, tmp_path, sig, code, workers):
    out = tmp_path / "out"
    proc = cli(dataset, out, "--workers", workers)
    wait_for_first_file(proc, out)
    sent = time.monotonic()
    # Ctrl-C in a terminal goes to the whole process group; SIGTERM to the process named.
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    returned = proc.wait(TIMEOUT)
    stopped = time.monotonic() - sent
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert returned == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("napari-resample: error: "), err
    files = tree_digest(out)
    assert [name for name in files if Path(name).name.startswith(".")] == []
    empty = [d for d, subdirs, names in os.walk(out) if not subdirs and not names]
    assert empty == []
    print(f"stopped {stopped:.2f} s after the signal")  # the figure, not an assertion
    finish(dataset, out, workers)
    check_like_uninterrupted(out, uninterrupted)
