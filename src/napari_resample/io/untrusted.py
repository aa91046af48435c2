"""What a file named by an untrusted header must be, and how many bytes its data really holds.

A NRRD or MetaImage header names its voxel data: after the header in the same file, or in
detached data files. SimpleITK's readers open whatever such a name says and read as much as
the header claims. The rule applied here, before SimpleITK sees the header:

**A data file lies in the header's own folder or below it, and is a regular file.** Its name
is taken relative to the header's folder (an absolute name must also resolve there); after
resolving ``..`` and every symbolic link (:func:`os.path.realpath`), the path must still lie
inside the header's folder, resolved the same way. A symbolic link inside the folder pointing
out of it, ``/etc/passwd``, ``/proc/self/environ``, ``/dev/stdin`` or ``../../private/x`` are
refused; so are devices, FIFOs and sockets even inside the folder, and any name holding ``%``
(the printf-style patterns of NRRD's and MetaImage's multi-file forms reach C formatting code;
their ``LIST`` forms name each file instead). The header file itself must be a regular file.

Compressed data is inflated once here, in bounded chunks and discarding the output, up to the
bytes the header claims, so that data which does not inflate that far is refused instead of
being read as uninitialised memory.
"""

from __future__ import annotations

import bz2
import os
import stat
import zlib
from typing import Any

from napari_resample.io.gzip import DEFLATE_MAX_RATIO

#: Most decompressed bytes produced per step while counting (a bomb is never inflated whole).
_INFLATE_OUT = 1 << 22
#: Compressed bytes read per step.
_INFLATE_IN = 1 << 18


def check_regular_file(path: str, what: str) -> int:
    """The size of *path*, refused unless it is a regular file (after symbolic links).

    Parameters
    ----------
    path : str
    what : str
        What the file is, for the message (``"the NRRD header"``).

    Raises
    ------
    FileNotFoundError
        If *path* does not exist (or is a dangling link).
    ValueError
        Naming *path* and what it is instead: a folder, a FIFO, a device, a socket.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what} {path!r} does not exist") from exc
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"{what} {path!r} is {_kind_of(info.st_mode)}, not a regular file; refused"
        )
    return int(info.st_size)


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def data_file_inside(header: str, name: str, field: str) -> str:
    """The path of the data file *name* that *header*'s *field* names, checked by the rule of
    this module (inside the header's folder, a regular file, no ``%``).

    Parameters
    ----------
    header : str
        The header file.
    name : str
        The name as written in the header (relative to the header's folder, or absolute).
    field : str
        The header field, for the message (``"data file"``, ``"ElementDataFile"``).

    Returns
    -------
    str
        The resolved path of the data file.

    Raises
    ------
    ValueError
        Naming the header, the field and the value: ``%`` in the name, a path that leaves the
        header's folder, a data file that is missing or not a regular file.

    Examples
    --------
    >>> data_file_inside("/d/a.nhdr", "../x", "data file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'data file' in '/d/a.nhdr' names '../x', outside the header's folder: ...
    """
    where = f"{field!r} in {header!r} names {name!r}"
    if "%" in name:
        raise ValueError(
            f"{where}: '%' is refused in data file names (printf-style file patterns are "
            "not read; name each file with the LIST form)"
        )
    if not name or "\x00" in name:
        raise ValueError(f"{where}: not a file name")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(header)))
    target = os.path.realpath(os.path.join(folder, name))
    if os.path.commonpath([folder, target]) != folder or target == folder:
        raise ValueError(
            f"{where}, outside the header's folder: data files must lie in the folder of "
            "their header or below it"
        )
    try:
        check_regular_file(target, "its data file")
    except FileNotFoundError as exc:
        raise ValueError(f"{where}, which does not exist") from exc
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return target


def check_raw_bytes(header: str, what: str, needed: int, available: int) -> None:
    """Refuse uncompressed voxel data when the files hold fewer bytes than the header claims."""
    if available < needed:
        raise ValueError(
            f"{header!r}: {what} claims {needed} bytes of voxel data, but its data holds only "
            f"{max(available, 0)} bytes: truncated file or wrong header?"
        )


def check_inflated_bytes(
    header: str,
    what: str,
    needed: int,
    parts: list[tuple[str, int]],
    codec: str,
    limit: int | None = None,
) -> None:
    """Refuse compressed voxel data that cannot or does not inflate to the *needed* bytes.

    Parameters
    ----------
    header : str
        The header file, named in the messages.
    what : str
        What the header claims, for the messages (``"sizes (64, 64, 40) of short"``).
    needed : int
        Bytes the data must inflate to (voxel bytes plus any skip after decompression).
    parts : list of (path, offset)
        Where the compressed data lies: each file from its offset to its end, in order.
    codec : {"zlib", "bzip2"}
        ``"zlib"`` reads gzip and zlib streams (one after the other, as readers allow).
    limit : int, optional
        Most compressed bytes the reader takes (MetaImage's ``CompressedDataSize``).

    Raises
    ------
    ValueError
        Deflate data smaller than ``needed / DEFLATE_MAX_RATIO`` (it cannot inflate that far),
        corrupt data, or data that ends before *needed* bytes.
    """
    stored = sum(max(os.path.getsize(path) - offset, 0) for path, offset in parts)
    if limit is not None:
        stored = min(stored, limit)
    if codec == "zlib" and stored * DEFLATE_MAX_RATIO < needed:
        raise ValueError(
            f"{header!r}: {what} claims {needed} bytes of voxel data, but {stored} bytes of "
            f"deflate data inflate to at most {stored * DEFLATE_MAX_RATIO} "
            f"({DEFLATE_MAX_RATIO}:1): the header is wrong or the data truncated"
        )
    inflated = 0
    try:
        inflated = _count_inflated(parts, codec, needed, stored)
    except (zlib.error, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{header!r}: the compressed voxel data is damaged: {exc}") from exc
    if inflated < needed:
        raise ValueError(
            f"{header!r}: {what} claims {needed} bytes of voxel data, but its compressed data "
            f"inflates to only {inflated} bytes: truncated file or wrong header?"
        )


def _count_inflated(parts: list[tuple[str, int]], codec: str, needed: int, stored: int) -> int:
    """Bytes the first *stored* bytes of the compressed *parts* inflate to, counted up to
    *needed* (output discarded)."""
    inflated = 0
    engine: Any = None
    for path, offset in parts:
        with open(path, "rb") as fh:
            fh.seek(max(offset, 0))
            while inflated < needed:
                chunk = fh.read(min(_INFLATE_IN, stored))
                stored -= len(chunk)
                if not chunk:
                    break
                while chunk and inflated < needed:
                    if engine is None or engine.eof:
                        if engine is not None and not chunk.strip(b"\x00"):
                            break  # zero padding after a finished stream
                        engine = _decompressor(codec)
                    inflated += len(engine.decompress(chunk, _INFLATE_OUT))
                    chunk = engine.unused_data if engine.eof else _tail(engine)
                    while not engine.eof and inflated < needed and _more(engine):
                        inflated += len(engine.decompress(b"", _INFLATE_OUT))
    return inflated


def _decompressor(codec: str) -> Any:
    if codec == "bzip2":
        return bz2.BZ2Decompressor()
    return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected


def _tail(engine: Any) -> bytes:
    """Input the decompressor kept back (zlib's unconsumed tail; bz2 keeps its own)."""
    return getattr(engine, "unconsumed_tail", b"")


def _more(engine: Any) -> bool:
    """Whether the decompressor holds output it has not given yet (bz2's needs_input False)."""
    return getattr(engine, "needs_input", True) is False
