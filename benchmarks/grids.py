"""Target grids against SimpleITK, measured in the same run: a reference image's grid (oblique
and axis-aligned) and a target spacing.

One command::

    python benchmarks/grids.py              # median of 5 interleaved rounds (15 min, busy 2 cores)
    python benchmarks/grids.py --quick      # median of 3
    python benchmarks/grids.py --folder DIR # keep the generated files in DIR (reused if there)

Case A's input of ``benchmarks/run.py`` (512 x 512 x 300 int16, spacing 0.5 x 0.5 x 1.0 mm,
``ct_volume``) is written once as ``.nii.gz``; both sides read that file. Measured, each
beside its reference:

1. an oblique 224 x 224 x 128 reference grid (rotated 20 degrees about x and about z, centred
   on the input's field of view): ``resample_to_reference`` end to end against NiDataset's way
   (``sitk.ReadImage`` of input and reference, ``sitk.Resample(moving, reference,
   sitk.Transform(), interpolator, 0, moving.GetPixelID())``, ``sitk.WriteImage(...,
   useCompression=True)``), linear and B-spline; linear also in memory;
2. an axis-aligned 224 x 224 x 128 reference grid (x flipped, shifted, spacing 1.1 x 1.1 x 2.2):
   the separable engine (``resample_volume_to_grid``) against the same ``sitk.Resample`` in
   memory, and both end to end, B-spline;
3. a target spacing of 1 mm: ``resample_to_spacing`` end to end against SimpleITK read +
   ``ResampleImageFilter`` (size ``round(n * old / 1)``, spacing ``old * n / size``, origin and
   direction kept) + write, and the engine against the filter in memory, B-spline.

Every round runs every measurement once, in an order reversed every round; the table shows
medians, their ratio (reference / ours: above 1 means ours is faster) and the range of the
per-round ratios. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _load_run() -> Any:
    """benchmarks/run.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    name = "napari_resample_bench_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


run = _load_run()

CASE = run.CASES["A"]
OUT_SHAPE = (224, 224, 128)
#: Oblique grid: rotation (degrees) about x, then about z, and its spacing (mm).
OBLIQUE_DEGREES = (20.0, 20.0)
OBLIQUE_SPACING = (0.9, 0.9, 1.8)
#: Axis-aligned grid: signed spacing (x flipped) and shift of its centre from the input's (mm).
ALIGNED_SPACING = (-1.1, 1.1, 2.2)
ALIGNED_SHIFT = (3.0, -2.0, 5.0)
TARGET_SPACING = (1.0, 1.0, 1.0)


