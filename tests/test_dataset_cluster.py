"""Datasets on a real dask cluster: a LocalCluster of 2 worker processes on the loopback
interface, through ``Client.get_executor()`` (what ``--scheduler`` uses), including a worker
killed in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from _datasets import make_dataset, tree_digest, write_image
from napari_resample import resampling_dataset
from napari_resample.dataset.manifest import MANIFEST_NAME

distributed = pytest.importorskip("distributed")

SIZE = (40, 36, 20)
#: Bound on any wait in these tests (a hung cluster fails the test instead of CI).
TIMEOUT = 120


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = Client(cluster, timeout=TIMEOUT)
    client.wait_for_workers(2, timeout=TIMEOUT)
    yield client
    client.close()
    cluster.close()


def outputs(folder: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(folder).items() if k != MANIFEST_NAME}


def _how_they_differ(one: Path, two: Path) -> str:
    """Whether two outputs that should be equal differ in their voxels or only in bytes."""
    import gzip

    import numpy as np

    if not one.is_file() or not two.is_file():
        return f"{one.name}: present {one.is_file()} / {two.is_file()}"
    a, b = gzip.decompress(one.read_bytes()), gzip.decompress(two.read_bytes())
    if a == b:
        return f"{one.name}: same voxels and header, other gzip bytes"
    x, y = np.frombuffer(a[352:], np.uint8), np.frombuffer(b[352:], np.uint8)
    where = np.flatnonzero(x != y) if x.size == y.size else []
    return f"{one.name}: headers equal {a[:352] == b[:352]}, {len(where)} voxel bytes differ"


def test_local_cluster_gives_what_workers_1_gives(tmp_path, client):
    src = make_dataset(tmp_path / "in", images=6, labels=2, corrupt=True)  # 9 files
    local = resampling_dataset(src, tmp_path / "local", SIZE, workers=1, progress=False)
    remote = resampling_dataset(
        src, tmp_path / "remote", SIZE, executor=client.get_executor(), progress=False
    )
    assert [Path(p).name for p in remote] == [Path(p).name for p in local]
    assert len(remote) == 8  # the broken file failed, on the cluster too
    differ = sorted(
        name
        for name, digest in outputs(tmp_path / "remote").items()
        if outputs(tmp_path / "local").get(name) != digest
    )
    assert not differ, [
        _how_they_differ(tmp_path / "local" / n, tmp_path / "remote" / n) for n in differ
    ]
    records = [
        json.loads(x) for x in (tmp_path / "remote" / MANIFEST_NAME).read_text().split("\n") if x
    ]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"].endswith("broken.nii.gz")
    assert {r["interpolation_used"] for r in records if "_seg" in r["input"]} == {"label"}


def test_cli_scheduler_option_runs_on_the_cluster(tmp_path, client):
    from napari_resample.cli import main

    src = make_dataset(tmp_path / "in", images=2, labels=1, corrupt=False)
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    args = [str(src), str(tmp_path / "out"), "--size", *map(str, SIZE), "--quiet"]
    assert main([*args, "--scheduler", address]) == 0
    assert main([*args, "--workers", "1"]) == 0  # resumed locally: nothing left to do
    lines = (tmp_path / "out" / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 3


def test_a_killed_worker_does_not_stop_the_run(tmp_path, client):
    # Slow enough files that the kill lands while tasks are running.
    src = tmp_path / "in"
    src.mkdir()
    for n in range(12):
        write_image(src / f"s{n:02d}.nii.gz", shape=(96, 96, 48), seed=n)
    big = (200, 200, 100)
    reference = tmp_path / "reference"
    resampling_dataset(src, reference, big, workers=1, progress=False)
    out = tmp_path / "out"
    manifest = out / MANIFEST_NAME
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if manifest.exists() and manifest.read_text().count("\n") >= 1:
                break
            time.sleep(0.02)
        pids = client.run(os.getpid)  # {worker address: pid}
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    done = resampling_dataset(src, out, big, executor=client.get_executor(), progress=False)
    killer.join(TIMEOUT)
    assert killed, "the worker was not killed during the run"
    assert len(done) == 12
    assert outputs(out) == outputs(reference)  # every output complete and correct
    leftovers = [p for p in out.rglob(".*")]
    assert leftovers == []
    client.wait_for_workers(2, timeout=TIMEOUT)  # the nanny restarted it
