"""Fuzzed NIfTI headers: only documented exceptions, no hang, bounded memory.

The fuzzer (``tests/_fuzz.py``, also run at scale by ``benchmarks/fuzz.py``) overwrites header
fields of a small valid file with edge values and random bytes; every case must either raise
``FileNotFoundError`` / ``ValueError`` / ``MemoryError`` (with a message) or write a valid
3 x 3 x 3 output. The session runs in a subprocess limited to 2 GB of address space, so a
memory-bomb regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
#: Address space of the fuzz session: a few hundred MB of imports, the rest for the cases.
MEMORY = 2 << 30
CASES = 300


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_fuzzed_headers_raise_only_documented_exceptions_or_resample():
    pytest.importorskip("hypothesis")
    src = os.path.join(os.path.dirname(HERE), "src")
    env = dict(os.environ, NAPARI_RESAMPLE_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([HERE, src, env.get("PYTHONPATH", "")])
    # The limit is set by the child itself: preexec_fn is unsafe in a process with threads.
    code = (
        f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY}, {MEMORY})); "
        f"import _fuzz; _fuzz.hypothesis_session({CASES})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