# --------------------------------------------------------------------------- geometry and files


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = [i for i in range(3) if i != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def centred_affine(in_affine: np.ndarray, in_shape, linear: np.ndarray, shift=(0, 0, 0)):
    """Voxel -> RAS affine with *linear* whose centre voxel sits at the input's centre + shift."""
    centre = in_affine @ np.array([(n - 1) / 2 for n in in_shape] + [1.0])
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = (
        centre[:3] + np.asarray(shift) - linear @ np.array([(n - 1) / 2 for n in OUT_SHAPE])
    )
    return out


def write_nifti(path: str, data: np.ndarray, affine: np.ndarray) -> None:
    """nibabel's writer (gzip level 1, nibabel's default), qform = sform, both code 1."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def make_files(folder: str) -> dict[str, str]:
    """The input and the two reference images, generated once (reused when already there)."""
    in_affine = np.diag([*run.SPACING, 1.0])
    grids = {
        "oblique": centred_affine(
            in_affine,
            CASE.shape,
            rotation(2, OBLIQUE_DEGREES[1])
            @ rotation(0, OBLIQUE_DEGREES[0])
            @ np.diag(OBLIQUE_SPACING),
        ),
        "aligned": centred_affine(in_affine, CASE.shape, np.diag(ALIGNED_SPACING), ALIGNED_SHIFT),
    }
    paths = {"input": os.path.join(folder, "caseA.nii.gz")}
    if not os.path.exists(paths["input"]):
        write_nifti(paths["input"], run.ct_volume(CASE.shape, CASE.dtype), in_affine)
    for name, affine in grids.items():
        paths[name] = os.path.join(folder, f"ref_{name}.nii.gz")
        if not os.path.exists(paths[name]):
            write_nifti(paths[name], run.ct_volume(OUT_SHAPE, "int16", seed=1), affine)
    return paths


def check_geometry(paths: dict[str, str]) -> dict[str, float]:
    """Both libraries read the same grids (else the comparison is void); overlap fractions."""
    import SimpleITK as sitk

    from napari_resample.engine.grid import overlap_fraction
    from napari_resample.io.itk import ras_affine
    from napari_resample.pipeline.reference import reference_grid

    overlap = {}
    source = reference_grid(paths["input"])
    for name, path in paths.items():
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        theirs = ras_affine(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
        ours = reference_grid(path).affine
        if not np.allclose(theirs, ours, atol=1e-4):
            raise SystemExit(f"SimpleITK and nibabel disagree on the grid of {path}")
        overlap[name] = overlap_fraction(source.shape, source.affine, OUT_SHAPE, ours)
    return overlap


# --------------------------------------------------------------------------- measurements


class Pair:
    """One row: our function and the reference's, and how to compare their outputs."""

    def __init__(self, what: str, ours: Callable, ref: Callable, bar: float | None = None):
        self.what, self.ours, self.ref, self.bar = what, ours, ref, bar
        self.times: dict[str, list[float]] = {"ours": [], "ref": []}
        self.outputs: dict[str, object] = {}

    def call(self, side: str) -> None:
        fn = self.ours if side == "ours" else self.ref
        self.outputs[side] = None  # this side's previous output is freed before the clock starts
        t0 = time.perf_counter()
        out = fn()
        self.times[side].append(time.perf_counter() - t0)
        self.outputs[side] = out


def build_pairs(paths: dict[str, str], folder: str) -> list[Pair]:
    import SimpleITK as sitk

    from napari_resample import resample_to_reference, resample_to_spacing
    from napari_resample.io.nifti import load_nifti, save_volume
    from napari_resample.pipeline.reference import reference_grid, resample_volume_to_grid
    from napari_resample.pipeline.run import resample_volume

    src = paths["input"]
    volume = load_nifti(src)
    image = sitk.ReadImage(src)
    refs = {k: sitk.ReadImage(paths[k]) for k in ("oblique", "aligned")}
    grids = {k: reference_grid(paths[k]) for k in ("oblique", "aligned")}
    interp = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
    spacing_size = tuple(
        max(1, math.floor(n * s / t + 0.5))
        for n, s, t in zip(image.GetSize(), image.GetSpacing(), TARGET_SPACING, strict=True)
    )

    def out_dir(tag: str) -> str:
        return os.path.join(folder, "out", tag)

    def nidataset(grid: str, mode: str, tag: str) -> Callable[[], str]:
        def fn() -> str:
            moving = sitk.ReadImage(src)
            reference = sitk.ReadImage(paths[grid])
            out = sitk.Resample(
                moving, reference, sitk.Transform(), interp[mode], 0, moving.GetPixelID()
            )
            path = os.path.join(out_dir(tag), "caseA_resampled_to_ref.nii.gz")
            sitk.WriteImage(out, path, useCompression=True)
            return path

        return fn

    def to_ref(grid: str, mode: str, tag: str) -> Callable[[], str]:
        return lambda: resample_to_reference(src, paths[grid], out_dir(tag), mode)

    def ours_mem(grid: str, mode: str) -> Callable[[], np.ndarray]:
        return lambda: resample_volume_to_grid(volume, grids[grid], interpolation=mode)[0].data

    def sitk_mem(grid: str, mode: str) -> Callable[[], np.ndarray]:
        def fn() -> np.ndarray:
            out = sitk.Resample(
                image, refs[grid], sitk.Transform(), interp[mode], 0, image.GetPixelID()
            )
            return sitk.GetArrayFromImage(out).transpose(2, 1, 0)

        return fn

    def spacing_ref() -> str:
        moving = sitk.ReadImage(src)
        out = run.sitk_resampler(moving, spacing_size).Execute(moving)
        path = os.path.join(out_dir("spacing_ref"), "caseA_resampled.nii.gz")
        sitk.WriteImage(out, path, useCompression=True)
        return path

    def spacing_mem_ref() -> np.ndarray:
        out = run.sitk_resampler(image, spacing_size).Execute(image)
        return sitk.GetArrayFromImage(out).transpose(2, 1, 0)

    written = resample_volume_to_grid(volume, grids["oblique"], interpolation="linear")[0]

    def write_ours() -> str:
        path = os.path.join(out_dir("write_ours"), "w.nii.gz")
        save_volume(path, written)
        return path

    written_itk = sitk.Resample(
        image, refs["oblique"], sitk.Transform(), sitk.sitkLinear, 0, image.GetPixelID()
    )

    def write_ref() -> str:
        path = os.path.join(out_dir("write_ref"), "w.nii.gz")
        sitk.WriteImage(written_itk, path, useCompression=True)
        return path

    for tag in (
        "obl_lin_ref",
        "obl_bsp_ref",
        "ali_bsp_ref",
        "spacing_ref",
        "write_ref",
        "write_ours",
    ):
        os.makedirs(out_dir(tag), exist_ok=True)  # SimpleITK does not create folders

    return [
        Pair(
            "1. oblique grid, linear, end to end",
            to_ref("oblique", "linear", "obl_lin"),
            nidataset("oblique", "linear", "obl_lin_ref"),
            1.0,
        ),
        Pair(
            "1. oblique grid, B-spline, end to end",
            to_ref("oblique", "bspline", "obl_bsp"),
            nidataset("oblique", "bspline", "obl_bsp_ref"),
            1.0,
        ),
        Pair(
            "1. oblique grid, linear, in memory",
            ours_mem("oblique", "linear"),
            sitk_mem("oblique", "linear"),
        ),
        Pair(
            "2. axis-aligned grid, B-spline, in memory",
            ours_mem("aligned", "bspline"),
            sitk_mem("aligned", "bspline"),
            15.0,
        ),
        Pair(
            "2. axis-aligned grid, B-spline, end to end",
            to_ref("aligned", "bspline", "ali_bsp"),
            nidataset("aligned", "bspline", "ali_bsp_ref"),
        ),
        Pair(
            f"3. spacing 1 mm {spacing_size}, B-spline, end to end",
            lambda: resample_to_spacing(src, out_dir("spacing"), TARGET_SPACING),
            spacing_ref,
        ),
        Pair(
            f"3. spacing 1 mm {spacing_size}, B-spline, in memory",
            lambda: resample_volume(volume, spacing_size, interpolation="bspline").data,
            spacing_mem_ref,
        ),
        Pair(
            "read the input .nii.gz (`load_nifti` / `ReadImage`)",
            lambda: load_nifti(src).data,
            lambda: sitk.ReadImage(src),
        ),
        Pair(
            "write a 224x224x128 int16 .nii.gz (`save_volume` / `WriteImage`)",
            write_ours,
            write_ref,
        ),
    ]


def difference(pair: Pair, lo: float, hi: float) -> str:
    """Max |ours - reference| / input range of the last outputs (files or arrays, same grid),
    with the reference clamped to the input's range [lo, hi] as our contract clamps B-spline
    overshoot, and without (in brackets) when that differs."""
    import nibabel as nib

    got = {}
    affines = []
    for side in ("ours", "ref"):
        out = pair.outputs.get(side)
        if isinstance(out, str):
            img = nib.load(out)
            affines.append(img.affine)
            got[side] = np.asarray(img.dataobj)
        elif isinstance(out, np.ndarray):
            got[side] = out
        else:
            return "-"
    if affines and not np.allclose(affines[0], affines[1], atol=1e-4):
        return "grids differ!"
    if got["ours"].shape != got["ref"].shape:
        return f"shapes differ {got['ours'].shape} {got['ref'].shape}!"
    ours = got["ours"].astype(np.float64)
    ref = got["ref"].astype(np.float64)
    raw = float(np.abs(ours - ref).max()) / (hi - lo)
    clamped = float(np.abs(ours - np.clip(ref, lo, hi)).max()) / (hi - lo)
    if raw == clamped:
        return f"max diff {clamped:.1e}"
    return f"max diff {clamped:.1e} ({raw:.1e} unclamped)"


# --------------------------------------------------------------------------- report


def versions() -> str:
    import nibabel

    try:
        import isal

        gz = f"python-isal {isal.__version__}"
    except ImportError:
        gz = "no python-isal (zlib)"
    return f"nibabel {nibabel.__version__}, {gz}"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="rounds (median); default 5")
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--folder", help="where the generated files go (default: a temporary folder)")
    args = p.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="nrgrids-") as tmp:
        folder = args.folder or tmp
        os.makedirs(folder, exist_ok=True)
        paths = make_files(folder)
        overlap = check_geometry(paths)
        progress(f"files ready in {folder}")
        pairs = build_pairs(paths, folder)
        for pair in pairs:  # warm-up: imports, caches, output folders
            if "B-spline" not in pair.what or "axis-aligned" in pair.what:
                pair.call("ours")
        pairs[0].call("ref")
        for pair in pairs:
            pair.times = {"ours": [], "ref": []}
        load_before = loadavg()
        progress(f"warm-up done, load {load_before}")
        calls = [(pair, side) for pair in pairs for side in ("ours", "ref")]
        for r in range(repeat):
            for pair, side in calls if r % 2 == 0 else calls[::-1]:
                pair.call(side)
            progress(f"round {r + 1}/{repeat} done, load {loadavg()}")
        load_after = loadavg()

        lo, hi = volume_range(paths["input"])
        rows = []
        for pair in pairs:
            o, f = (statistics.median(pair.times[k]) for k in ("ours", "ref"))
            ratios = [b / a for a, b in zip(pair.times["ours"], pair.times["ref"], strict=True)]
            note = difference(pair, lo, hi)
            if pair.bar is not None:
                met = "met" if f / o >= pair.bar else "NOT met"
                note = f"bar >= {pair.bar:g}: {met}; {note}"
            rows.append(
                [
                    pair.what,
                    f"{o:.3f}",
                    f"{f:.3f}",
                    f"**{f / o:.2f}** ({min(ratios):.2f}-{max(ratios):.2f})",
                    note,
                ]
            )

    print(f"# napari-resample grids benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    print(
        f"Machine: {run.machine()}, {versions()}; median of {repeat} interleaved rounds; "
        f"load average (1, 5, 15 min) {load_before} before the rounds, {load_after} after.\n"
    )
    print(
        f"Input: case A, {CASE.shape} {CASE.dtype}, spacing {run.SPACING} mm, .nii.gz (nibabel, "
        f"gzip level 1). Reference grids {OUT_SHAPE}: oblique (rotated {OBLIQUE_DEGREES[0]:g} "
        f"degrees about x and {OBLIQUE_DEGREES[1]:g} about z, spacing {OBLIQUE_SPACING}, "
        f"{100 * overlap['oblique']:.1f} % inside the input's field of view) and axis-aligned "
        f"(spacing {ALIGNED_SPACING}, shifted {ALIGNED_SHIFT} mm, "
        f"{100 * overlap['aligned']:.1f} % inside).\n"
    )
    print(
        run.table(["what", "ours (s)", "reference (s)", "ratio (per-round range)", "note"], rows)
    )
    print(
        "\nRatio = reference time / our time (above 1: ours is faster); in brackets the range of "
        "the per-round ratios. Max diff: max |ours - reference| / input range on the last "
        "outputs (same grid, checked), the reference clamped to the input's range as our "
        "contract clamps B-spline overshoot (unclamped in brackets where that differs); "
        "2.5e-04 is 1 of 4024: we round to nearest, SimpleITK truncates. Read / write rows: "
        "where the end-to-end time goes (ours writes gzip level 1 with python-isal when "
        "installed; SimpleITK's NIfTI writer has one fixed level, it ignores compressionLevel)."
    )
    progress(f"total {time.perf_counter() - started:.0f} s")


def volume_range(path: str) -> tuple[float, float]:
    from napari_resample.io.nifti import load_nifti

    data = load_nifti(path).data
    return float(data.min()), float(data.max())


if __name__ == "__main__":
    main()
