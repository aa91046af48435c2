"""The memory the engine refuses runs by (docs/decisions.md, D18): the peak-memory estimate, the
memory available now (Linux ``MemAvailable``), the refusal and the default budget."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from napari_resample.engine import memory as _memory
from napari_resample.engine.memory import (
    DEFAULT_SHARE,
    FALLBACK_BUDGET,
    available_memory,
    check_memory,
    default_budget,
)
from napari_resample.engine.resample import estimate_memory

MEMINFO = """MemTotal:       16318428 kB
MemFree:          512340 kB
MemAvailable:    9876543 kB
Buffers:          204800 kB
"""


def test_the_6000_cube_is_hundreds_of_gib() -> None:
    peak = estimate_memory((512, 512, 300), "int16", (6000, 6000, 6000), "bspline")
    assert peak > 6000**3 * 2 + 6000 * 512 * 300 * 4  # output and the float32 intermediate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MEMINFO, 9876543 * 1024),
        (MEMINFO.replace("MemAvailable:", "MemAvail:"), None),  # kernels before 3.14
        ("MemAvailable: lots kB\n", None),
        ("MemAvailable:\n", None),
    ],
)
def test_available_memory_reads_memavailable(monkeypatch, tmp_path: Path, text, expected) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(text)
    monkeypatch.setattr(_memory, "_MEMINFO", str(meminfo))
    assert available_memory() == expected


def test_available_memory_is_unknown_without_proc(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_memory, "_MEMINFO", str(tmp_path / "no-proc" / "meminfo"))
    assert available_memory() is None
    assert default_budget() == FALLBACK_BUDGET
    check_memory(10**15, "reading 'a.nii.gz'")  # unknown: nothing is refused


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MemAvailable is Linux's")
def test_available_memory_on_linux_agrees_with_psutil() -> None:
    psutil = pytest.importorskip("psutil")
    free = available_memory()
    assert free is not None, "Linux has /proc/meminfo: the available memory must be known"
    # Both read MemAvailable; other processes change it between the two reads.
    assert free == pytest.approx(psutil.virtual_memory().available, rel=0.1, abs=256 << 20)


def test_work_larger_than_the_available_memory_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(_memory, "available_memory", lambda: 3 << 30)
    check_memory(3 << 30, "reading 'a.nii.gz'")  # exactly what is there: allowed
    with pytest.raises(
        MemoryError,
        match=r"reading 'a\.nii\.gz' needs 3\.0 GiB \(3221225473 bytes\) of memory, but only "
        r"3\.0 GiB is available",
    ):
        check_memory((3 << 30) + 1, "reading 'a.nii.gz'")
    assert default_budget() == int((3 << 30) * DEFAULT_SHARE)
