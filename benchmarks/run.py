"""Speed, memory and accuracy of napari-resample against SimpleITK, measured in the same run.

One command::

    python benchmarks/run.py              # full run (median of 5, about 4 minutes on 2 cores)
    python benchmarks/run.py --quick      # median of 3, no memory / end-to-end sections
    python benchmarks/run.py --repeat 7 --cases A,C

The cases of docs/decisions.md, D13 are generated here (synthetic CT-like volumes: a smooth body
with bones and noise, int16 in -1024..3000; case D float32). The reference is what the
specification's implementation does: SimpleITK ``ResampleImageFilter`` with cubic B-spline
interpolation, an identity transform and the same output grid
(spacing ``old * old_size / new_size``, origin and direction kept).
See ``benchmarks/README.md`` for the methodology.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPACING = (0.5, 0.5, 1.0)


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, int, int]
    dtype: str
    size: tuple[int, int, int]


CASES = {
    "A": Case("A", (512, 512, 300), "int16", (224, 224, 128)),
    "B": Case("B", (512, 512, 300), "int16", (256, 256, 256)),
    "C": Case("C", (256, 256, 150), "int16", (512, 512, 256)),
    "D": Case("D", (128, 128, 128), "float32", (224, 224, 128)),
}


# --------------------------------------------------------------------------- data


def ct_volume(shape: tuple[int, int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """A CT-like volume: air, a soft-tissue body with smooth texture, bones, noise."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.ix_(*axes)
    r2 = (x / 0.85) ** 2 + (y / 0.7) ** 2 + (z / 0.95) ** 2
    body = r2 < 1
    tex = [
        np.sin(5 * a + p).astype(np.float32)
        for a, p in zip(axes, rng.uniform(0, 6, 3), strict=True)
    ]
    vol = np.where(body, np.float32(40), np.float32(-1000))
    vol += body * (60 * tex[0][:, None, None] * tex[1][None, :, None] * tex[2][None, None, :])
    spine = ((x - 0.3) ** 2 + (y + 0.1) ** 2 < 0.01) | ((x + 0.3) ** 2 + (y + 0.1) ** 2 < 0.01)
    vol += (spine & body) * np.float32(1500)
    vol += (x**2 + y**2 + (z - 0.5) ** 2 < 0.02) * np.float32(2900)
    vol += rng.standard_normal(shape, dtype=np.float32) * np.float32(25)
    np.clip(vol, -1024, 3000, out=vol)
    return vol.astype(dtype)


def case_input(case: Case, folder: str) -> str:
    """Path of the case's input saved as .npy (generated once, shared by A and B)."""
    path = os.path.join(folder, f"{'x'.join(map(str, case.shape))}_{case.dtype}.npy")
    if not os.path.exists(path):
        np.save(path, ct_volume(case.shape, case.dtype))
    return path


# --------------------------------------------------------------------------- the two methods


def ours(arr: np.ndarray, size, interpolation: str = "bspline", antialias: bool = False):
    from napari_resample import resample_array

    return resample_array(arr, size, interpolation=interpolation, antialias=antialias)[0]


def sitk_resampler(image, size, interpolator=None, pixel=None):
    """The specification's resampler: same origin and direction, FOV-keeping spacing."""
    import SimpleITK as sitk

    old_size = image.GetSize()
    spacing = [s * n / m for s, n, m in zip(image.GetSpacing(), old_size, size, strict=True)]
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing(spacing)
    f.SetSize([int(n) for n in size])
    f.SetOutputOrigin(image.GetOrigin())
    f.SetOutputDirection(image.GetDirection())
    f.SetTransform(sitk.Transform())
    f.SetDefaultPixelValue(0)
    f.SetOutputPixelType(image.GetPixelID() if pixel is None else pixel)
    f.SetInterpolator(sitk.sitkBSpline if interpolator is None else interpolator)
    return f


