"""A gzip stream written in fixed blocks on several threads, some of them ahead of time:
:class:`GzipWriter`.

Every ``.nii.gz`` we write goes through it (``save_nifti`` and the plane-by-plane writer), so
one volume gives one file whatever wrote it. The data is cut into :data:`GZIP_BLOCK` pieces of
the stream; each is deflated with the 32 KiB before it as its dictionary and ended on a byte
boundary (pigz's scheme), so the pieces compress independently, in any order, on any number of
threads, and the bytes depend only on the data. That independence is also what lets a caller
hand over data it *expects* to write later (:meth:`GzipWriter.foresee`): the blocks it covers
are compressed while the caller still waits for something else, on a thread of the lowest
priority (it takes only CPU nothing else wants, and is never waited for), and used only if
done in time and the data finally written is the same, byte for byte.

The deflater is python-isal's (2-5x faster than zlib) when installed, else zlib's, at level 1
(nibabel's). Both release the GIL while they deflate.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from napari_resample.io.gzip import fastest_zlib

#: Bytes per gzip block: small enough that a volume's last blocks keep every thread busy,
#: large enough that the file is as small as one stream's (0.05 % larger on a CT at level 1).
GZIP_BLOCK = 1 << 18

#: Deflate's window: a block's dictionary is the stream's 32 KiB before it.
WINDOW = 1 << 15

#: The gzip member header: deflate, no file name (it would be the temporary one), mtime 0,
#: XFL 4 (the fastest level), OS unknown.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"

#: Compression level: nibabel's.
LEVEL = 1


def deflate_block(z: Any, data: Any, window: Any) -> tuple[bytes, int]:
    """*data* deflated with *window* as its dictionary and ended on a byte boundary (not the
    last block of the stream), and its CRC-32."""
    if len(window):
        packer = z.compressobj(LEVEL, z.DEFLATED, -z.MAX_WBITS, zdict=window)
    else:
        packer = z.compressobj(LEVEL, z.DEFLATED, -z.MAX_WBITS)
    return packer.compress(data) + packer.flush(z.Z_SYNC_FLUSH), z.crc32(data)


def _unchanging(data: Any) -> bool:
    """Whether *data* is taken to stay as it is, and is kept without a copy: ``bytes``, or a
    read-only memoryview (whoever makes one for us promises its data will not change)."""
    return isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly)


def _kept(data: Any) -> memoryview:
    """*data* as bytes that stay as they are: itself if :func:`_unchanging`, else a copy."""
    return memoryview(data if _unchanging(data) else bytes(data)).cast("B")


def _idle_priority() -> None:
    """Lower the calling thread's priority to the least (Linux: a thread's own nice value), so
    that work done ahead of time takes only CPU nothing else wants."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _same(a: Any, b: Any) -> bool:
    """Whether two bytes-like objects hold the same bytes (compared as 8-byte words when they
    can be: memcmp speed, not memoryview's element by element)."""
    if len(a) != len(b):
        return False
    word = np.uint64 if len(a) % 8 == 0 else np.uint8
    return bool(np.array_equal(np.frombuffer(a, dtype=word), np.frombuffer(b, dtype=word)))


class _Foreseen:
    """A block compressed ahead of time: the data and dictionary it was compressed from, and
    the compression's future."""

    __slots__ = ("data", "done", "window")

    def __init__(self, data: Any, window: Any, done: Future[tuple[bytes, int]]) -> None:
        self.data, self.window, self.done = data, window, done


