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

import reprlib

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


#: Share of the memory available now that a resampling may use by default.
DEFAULT_SHARE = 0.5
#: The budget where the available memory is unknown (not Linux).
FALLBACK_BUDGET = 4 << 30
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_budget() -> int:
    """The default ``max_memory``: :data:`DEFAULT_SHARE` of the memory available now (4 GiB
    where that is unknown)."""
    available = available_memory()
    return FALLBACK_BUDGET if available is None else int(available * DEFAULT_SHARE)


def parse_bytes(value: object, name: str = "max_memory") -> int:
    """A memory size: a positive int (bytes) or a string like ``"1.5G"``, ``"800M"``,
    ``"2GiB"``, ``"512k"`` (binary units), as bytes, at most :data:`MAX_BYTES`.

    Raises
    ------
    ValueError
        For anything else (a bool, zero, a negative, NaN, an unknown unit, a number too large
        to be a size: ``10**400``), naming *name* and the value.

    Examples
    --------
    >>> parse_bytes("1.5G"), parse_bytes("800M"), parse_bytes(4096), parse_bytes("2GiB")
    (1610612736, 838860800, 4096, 2147483648)
    >>> parse_bytes("lots")
    Traceback (most recent call last):
    ...
    ValueError: max_memory must be a positive size like 2G, 800M or a number of bytes, got 'lots'
    """
    shown = reprlib.repr(value)  # a 400-digit int is cut short in the message
    rule = f"{name} must be a positive size like 2G, 800M or a number of bytes, got {shown}"
    if isinstance(value, bool):
        raise ValueError(rule)
    if isinstance(value, int):
        if not 1 <= value <= MAX_BYTES:  # compared as ints: float(10**400) overflows
            raise ValueError(rule + ("" if value < 1 else f" (at most {MAX_BYTES} bytes)"))
        return int(value)
    if not isinstance(value, str):
        raise ValueError(rule)
    text = value.strip().upper().replace("IB", "").rstrip("B") if value.strip() else ""
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        number = float(text[: len(text) - len(unit)]) * _UNITS[unit]
    except (ValueError, OverflowError) as exc:
        raise ValueError(rule) from exc
    if not number >= 1 or number != number or number == float("inf"):
        raise ValueError(rule)
    if number > MAX_BYTES:
        raise ValueError(f"{rule} (at most {MAX_BYTES} bytes)")
    return int(number)


#: The largest size :func:`parse_bytes` accepts (8 EiB - 1, the largest signed 64-bit number:
#: sizes are compared with numpy's int64 byte counts).
MAX_BYTES = 2**63 - 1
