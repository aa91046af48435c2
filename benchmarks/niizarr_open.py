"""Opening an N^3 volume in napari: ``.nii.zarr`` (lazy, multiscale) against ``.nii.gz``.

Run under a display (napari draws the slice)::

    xvfb-run -a python benchmarks/niizarr_open.py               # N = 512 (256 MB of int16)
    xvfb-run -a python benchmarks/niizarr_open.py --size 1600   # the issue's case (8 GB)

An int16 N^3 volume (smooth structure plus noise, 0.5 mm voxels) is written plane slab by plane
slab, never whole, by the package's own writers: once as ``.nii.gz``, once as ``.nii.zarr``.
Each is then opened by a fresh process: a napari viewer is made first (its memory is the
baseline), then the clock starts, ``viewer.open(path, plugin="napari-resample")`` runs and the
canvas is drawn once (``viewer.screenshot``): the time to the first rendered slice. Peak memory
is the process's VmHWM (reset to the baseline just before the open) minus the baseline. A
``.nii.gz`` too large for the memory available is refused by the reader before inflating: the
table then says so. Prints a markdown table; the files are removed unless ``--folder`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))

SPACING = 0.5


def status(field: str) -> int:
    """A field of /proc/self/status, in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def slab(n: int, k0: int, k1: int, seed: int = 0) -> np.ndarray:
    """Planes k0..k1 of the N^3 test volume, (I, J, k1 - k0) int16: a smooth ball-like
    structure (a CT-like range) plus noise."""
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    i, j, k = np.meshgrid(axis, axis, axis[k0:k1], indexing="ij")
    radius = np.sqrt(i * i + j * j + k * k)
    values = 1000.0 * np.cos(3.0 * radius) * (radius < 0.9) - 1000.0 * (radius >= 0.9)
    noise = np.random.default_rng(seed + k0).normal(0.0, 20.0, values.shape)
    return (values + noise).astype(np.int16)


def write_inputs(n: int, folder: str, suffixes: list[str]) -> dict[str, str]:
    """The test volume as ``vol<suffix>`` in *folder* for each of *suffixes*, written by slabs
    (a file already there is kept: ``--folder`` reuses the volumes of an earlier run)."""
    import nibabel as nib

    from napari_resample.io.volume_io import open_writer

    header = nib.Nifti1Header()
    header.set_data_shape((n, n, n))
    header.set_data_dtype(np.int16)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = -SPACING * (n - 1) / 2
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm", "sec")
    paths = {}
    for suffix in suffixes:
        path = paths[suffix] = os.path.join(folder, "vol" + suffix)
        if os.path.exists(path):
            continue
        t0 = time.perf_counter()
        with open_writer(path, header) as out:
            for k0 in range(0, n, 64):
                out.write(slab(n, k0, min(n, k0 + 64)))
            out.close()
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return paths


def probe(path: str) -> None:
    """Child process: open *path* in a viewer, draw it; print seconds, peak and baseline."""
    import napari

    viewer = napari.Viewer(show=True)
    viewer.screenshot(canvas_only=True)  # the empty canvas drawn once: GL set-up is not timed
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    t0 = time.perf_counter()
    layers = viewer.open(path, plugin="napari-resample")
    if layers:
        viewer.screenshot(canvas_only=True)
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    result = {"seconds": seconds, "extra": peak - base, "base": base, "layers": len(layers)}
    if layers:
        layer = layers[0]
        result["kind"] = type(layer).__name__
        result["levels"] = len(layer.data) if layer.multiscale else 1
    print(json.dumps(result), flush=True)
    viewer.close()


def json_child(cmd: list[str], what: str) -> dict:
    """Run *cmd* (a fresh Python process) and return the last JSON line it prints."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure(path: str) -> dict:
    return json_child([sys.executable, __file__, "--probe", path], f"probe of {path}")


def disk_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def machine() -> str:
    import dask
    import napari
    import zarr

    spec = importlib.util.spec_from_file_location("_bench_run", os.path.join(_HERE, "run.py"))
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # run.py's dataclasses look their module up
    spec.loader.exec_module(run)
    return (
        f"{run.cores()}, "
        f"napari {napari.__version__}, zarr {zarr.__version__}, dask {dask.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="N of the N^3 int16 volume")
    parser.add_argument("--repeat", type=int, default=3, help="opens per format (median)")
    parser.add_argument("--folder", help="write the volumes here and keep them")
    parser.add_argument(
        "--formats", default="nii.gz,nii.zarr", help="which to open (nii.zarr alone at 1600)"
    )
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe)
        return
    folder = args.folder or tempfile.mkdtemp(prefix="niizarr_open_")
    os.makedirs(folder, exist_ok=True)
    try:
        suffixes = ["." + f.strip() for f in args.formats.split(",")]
        paths = write_inputs(args.size, folder, suffixes)
        rows = []
        for suffix, path in paths.items():
            runs = [measure(path) for _ in range(args.repeat)]
            print(f"{suffix}: {runs}", file=sys.stderr, flush=True)
            seconds = float(np.median([r["seconds"] for r in runs]))
            extra = int(np.median([r["extra"] for r in runs]))
            if not runs[0]["layers"]:
                rows.append([suffix, f"{disk_size(path) / 2**20:.0f} MB", "refused", "-", "-"])
                continue
            kind = f"{runs[0]['kind']}, {runs[0]['levels']} level(s)"
            rows.append(
                [
                    suffix,
                    f"{disk_size(path) / 2**20:.0f} MB",
                    f"{seconds:.2f} s",
                    f"{extra / 2**20:.0f} MB",
                    kind,
                ]
            )
        n = args.size
        print(f"Machine: {machine()}.\n")
        print(
            f"Opening a {n}^3 int16 volume ({n**3 * 2 / 2**20:.0f} MB of voxels) in napari, "
            f"median of {args.repeat} fresh processes:\n"
        )
        header = ["file", "on disk", "first slice drawn", "peak memory above the viewer", "layer"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        print("\n".join(lines))
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
