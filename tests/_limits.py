"""Run code in a child Python whose address space is capped, so that a memory regression fails
a test (MemoryError in the child) instead of taking the machine down."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

#: The cap used by the memory-bomb tests: far above what the work needs, far below the claims.
LIMIT = 1536 * 2**20


def run_limited(code: str, limit_bytes: int = LIMIT, timeout: float = 60.0) -> str:
    """Run *code* under ``RLIMIT_AS = limit_bytes``; return what it printed.

    The child's exception, if any, is printed as its last line, ``ERROR <type>: <message>``,
    and its exit status is then 1. A child that runs longer than *timeout* seconds fails the
    calling test (``subprocess.TimeoutExpired``).
    """
    prelude = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
        "try:\n"
    )
    epilogue = (
        "except BaseException as exc:\n"
        "    print(f'ERROR {type(exc).__name__}: {exc}', flush=True)\n"
        "    sys.exit(1)\n"
    )
    script = prelude + textwrap.indent(textwrap.dedent(code), "    ") + "\n" + epilogue
    # One thread per pool: thread stacks and allocator arenas count against RLIMIT_AS too.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env
    )
    return result.stdout + result.stderr
