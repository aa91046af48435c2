"""Plane-by-plane NIfTI I/O (``_niistream``) against the whole-volume path, in the same run.

One command::

    python benchmarks/stream_io.py             # 512 x 512 x 300 int16 .nii.gz, median of 5
    python benchmarks/stream_io.py --repeat 3 --shape 256,256,150

Times a copy of a CT-like ``.nii.gz`` (``ct_volume`` of ``run.py``, case A's input): read every
voxel and write them to a new ``.nii.gz``, by ``load_nifti`` + ``save_nifti`` (the whole volume
in memory) and by ``open_planes`` + ``PlaneWriter`` (blocks of planes, decompression and
compression in background threads). Then the peak traced memory (tracemalloc) of each, once.
Prints markdown; read the ratio, not the absolute times.

``--decompress`` measures instead what parallel decompression of one gzip stream would give
(issue 19): reading every byte of the same file with python-isal (what ``open_planes`` uses,
CRC-32 and length checked) against ``rapidgzip`` (PyPI; ``pip install rapidgzip``) with one and
two threads, wall time and CPU-seconds (``getrusage``), interleaved.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import ct_volume, interleaved, machine, mb

from napari_resample.io.nifti import load_nifti, save_nifti
from napari_resample.io.plane_reader import open_planes
from napari_resample.io.plane_writer import PlaneWriter


def whole(src: str, dst: str) -> None:
    volume = load_nifti(src)
    save_nifti(dst, volume.data, volume.header, slope=volume.slope, inter=volume.inter)


def streamed(src: str, dst: str) -> None:
    with (
        open_planes(src) as reader,
        PlaneWriter(dst, reader.header, slope=reader.slope, inter=reader.inter) as writer,
    ):
        for _, block in reader:
            writer.write(block)


def traced_peak(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_all(opener) -> None:
    with opener() as fh:
        while fh.read(1 << 22):
            pass


def decompress(src: str, repeat: int) -> None:
    """isal against rapidgzip on one gzip stream: wall and CPU-seconds, medians."""
    from isal import igzip

    ways = {
        "python-isal `igzip` (ours; CRC-32 and length checked)": lambda: igzip.open(src, "rb"),
        "`open_planes` (ours: isal in a thread, every block)": None,
    }
    try:
        import rapidgzip

        for n in (1, 2):
            ways[f"rapidgzip, parallelization={n}"] = lambda n=n: rapidgzip.open(
                src, parallelization=n
            )
    except ImportError:
        print("rapidgzip is not installed: `pip install rapidgzip`", file=sys.stderr)
    figures: dict[str, list[tuple[float, float]]] = {k: [] for k in ways}
    for r in range(repeat):
        for name in ways if r % 2 == 0 else list(ways)[::-1]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            if ways[name] is None:
                with open_planes(src) as reader:
                    for _ in reader:
                        pass
            else:
                read_all(ways[name])
            figures[name].append((time.perf_counter() - t0, cpu_seconds() - c0))
    base = statistics.median(w for w, _ in figures[next(iter(ways))])
    print(f"{machine()}; load average {os.getloadavg()[0]:.2f}\n")
    print(
        f"Reading every byte of {os.path.getsize(src) / 2**20:.0f} MiB of gzip, "
        f"median of {repeat}:\n"
    )
    print("| reader | wall (s) | CPU (s) | wall / isal |")
    print("|---|---|---|---|")
    for name, got in figures.items():
        wall = statistics.median(w for w, _ in got)
        cpu = statistics.median(c for _, c in got)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall / base:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", default="512,512,300")
    parser.add_argument("--decompress", action="store_true", help="isal against rapidgzip")
    args = parser.parse_args(argv)
    shape = tuple(int(n) for n in args.shape.split(","))
    with tempfile.TemporaryDirectory() as folder:
        src = os.path.join(folder, "ct.nii.gz")
        data = ct_volume(shape, "int16")  # type: ignore[arg-type]
        nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 1.0, 1.0])), src)
        if args.decompress:
            decompress(src, args.repeat)
            return
        out_a, out_b = os.path.join(folder, "a.nii.gz"), os.path.join(folder, "b.nii.gz")
        print(f"progress: {src} {os.path.getsize(src) / 2**20:.1f} MiB", file=sys.stderr)
        streamed(src, out_b)  # warm-up (imports, page cache)
        times = interleaved(
            {"whole": lambda: whole(src, out_a), "streamed": lambda: streamed(src, out_b)},
            args.repeat,
        )
        assert nib.load(out_a).header.binaryblock == nib.load(out_b).header.binaryblock
        t0 = time.perf_counter()
        same = np.array_equal(np.asarray(nib.load(out_b).dataobj), data)
        print(f"progress: checked the copy in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        peaks = {
            "whole": traced_peak(whole, src, out_a),
            "streamed": traced_peak(streamed, src, out_b),
        }
    print(f"{machine()}\n")
    print(f"Copy of a {'x'.join(map(str, shape))} int16 .nii.gz, median of {args.repeat}:\n")
    print("| path | time (s) | peak traced memory |")
    print("|---|---|---|")
    for key, name in (
        ("whole", "load_nifti + save_nifti"),
        ("streamed", "open_planes + PlaneWriter"),
    ):
        print(f"| {name} | {times[key]:.2f} | {mb(peaks[key])} |")
    print(
        f"\nstreamed / whole: time {times['streamed'] / times['whole']:.2f}, "
        f"memory {peaks['streamed'] / peaks['whole']:.3f}; copy identical: {same}"
    )


if __name__ == "__main__":
    main()
