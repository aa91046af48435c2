"""How much memory is available now, so that work which cannot fit is refused before it starts.

A request that cannot fit (a header claiming 40 GB, an output of 32766^3 voxels) would otherwise
allocate and fill memory until the system kills the process or swaps. Only Linux says cheaply
how much memory a process may still take (``MemAvailable`` in ``/proc/meminfo``); elsewhere
nothing is checked.

Examples
--------
>>> format_bytes(1536), format_bytes(3 * 2**30)
('1.5 KiB', '3.0 GiB')
"""

from __future__ import annotations

#: Where Linux reports the memory available to new allocations without swapping.
_MEMINFO = "/proc/meminfo"


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where it is unknown."""
    try:
        with open(_MEMINFO, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    return int(value) * (1024 if unit == "kB" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def format_bytes(n: float) -> str:
    """*n* bytes in a readable unit (binary prefixes)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(needed: int, what: str) -> None:
    """Refuse work that needs more memory than is available now.

    Parameters
    ----------
    needed : int
        Bytes the work will allocate.
    what : str
        The work, for the message (``"reading 'a.nii.gz'"``).

    Raises
    ------
    MemoryError
        Naming *what*, the bytes needed and the bytes available, when *needed* is more than
        :func:`available_memory` (never where that is unknown).
    """
    available = available_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"{what} needs {format_bytes(needed)} ({needed} bytes) of memory, but only "
            f"{format_bytes(available)} is available"
        )
