"""Fuzz NIfTI-1 headers through ``resampling()`` and count what happens.

Usage::

    python benchmarks/fuzz.py                 # 2000 cases
    python benchmarks/fuzz.py --cases 20000 --seed 1 --jobs 2

Every case is a small valid file (6 x 5 x 4 int16, ``.nii`` or ``.nii.gz``) with some header
fields overwritten (the mutation code is ``tests/_fuzz.py``, shared with ``tests/test_fuzz.py``),
resampled to 3 x 3 x 3 in a forked child process limited to ``--memory`` of address space and
``--timeout`` seconds. Printed: valid outputs, each documented exception (``FileNotFoundError``,
``ValueError``, ``MemoryError`` with a message), undocumented exceptions with examples, hangs
and memory blow-ups (a child that grew by more than ``--blowup`` MB, or died). Exit code 1 if
there is any undocumented exception, hang or blow-up.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import _fuzz  # noqa: E402

DOCUMENTED = ("FileNotFoundError", "ValueError", "MemoryError")


def _child(path: str, out_dir: str, wfd: int, memory: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # nibabel's and numpy's warnings about the broken headers
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        outcome = {"kind": _fuzz.run_case(path, out_dir)}
    except BaseException as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        outcome = {
            "kind": "undocumented",
            "type": type(exc).__name__,
            "message": str(exc)[:200],
            "where": f"{os.path.basename(tb.filename)}:{tb.lineno}",
        }
    os.write(wfd, json.dumps(outcome).encode())
    os._exit(0)


def _start(case: int, suffix: str, mutations, work: str, memory: int):
    folder = os.path.join(work, f"w{case}")
    os.makedirs(folder, exist_ok=True)
    path = _fuzz.write_case(folder, suffix, SOURCES[suffix], mutations)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(path, os.path.join(folder, "out"), wfd, memory)
    os.close(wfd)
    return pid, rfd, time.monotonic(), folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--memory", type=int, default=2048, help="MB of address space per case")
    parser.add_argument("--blowup", type=int, default=256, help="MB of growth counted a blow-up")
    args = parser.parse_args(argv)

    import logging
    import shutil

    logging.getLogger("nibabel").setLevel(logging.ERROR)  # its header-fix messages
    os.environ["NAPARI_RESAMPLE_THREADS"] = "1"  # no engine thread pool to lose in a fork
    global SOURCES
    work = _fuzz.scratch()
    SOURCES = _fuzz.source_files(work)
    for suffix in SOURCES:  # imports everything once, before forking
        _fuzz.run_case(_fuzz.write_case(work, suffix, SOURCES[suffix], []), work + "/out")
    rng = random.Random(args.seed)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    running: dict[int, tuple] = {}
    started = time.monotonic()
    case = 0

    def record(kind: str, detail: str) -> None:
        counts[kind] += 1
        if len(examples[kind]) < 3:
            examples[kind].append(detail)

    try:
        while case < args.cases or running:
            while case < args.cases and len(running) < args.jobs:
                suffix = rng.choice((".nii", ".nii.gz"))
                mutations = _fuzz.random_mutations(rng)
                pid, rfd, t0, folder = _start(case, suffix, mutations, work, args.memory << 20)
                running[pid] = (rfd, t0, folder, f"{suffix} {mutations!r}")
                case += 1
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for p, (rfd, t0, folder, desc) in list(running.items()):
                    if now - t0 > args.timeout:
                        os.kill(p, signal.SIGKILL)
                        os.waitpid(p, 0)
                        os.close(rfd)
                        shutil.rmtree(folder, ignore_errors=True)
                        del running[p]
                        record("hang", desc)
                time.sleep(0.002)
                continue
            rfd, t0, folder, desc = running.pop(pid)
            with os.fdopen(rfd, "rb") as fh:
                raw = fh.read()
            shutil.rmtree(folder, ignore_errors=True)
            grown_mb = (usage.ru_maxrss - base_kb) / 1024
            if not raw:
                record("blowup", f"child died (status {status}): {desc}")
                continue
            outcome = json.loads(raw)
            if grown_mb > args.blowup:
                record("blowup", f"grew {grown_mb:.0f} MB ({outcome['kind']}): {desc}")
            kind = outcome["kind"]
            if kind == "undocumented":
                kind = f"undocumented {outcome['type']}"
                desc = f"{outcome['message']!r} at {outcome['where']}: {desc}"
            record(kind, desc)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.monotonic() - started
    print(f"{args.cases} cases in {elapsed:.0f} s (seed {args.seed})")
    print(f"  valid outputs: {counts['valid']}")
    for name in DOCUMENTED:
        print(f"  {name}: {counts[name]}")
    bad = {k: v for k, v in counts.items() if k.startswith("undocumented")}
    bad.update({k: counts[k] for k in ("hang", "blowup")})
    print(f"  undocumented exceptions: {sum(v for k, v in bad.items() if k.startswith('undoc'))}")
    print(f"  hangs: {counts['hang']}")
    print(f"  memory blow-ups: {counts['blowup']}")
    for kind in sorted(k for k, v in bad.items() if v):
        print(f"\n{kind}: {counts[kind]}, e.g.")
        for example in examples[kind]:
            print(f"    {example}")
    return 1 if any(bad.values()) else 0


SOURCES: dict[str, bytes] = {}

if __name__ == "__main__":
    sys.exit(main())
