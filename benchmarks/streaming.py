"""Streamed NIfTI resampling (issue 12): I/O overlap, volumes larger than the budget, cost growth,
each beside its reference measured in the same run.

One command::

    python benchmarks/streaming.py                 # everything (about an hour on 2 cores)
    python benchmarks/streaming.py --quick         # 3 rounds, no 1024^3 case, shorter ladders
    python benchmarks/streaming.py --only overlap  # or big, growth, reference
    python benchmarks/streaming.py --folder DIR    # keep the generated inputs in DIR (reused)

Sections:

1. **overlap**: case A of ``benchmarks/run.py`` (512 x 512 x 300 int16 ``.nii.gz`` -> 224 x 224 x
   128, B-spline): ``resampling()`` against the read + write floor (the same input read, the
   same output written, no resampling; two ways, the faster is the floor) and against
   SimpleITK read + ``ResampleImageFilter`` + write; interleaved rounds, medians. Then where
   the time goes (one instrumented run and each stage alone).
2. **big**: 800^3 int16 -> 1600^3 and 1024^3 -> 256^3, B-spline, ``max_memory="1.5G"``, each in a
   subprocess: wall time and peak RSS; the output header checked; big files deleted after use.
3. **growth**: n^3 -> (n/2)^3 and n^3 -> (2n)^3 for n = 128, 256, 512, 800 with the default
   budget (subprocesses): table and ``docs/growth.png``.
4. **reference**: scipy.ndimage.zoom (order 3, float32, as nnU-Net does) and SimpleITK
   ``ResampleImageFilter`` B-spline on n^3 -> (2n)^3 for growing n until a run would exceed
   the time or memory limit, beside ours on the same files: time and peak RSS, measured.

Inputs are CT-like volumes (the formula of ``run.ct_volume``) written plane by plane with
``napari_resample.io.plane_writer.PlaneWriter`` so that generating them stays small. Markdown on
standard output, progress on standard error. See ``benchmarks/README.md`` (Streaming).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _load(name: str) -> Any:
    """A sibling script as a module (benchmarks/ is a folder of scripts, not a package)."""
    key = f"napari_resample_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


grids = _load("grids")
run = grids.run  # the same module object grids.py loaded (ct_volume, CASES, table, ...)

CASE = run.CASES["A"]
BIG_BUDGET = "1.5G"
#: A budget under the held float32 output of n >= 256 upsampled: forces the first pass.
SMALL_BUDGET = "256M"
BIG_CASES = {  # name: (input n, output n)
    "800^3 -> 1600^3": (800, 1600),
    "1024^3 -> 256^3": (1024, 256),
}
GROWTH_N = (128, 256, 512, 800)
REF_N = (128, 256, 400, 512, 640, 800, 1024)
ISO = 0.5  # mm, spacing of the generated cubes
GIB = 1 << 30

_STARTED = time.perf_counter()


def progress(text: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return grids.loadavg()


def gb(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


# --------------------------------------------------------------------------- data


def ct_slabs(shape: tuple[int, int, int], seed: int = 0, planes: int = 8) -> Iterator[np.ndarray]:
    """``run.ct_volume(shape, "int16", seed)``'s formula, *planes* k-planes at a time (the
    noise is drawn slab by slab, so its values differ from ct_volume's; the same distribution).
    """
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    phase = rng.uniform(0, 6, 3)
    tex = [np.sin(5 * a + p).astype(np.float32) for a, p in zip(axes, phase, strict=True)]
    x, y = axes[0][:, None, None], axes[1][None, :, None]
    tex_xy = 60 * tex[0][:, None, None] * tex[1][None, :, None]
    spine = ((x - 0.3) ** 2 + (y + 0.1) ** 2 < 0.01) | ((x + 0.3) ** 2 + (y + 0.1) ** 2 < 0.01)
    for k0 in range(0, shape[2], planes):
        z = axes[2][None, None, k0 : k0 + planes]
        n = z.shape[2]
        body = (x / 0.85) ** 2 + (y / 0.7) ** 2 + (z / 0.95) ** 2 < 1
        vol = np.where(body, np.float32(40), np.float32(-1000))
        vol += body * (tex_xy * tex[2][None, None, k0 : k0 + n])
        vol += (spine & body) * np.float32(1500)
        vol += (x**2 + y**2 + (z - 0.5) ** 2 < 0.02) * np.float32(2900)
        vol += rng.standard_normal((shape[0], shape[1], n), dtype=np.float32) * np.float32(25)
        np.clip(vol, -1024, 3000, out=vol)
        yield vol.astype(np.int16)


def cube_header(shape: tuple[int, int, int], spacing: float = ISO) -> Any:
    import nibabel as nib

    affine = np.diag([spacing, spacing, spacing, 1.0])
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm")
    return header


def write_cube(path: str, n: int) -> None:
    """An n^3 int16 CT-like .nii.gz (spacing ISO), written plane block by plane block."""
    from napari_resample.io.plane_writer import PlaneWriter

    shape = (n, n, n)
    planes = max(1, (8 << 20) // (n * n * 4))
    with PlaneWriter(path, cube_header(shape)) as writer:
        for block in ct_slabs(shape, planes=planes):
            writer.write(block)


def cube_path(folder: str, n: int) -> str:
    return os.path.join(folder, f"cube{n}.nii.gz")


def ensure_cube(folder: str, n: int) -> str:
    """The n^3 input in *folder*, generated in a subprocess when missing."""
    path = cube_path(folder, n)
    if not os.path.exists(path):
        res = spawn({"job": "gen", "path": path, "n": n})
        progress(
            f"generated {path} ({os.path.getsize(path) / 2**20:.0f} MB) in {res['seconds']:.0f} s,"
            f" peak RSS {gb(res['maxrss'])}"
        )
    return path


def check_output(path: str, n_in: int, n_out: int) -> str:
    """Shape and affine of a resampled cube, from its header only (spacing ISO * n / m, the
    first voxel's centre kept)."""
    import nibabel as nib

    img = nib.load(path)
    step = ISO * n_in / n_out
    want = np.diag([step, step, step, 1.0])
    ok_shape = img.shape == (n_out,) * 3
    ok_affine = np.allclose(img.affine, want, atol=1e-6)
    return "ok" if ok_shape and ok_affine else f"WRONG: {img.shape} {img.affine.tolist()}"


# --------------------------------------------------------------------------- subprocess jobs


def _rss(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def child(job: dict[str, Any]) -> dict[str, Any]:
    """One job in this (fresh) process; its time (imports excluded) and peak RSS."""
    kind = job["job"]
    out: dict[str, Any] = {}
    if kind == "gen":
        import napari_resample.io.plane_writer  # noqa: F401

        base = _rss()
        t0 = time.perf_counter()
        write_cube(job["path"], job["n"])
    elif kind == "ours":
        import napari_resample.pipeline.streamed as fs
        from napari_resample import resampling

        passes: list[float] = []
        first_pass = fs._first_pass

        def timed_first_pass(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return first_pass(*args, **kwargs)
            finally:
                passes.append(time.perf_counter() - t)

        fs._first_pass = timed_first_pass
        base = _rss()
        t0 = time.perf_counter()
        resampling(job["src"], job["out"], [job["m"]] * 3, max_memory=job.get("max_memory"))
        out["first_pass"] = round(sum(passes), 2) if passes else None
    elif kind == "zoom":
        import nibabel as nib
        from scipy import ndimage

        base = _rss()
        t0 = time.perf_counter()
        data = nib.load(job["src"]).get_fdata(dtype=np.float32)
        t1 = time.perf_counter()
        res = ndimage.zoom(data, job["m"] / job["n"], order=3, mode="nearest")
        out["compute"] = time.perf_counter() - t1
        assert res.shape == (job["m"],) * 3, res.shape
    elif kind == "sitk":
        import SimpleITK as sitk

        base = _rss()
        t0 = time.perf_counter()
        image = sitk.ReadImage(job["src"])
        t1 = time.perf_counter()
        result = run.sitk_resampler(image, [job["m"]] * 3).Execute(image)
        out["compute"] = time.perf_counter() - t1
        del image
        sitk.WriteImage(result, job["out"], useCompression=True)
    else:
        raise ValueError(kind)
    out["seconds"] = time.perf_counter() - t0
    out["base"] = base
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def spawn(job: dict[str, Any]) -> dict[str, Any]:
    """Run *job* in a fresh Python process; its report, with the parent's wall time and the
    load average after it."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": " / ".join(tail) or f"exit {res.returncode}", "wall": wall}
    report = json.loads(res.stdout.strip().splitlines()[-1])
    report["wall"] = wall
    report["load"] = loadavg()
    return report


def ours_job(src: str, folder: str, m: int, max_memory: str | None) -> tuple[dict, str]:
    out_dir = os.path.join(folder, "out")
    name = os.path.basename(src).removesuffix(".nii.gz") + "_resampled.nii.gz"
    return {
        "job": "ours",
        "src": src,
        "out": out_dir,
        "m": m,
        "max_memory": max_memory,
    }, os.path.join(out_dir, name)


def run_ours(src: str, folder: str, n: int, m: int, max_memory: str | None) -> dict[str, Any]:
    job, out_file = ours_job(src, folder, m, max_memory)
    res = spawn(job)
    if "error" not in res:
        res["check"] = check_output(out_file, n, m)
        res["out_mb"] = os.path.getsize(out_file) / 2**20
    Path(out_file).unlink(missing_ok=True)
    return res


# --------------------------------------------------------------------------- 1. overlap


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: CPU seconds of every call timed by :func:`rounds` (key -> list), beside the wall times.
CPU: dict[str, list[float]] = {}


def rounds(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Every function once per round (``run.timed``), order reversed every round; the CPU
    seconds of each call go to :data:`CPU`."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeat):
        for k in keys if r % 2 == 0 else keys[::-1]:
            c0 = cpu_seconds()
            times[k].append(run.timed(fns[k]))
            CPU.setdefault(k, []).append(cpu_seconds() - c0)
        progress(
            f"overlap round {r + 1}/{repeat}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items())
            + f"; load {loadavg()}"
        )
    return times


#: Issue 19's targets for a file: wall and CPU of ``resampling()`` over the floor's.
TARGET_WALL, TARGET_CPU = 1.10, 1.4
#: Why figures of "case A" differ, and the one definition this benchmark keeps.
CASE_A_DEFINITION = """\
*One definition of case A's file figure.* The input is `run.ct_volume((512, 512, 300), "int16")`
(seed 0: air, a textured body, bones, Gaussian noise of 25 HU) written by nibabel (gzip level 1,
qform = sform, code 1): 157 MB of voxels, about 82 MB on disk. The figure is `resampling()`'s
wall time and CPU-seconds over the **faster** of two floors measured in the same rounds (the
same file read and the same output written, no resampling). Figures quoted elsewhere differ
for three reasons: the content (the same volume without its noise compresses 15x, not 1.8x, so
its read costs less and the same engine is a larger share: the ratio moves), the method (over
the sequential floor, `load_nifti` + `save_nifti`, the ratio is lower than over the overlapped
one, `open_planes` + `PlaneWriter`), and the load (a second job on the other core takes the
overlap away: wall ratios rise, CPU-seconds barely move). Quote this table's ratios.
"""


def overlap(folder: str, repeat: int) -> str:
    import nibabel as nib
    import SimpleITK as sitk

    from napari_resample import resampling
    from napari_resample.io.nifti import load_nifti, save_nifti
    from napari_resample.io.plane_reader import open_planes
    from napari_resample.io.plane_writer import PlaneWriter

    src = os.path.join(folder, "caseA.nii.gz")
    if not os.path.exists(src):  # the file grids.py makes (nibabel, gzip level 1)
        grids.write_nifti(src, run.ct_volume(CASE.shape, CASE.dtype), np.diag([*run.SPACING, 1]))
    size = CASE.size
    work = os.path.join(folder, "overlap")
    os.makedirs(work, exist_ok=True)
    ours_file = os.path.join(work, "caseA_resampled.nii.gz")
    resampling(src, work, size)  # warm-up (imports, page cache), and the output to write
    result = load_nifti(ours_file)
    out_data, out_header = result.data, result.header
    floor_whole = os.path.join(work, "floor_whole.nii.gz")
    floor_stream = os.path.join(work, "floor_stream.nii.gz")
    ref_file = os.path.join(work, "ref.nii.gz")
    k_in, k_out = CASE.shape[2], size[2]

    def ours() -> None:
        resampling(src, work, size)

    def whole() -> None:
        volume = load_nifti(src)
        del volume
        save_nifti(floor_whole, out_data, out_header)

    def streamed() -> None:
        """The streamed pipeline with no compute: every input block read, output planes
        written as the input arrives (in proportion), as the engine hands them over."""
        done = 0
        with open_planes(src) as reader, PlaneWriter(floor_stream, out_header) as writer:
            for k0, block in reader:
                upto = (k0 + block.shape[2]) * k_out // k_in
                if upto > done:
                    writer.write(out_data[:, :, done:upto])
                    done = upto

    def simpleitk() -> None:
        image = sitk.ReadImage(src)
        sitk.WriteImage(
            run.sitk_resampler(image, size).Execute(image), ref_file, useCompression=True
        )

    whole()
    streamed()
    simpleitk()
    for path in (floor_whole, floor_stream):  # the floors write the same file as ours
        assert np.array_equal(np.asarray(nib.load(path).dataobj), out_data)
    load_before = loadavg()
    progress(f"overlap: warm-up done, load {load_before}")
    fns = {"ours": ours, "whole": whole, "streamed": streamed, "sitk": simpleitk}
    times = rounds(fns, repeat)
    load_after = loadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    floor_key = min(("whole", "streamed"), key=med.get)  # type: ignore[arg-type]

    def per_round(key: str, inverse: bool = False) -> str:
        ratios = [
            (b / a if inverse else a / b) for a, b in zip(times["ours"], times[key], strict=True)
        ]
        return f"{min(ratios):.2f}-{max(ratios):.2f}"

    ratio = med["ours"] / med[floor_key]
    cpu = {k: statistics.median(CPU[k]) for k in fns}
    floor_name = {
        "whole": "`load_nifti` + `save_nifti` (whole volumes, one after the other)",
        "streamed": "`open_planes` + `PlaneWriter`, no compute (reading and writing overlapped)",
    }
    rows = [
        [
            "`resampling()` (streamed: read, resample, write)",
            f"{med['ours']:.3f}",
            f"{cpu['ours']:.2f}",
            "1.00",
            "-",
        ],
        [
            "floor: " + floor_name["whole"],
            f"{med['whole']:.3f}",
            f"{cpu['whole']:.2f}",
            f"{med['ours'] / med['whole']:.2f} ({per_round('whole')})",
            "the faster floor" if floor_key == "whole" else "",
        ],
        [
            "floor: " + floor_name["streamed"],
            f"{med['streamed']:.3f}",
            f"{cpu['streamed']:.2f}",
            f"{med['ours'] / med['streamed']:.2f} ({per_round('streamed')})",
            "the faster floor" if floor_key == "streamed" else "",
        ],
        [
            "SimpleITK `ReadImage` + `ResampleImageFilter` (B-spline) + `WriteImage`",
            f"{med['sitk']:.3f}",
            f"{cpu['sitk']:.2f}",
            f"{med['ours'] / med['sitk']:.3f} ({per_round('sitk')})",
            f"ours {med['sitk'] / med['ours']:.1f}x faster",
        ],
    ]
    met = "met" if ratio <= TARGET_WALL else "NOT met"
    cpu_ratio = cpu["ours"] / cpu[floor_key]
    cpu_met = "met" if cpu_ratio <= TARGET_CPU else "NOT met"
    text = [
        "## 1. I/O overlap, case A (512 x 512 x 300 int16 .nii.gz -> 224 x 224 x 128, B-spline)\n",
        f"Median of {repeat} interleaved rounds; load average {load_before} before the rounds, "
        f"{load_after} after. Input {os.path.getsize(src) / 2**20:.1f} MB on disk, output "
        f"{os.path.getsize(ours_file) / 2**20:.1f} MB.\n",
        run.table(
            [
                "what",
                "median wall (s)",
                "median CPU (s)",
                "ours / this, wall (per-round range)",
                "note",
            ],
            rows,
        ),
        f"\n`resampling()` / floor = **{ratio:.3f}** wall (target <= {TARGET_WALL}: {met}) "
        f"and **{cpu_ratio:.2f}** CPU (target <= {TARGET_CPU}: {cpu_met}); the floor is "
        f"{floor_name[floor_key]}. CPU: user + system seconds of the process (all threads); on "
        f"2 cores ours cannot take less than {cpu['ours'] / 2:.2f} s of wall time however well "
        "it overlaps.\n",
        CASE_A_DEFINITION,
    ]
    text.append(where_time_goes(src, work, out_data, out_header, repeat))
    return "\n".join(text)


def where_time_goes(src: str, work: str, out_data: Any, out_header: Any, repeat: int) -> str:
    """Each stage of case A alone (medians of interleaved rounds), and one instrumented
    ``resampling()``: how long the consumer (engine thread) waited for the reader and for the
    writer, and how long it computed."""
    import napari_resample.io.plane_writer as ns
    import napari_resample.pipeline.streamed as fs
    from napari_resample import resampling
    from napari_resample.engine.geometry import grid_positions
    from napari_resample.engine.stream import array_blocks, plan_stream, run_stream
    from napari_resample.io.nifti import load_nifti
    from napari_resample.io.plane_reader import open_planes

    size = CASE.size
    volume = load_nifti(src)
    data = volume.data
    plan = plan_stream(
        data.shape, data.dtype, grid_positions(data.shape, size, "origin"), "bspline"
    )
    assert plan is not None
    planes = open_planes(src).planes_per_block
    write_only = os.path.join(work, "write_only.nii.gz")

    def read_only() -> None:
        with open_planes(src) as reader:
            for _ in reader:
                pass

    def write() -> None:
        with ns.PlaneWriter(write_only, out_header) as writer:
            for k0 in range(0, size[2], 8):
                writer.write(out_data[:, :, k0 : k0 + 8])

    def engine() -> None:
        run_stream(
            array_blocks(data, data.shape, planes),
            plan,
            lambda k0, block: None,
            out_dtype=data.dtype,
        )

    def engine_memory() -> None:
        run.ours(data, size)

    times = rounds(
        {
            "read": read_only,
            "write": write,
            "engine": engine,
            "memory": engine_memory,
        },
        repeat,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(CPU[k]) for k in times}

    # One instrumented run (median of *repeat*): the consumer's waits on both queues.
    waits: dict[str, list[float]] = {"total": [], "wait_read": [], "write_call": [], "cpu": []}
    original_open, original_write = fs.open_planes, ns.PlaneWriter.write

    class TimedReader:
        def __init__(self, reader: Any) -> None:
            self._reader = reader

        def __getattr__(self, name: str) -> Any:
            return getattr(self._reader, name)

        def __iter__(self) -> Iterator[Any]:
            it = iter(self._reader)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    acc["wait_read"] += time.perf_counter() - t
                    return
                acc["wait_read"] += time.perf_counter() - t
                yield item

    def timed_write(self: Any, block: Any, **kwargs: Any) -> None:
        t = time.perf_counter()
        try:
            original_write(self, block, **kwargs)
        finally:
            acc["write_call"] += time.perf_counter() - t

    acc = {"wait_read": 0.0, "write_call": 0.0}
    fs.open_planes = lambda *a, **k: TimedReader(original_open(*a, **k))  # type: ignore[assignment]
    ns.PlaneWriter.write = timed_write  # type: ignore[method-assign]
    try:
        for _ in range(repeat):
            acc.update(wait_read=0.0, write_call=0.0)
            c0, t0 = cpu_seconds(), time.perf_counter()
            resampling(src, work, size)
            waits["total"].append(time.perf_counter() - t0)
            waits["cpu"].append(cpu_seconds() - c0)
            waits["wait_read"].append(acc["wait_read"])
            waits["write_call"].append(acc["write_call"])
    finally:
        fs.open_planes = original_open
        ns.PlaneWriter.write = original_write  # type: ignore[method-assign]
    w = {k: statistics.median(v) for k, v in waits.items()}
    compute = w["total"] - w["wait_read"] - w["write_call"]
    rows = [
        ["read only: `open_planes`, every block (decompressing thread)", "read"],
        ["write only: `PlaneWriter`, the 224 x 224 x 128 output (compressing thread)", "write"],
        ["streamed engine alone: `run_stream` on the loaded array, no I/O", "engine"],
        ["in-memory engine: `resample_array` on the loaded array", "memory"],
    ]
    rows = [[what, f"{med[k]:.3f}", f"{cpu[k]:.2f}"] for what, k in rows]
    rows += [
        ["`resampling()`, instrumented", f"{w['total']:.3f}", f"{w['cpu']:.2f}"],
        ["- of which the engine thread waited for input blocks", f"{w['wait_read']:.3f}", ""],
        ["- of which in `PlaneWriter.write` (cast, bytes, queue)", f"{w['write_call']:.3f}", ""],
        ["- the rest: engine compute, header, set-up", f"{compute:.3f}", ""],
    ]
    return "\n".join(
        [
            f"Where the time goes (medians of {repeat}; load {loadavg()}; no first pass: the "
            "held float32 output, 25 MB, fits the default budget):\n",
            run.table(["stage", "wall (s)", "CPU (s)"], rows),
        ]
    )


# --------------------------------------------------------------------------- 2. big


def big(folder: str, quick: bool) -> str:
    rows = []
    for name, (n, m) in BIG_CASES.items():
        if quick and n > 1000:
            rows.append([name, "-", "-", "-", "-", "-", "skipped (--quick)"])
            continue
        src = ensure_cube(folder, n)
        progress(f"big {name}: running, load {loadavg()}")
        res = run_ours(src, folder, n, m, BIG_BUDGET)
        progress(f"big {name}: {json.dumps(res)}")
        if "error" in res:
            rows.append([name, "-", "-", "-", "-", "-", f"FAILED: {res['error']}"])
        else:
            under = "yes" if res["maxrss"] < 1.5 * GIB else "**NO**"
            rows.append(
                [
                    name,
                    f"{res['seconds']:.1f}",
                    gb(res["maxrss"]),
                    under,
                    "-" if res["first_pass"] is None else f"yes ({res['first_pass']:.1f} s)",
                    f"{os.path.getsize(src) / 2**20:.0f} MB / {res['out_mb']:.0f} MB",
                    f"header {res['check']}; load after {res['load']}",
                ]
            )
        if n > 800:  # keep 800^3 for the growth section
            Path(src).unlink(missing_ok=True)
    return "\n".join(
        [
            f'## 2. Volumes larger than the budget (`max_memory="{BIG_BUDGET}"`, B-spline, int16,'
            " .nii.gz to .nii.gz)\n",
            run.table(
                [
                    "case",
                    "time (s)",
                    "peak RSS",
                    "< 1.5 GiB",
                    "first pass",
                    "input / output on disk",
                    "note",
                ],
                rows,
            ),
            "\nTime: the `resampling()` call in a fresh process (imports excluded). Peak RSS: the"
            " process's `ru_maxrss` (interpreter, numpy, scipy and nibabel included).\n",
        ]
    )


# --------------------------------------------------------------------------- 3. growth


def growth(folder: str, sizes: tuple[int, ...]) -> tuple[str, list[dict[str, Any]]]:
    results = []
    for n in sizes:
        src = ensure_cube(folder, n)
        for label, m in (("down", n // 2), ("up", 2 * n)):
            progress(f"growth {n}^3 -> {m}^3: running, load {loadavg()}")
            res = run_ours(src, folder, n, m, None)
            res.update(n=n, m=m, direction=label)
            progress(f"growth {n}^3 -> {m}^3: {json.dumps(res)}")
            results.append(res)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([f"{r['n']}^3 -> {r['m']}^3", "-", "-", "-", "-", f"FAILED {r['error']}"])
            continue
        vox = r["m"] ** 3
        rows.append(
            [
                f"{r['n']}^3 -> {r['m']}^3",
                f"{vox / 1e6:.1f}",
                f"{r['seconds']:.2f}",
                f"{1e9 * r['seconds'] / vox:.1f}",
                f"{gb(r['maxrss'])} ({gb(r['maxrss'] - r['base'])} above imports)",
                "-" if r["first_pass"] is None else f"yes ({r['first_pass']:.1f} s)",
                f"{r['check']}; load {r['load']}",
            ]
        )
    text = "\n".join(
        [
            "## 3. Cost growth (`resampling()`, default budget, B-spline, one process per run)\n",
            run.table(
                [
                    "run",
                    "output Mvoxels",
                    "time (s)",
                    "ns / output voxel",
                    "peak RSS",
                    "first pass",
                    "note",
                ],
                rows,
            ),
            "\n" + growth_slopes(results),
        ]
    )
    return text, results


def growth_slopes(results: list[dict[str, Any]]) -> str:
    """Log-log slopes of time and memory against output voxels, per direction."""
    parts = []
    for direction in ("down", "up"):
        rs = [r for r in results if r.get("direction") == direction and "error" not in r]
        if len(rs) < 2:
            continue
        x = np.log([r["m"] ** 3 for r in rs])
        t = np.polyfit(x, np.log([r["seconds"] for r in rs]), 1)[0]
        big = [r for r in rs if r["m"] ** 3 >= 8e6] or rs
        tb = (
            np.polyfit(np.log([r["m"] ** 3 for r in big]), np.log([r["seconds"] for r in big]), 1)[
                0
            ]
            if len(big) >= 2
            else float("nan")
        )
        mem = np.polyfit(x, np.log([r["maxrss"] - r["base"] for r in rs]), 1)[0]
        parts.append(
            f"- {direction}: time ~ voxels^{t:.2f} over all sizes (^{tb:.2f} from 8 Mvoxels "
            f"out); memory above imports ~ voxels^{mem:.2f}"
        )
    return "Log-log slopes (1.00 = linear in voxels):\n\n" + "\n".join(parts)


def plot_growth(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    styles = {"down": ("o-", "n^3 -> (n/2)^3"), "up": ("s-", "n^3 -> (2n)^3")}
    for direction, (style, label) in styles.items():
        rs = [r for r in results if r.get("direction") == direction and "error" not in r]
        if not rs:
            continue
        vox = np.array([r["m"] ** 3 for r in rs], dtype=float)
        secs = np.array([r["seconds"] for r in rs])
        mem = np.array([r["maxrss"] / 2**20 for r in rs])
        axes[0].loglog(vox, secs, style, label=label)
        axes[1].loglog(vox, mem, style, label=label)
        for x, r in zip(vox, rs, strict=True):
            axes[0].annotate(
                f"n={r['n']}",
                (x, r["seconds"]),
                fontsize=7,
                xytext=(4, -8),
                textcoords="offset points",
            )
        # linear-in-voxels guide through the largest run
        guide = np.array([vox.min(), vox.max()])
        axes[0].loglog(guide, secs[-1] * guide / vox[-1], ":", color="gray")
    axes[0].plot([], [], ":", color="gray", label="linear in voxels")
    axes[0].set_xlabel("output voxels")
    axes[0].set_ylabel("wall time of resampling() (s)")
    axes[0].set_title("time")
    axes[1].set_xlabel("output voxels")
    axes[1].set_ylabel("peak RSS (MB)")
    axes[1].set_title("peak memory (default budget)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("napari-resample, streamed B-spline, .nii.gz int16 (2 cores)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- 4. reference


def reference(folder: str, sizes: tuple[int, ...], limit: float, max_rss: float) -> str:
    """n^3 -> (2n)^3 by scipy zoom, SimpleITK and ours, each in a subprocess, for growing n
    until the next size is predicted (cubic scaling) to exceed *limit* seconds or *max_rss*."""
    tools = ("zoom", "sitk", "ours", "ours_big", "ours_small")
    last: dict[str, dict[str, Any] | None] = dict.fromkeys(tools)
    stopped: dict[str, str] = {}
    table_rows = []
    largest: dict[str, int] = {}
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    prev_n = None
    for n in sizes:
        src = None
        for tool in tools:
            if tool in stopped:
                continue
            if tool.startswith("ours") and all(t in stopped for t in ("zoom", "sitk")):
                continue  # nothing left to compare with at this size
            if prev_n is not None and last[tool] is not None:
                scale = (n / prev_n) ** 3
                prev = last[tool]
                t_pred = prev["seconds"] * scale
                m_pred = prev["base"] + (prev["maxrss"] - prev["base"]) * scale
                if t_pred > limit or m_pred > max_rss:
                    stopped[tool] = f"stopped before {n}^3: predicted {t_pred:.0f} s, {gb(m_pred)}"
                    continue
            src = src or ensure_cube(folder, n)
            m = 2 * n
            progress(f"reference {tool} {n}^3 -> {m}^3, load {loadavg()}")
            if tool.startswith("ours"):
                budget = {"ours_big": BIG_BUDGET, "ours_small": SMALL_BUDGET}.get(tool)
                res = run_ours(src, folder, n, m, budget)
            else:
                out = os.path.join(folder, f"ref_{n}.nii.gz")
                res = spawn({"job": tool, "src": src, "out": out, "n": n, "m": m})
                Path(out).unlink(missing_ok=True)
            progress(f"reference {tool} {n}^3 -> {m}^3: {json.dumps(res)}")
            if "error" in res:
                stopped[tool] = f"failed at {n}^3: {res['error']}"
                continue
            last[tool] = res
            largest[tool] = n
            by_size.setdefault(n, {})[tool] = res
        prev_n = n
        if len(stopped) == len(tools):
            break
        if all(t in stopped for t in ("zoom", "sitk")):
            break
    names = {
        "zoom": "scipy.ndimage.zoom order=3 on float32 (nibabel read, no write)",
        "sitk": "SimpleITK ReadImage + ResampleImageFilter B-spline + WriteImage",
        "ours": "ours, `resampling()`, default budget",
        "ours_big": f'ours, `resampling(max_memory="{BIG_BUDGET}")`',
        "ours_small": f'ours, `resampling(max_memory="{SMALL_BUDGET}")` (first pass)',
    }
    for n in sorted(by_size):
        for tool in tools:
            r = by_size[n].get(tool)
            if r is None:
                continue
            ratio = []
            for key in ("ours_big", "ours_small"):
                ours = by_size[n].get(key)
                if ours is not None and not tool.startswith("ours"):
                    ratio.append(
                        f"time {r['seconds'] / ours['seconds']:.1f}x, "
                        f"memory {r['maxrss'] / ours['maxrss']:.1f}x"
                    )
                else:
                    ratio.append("-")
            compute = f" ({r['compute']:.1f} s resampling)" if "compute" in r else ""
            table_rows.append(
                [
                    f"{n}^3 -> {2 * n}^3",
                    names[tool],
                    f"{r['seconds']:.1f}{compute}",
                    gb(r["maxrss"]),
                    *ratio,
                    "-" if r.get("first_pass") is None else f"{r['first_pass']:.1f} s",
                    f"load {r['load']}",
                ]
            )
    notes = [
        f"- {names[t]}: largest size run {largest.get(t, '-')}^3 -> (2n)^3; "
        f"{stopped.get(t, 'not stopped (end of the ladder)')}"
        for t in tools
    ]
    return "\n".join(
        [
            "## 4. Reference tools on n^3 -> (2n)^3 (B-spline / cubic), same files, one process "
            "per run\n",
            run.table(
                [
                    "size",
                    "tool",
                    "time (s)",
                    "peak RSS",
                    f"theirs / ours ({BIG_BUDGET})",
                    f"theirs / ours ({SMALL_BUDGET})",
                    "first pass",
                    "note",
                ],
                table_rows,
            ),
            f"\nLadder n = {', '.join(map(str, sizes))}; a tool stops when its next run is "
            f"predicted (time and memory above imports scaled by voxels) to exceed {limit:.0f} s"
            f" or {gb(max_rss)}.\n",
            "\n".join(notes),
            "",
        ]
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7, help="overlap rounds (median); default 7")
    p.add_argument("--quick", action="store_true", help="3 rounds, no 1024^3, shorter ladders")
    p.add_argument("--only", choices=("overlap", "big", "growth", "reference"), action="append")
    p.add_argument("--folder", help="where generated inputs go (default: a temporary folder)")
    p.add_argument("--ref-limit", type=float, default=600, help="seconds a reference run may take")
    p.add_argument("--ref-memory", type=float, default=16, help="GB a reference run may take")
    p.add_argument("--ref-sizes", help="the reference ladder, e.g. 128,256,400,512 (n of n^3)")
    p.add_argument("--plot", default=str(Path(__file__).parents[1] / "docs" / "growth.png"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    repeat = 3 if args.quick else args.repeat
    sections = args.only or ["overlap", "big", "growth", "reference"]
    growth_n = GROWTH_N[:3] if args.quick else GROWTH_N
    ref_n = REF_N[:3] if args.quick else REF_N
    if args.ref_sizes:
        ref_n = tuple(int(v) for v in args.ref_sizes.split(","))
    print(f"# napari-resample streaming benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    print(
        f"Machine: {run.machine()}, {grids.versions()}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GB RAM; "
        f"load average (1, 5, 15 min) at the start {loadavg()}.\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="nrstream-") as tmp:
        folder = args.folder or tmp
        os.makedirs(folder, exist_ok=True)
        if "overlap" in sections:
            print(overlap(folder, repeat), flush=True)
            shutil.rmtree(os.path.join(folder, "overlap"), ignore_errors=True)
        if "big" in sections:
            print(big(folder, args.quick), flush=True)
        if "growth" in sections:
            text, results = growth(folder, growth_n)
            plot_growth(results, args.plot)
            print(text + f"\n\nPlot: `{args.plot}`.\n", flush=True)
        if "reference" in sections:
            print(reference(folder, ref_n, args.ref_limit, args.ref_memory * GIB), flush=True)
        for n in (*GROWTH_N, *REF_N):  # the big inputs do not stay on disk
            if n >= 512 and not args.folder:
                Path(cube_path(folder, n)).unlink(missing_ok=True)
    print(f"\nLoad average at the end: {loadavg()}.")
    progress("done")


if __name__ == "__main__":
    main()