class GzipWriter(io.IOBase):
    """A write-only gzip stream into the open binary file *raw*, at level 1, mtime 0 and no
    file name in its header: the same data always gives the same bytes.

    The data is cut into :data:`GZIP_BLOCK` blocks of the stream, compressed by *threads*
    threads (on the calling thread when 1) and written to *raw* in order as they are done.
    *raw* is left open by :meth:`close`. nibabel writes into it directly: :meth:`tell`, and
    :meth:`seek` to the current position, are what it asks.

    ``bytes`` given to :meth:`write` or :meth:`foresee`, and read-only memoryviews (their
    maker's promise that the data will not change), are used without a copy; other buffers
    are copied.

    Examples
    --------
    >>> import gzip, io
    >>> one, two = io.BytesIO(), io.BytesIO()
    >>> with GzipWriter(one, threads=1) as stream:
    ...     _ = stream.write(bytes(300_000))
    >>> with GzipWriter(two, threads=2) as stream:
    ...     stream.foresee(100_000, bytes(200_000))  # compressed ahead, if time allows
    ...     _ = stream.write(bytes(100_000)), stream.write(bytes(200_000))
    >>> one.getvalue() == two.getvalue(), gzip.decompress(one.getvalue()) == bytes(300_000)
    (True, True)
    """

    def __init__(self, raw: Any, threads: int = 1) -> None:
        self._raw = raw
        self._z = fastest_zlib()
        self._combine = getattr(self._z, "crc32_combine", None)  # zlib's module has none
        threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(threads, "gzip") if threads > 1 else None
        self._spare: ThreadPoolExecutor | None = None  # the blocks foreseen: idle CPU only
        self._limit = 2 * threads  # blocks compressing or waiting to be written, at most
        self._pending = bytearray()  # the block being filled
        self._window: Any = b""  # the stream's 32 KiB before the block being filled
        self._index = 0  # the block being filled
        self._pos = 0
        self._crc = 0
        self._out: deque[Future[tuple[bytes, int]]] = deque()
        self._blocks: deque[Any] = deque()  # their data, for the CRC
        self._ahead: dict[int, _Foreseen] = {}
        self._last: tuple[int, Any] | None = None  # where the data foreseen last ends, its end
        raw.write(_HEADER)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Compress *data* (any bytes-like object); return its length in bytes."""
        owned = _unchanging(data)
        view = memoryview(data).cast("B")
        n, size = len(view), GZIP_BLOCK
        self._pos += n
        if self._pending:
            take = min(size - len(self._pending), n)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < size:
                return n
            self._block(bytes(self._pending))
            self._pending = bytearray()
        whole = len(view) - len(view) % size
        for start in range(0, whole, size):
            piece = view[start : start + size]
            self._block(piece if owned else bytes(piece))
        self._pending += view[whole:]
        return n

    def foresee(self, offset: int, data: Any) -> None:
        """Compress ahead of time the blocks of the stream that *data* would fill from byte
        *offset* on (whole blocks, with their dictionary inside *data*, or inside *data* and
        the data foreseen just before it). A block is used only if what :meth:`write` gives it
        later is the same, byte for byte; otherwise it is compressed again and this work is
        lost."""
        view = _kept(data)
        size = GZIP_BLOCK
        if self._last is not None and self._last[0] == offset:
            # each block across the seam, with its dictionary: the end of the data foreseen
            # last and the start of this one, copied (that block's bytes alone)
            tail = self._last[1]
            for index in range(offset // size, -(-(offset + WINDOW) // size)):
                start = index * size
                if start - WINDOW >= offset - len(tail) and start + size <= offset + len(view):
                    joint = bytes(tail[start - WINDOW - offset :]) + bytes(
                        view[: start + size - offset]
                    )
                    self._foresee_piece(start - WINDOW, memoryview(joint))
        self._last = (offset + len(view), view[-(size + WINDOW) :])
        self._foresee_piece(offset, view)

    def _foresee_piece(self, offset: int, view: memoryview) -> None:
        """The blocks lying whole, with their dictionary, in *view* (the stream's bytes from
        *offset* on), compressed ahead unless they were already."""
        size, end = GZIP_BLOCK, offset + len(view)
        first = max(self._index + 1, -(-(offset + WINDOW) // size))
        for index in range(first, end // size):
            if index in self._ahead:
                continue
            start = index * size - offset
            block, window = view[start : start + size], view[start - WINDOW : start]
            if self._spare is None:
                self._spare = ThreadPoolExecutor(1, "gzip ahead", initializer=_idle_priority)
            job = self._spare.submit(deflate_block, self._z, block, window)
            self._ahead[index] = _Foreseen(block, window, job)

    def _run(self, block: Any, window: Any) -> Future[tuple[bytes, int]]:
        """The compression of *block*: on the pool, or done now on this thread."""
        if self._pool is not None:
            return self._pool.submit(deflate_block, self._z, block, window)
        done: Future[tuple[bytes, int]] = Future()
        done.set_result(deflate_block(self._z, block, window))
        return done

    def _block(self, block: Any) -> None:
        """Queue the whole block *block* (the one being filled), then write what is done."""
        ahead = self._ahead.pop(self._index, None)
        if (
            ahead is not None
            and ahead.done.done()  # never waited for: its thread may get no CPU now
            and _same(ahead.data, block)
            and _same(ahead.window, self._window)
        ):
            done = ahead.done
        else:
            if ahead is not None:
                ahead.done.cancel()
            done = self._run(block, self._window)
        self._out.append(done)
        self._blocks.append(block)
        self._window = block[-WINDOW:]
        self._index += 1
        self._write_done(keep=self._limit)

    def _write_done(self, *, keep: int) -> None:
        """Write the compressed blocks in order: those done, and the oldest ones (waiting for
        them) until at most *keep* remain."""
        combine = self._combine
        while self._out and (len(self._out) > keep or self._out[0].done()):
            packed, crc = self._out.popleft().result()
            block = self._blocks.popleft()
            if combine is not None:
                self._crc = combine(self._crc, crc, len(block))
            else:
                self._crc = self._z.crc32(block, self._crc)
            self._raw.write(packed)

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
        """Stop compressing, the stream left unfinished (its file is being removed); nothing
        is raised."""
        for done in [*self._out, *(a.done for a in self._ahead.values())]:
            done.cancel()
        self._out.clear()
        self._blocks.clear()
        self._ahead.clear()
        self._pending = bytearray()
        self._shutdown(cancel=True)
        super().close()

    def _shutdown(self, *, cancel: bool) -> None:
        """End the threads (a block compressed ahead may still finish in the background: it
        is never waited for)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        if self._spare is not None:
            self._spare.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Compress what is left, write the end of the deflate stream and the gzip trailer
        (CRC-32 and length); *raw* stays open."""
        if self.closed:
            return
        try:
            if self._pending:
                self._block(bytes(self._pending))
                self._pending = bytearray()
            self._write_done(keep=0)
            self._raw.write(self._z.compress(b"", wbits=-self._z.MAX_WBITS))  # the last block
            self._raw.write(struct.pack("<II", self._crc, self._pos & 0xFFFFFFFF))
        except BaseException:
            self.discard()
            raise
        self._ahead.clear()
        self._shutdown(cancel=False)
        super().close()
