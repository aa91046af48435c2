"""Dataset throughput of ``resampling_dataset`` against the reference, measured in the same run.

One command::

    python benchmarks/dataset.py              # 32 files (24 CT-like 512x512xK + 8 label maps)
    python benchmarks/dataset.py --quick      # 8 small files, a fast check
    python benchmarks/dataset.py --keep       # keep the generated dataset (its folder is printed)
    python benchmarks/dataset.py --folder DIR --repeat 3

The dataset is generated (seeded) into a temporary folder: 24 CT-like int16 volumes (the
``ct_volume`` of ``benchmarks/run.py``) of 512 x 512 x K, K spread over 100..300, spacing
0.7 x 0.7 x (1.0..2.5) mm, plus 8 uint8 label maps (a handful of labels in blobs, intent code
1002) on the grids of 8 of the images, all ``.nii.gz``. Target size (224, 224, 128).

Four runs, each in a fresh process and a fresh output folder (resume reuses run 3's):

1. the reference, NiDataset's way: a sequential loop of ``sitk.ReadImage``,
   ``ResampleImageFilter`` (cubic B-spline for every file, label maps included, FOV-keeping
   spacing, origin and direction kept, input pixel type) and ``sitk.WriteImage(...,
   useCompression=True)``;
2. ``resampling_dataset(..., workers=1)`` (in-process);
3. ``resampling_dataset(..., workers=None)`` (a process pool, one worker per core);
4. run 3's call again on its finished output folder (everything skipped).

See ``benchmarks/README.md`` for the methodology.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_bench_run", os.path.join(_HERE, "run.py"))
assert _spec is not None and _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench_run  # run.py's dataclasses look their module up
_spec.loader.exec_module(bench_run)
ct_volume, machine, table, sitk_resampler = (
    bench_run.ct_volume,
    bench_run.machine,
    bench_run.table,
    bench_run.sitk_resampler,
)

SIZE = (224, 224, 128)
LABEL_INTENT = 1002  # NIFTI_INTENT_LABEL
RUNS = ("ref", "ours1", "oursN", "resume")
#: With ``--against CHECKOUT``: ``workers=None`` from that checkout's ``src`` (an A/B in one run).
AGAINST = "againstN"
#: With ``--qc``: ``workers=None, qc=True`` (every file checked and drawn as it passes).
WITH_QC = "oursNqc"
TITLES = {
    WITH_QC: "ours, `workers=None, qc=True` (checks, thumbnails and the report)",
    AGAINST: "the `--against` checkout, `workers=None`",
    "ref": "reference: SimpleITK read + B-spline + write, sequential",
    "ours1": "ours, `workers=1`",
    "oursN": "ours, `workers=None`",
    "resume": "ours, `workers=None`, rerun on the finished output (resume)",
}
#: Targets of the issue.
TARGET_VS_REF = 10.0
TARGET_N_VS_1 = 1.5
TARGET_RESUME = 0.05
TARGET_VS_AGAINST = 1.2  # issue 19: throughput >= 1.2x the main it started from
TARGET_QC_COST = 0.05  # issue 20: QC during a run costs at most 5 % of the run's time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the dataset


def plan(quick: bool) -> tuple[list[dict[str, Any]], list[int]]:
    """The images (name, shape, spacing, seed) and which of them get a label map."""
    n, side, k0, k1, labels = (6, 256, 50, 150, 2) if quick else (24, 512, 100, 300, 8)
    images = []
    for i in range(n):
        k = round(k0 + (k1 - k0) * i / (n - 1))
        sz = round(1.0 + 1.5 * i / (n - 1), 3)
        images.append({"name": f"ct_{i:02d}", "shape": (side, side, k), "spacing": (0.7, 0.7, sz)})
    step = n // labels
    return images, [i * step for i in range(labels)]


def affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(shape, spacing, strict=True)]
    return a


def label_map(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """uint8, 0 background and labels 1..5 in ellipsoidal blobs (later labels overwrite)."""
    rng = np.random.default_rng(1000 + seed)
    out = np.zeros(shape, np.uint8)
    for label in range(1, 6):
        centre = rng.uniform(0.25, 0.75, 3) * shape
        radii = rng.uniform(0.06, 0.2, 3) * shape
        lo = np.maximum(0, np.floor(centre - radii)).astype(int)
        hi = np.minimum(shape, np.ceil(centre + radii) + 1).astype(int)
        x, y, z = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = (
            ((x - centre[0]) / radii[0]) ** 2
            + ((y - centre[1]) / radii[1]) ** 2
            + ((z - centre[2]) / radii[2]) ** 2
        ) < 1
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = label
    return out


def write(path: str, data: np.ndarray, aff: np.ndarray, intent: int = 0) -> None:
    import nibabel as nib

    from napari_resample.io.nifti import save_nifti

    header = nib.Nifti1Image(data, aff).header
    if intent:
        header["intent_code"] = intent
    save_nifti(path, data, header)


def generate(folder: str, quick: bool) -> None:
    images, with_labels = plan(quick)
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        aff = affine(im["shape"], im["spacing"])
        data = ct_volume(im["shape"], "int16", i)
        write(os.path.join(folder, f"{im['name']}.nii.gz"), data, aff)
        del data
        if i in with_labels:
            path = os.path.join(folder, f"seg_{i:02d}.nii.gz")
            write(path, label_map(im["shape"], i), aff, LABEL_INTENT)
        log(f"[{time.perf_counter() - t0:.0f} s] generated {im['name']} {im['shape']}")


def inputs(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.endswith(".nii.gz") and not f.startswith(".")
    )


def describe(paths: list[str]) -> dict[str, Any]:
    """Bytes on disk and uncompressed voxel bytes of the inputs, and how many are label maps."""
    import nibabel as nib

    disk = raw = labels = 0
    for p in paths:
        disk += os.path.getsize(p)
        img = nib.load(p)
        raw += int(np.prod(img.shape)) * img.get_data_dtype().itemsize
        labels += int(img.header["intent_code"]) == LABEL_INTENT
    return {"files": len(paths), "disk": disk, "raw": raw, "labels": labels}


# --------------------------------------------------------------------------- one run (child)


class Sampler(threading.Thread):
    """RSS of this process and its descendants every *interval* s; the peak of each process."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self.stop = threading.Event()

    def role(self, proc: Any) -> str:
        if proc.pid == self.me.pid:
            return "main"
        try:
            cmd = " ".join(proc.cmdline())
        except self.psutil.Error:
            return "?"
        return "tracker" if "resource_tracker" in cmd else "worker"

    def sample(self) -> None:
        try:
            procs = [self.me, *self.me.children(recursive=True)]
        except self.psutil.Error:
            return
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except self.psutil.Error:
                continue
            if proc.pid not in self.roles or self.roles[proc.pid] == "?":
                self.roles[proc.pid] = self.role(proc)
            self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.join()
        self.sample()
        workers = [v for p, v in self.peaks.items() if self.roles.get(p) == "worker"]
        return {"main": self.peaks.get(self.me.pid, 0), "workers": sorted(workers, reverse=True)}