def reference(arr: np.ndarray, size, pixel=None) -> np.ndarray:
    """SimpleITK on the array (NIfTI i,j,k order -> ITK x,y,z), array in, array out."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(arr.transpose(2, 1, 0))
    image.SetSpacing(SPACING)
    out = sitk_resampler(image, size, pixel=pixel).Execute(image)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


#: CPU-seconds (user + system, every thread, ``getrusage``) of each call :func:`timed` made,
#: by the key :func:`interleaved` ran it under.
CPU: dict[str, list[float]] = {}


def cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], object], key: str | None = None) -> float:
    gc.collect()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    if key is not None:
        CPU.setdefault(key, []).append(cpu_seconds() - c0)
    return wall


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each function, run in turn (order alternating each round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeat):
        for k in keys if r % 2 == 0 else keys[::-1]:
            times[k].append(timed(fns[k], k))
    return {k: statistics.median(v) for k, v in times.items()}


#: Each case's median wall times by key, and its Fortran-order CPU-seconds ("cpu_f").
RESULTS: dict[str, dict[str, float]] = {}


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def median_cpu(key: str) -> float:
    """The median CPU-seconds of the calls :func:`interleaved` made under *key*."""
    return statistics.median(CPU[key])


# --------------------------------------------------------------------------- accuracy


def accuracy(arr: np.ndarray, size, got: np.ndarray) -> tuple[float, float]:
    """Relative RMS and max |diff| / input range of *got* against SimpleITK in float64.

    Samples at a continuous index >= N - 1/2 on some axis are left out: the reference writes its
    default 0 there, where we extrapolate. The reference is clamped to the input's range, as the
    contract clamps ours.
    """
    import SimpleITK as sitk

    ref = reference(arr.astype(np.float64), size, pixel=sitk.sitkFloat64)
    # Our contract clamps to the input's range (B-spline overshoot); so is the reference here.
    np.clip(ref, float(arr.min()), float(arr.max()), out=ref)
    keep = [np.arange(m) * (n / m) < n - 0.5 for n, m in zip(arr.shape, size, strict=True)]
    r = ref[np.ix_(*keep)]
    d = got[np.ix_(*keep)].astype(np.float64) - r
    rel_rms = float(np.sqrt(np.mean(d * d) / np.mean(r * r)))
    span = float(arr.max()) - float(arr.min())
    return rel_rms, float(np.abs(d).max() / span)


# --------------------------------------------------------------------------- memory


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def probe(method: str, npy: str, size: list[int]) -> None:
    """Child process: peak resident memory above the loaded input during one call."""
    import SimpleITK  # noqa: F401  (imported before the baseline in both cases)

    import napari_resample  # noqa: F401

    arr = np.load(npy)
    gc.collect()
    base = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        how = "VmHWM"
    except OSError:
        import resource

        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        how = "ru_maxrss"
    out = ours(arr, size) if method == "ours" else reference(arr, size)
    peak = _status("VmHWM")
    print(json.dumps({"extra": peak - base, "how": how, "shape": list(out.shape)}))


def peak_extra(method: str, npy: str, size) -> int:
    cmd = [sys.executable, __file__, "--probe", method, npy, json.dumps(list(size))]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(json.loads(res.stdout.strip().splitlines()[-1])["extra"])


# --------------------------------------------------------------------------- end to end


def end_to_end(npy: str, folder: str, size, repeat: int) -> dict[str, float]:
    import nibabel as nib
    import SimpleITK as sitk

    from napari_resample import resampling

    src = os.path.join(folder, "case_A.nii.gz")
    nib.save(nib.Nifti1Image(np.load(npy), np.diag([*SPACING, 1.0])), src)
    out_ours = os.path.join(folder, "ours")
    out_ref = os.path.join(folder, "ref_resampled.nii.gz")

    def spec_way() -> None:
        image = sitk.ReadImage(src)
        sitk.WriteImage(sitk_resampler(image, size).Execute(image), out_ref)

    return interleaved(
        {"ours": lambda: resampling(src, out_ours, size), "SimpleITK": spec_way}, repeat
    )


# --------------------------------------------------------------------------- report


def cores() -> str:
    """``"2 cores (<CPU model>), Python 3.x.y"``: the start of every benchmark's machine line."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{len(os.sched_getaffinity(0))} cores ({cpu}), Python {platform.python_version()}"


