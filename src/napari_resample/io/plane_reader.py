"""NIfTI volumes read plane by plane, for volumes larger than memory.

NIfTI stores voxels with i fastest and k slowest, so a file delivers whole (i, j) planes in k
order. :func:`open_planes` yields them in blocks of a few planes, in the order
:class:`~napari_resample.io.plane_writer.PlaneWriter` takes them; the decompression of a
``.nii.gz`` runs in a background thread that feeds a bounded queue
(:mod:`napari_resample.io.plane_queue`), so that a consumer's computation overlaps it (isal and
zlib release the GIL). Memory stays a few blocks, whatever the number of planes.

The checks are those of :func:`~napari_resample.io.nifti.load_nifti`: the header is checked
before any voxel is read, with the same exceptions and messages
(:mod:`napari_resample.io.checks`), and every gzip member's CRC-32 and length and the end of the
stream are checked (:func:`~napari_resample.io.gzip.gunzip`).

Examples
--------
>>> import os, tempfile
>>> import nibabel as nib
>>> from napari_resample.io.plane_writer import PlaneWriter
>>> folder = tempfile.mkdtemp()
>>> src, dst = os.path.join(folder, "a.nii.gz"), os.path.join(folder, "b.nii.gz")
>>> header = nib.Nifti1Header()
>>> header.set_data_shape((4, 3, 5))
>>> header.set_data_dtype(np.int16)
>>> with PlaneWriter(src, header) as out:
...     out.write(np.arange(60, dtype=np.int16).reshape((4, 3, 5), order="F"))
>>> with open_planes(src, block_bytes=24) as planes, PlaneWriter(dst, planes.header) as out:
...     for k0, block in planes:
...         out.write(block * 2)
>>> print(planes.shape, planes.dtype, np.asarray(nib.load(dst).dataobj)[1, 0, :].tolist())
(4, 3, 5) int16 [2, 26, 50, 74, 98]
>>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.memory import check_memory
from napari_resample.io.checks import (
    check_claimed_size,
    check_voxel_type,
    ignored_header_fields,
    open_checked,
    read_error,
    repair_unused_forms,
    usable_scaling,
    wrap_read_errors,
)
from napari_resample.io.gzip import fastest_zlib, gunzip, short_gzip_message
from napari_resample.io.names import nifti_suffix
from napari_resample.io.plane_queue import END, Stopped, drain, positive_int, put_unless_stopped
from napari_resample.io.plane_source import PlaneSource

#: Default size of a block of planes (at least one plane is read at a time).
BLOCK_BYTES = 1 << 22


def open_planes(
    path: str | os.PathLike[str], *, block_bytes: int = BLOCK_BYTES, queue_blocks: int = 2
) -> PlaneReader:
    """Open a NIfTI volume to read its (i, j) planes in k order, a block at a time.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file holding one 3D volume (a 4D file with one volume counts).
    block_bytes : int
        About how many bytes of voxels a block holds (whole planes, at least one).
    queue_blocks : int
        Blocks read ahead of the consumer, at most.

    Returns
    -------
    PlaneReader
        Its header attributes are set; iterate over it for ``(k0, block)``.

    Raises
    ------
    FileNotFoundError, ValueError, MemoryError
        Those of :func:`~napari_resample.io.nifti.load_nifti` for the header, raised before any
        voxel is read; ValueError also when the file holds more than one volume. A damaged
        voxel stream raises its ValueError from the iteration.

    A ``.nii.zarr`` (a folder) is :func:`napari_resample.io.niizarr_read.open_zarr_planes`'s,
    with the same interface (:func:`napari_resample.io.volume_io.open_volume_planes` picks).
    """
    return PlaneReader(path, block_bytes=block_bytes, queue_blocks=queue_blocks)


class PlaneReader(PlaneSource):
    """The planes of a ``.nii`` or ``.nii.gz``, read by a background thread (see
    :func:`open_planes`; the attributes and iteration of
    :class:`~napari_resample.io.plane_source.PlaneSource`). The last block of a ``.nii.gz`` is
    yielded only once the whole gzip stream has been checked, so a consumer that got every
    plane got a file whose CRC-32, length and end were checked.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_bytes: int = BLOCK_BYTES,
        queue_blocks: int = 2,
    ) -> None:
        block_bytes = positive_int("block_bytes", block_bytes)
        queue_blocks = positive_int("queue_blocks", queue_blocks)
        path = os.fspath(path)
        img = open_checked(path)
        header = img.header.copy()
        ignored = tuple(repair_unused_forms(header, path))
        proxy: Any = img.dataobj
        gz = nifti_suffix(path) == ".nii.gz"
        with wrap_read_errors(path):
            check_claimed_size(path, proxy, gz)
            slope, inter = float(proxy.slope), float(proxy.inter)
            affine = img.affine
            stored, offset = np.dtype(proxy.dtype), int(proxy.offset)
            shape = tuple(int(n) for n in proxy.shape)
        check_voxel_type(stored, path)
        plane = self.take_volume(
            path,
            header,
            affine,
            shape,
            stored,
            usable_scaling(slope, inter),
            ignored + tuple(ignored_header_fields(header, path)),
            block_bytes,
        )
        check_memory(
            (queue_blocks + 2) * self.planes_per_block * plane,
            f"reading {path!r} in blocks of {self.planes_per_block} planes",
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        source = _Source(path, gz, offset, self.shape, stored, self.planes_per_block)
        self._thread = threading.Thread(
            target=source.run, args=(self._queue, self._stop), name=f"read {path}", daemon=True
        )
        # A reader dropped without close() still stops its thread (which holds no reference to
        # the reader).
        weakref.finalize(self, self._stop.set)
        self._thread.start()

    def _blocks(self) -> Iterator[tuple[int, NDArray]]:
        try:
            while True:
                item = self._queue.get()
                if item is END:
                    return
                if isinstance(item, BaseException):
                    raise self._error(item) from item
                yield item
        finally:
            self.close()

    def _error(self, exc: BaseException) -> BaseException:
        """What the consumer raises for the thread's *exc*: load_nifti's wording."""
        if not isinstance(exc, Exception):
            return exc
        return read_error(
            self.path,
            exc,
            lambda error: (
                f"not enough memory to read {self.path!r} in blocks of "
                f"{self.planes_per_block} planes: {error!r}"
            ),
        )

    def close(self) -> None:
        """Stop the background thread, wait for it (and so for its file to be closed)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        drain(self._queue)
        self._thread.join()
        drain(self._queue)


class _Source:
    """What the reading thread needs, and nothing of the reader (so that it can be collected)."""

    def __init__(
        self,
        path: str,
        gz: bool,
        offset: int,
        shape: tuple[int, int, int],
        stored: np.dtype,
        per_block: int,
    ) -> None:
        self.path, self.gz, self.offset = path, gz, offset
        self.shape, self.stored, self.per_block = shape, stored, per_block
        self.plane = shape[0] * shape[1] * stored.itemsize

    def run(self, out: queue.Queue[Any], stop: threading.Event) -> None:
        """Put every block on *out*, then END, or the exception that ended the reading."""
        try:
            with open(self.path, "rb") as fh:
                if self.gz:
                    self._inflate(fh, out, stop)
                else:
                    self._read(fh, out, stop)
            item: object = END
        except Stopped:
            return
        except BaseException as exc:
            item = exc
        try:
            put_unless_stopped(out, item, stop)
        except Stopped:
            return

    def _buffer(self, k0: int) -> NDArray[np.uint8]:
        n = min(self.per_block, self.shape[2] - k0)
        return np.empty(n * self.plane, dtype=np.uint8)

    def _block(self, k0: int, buf: NDArray[np.uint8]) -> tuple[int, NDArray]:
        i, j, _ = self.shape
        block = buf.view(self.stored).reshape((i, j, -1), order="F")
        if not self.stored.isnative:
            block = block.byteswap(inplace=True).view(self.stored.newbyteorder("="))
        return k0, block

    def _read(self, fh: Any, out: queue.Queue[Any], stop: threading.Event) -> None:
        fh.seek(self.offset)
        for k0 in range(0, self.shape[2], self.per_block):
            buf = self._buffer(k0)
            view, done = buf.data, 0
            while done < buf.size:
                got = fh.readinto(view[done:])
                if not got:  # the size was checked on opening: the file shrank since
                    raise ValueError(
                        f"the file ends at byte {fh.tell()}, inside plane "
                        f"{k0 + done // self.plane}: truncated file?"
                    )
                done += got
            put_unless_stopped(out, self._block(k0, buf), stop)

    def _inflate(self, fh: Any, out: queue.Queue[Any], stop: threading.Event) -> None:
        skip, k0, filled, done = self.offset, 0, 0, 0
        total = self.plane * self.shape[2]
        buf = self._buffer(0)
        last: tuple[int, NDArray] | None = None

        def sink(data: bytes) -> None:
            nonlocal skip, k0, filled, done, buf, last
            if stop.is_set():
                raise Stopped
            view = memoryview(data)
            if skip:
                cut = min(skip, len(view))
                view, skip = view[cut:], skip - cut
            while len(view) and done < total:
                n = min(len(view), buf.size - filled)
                buf[filled : filled + n] = np.frombuffer(view, dtype=np.uint8, count=n)
                view, filled, done = view[n:], filled + n, done + n
                if filled == buf.size:
                    block = self._block(k0, buf)
                    k0 += block[1].shape[2]
                    if done == total:  # held back until the stream is checked to its end
                        last = block
                        return
                    put_unless_stopped(out, block, stop)
                    buf, filled = self._buffer(k0), 0

        gunzip(fh, fastest_zlib(), sink)
        if last is None:
            raise ValueError(short_gzip_message(done, total))
        put_unless_stopped(out, last, stop)