def reference_run(
    paths: list[str], out: str, size: tuple[int, int, int], seconds: dict[str, float]
) -> list[str]:
    """NiDataset's ``resampling_dataset``: one file after the other, B-spline for every file.
    Each file's seconds go into *seconds* (by file name)."""
    import SimpleITK as sitk

    from napari_resample.io.names import strip_nifti_suffix

    done = []
    for path in paths:
        t0 = time.perf_counter()
        image = sitk.ReadImage(path)
        result = sitk_resampler(image, size).Execute(image)
        dest = os.path.join(out, f"{strip_nifti_suffix(path)}_resampled.nii.gz")
        sitk.WriteImage(result, dest, useCompression=True)
        done.append(dest)
        seconds[os.path.basename(path)] = time.perf_counter() - t0
    return done


def cpu_seconds() -> float:
    """User + system CPU-seconds of this process and its reaped children (the pool's workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(kind: str, folder: str, out: str) -> None:
    """Run one configuration in this fresh process; print a JSON line with its figures."""
    import SimpleITK  # noqa: F401  (same imports, so the same baseline, in every run)

    from napari_resample import resampling_dataset

    os.makedirs(out, exist_ok=True)
    paths = inputs(folder)
    sampler = Sampler()
    base = sampler.me.memory_info().rss
    sampler.start()
    per_file: dict[str, float] = {}
    qc_seconds = 0.0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if kind == "ref":
        done = reference_run(paths, out, SIZE, per_file)
    else:
        workers = 1 if kind == "ours1" else None
        qc = {"qc": True} if kind == WITH_QC else {}
        done = resampling_dataset(folder, out, SIZE, workers=workers, progress=False, **qc)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    mem = sampler.finish()
    if kind in ("ours1", "oursN", WITH_QC):
        # The manifest's JSON lines, read directly: the same in every checkout `--against` names.
        with open(os.path.join(out, "resampling_manifest.jsonl"), encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("status") == "done" and "seconds" in rec:
                    per_file[os.path.basename(rec["input"])] = rec["seconds"]
                    qc_seconds += rec.get("qc_seconds", 0.0)
    result = {
        "qc_seconds": qc_seconds,
        "seconds": seconds,
        "cpu": cpu,
        "done": len(done),
        "base": base,
        "per_file": per_file,
    }
    print(json.dumps({**result, **mem}))


#: Bytecode caches for the children, as an installed package has them (pip compiles at install).
#: Without them (``PYTHONDONTWRITEBYTECODE`` set, or an install that skipped compiling) every
#: fresh process compiles numpy, scipy and this package from source, and a configuration that
#: imports more (QC: Pillow, jinja2) is charged their compilation as its cost.
PYCACHE = os.path.join(tempfile.gettempdir(), "napari-resample-bench-pycache")

#: What the children import, compiled once before the rounds (a module missing from a tree
#: is skipped): the rounds then all find their caches.
WARM_IMPORTS = (
    "SimpleITK",
    "scipy.ndimage",
    "nibabel",
    "napari_resample",
    "napari_resample.dataset.run",
    "napari_resample.qc.run",
    "napari_resample.qc.report",
    "napari_resample.qc.thumbs",
    "PIL.PngImagePlugin",
    "jinja2",
)


def child_env(against: str | None = None) -> dict[str, str]:
    """The environment of a child: bytecode caches in :data:`PYCACHE`; *against*'s package
    first on the path when given."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    if against is not None:
        env["PYTHONPATH"] = os.path.join(os.path.abspath(against), "src")
    return env