def machine() -> str:
    import scipy
    import SimpleITK as sitk

    return (
        f"{cores()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, "
        f"SimpleITK {sitk.Version_VersionString()} "
        f"({sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads)"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def run_case(case: Case, npy: str, repeat: int, memory: bool) -> tuple[list, list]:
    """Table rows of one case: ours vs the reference, then our other modes."""
    arr = np.load(npy)
    fortran = np.asfortranarray(arr)  # how nibabel loads a file and napari layers arrive
    size = case.size
    ours(arr, size)  # warm-up (imports, caches)
    ours(fortran, size)
    CPU.clear()
    t = interleaved(
        {
            "ours": lambda: ours(arr, size),
            "ref": lambda: reference(arr, size),
            "ours_f": lambda: ours(fortran, size),
        },
        repeat,
    )
    # Accuracy of the float32 computation that integer inputs take, before rounding.
    rel, mx = accuracy(arr, size, ours(arr.astype(np.float32), size))
    mem_o = mem_r = 0
    if memory:
        mem_o, mem_r = peak_extra("ours", npy, size), peak_extra("ref", npy, size)
    RESULTS[case.name] = {**t, "cpu_f": median_cpu("ours_f")}
    label = f"{case.name}: {case.shape} {case.dtype} -> {size}"
    rows = [
        [
            label,
            "SimpleITK",
            f"{t['ref']:.3f} s ({median_cpu('ref'):.2f} CPU-s)",
            "1.0",
            mb(mem_r) if memory else "-",
            "-",
            "-",
        ],
        [
            "",
            "ours, C order",
            f"{t['ours']:.3f} s ({median_cpu('ours'):.2f} CPU-s)",
            f"{t['ref'] / t['ours']:.1f}x faster",
            f"{mb(mem_o)} ({mem_o / mem_r:.2f}x)" if memory else "-",
            f"{rel:.1e}",
            f"{mx:.1e}",
        ],
        [
            "",
            "ours, Fortran order",
            f"{t['ours_f']:.3f} s ({median_cpu('ours_f'):.2f} CPU-s)",
            f"{t['ref'] / t['ours_f']:.1f}x faster",
            "-",
            "-",
            "-",
        ],
    ]
    m = interleaved(
        {
            "bspline": lambda: ours(arr, size),
            "linear": lambda: ours(arr, size, "linear"),
            "nearest": lambda: ours(arr, size, "nearest"),
            "antialias": lambda: ours(arr, size, antialias=True),
        },
        repeat,
    )
    mode_row = [
        case.name,
        f"{m['bspline']:.3f} s",
        *(
            f"{m[k]:.3f} s ({m[k] / m['bspline']:.2f}x)"
            for k in ("linear", "nearest", "antialias")
        ),
    ]
    return rows, mode_row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="timed runs per method (median)")
    p.add_argument("--quick", action="store_true", help="3 runs, skip memory and end-to-end")
    p.add_argument("--cases", default="A,B,C,D", help="comma-separated subset of A,B,C,D")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-e2e", action="store_true")
    p.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        probe(args.probe[0], args.probe[1], json.loads(args.probe[2]))
        return
    repeat = 3 if args.quick else args.repeat
    memory = not (args.quick or args.no_memory)
    e2e = not (args.quick or args.no_e2e)
    started = time.perf_counter()
    print(f"# napari-resample benchmark, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    print(f"Machine: {machine()}; median of {repeat} interleaved runs.\n", flush=True)

    main_rows, mode_rows = [], []
    with tempfile.TemporaryDirectory(prefix="nrbench-") as tmp:
        for name in args.cases.split(","):
            case = CASES[name.strip().upper()]
            rows, mode_row = run_case(case, case_input(case, tmp), repeat, memory)
            main_rows += rows
            mode_rows.append(mode_row)
            print(
                f"[{time.perf_counter() - started:.0f} s] case {case.name} done",
                file=sys.stderr,
                flush=True,
            )

        print("## B-spline, array in, array out (`resample_array` vs SimpleITK)\n")
        print(
            table(
                [
                    "case",
                    "method",
                    "median time",
                    "speed-up",
                    "peak extra memory",
                    "rel. RMS",
                    "max abs diff / range",
                ],
                main_rows,
            )
        )
        if "A" in RESULTS:
            t = RESULTS["A"]
            f_cpu, f_x, c_x = t["cpu_f"], t["ref"] / t["ours_f"], t["ref"] / t["ours"]
            print("\n## Targets (issue 19), case A in memory\n")
            print(
                table(
                    ["target", "measured", "met"],
                    [
                        [
                            "Fortran order <= 0.30 CPU-s",
                            f"{f_cpu:.2f} CPU-s",
                            "yes" if f_cpu <= 0.30 else "**no**",
                        ],
                        ["Fortran order >= 25x SimpleITK", f"{f_x:.1f}x", _yes(f_x >= 25)],
                        ["C order >= 30x SimpleITK", f"{c_x:.1f}x", _yes(c_x >= 30)],
                    ],
                )
            )
        print("\n## Other modes (ours; ratio to our B-spline)\n")
        print(table(["case", "bspline", "linear", "nearest", "bspline + antialias"], mode_rows))

        if e2e and "A" in args.cases.upper():
            case = CASES["A"]
            t = end_to_end(case_input(case, tmp), tmp, case.size, repeat)
            print("\n## End to end on case A stored as .nii.gz (read, resample, write)\n")
            print(
                table(
                    ["method", "median time", "speed-up"],
                    [
                        [
                            "SimpleITK ReadImage + ResampleImageFilter + WriteImage",
                            f"{t['SimpleITK']:.2f} s",
                            "1.0",
                        ],
                        [
                            "`napari_resample.resampling()`",
                            f"{t['ours']:.2f} s",
                            f"{t['SimpleITK'] / t['ours']:.1f}x faster",
                        ],
                    ],
                )
            )
    print(
        "\nAccuracy: our float32 computation (the path integer inputs take, before rounding) "
        "against SimpleITK in float64, excluding samples at continuous index >= N - 1/2 (where "
        "SimpleITK writes 0), both clamped to the input's range as the contract requires. "
        "Peak extra memory: VmHWM minus VmRSS after loading the input, one call in a fresh "
        "process, output included."
    )
    print(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
