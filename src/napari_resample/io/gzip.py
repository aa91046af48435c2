"""gzip read to the end of its stream and checked, and written fast when isal is installed.

gzip dominates the file-level job once resampling is fast. When python-isal is installed, its
igzip (same format, 2-5x faster than zlib) compresses the output (written by nibabel
uncompressed) at nibabel's level 1, in blocks on several threads (:class:`GzipWriter`), and
its inflater decompresses voxel data straight into the array (zlib's does without it). Reading
goes to the end of the gzip stream and checks it, where nibabel stops once it has the voxel
bytes and never sees a damaged trailer.

Examples
--------
>>> import io
>>> packed = io.BytesIO()
>>> with GzipWriter(packed) as stream:
...     _ = stream.write(b"voxels")
>>> chunks = []
>>> gunzip(io.BytesIO(packed.getvalue()), fastest_inflater(), chunks.append)
>>> b"".join(chunks)
b'voxels'
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import struct
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _igzip() -> Any:
    """isal's igzip module, or None when python-isal is not installed."""
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


#: Most bytes one byte of deflate data can decompress to (a 258-byte match in under 2 bits:
#: 1032:1 is the format's limit, whatever the compressor).
DEFLATE_MAX_RATIO = 1032


#: Bytes per gzip block: a ``.nii.gz`` is compressed in blocks of this size, each deflated with
#: the previous 32 KiB as its dictionary and ended on a byte boundary (pigz's scheme, isal's
#: ``igzip_threaded``), so that blocks compress on several threads and the bytes written depend
#: neither on the thread count nor on how the data arrives. Small enough that the last blocks of
#: a volume keep both cores busy, large enough that the file is as small as one stream's
#: (0.05 % larger on a CT at level 1).
GZIP_BLOCK = 1 << 18


class GzipWriter(io.IOBase):
    """A write-only gzip stream into the open binary file *raw*, at nibabel's level 1, with
    mtime 0 and no file name in the header (the same volume always gives the same bytes).

    With python-isal installed, the data is cut into :data:`GZIP_BLOCK` pieces compressed by
    *threads* threads (a volume's last blocks no longer wait for one core); without it,
    Python's gzip, on the calling thread. *raw* is left open by :meth:`close`. nibabel writes
    into it directly: :meth:`tell`, and :meth:`seek` to the current position, are what it asks.

    Examples
    --------
    >>> import io
    >>> one, two = io.BytesIO(), io.BytesIO()
    >>> with GzipWriter(one, threads=1) as stream:
    ...     _ = stream.write(bytes(300_000))
    >>> with GzipWriter(two, threads=2) as stream:
    ...     _ = stream.write(bytes(100_000)), stream.write(bytes(200_000))
    >>> one.getvalue() == two.getvalue()
    True
    """

    def __init__(self, raw: Any, threads: int = 1) -> None:
        igzip = _igzip()
        if igzip is None:
            # No file name (it would be the temporary one), mtime 0.
            self._stream: Any = gzip.GzipFile("", "wb", compresslevel=1, fileobj=raw, mtime=0)
        else:
            from isal import igzip_threaded

            self._stream = igzip_threaded.open(
                raw, "wb", compresslevel=1, threads=max(1, int(threads)), block_size=GZIP_BLOCK
            )
        self._pending = bytearray()
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Compress *data* (any bytes-like object); return its length in bytes."""
        view = memoryview(data).cast("B")
        n, size = len(view), GZIP_BLOCK
        self._pos += n
        if self._pending:
            take = min(size - len(self._pending), n)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < size:
                return n
            self._stream.write(self._pending)
            self._pending = bytearray()
        whole = len(view) - len(view) % size
        for start in range(0, whole, size):
            self._stream.write(view[start : start + size])
        self._pending += view[whole:]
        return n

    def tell(self) -> int:
        """Bytes written so far (uncompressed)."""
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Stay where the stream is (nibabel seeks to where it already is); OSError otherwise."""
        if whence != 0 or offset != self._pos:
            raise OSError(f"a gzip stream being written cannot seek (at {self._pos}, to {offset})")
        return self._pos

    def flush(self) -> None:
        """Nothing: blocks are compressed whole, the last one at :meth:`close`."""

    def discard(self) -> None:
        """Stop compressing, the stream left unfinished (its file is being removed): the
        compressing threads end; nothing is raised."""
        self._pending = bytearray()
        with contextlib.suppress(Exception):
            self._stream.close()
        super().close()

    def close(self) -> None:
        """Compress what is left and write the gzip trailer (*raw* stays open)."""
        if self.closed:
            return
        try:
            if self._pending:
                self._stream.write(self._pending)
                self._pending = bytearray()
        finally:
            try:
                self._stream.close()
            finally:
                super().close()


def fastest_inflater() -> Any:
    """The zlib-compatible module that inflates fastest: ``isal.isal_zlib`` if installed."""
    if _igzip() is None:
        return zlib
    from isal import isal_zlib

    return isal_zlib


def read_gz_fast(path: str, proxy: Any, inflater: Any = None) -> NDArray:
    """The voxels of a ``.nii.gz``, decompressed chunk by chunk straight into the array (no
    full-size intermediate) to the end of the gzip stream (:func:`gunzip` checks it).

    *proxy* gives the ``shape``, ``dtype`` and ``offset`` of the voxel data (a nibabel
    ``ArrayProxy`` in Fortran order); *inflater* defaults to :func:`fastest_inflater`.
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
        gunzip(fh, inflater or fastest_inflater(), sink)
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