def warm_caches(against: str | None) -> None:
    """Compile what the children import, for this checkout and *against*'s."""
    code = (
        "import importlib\n"
        f"for name in {WARM_IMPORTS!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    for tree in (None, against) if against else (None,):
        subprocess.run([sys.executable, "-c", code], check=True, env=child_env(tree))


def measure(kind: str, folder: str, out: str, against: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, folder, out]
    env = child_env()
    if kind == AGAINST:
        # The other checkout's package comes first on the path; the child runs `oursN`'s call.
        env = child_env(against)
        cmd[-3] = "oursN"
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- checks


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def outputs(out: str) -> dict[str, str]:
    """Relative path -> path of every result file under *out*."""
    found = {}
    for root, _, files in os.walk(out):
        for f in files:
            if f.endswith("_resampled.nii.gz"):
                p = os.path.join(root, f)
                found[os.path.relpath(p, out)] = p
    return found


def check(out1: str, outn: str, n: int) -> tuple[bool, str]:
    """Every output of both runs is (224, 224, 128); workers=1 and None are byte-identical."""
    import nibabel as nib

    a, b = outputs(out1), outputs(outn)
    problems = []
    for name, got in (("workers=1", a), ("workers=None", b)):
        if len(got) != n:
            problems.append(f"{name} wrote {len(got)} files, expected {n}")
        bad = [k for k, p in got.items() if tuple(nib.load(p).shape) != SIZE]
        if bad:
            problems.append(f"{name}: {len(bad)} outputs not {SIZE}, e.g. {bad[0]}")
    if set(a) != set(b):
        problems.append("workers=1 and workers=None wrote different file names")
    differ = [k for k in sorted(set(a) & set(b)) if sha256(a[k]) != sha256(b[k])]
    if differ:
        problems.append(f"{len(differ)} outputs differ between workers=1 and None: {differ[0]}")
    if problems:
        return False, "Correctness: FAILED: " + "; ".join(problems)
    return True, (
        f"Correctness: all {n} outputs of both runs are {SIZE[0]}x{SIZE[1]}x{SIZE[2]}, and the "
        f"workers=1 and workers=None outputs are byte-identical (SHA-256 of all {n} files)."
    )


def manifest_seconds(out: str) -> dict[str, list[float]]:
    """Per-file ``seconds`` of the manifest (the worker's read + resample + write + hashes),
    by interpolation used."""
    from napari_resample.dataset.manifest import MANIFEST_NAME, read_manifest

    by: dict[str, list[float]] = {}
    for rec in read_manifest(os.path.join(out, MANIFEST_NAME)).values():
        by.setdefault(rec.get("interpolation_used") or "?", []).append(rec["seconds"])
    return by


def pool_startup(paths: list[str]) -> float:
    """Seconds to start the local pool as ``resampling_dataset`` does (spawn, one process per
    core, its initializer), run one cheap task per worker (importing napari_resample there) and
    shut it down."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from napari_resample.dataset.manifest import input_fingerprint
    from napari_resample.dataset.pool import pool_plan, worker_init

    n, _ = pool_plan(None, len(paths))
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(
        max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
    )
    list(pool.map(input_fingerprint, paths[:n]))
    pool.shutdown(wait=True)
    return time.perf_counter() - t0


def breakdown(path: str) -> dict[str, float]:
    """Seconds of each stage of one file's job, in this process, all cores for the engine."""
    from napari_resample.dataset.manifest import file_sha256
    from napari_resample.io.nifti import load_nifti, save_volume
    from napari_resample.pipeline.rules import resolve_interpolation
    from napari_resample.pipeline.run import resample_volume

    t: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nrds-bd-") as tmp:
        t0 = time.perf_counter()
        vol = load_nifti(path)
        t1 = time.perf_counter()
        used = resolve_interpolation("auto", vol)
        t2 = time.perf_counter()
        res = resample_volume(vol, SIZE, interpolation=used)
        t3 = time.perf_counter()
        dest = os.path.join(tmp, "x_resampled.nii.gz")
        save_volume(dest, res)
        t4 = time.perf_counter()
        file_sha256(path)
        file_sha256(dest)
        t5 = time.perf_counter()
    t = {
        "read": t1 - t0,
        "detect": t2 - t1,
        "resample": t3 - t2,
        "write": t4 - t3,
        "sha256": t5 - t4,
    }
    t["interpolation"] = used  # type: ignore[assignment]
    return t


# --------------------------------------------------------------------------- report


def fmt_mb(n: float) -> str:
    return f"{n / 2**20:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6 small volumes + 2 label maps")
    p.add_argument("--keep", action="store_true", help="keep the generated dataset and outputs")
    p.add_argument("--folder", help="use (or generate into, if empty) this dataset folder")
    p.add_argument("--repeat", type=int, default=1, help="rounds, order alternating (median)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-stage timing")
    p.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="also time `workers=None` from another checkout's src/ (A/B in the same run, "
        "interleaved with ours), e.g. a `git worktree` of an older commit",
    )
    p.add_argument(
        "--qc",
        action="store_true",
        help="also time `workers=None, qc=True` (QC's cost: target <= 5 %% of the run)",
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="nrds-")
    folder = args.folder or os.path.join(work, "dataset")
    try:
        if not (os.path.isdir(folder) and inputs(folder)):
            generate(folder, args.quick)
        paths = inputs(folder)
        info = describe(paths)
        log(
            f"dataset: {info['files']} files in {folder}, {fmt_mb(info['disk'])} MB on disk, "
            f"{fmt_mb(info['raw'])} MB uncompressed"
        )
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS}
        units = [["ref"], ["ours1"], ["oursN", "resume"]]
        if args.against:
            results[AGAINST] = []
            units.insert(2, [AGAINST])
        if args.qc:
            results[WITH_QC] = []
            units.insert(2, [WITH_QC])
        ok, verdict = True, ""
        seconds_by: dict[str, dict[str, list[float]]] = {}
        warm_caches(args.against)
        for r in range(args.repeat):
            outs = {
                k: os.path.join(work, f"out-{k}-{r}")
                for k in ("ref", "ours1", "oursN", AGAINST, WITH_QC)
            }
            outs["resume"] = outs["oursN"]
            for unit in units if r % 2 == 0 else units[::-1]:
                for kind in unit:
                    res = measure(kind, folder, outs[kind], args.against)
                    results[kind].append(res)
                    log(
                        f"[{time.perf_counter() - started:.0f} s] round {r + 1}: {kind} "
                        f"{res['seconds']:.2f} s, {res['done']} files"
                    )
                    if res["done"] != info["files"]:
                        ok = False
                        log(f"{kind}: {res['done']} of {info['files']} files done")
            good, verdict = check(outs["ours1"], outs["oursN"], info["files"])
            ok = ok and good
            log(verdict)
            seconds_by = {k: manifest_seconds(outs[k]) for k in ("ours1", "oursN")}
            if not args.keep:
                for k in ("ref", "ours1", "oursN", AGAINST, WITH_QC):
                    shutil.rmtree(outs[k], ignore_errors=True)

        bd = []
        if not args.no_breakdown:
            images = [q for q in paths if os.path.basename(q).startswith("ct_")]
            labels = [q for q in paths if os.path.basename(q).startswith("seg_")]
            breakdown(images[0])  # warm-up: imports, the engine's first-call costs
            for q in [images[0], images[-1], *labels[:1]]:
                bd.append((os.path.basename(q), breakdown(q)))
        startup = pool_startup(paths)
        report(args, info, results, seconds_by, bd, startup, verdict)
    finally:
        if args.keep:
            log(f"kept: {work} (dataset: {folder})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"Total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


def report(args, info, results, seconds_by, bd, startup, verdict) -> None:
    from napari_resample.dataset.pool import pool_plan

    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    n = info["files"]
    nproc, threads = pool_plan(None, n)
    print(f"# napari-resample dataset benchmark, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"Machine: {machine()}.")
    print(
        f"Dataset: {n} `.nii.gz` files ({n - info['labels']} CT-like int16 images, "
        f"{info['labels']} uint8 label maps), {fmt_mb(info['disk'])} MB on disk, "
        f"{fmt_mb(info['raw'])} MB uncompressed; target {SIZE}; "
        f"{'median of ' + str(args.repeat) + ' rounds' if args.repeat > 1 else 'one round'}, "
        f"each run in a fresh process (with bytecode caches, as an installed package); "
        f"`workers=None` = {nproc} processes x {threads} engine thread(s).\n"
    )
    rows = []
    for k in ("ref", "ours1", "oursN", "resume"):
        s = med[k]
        if k == "resume":
            rows.append(
                [
                    TITLES[k],
                    f"{s:.3f} s",
                    "-",
                    "-",
                    "-",
                    f"{100 * s / med['oursN']:.1f} % of run 3",
                    f"<= {100 * TARGET_RESUME:.0f} %",
                ]
            )
            continue
        ratio = med["ref"] / s
        target = "-"
        if k == "oursN":
            target = (
                f">= {TARGET_VS_REF:.0f}x reference; {med['ours1'] / s:.2f}x `workers=1` "
                f"(target >= {TARGET_N_VS_1}x)"
            )
        rows.append(
            [
                TITLES[k],
                f"{s:.1f} s",
                f"{n / s:.2f}",
                f"{info['disk'] / 2**20 / s:.1f}",
                f"{info['raw'] / 2**20 / s:.1f}",
                "1.0" if k == "ref" else f"{ratio:.1f}x",
                target,
            ]
        )
    print("## Throughput\n")
    hdr = ["run", "wall", "files/s", "MB/s on disk", "MB/s uncompressed", "speed-up", "target"]
    print(table(hdr, rows))

    cpu = {k: statistics.median(r["cpu"] for r in v) for k, v in results.items()}
    print(
        "\nCPU-seconds of each run (user + system, the main process and its pool workers, "
        "`getrusage`): "
        + ", ".join(f"{TITLES[k]} {cpu[k]:.1f} s ({cpu[k] / n:.2f} s per file)" for k in cpu)
        + "."
    )
    if AGAINST in med:
        print(f"\n## A/B against `{args.against}` (same run, interleaved)\n")
        print(
            table(
                ["run", "wall", "files/s", "CPU-s", "CPU-s per file"],
                [
                    [
                        TITLES[k],
                        f"{med[k]:.1f} s",
                        f"{n / med[k]:.2f}",
                        f"{cpu[k]:.1f}",
                        f"{cpu[k] / n:.3f}",
                    ]
                    for k in (AGAINST, "oursN")
                ],
            )
        )

    if WITH_QC in med:
        wall_cost = med[WITH_QC] / med["oursN"] - 1
        cpu_cost = cpu[WITH_QC] / cpu["oursN"] - 1
        print("\n## Quality control's cost (`qc=True`, same run, interleaved)\n")
        print(
            table(
                ["run", "wall", "CPU-s", "cost over `workers=None`"],
                [
                    [TITLES["oursN"], f"{med['oursN']:.2f} s", f"{cpu['oursN']:.1f}", "-"],
                    [
                        TITLES[WITH_QC],
                        f"{med[WITH_QC]:.2f} s",
                        f"{cpu[WITH_QC]:.1f}",
                        f"wall {100 * wall_cost:+.1f} %, CPU {100 * cpu_cost:+.1f} %",
                    ],
                ],
            )
        )
        checks = statistics.median(r["qc_seconds"] for r in results[WITH_QC])
        jobs = statistics.median(sum(r["per_file"].values()) for r in results[WITH_QC])
        print(
            f"\nThe checks and thumbnails alone (the manifest's `qc_seconds`, summed over the "
            f"files): {checks:.2f} s, {100 * checks / jobs:.1f} % of the files' job seconds "
            f"({jobs:.1f} s; reading the voxels as they pass is inside the job seconds, so the "
            "wall and CPU rows above are the whole cost)."
        )

    vs_ref = med["ref"] / med["oursN"]
    n_vs_1 = med["ours1"] / med["oursN"]
    resume = med["resume"] / med["oursN"]
    kinds = []
    for kind, prefix in (("images", "ct_"), ("label maps", "seg_")):
        sums = {
            k: statistics.median(
                sum(t for f, t in r["per_file"].items() if f.startswith(prefix))
                for r in results[k]
            )
            for k in ("ref", "ours1", "oursN")
        }
        kinds.append(
            [
                kind,
                f"{sums['ref']:.1f} s",
                f"{sums['ours1']:.1f} s ({sums['ref'] / sums['ours1']:.1f}x)",
                f"{sums['oursN']:.1f} s",
            ]
        )
    print(
        "\nSum of per-file seconds by kind (ours: the manifest's `seconds`; speed-up of "
        "`workers=1` against the reference; `workers=None` sums two processes' seconds):\n"
    )
    print(table(["files", "reference", "ours, `workers=1`", "ours, `workers=None`"], kinds))
    print("\n## Targets\n")
    print(
        table(
            ["target", "measured", "met"],
            [
                [
                    f"ours (`workers=None`) >= {TARGET_VS_REF:.0f}x the reference's throughput",
                    f"{vs_ref:.1f}x",
                    "yes" if vs_ref >= TARGET_VS_REF else "**no**",
                ],
                [
                    f"`workers=None` >= {TARGET_N_VS_1}x `workers=1`",
                    f"{n_vs_1:.2f}x",
                    "yes" if n_vs_1 >= TARGET_N_VS_1 else "**no**",
                ],
                [
                    f"resume <= {100 * TARGET_RESUME:.0f} % of a full run",
                    f"{100 * resume:.1f} %",
                    "yes" if resume <= TARGET_RESUME else "**no**",
                ],
                *(
                    [
                        [
                            f"throughput >= {TARGET_VS_AGAINST}x the `--against` checkout's",
                            f"{med[AGAINST] / med['oursN']:.2f}x",
                            "yes"
                            if med[AGAINST] / med["oursN"] >= TARGET_VS_AGAINST
                            else "**no**",
                        ]
                    ]
                    if AGAINST in med
                    else []
                ),
                *(
                    [
                        [
                            f"`qc=True` costs <= {100 * TARGET_QC_COST:.0f} % of the run's wall",
                            f"{100 * (med[WITH_QC] / med['oursN'] - 1):+.1f} %",
                            "yes"
                            if med[WITH_QC] / med["oursN"] - 1 <= TARGET_QC_COST
                            else "**no**",
                        ]
                    ]
                    if WITH_QC in med
                    else []
                ),
            ],
        )
    )

    print("\n## Peak memory (RSS, sampled every 50 ms; max over rounds)\n")
    mrows = []
    for k in RUNS:
        main_peak = max(r["main"] for r in results[k])
        base = statistics.median(r["base"] for r in results[k])
        workers = [max(w) for w in zip(*(r["workers"] for r in results[k]), strict=False)]
        if k in ("ref", "ours1"):
            w = f"{fmt_mb(main_peak)} MB (the main process)"
        elif workers:
            w = ", ".join(f"{fmt_mb(v)} MB" for v in workers)
        else:
            w = "none started"
        mrows.append([TITLES[k], f"{fmt_mb(main_peak)} MB ({fmt_mb(base)} MB before)", w])
    print(table(["run", "main process (before the call)", "each worker"], mrows))

    print("\n## Where our time goes\n")
    lines = []
    for k in ("ours1", "oursN"):
        by = seconds_by.get(k, {})
        total = sum(sum(v) for v in by.values())
        per = ", ".join(
            f"{kind} {statistics.mean(v):.2f} s x {len(v)}" for kind, v in sorted(by.items())
        )
        procs = 1 if k == "ours1" else nproc
        lines.append(
            f"- {TITLES[k]}: per-file job seconds (manifest `seconds`: read, detect, resample, "
            f"write, SHA-256 of input and output) {per}; sum {total:.1f} s over {procs} "
            f"process(es) = {total / procs:.1f} s of the {results[k][-1]['seconds']:.1f} s wall "
            f"(last round)."
        )
    lines.append(
        f"- Pool start-up alone (spawn {nproc} workers, import napari_resample in each, one "
        f"trivial task each, shut down): {startup:.2f} s."
    )
    print("\n".join(lines))
    if bd:
        stages = ["read", "detect", "resample", "write", "sha256"]
        brows = [
            [name, str(t["interpolation"]), *(f"{t[s]:.2f} s" for s in stages)] for name, t in bd
        ]
        print(
            "\nOne file's job by stage (in one process, all cores for the engine, "
            "page cache warm):\n"
        )
        print(table(["file", "interpolation", *stages], brows))
    print(f"\n{verdict}")


if __name__ == "__main__":
    sys.exit(main())
