"""gzip read to the end of its stream and checked, fast when isal is installed.

gzip dominates the file-level job once resampling is fast. When python-isal is installed, its
zlib (same format, 2-5x faster than zlib) decompresses voxel data straight into the array, and
compresses the output (:class:`napari_resample.io.gzip_write.GzipWriter`). Reading goes to the
end of the gzip stream and checks it, where nibabel stops once it has the voxel bytes and never
sees a damaged trailer.

Examples
--------
>>> import gzip, io
>>> chunks = []
>>> gunzip(io.BytesIO(gzip.compress(b"voxels")), fastest_zlib(), chunks.append)
>>> b"".join(chunks)
b'voxels'
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _isal() -> Any:
    """isal's zlib module, or None when python-isal is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


#: Most bytes one byte of deflate data can decompress to (a 258-byte match in under 2 bits:
#: 1032:1 is the format's limit, whatever the compressor).
DEFLATE_MAX_RATIO = 1032


def fastest_zlib() -> Any:
    """The zlib-compatible module that deflates and inflates fastest: ``isal.isal_zlib`` if
    installed, else ``zlib``."""
    isal_zlib = _isal()
    return zlib if isal_zlib is None else isal_zlib


def read_gz_fast(path: str, proxy: Any, inflater: Any = None) -> NDArray:
    """The voxels of a ``.nii.gz``, decompressed chunk by chunk straight into the array (no
    full-size intermediate) to the end of the gzip stream (:func:`gunzip` checks it).

    *proxy* gives the ``shape``, ``dtype`` and ``offset`` of the voxel data (a nibabel
    ``ArrayProxy`` in Fortran order); *inflater* defaults to :func:`fastest_zlib`.
    """
    shape, dtype = tuple(proxy.shape), np.dtype(proxy.dtype)
    flat = np.empty(math.prod(shape), dtype=dtype)
    dest = flat.view(np.uint8)
    skip, done = int(proxy.offset), 0

    def sink(data: bytes) -> None:
        nonlocal skip, done
        view = memoryview(data)
        if skip:
            cut = min(skip, len(view))
            view, skip = view[cut:], skip - cut
        n = min(len(view), dest.size - done)
        if n:
            dest[done : done + n] = np.frombuffer(view, dtype=np.uint8, count=n)
            done += n

    with open(path, "rb") as fh:
        gunzip(fh, inflater or fastest_zlib(), sink)
    if done < dest.size:
        raise ValueError(short_gzip_message(done, dest.size))
    return flat.reshape(shape, order="F")


def short_gzip_message(done: int, total: int) -> str:
    """What a gzip stream that ends after *done* of the *total* voxel bytes is told."""
    return (
        f"the gzip data ends after {done} of the {total} bytes of voxel data the header "
        "claims: truncated file?"
    )


_GZIP_MAGIC = b"\x1f\x8b"
#: Most decompressed bytes produced per step (a bomb's chunk is not inflated all at once).
_GZ_OUT = 1 << 22
#: Compressed bytes read per step.
_GZ_CHUNK = 1 << 18


class _Input:
    """Bytes of an open file, read in chunks, with what was read but not used yet."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.buf = b""
        self.pos = 0  # file offset of buf[0]

    def fill(self, n: int) -> bool:
        """Have at least *n* bytes in :attr:`buf` if the file holds them; whether it does."""
        while len(self.buf) < n:
            chunk = self.fh.read(max(_GZ_CHUNK, n - len(self.buf)))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def take(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        self.pos += len(out)
        return out


def gunzip(fh: Any, inflater: Any, sink: Any) -> None:
    """Decompress the whole gzip stream of *fh*, passing the data to *sink* in order.

    Every member's CRC-32 and length (ISIZE) are checked; several members follow one another
    (multi-member and bgzip files are gzip); zero padding after the last member is ignored, as
    gzip does; anything else after it is refused.

    Raises
    ------
    ValueError
        Naming what is wrong: not gzip data, a CRC or length that does not match, a stream that
        ends early or before its trailer, trailing data after the stream, corrupt deflate data.
    """
    src = _Input(fh)
    member = 0
    while True:
        _skip_gzip_header(src, member)
        inflate = inflater.decompressobj(-inflater.MAX_WBITS)
        crc = size = 0
        while not inflate.eof:
            if not src.buf and not src.fill(1):
                raise ValueError(
                    f"the gzip data ends in the middle of member {member + 1} "
                    f"(at byte {src.pos}): truncated file?"
                )
            data = src.buf
            try:
                out = inflate.decompress(data, _GZ_OUT)
            except Exception as exc:  # zlib.error, isal's IsalError
                raise ValueError(
                    f"corrupt deflate data in gzip member {member + 1}: {exc}"
                ) from exc
            left = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            src.pos += len(data) - len(left)
            src.buf = left
            if out:
                crc = inflater.crc32(out, crc)
                size += len(out)
                sink(out)
        if not src.fill(8):
            raise ValueError(
                f"the file ends before its gzip trailer (member {member + 1}: CRC-32 and "
                f"length missing, {len(src.buf)} of 8 bytes): truncated file?"
            )
        stored_crc, stored_size = struct.unpack("<II", src.take(8))
        if stored_crc != crc:
            raise ValueError(
                f"gzip CRC check failed (member {member + 1}: stored 0x{stored_crc:08x}, "
                f"data 0x{crc:08x}): the file is damaged"
            )
        if stored_size != size & 0xFFFFFFFF:
            raise ValueError(
                f"gzip length check failed (member {member + 1}: the trailer says "
                f"{stored_size} bytes mod 2^32, the data is {size}): the file is damaged"
            )
        while src.fill(1) and not src.buf.lstrip(b"\x00"):
            src.take(len(src.buf))  # zero padding, as gzip allows
        if not src.fill(1):
            return
        src.take(len(src.buf) - len(src.buf.lstrip(b"\x00")))
        member += 1


def _skip_gzip_header(src: _Input, member: int) -> None:
    """Read past the gzip member header at the start of *src* (RFC 1952, 2.3)."""
    start = src.pos
    if not src.fill(10) or src.buf[:2] != _GZIP_MAGIC:
        if member == 0:
            raise ValueError("not gzip data (no gzip magic bytes at the start)")
        raise ValueError(
            f"trailing data after the gzip stream (at byte {start}, not a gzip member)"
        )
    header = src.take(10)
    method, flags = header[2], header[3]
    if method != 8:
        raise ValueError(f"unknown gzip compression method {method} (member {member + 1})")
    truncated = ValueError(f"the file ends inside gzip header {member + 1}: truncated file?")
    if flags & 4:  # FEXTRA
        if not src.fill(2):
            raise truncated
        (extra,) = struct.unpack("<H", src.take(2))
        if not src.fill(extra):
            raise truncated
        src.take(extra)
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            while (end := src.buf.find(b"\x00")) < 0:
                src.take(len(src.buf))
                if not src.fill(1):
                    raise truncated
            src.take(end + 1)
    if flags & 2:  # FHCRC
        if not src.fill(2):
            raise truncated
        src.take(2)
