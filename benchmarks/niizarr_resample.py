"""Resampling to and from ``.nii.zarr`` against ``.nii.gz`` (issue 21's benchmarks).

Two sections, each run in fresh processes, interleaved, read as ratios::

    python benchmarks/niizarr_resample.py                  # both sections, 800^3 -> 1600^3
    python benchmarks/niizarr_resample.py --size 400       # a quicker big case (400 -> 800)
    python benchmarks/niizarr_resample.py --only read      # case A's read, .nii.zarr vs .nii.gz

1. **Big output**: an N^3 int16 ``.nii.gz`` (N = 800 by default; the volume of
   ``niizarr_open.py``, written slab by slab) resampled to (2N)^3 with B-spline and
   ``max_memory="1.5G"``, once with ``output_format="nii.zarr"`` and once to ``.nii.gz``: wall
   time, CPU-seconds (every thread of the process) and peak RSS (the process's ``VmHWM``,
   imports included) of each.
2. **Reading**: case A (``run.ct_volume((512, 512, 300), "int16")``) stored once as ``.nii.gz``
   and once as ``.nii.zarr`` (the same voxels and header), each resampled to 224 x 224 x 128
   (B-spline, ``.nii.gz`` output): CPU-seconds and wall time of ``resampling()``, and of reading
   every plane alone (``open_planes``), medians of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

BUDGET = "1.5G"
CASE_A = ((512, 512, 300), (224, 224, 128))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_big(src: str, out: str, size: int, fmt: str) -> None:
    """Child: resample *src* to size^3 in *out* as *fmt*; print wall, CPU, peak RSS."""
    import niizarr_open

    from napari_resample import resampling

    c0, t0 = _cpu(), time.perf_counter()
    resampling(src, out, (size,) * 3, max_memory=BUDGET, output_format=fmt)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    peak = niizarr_open.status("VmHWM")  # ru_maxrss would carry the parent's over exec
    print(json.dumps({"wall": wall, "cpu": cpu, "peak": peak}), flush=True)


def child_read(src: str, out: str) -> None:
    """Child: case A's ``resampling()`` and plane-by-plane read of *src* (warm-up first)."""
    from napari_resample import resampling
    from napari_resample.io.volume_io import open_volume_planes

    size = CASE_A[1]
    resampling(src, out, size)  # imports, page cache
    c0, t0 = _cpu(), time.perf_counter()
    resampling(src, out, size)
    run = (time.perf_counter() - t0, _cpu() - c0)
    c0, t0 = _cpu(), time.perf_counter()
    with open_volume_planes(src) as reader:
        for _ in reader:
            pass
    read = (time.perf_counter() - t0, _cpu() - c0)
    print(json.dumps({"run": run, "read": read}), flush=True)


def _child(*args: str) -> dict:
    import niizarr_open

    return niizarr_open.json_child([sys.executable, __file__, "--child", *args], " ".join(args))


def big(folder: str, n: int, repeat: int) -> str:
    import niizarr_open

    src = niizarr_open.write_inputs(n, folder, [".nii.gz"])[".nii.gz"]
    runs: dict[str, list[dict]] = {"nii.zarr": [], "nii.gz": []}
    sizes = {}
    for r in range(repeat):
        for fmt in ("nii.zarr", "nii.gz") if r % 2 == 0 else ("nii.gz", "nii.zarr"):
            out = os.path.join(folder, "out_" + fmt.replace(".", "_"))
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            runs[fmt].append(_child("big", src, out, str(2 * n), fmt))
            print(f"{fmt}: {runs[fmt][-1]}", file=sys.stderr, flush=True)
            sizes[fmt] = niizarr_open.disk_size(os.path.join(out, "vol_resampled." + fmt))
            shutil.rmtree(out, ignore_errors=True)
    med = {f: {k: statistics.median(x[k] for x in v) for k in v[0]} for f, v in runs.items()}
    gz = med["nii.gz"]
    lines = [
        f"**Big output**: {n}^3 int16 `.nii.gz` ({n**3 * 2 / 2**20:.0f} MB of voxels) -> "
        f'{2 * n}^3 B-spline ({(2 * n) ** 3 * 2 / 2**20:.0f} MB), `max_memory="{BUDGET}"`, '
        f"median of {repeat} fresh process(es) per format, interleaved:\n",
        "| output | wall | CPU-s | peak RSS (process) | on disk | wall vs .nii.gz |",
        "|---|---|---|---|---|---|",
    ]
    for fmt in ("nii.zarr", "nii.gz"):
        m = med[fmt]
        lines.append(
            f"| `.{fmt}` | {m['wall']:.1f} s | {m['cpu']:.1f} | {m['peak'] / 2**20:.0f} MB | "
            f"{sizes[fmt] / 2**20:.0f} MB | {m['wall'] / gz['wall']:.2f} |"
        )
    return "\n".join(lines)


def read(folder: str, repeat: int) -> str:
    import nibabel as nib
    import niizarr_open
    import numpy as np
    import run as bench_run

    from napari_resample.io.nifti import save_nifti
    from napari_resample.io.niizarr_write import save_niizarr

    shape = CASE_A[0]
    data = bench_run.ct_volume(shape, "int16")
    affine = np.diag([*bench_run.SPACING, 1.0])
    header = nib.Nifti1Image(data, affine).header
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    paths = {".nii.gz": os.path.join(folder, "caseA.nii.gz")}
    paths[".nii.zarr"] = os.path.join(folder, "caseA.nii.zarr")
    save_nifti(paths[".nii.gz"], data, header)
    save_niizarr(paths[".nii.zarr"], data, header)
    del data
    runs: dict[str, list[dict]] = {s: [] for s in paths}
    for r in range(repeat):
        for suffix in paths if r % 2 == 0 else reversed(list(paths)):
            out = os.path.join(folder, "out" + suffix.replace(".", "_"))
            os.makedirs(out, exist_ok=True)
            runs[suffix].append(_child("read", paths[suffix], out))
    lines = [
        f"**Reading** case A ({shape[0]} x {shape[1]} x {shape[2]} int16, "
        f"`run.ct_volume`) as `.nii.gz` and as `.nii.zarr`, resampled to "
        f"{' x '.join(map(str, CASE_A[1]))} (B-spline, `.nii.gz` out); median of {repeat} "
        "fresh processes each (one warm-up call first), interleaved:\n",
        "| input | on disk | `resampling()` wall | its CPU-s | read alone: wall | its CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    med = {}
    for suffix, rs in runs.items():
        m = {
            key: tuple(statistics.median(x[key][i] for x in rs) for i in (0, 1))
            for key in ("run", "read")
        }
        med[suffix] = m
        lines.append(
            f"| `{suffix}` | {niizarr_open.disk_size(paths[suffix]) / 2**20:.0f} MB | "
            f"{m['run'][0]:.3f} s | "
            f"{m['run'][1]:.2f} | {m['read'][0]:.3f} s | {m['read'][1]:.2f} |"
        )
    z, g = med[".nii.zarr"], med[".nii.gz"]
    lines.append(
        f"\n`.nii.zarr` / `.nii.gz`: `resampling()` CPU {z['run'][1] / g['run'][1]:.2f}, "
        f"wall {z['run'][0] / g['run'][0]:.2f}; reading alone CPU "
        f"{z['read'][1] / g['read'][1]:.2f}, wall {z['read'][0] / g['read'][0]:.2f}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=800, help="N of the N^3 input (big case)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the big case")
    parser.add_argument("--read-repeat", type=int, default=5, help="rounds of the read case")
    parser.add_argument("--only", choices=("big", "read"))
    parser.add_argument("--folder", help="where the volumes go (default: a temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "big":
            child_big(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            child_read(rest[0], rest[1])
        return
    import niizarr_open

    folder = args.folder or tempfile.mkdtemp(prefix="niizarr_resample_")
    os.makedirs(folder, exist_ok=True)
    try:
        print(f"# `.nii.zarr` against `.nii.gz`, {time.strftime('%Y-%m-%d %H:%M')}\n")
        print(f"Machine: {niizarr_open.machine()}.\n")
        if args.only in (None, "read"):
            print(read(folder, args.read_repeat) + "\n")
        if args.only in (None, "big"):
            print(big(folder, args.size, args.repeat) + "\n")
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
