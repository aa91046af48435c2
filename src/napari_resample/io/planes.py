"""NIfTI volumes read and written plane by plane, for volumes larger than memory.

NIfTI stores voxels with i fastest and k slowest, so a file delivers whole (i, j) planes in k
order. :func:`open_planes` yields them in blocks of a few planes and :class:`PlaneWriter` takes
them in the same order; the (de)compression of a ``.nii.gz`` runs in a background thread that
feeds (or drains) a bounded queue, so that a consumer's computation overlaps it (isal and zlib
release the GIL). Memory stays a few blocks, whatever the number of planes.

The checks are those of :mod:`napari_resample.io.nifti`: the header is checked before any voxel is
read (:func:`~napari_resample.io.nifti.load_nifti`'s exceptions and messages), every gzip member's
CRC-32 and length and the end of the stream are checked (``io.nifti._gunzip``),
and the output is written as :func:`~napari_resample.io.nifti.save_nifti` writes it: same header
bytes, same gzip level, a temporary file renamed into place only when complete.

Examples
--------
>>> import os, tempfile
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

import io
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.memory import check_memory
from napari_resample.io import nifti as _io
from napari_resample.io.names import nifti_suffix

#: Default size of a block of planes (at least one plane is read or written at a time).
BLOCK_BYTES = 1 << 22
#: Seconds a background thread waits on its queue before it looks whether it was stopped.
_POLL = 0.05


class _Stopped(Exception):
    """Raised inside a background thread told to stop: it ends without reporting."""


class _End:
    """Put on a queue after the last block."""


_END = _End()


def _put(box: queue.Queue[Any], item: object, stop: threading.Event) -> None:
    """Put *item* on the bounded *box*, waiting for room unless *stop* is set (then _Stopped)."""
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            box.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _drain(box: queue.Queue[Any]) -> None:
    """Drop what *box* holds (so that a thread blocked putting into it sees its stop flag)."""
    while True:
        try:
            box.get_nowait()
        except queue.Empty:
            return


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- reading


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
    """
    return PlaneReader(path, block_bytes=block_bytes, queue_blocks=queue_blocks)


class PlaneReader:
    """The planes of a NIfTI volume, read by a background thread (see :func:`open_planes`).

    Iterating yields ``(k0, block)`` in k order: *block* is an (I, J, n) ndarray, native byte
    order, holding the stored (unscaled) values of planes ``k0 .. k0 + n - 1``. A volume is read
    once: iterate again and RuntimeError is raised. The last block of a ``.nii.gz`` is yielded
    only once the whole gzip stream has been checked, so a consumer that got every plane got a
    file whose CRC-32, length and end were checked.

    Attributes
    ----------
    path : str
    header : nibabel.Nifti1Header or nibabel.Nifti2Header
        A copy of the file's header (an unusable qform or sform whose code is 0 replaced, as
        :func:`~napari_resample.io.nifti.load_nifti` does).
    affine : (4, 4) ndarray, voxel (i, j, k) -> RAS+ mm
        nibabel's best affine.
    shape : (I, J, K) tuple of int
    dtype : numpy.dtype
        The stored type, in native byte order.
    slope, inter : float
        The stored scaling (1 and 0 when the file has none).
    ignored : tuple of str
        What of the header was ignored or replaced, as
        :attr:`~napari_resample.io.nifti.NiftiVolume.ignored`.
    planes_per_block : int
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_bytes: int = BLOCK_BYTES,
        queue_blocks: int = 2,
    ) -> None:
        block_bytes = _positive("block_bytes", block_bytes)
        queue_blocks = _positive("queue_blocks", queue_blocks)
        self.path = path = os.fspath(path)
        img = _io._open_checked(path)
        self.header = img.header.copy()
        ignored = tuple(_io._repair_unused_forms(self.header, path))
        proxy: Any = img.dataobj
        gz = nifti_suffix(path) == ".nii.gz"
        try:
            _io._check_claimed_size(path, proxy, gz)
            slope, inter = float(proxy.slope), float(proxy.inter)
            self.affine: NDArray[np.float64] = np.array(img.affine, dtype=np.float64)
            stored, offset = np.dtype(proxy.dtype), int(proxy.offset)
            shape = tuple(int(n) for n in proxy.shape)
        except MemoryError as exc:
            raise MemoryError(f"out of memory reading the header of {path!r}: {exc!r}") from exc
        except Exception as exc:
            raise ValueError(f"cannot read {path!r} as NIfTI: {_io._describe(exc)}") from exc
        _io.check_voxel_type(stored, path)
        self.shape = _io.spatial_shape(shape, path)
        self.dtype = stored.newbyteorder("=")
        self.slope, self.inter = _io.usable_scaling(slope, inter)
        self.ignored = ignored + tuple(_io.ignored_header_fields(self.header, path))
        i, j, k = self.shape
        plane = i * j * stored.itemsize
        self.planes_per_block = max(1, min(k, block_bytes // plane))
        check_memory(
            (queue_blocks + 2) * self.planes_per_block * plane,
            f"reading {path!r} in blocks of {self.planes_per_block} planes",
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._iterated = self._closed = False
        source = _Source(path, gz, offset, self.shape, stored, self.planes_per_block)
        self._thread = threading.Thread(
            target=source.run, args=(self._queue, self._stop), name=f"read {path}", daemon=True
        )
        # A reader dropped without close() still stops its thread (which holds no reference to
        # the reader).
        weakref.finalize(self, self._stop.set)
        self._thread.start()

    def __iter__(self) -> Iterator[tuple[int, NDArray]]:
        if self._iterated or self._closed:
            raise RuntimeError(f"the planes of {self.path!r} were read already; open it again")
        self._iterated = True
        return self._blocks()

    def _blocks(self) -> Iterator[tuple[int, NDArray]]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise self._error(item) from item
                yield item
        finally:
            self.close()

    def _error(self, exc: BaseException) -> BaseException:
        """What the consumer raises for the thread's *exc*: load_nifti's wording."""
        if isinstance(exc, MemoryError):
            return MemoryError(
                f"not enough memory to read {self.path!r} in blocks of "
                f"{self.planes_per_block} planes: {exc!r}"
            )
        if isinstance(exc, Exception):
            return ValueError(f"cannot read {self.path!r} as NIfTI: {_io._describe(exc)}")
        return exc

    def close(self) -> None:
        """Stop the background thread, wait for it (and so for its file to be closed)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        _drain(self._queue)
        self._thread.join()
        _drain(self._queue)

    def __enter__(self) -> PlaneReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()


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
        """Put every block on *out*, then _END, or the exception that ended the reading."""
        try:
            with open(self.path, "rb") as fh:
                if self.gz:
                    self._inflate(fh, out, stop)
                else:
                    self._read(fh, out, stop)
            item: object = _END
        except _Stopped:
            return
        except BaseException as exc:
            item = exc
        try:
            _put(out, item, stop)
        except _Stopped:
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
            _put(out, self._block(k0, buf), stop)

    def _inflate(self, fh: Any, out: queue.Queue[Any], stop: threading.Event) -> None:
        skip, k0, filled, done = self.offset, 0, 0, 0
        total = self.plane * self.shape[2]
        buf = self._buffer(0)
        last: tuple[int, NDArray] | None = None

        def sink(data: bytes) -> None:
            nonlocal skip, k0, filled, done, buf, last
            if stop.is_set():
                raise _Stopped
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
                    _put(out, block, stop)
                    buf, filled = self._buffer(k0), 0

        _io._gunzip(fh, _io._inflater(), sink)
        if last is None:
            raise ValueError(_io.short_gzip_message(done, total))
        _put(out, last, stop)


# --------------------------------------------------------------------------- writing


class PlaneWriter:
    """Write a NIfTI volume plane by plane, in k order, atomically.

    The file is what :func:`~napari_resample.io.nifti.save_nifti` writes for the same voxels,
    header and scaling (the same bytes): NIfTI-1, or NIfTI-2 when *header* is one. It is written
    to a temporary file in the destination folder (compressed by a background thread for a
    ``.nii.gz``) and renamed over *path* only by :meth:`close` once every plane was written; an
    :meth:`abort`, an exception inside the ``with`` block or a wrong number of planes leaves
    nothing behind.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.nii`` or ``.nii.gz``; its folder must exist.
    header : nibabel.Nifti1Header or nibabel.Nifti2Header
        Written as given: its shape (one volume, (I, J, K) or (I, J, K, 1, ...)) says how many
        planes are expected, its data type how they are stored.
    slope, inter : float
        Scaling written to ``scl_slope`` / ``scl_inter``; the planes are stored values.
    compress : bool, optional
        Whether to gzip the stream; by default, whether *path* ends in ``.nii.gz``. nibabel
        tells the two by the suffix, so a value that contradicts it is refused.
    queue_blocks : int
        Blocks waiting for the compressing thread, at most.

    Raises
    ------
    ValueError
        A *path* that is not ``.nii`` / ``.nii.gz`` (or contradicts *compress*), a header that
        is not NIfTI-1/2 or not one volume, a bad *queue_blocks*.
    OSError
        The temporary file cannot be made (a missing folder: FileNotFoundError).

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "ramp.nii")
    >>> header = nib.Nifti1Header()
    >>> header.set_data_shape((2, 2, 3))
    >>> header.set_data_dtype(np.uint8)
    >>> with PlaneWriter(path, header) as out:
    ...     for k in range(3):
    ...         out.write(np.full((2, 2, 1), k, dtype=np.uint8))
    >>> np.asarray(nib.load(path).dataobj)[0, 0].tolist()
    [0, 1, 2]
    >>> shutil.rmtree(folder)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: nib.Nifti1Header,
        *,
        slope: float = 1.0,
        inter: float = 0.0,
        compress: bool | None = None,
        queue_blocks: int = 2,
    ) -> None:
        self.path = path = os.fspath(path)
        suffix = nifti_suffix(path)
        if suffix is None:
            raise ValueError(f"output file must end with .nii or .nii.gz, got {path!r}")
        gz = suffix == ".nii.gz"
        if compress is not None and bool(compress) != gz:
            raise ValueError(
                f"compress={compress!r} contradicts the suffix of {path!r} (readers decompress "
                "exactly the .nii.gz files)"
            )
        if not isinstance(header, nib.Nifti1Header):  # a Nifti2Header is one
            raise ValueError(f"header must be a NIfTI-1 or NIfTI-2 header, got {header!r}")
        queue_blocks = _positive("queue_blocks", queue_blocks)
        self.shape = _io.spatial_shape(header.get_data_shape(), path)
        self.stored = header.get_data_dtype()
        self.written = 0
        head = _header_bytes(header, slope, inter)
        self._folder = os.path.dirname(os.path.abspath(path))
        self._tmp = os.path.join(self._folder, _io.temp_name(os.path.basename(path), suffix))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._failure: list[BaseException] = []
        self._open = True
        _io._IN_PROGRESS.add(self._tmp)
        try:
            self._raw = open(self._tmp, "xb")  # closed by close() or abort()
        except BaseException:
            _io._IN_PROGRESS.discard(self._tmp)
            raise
        self._thread = threading.Thread(
            target=_compress,
            args=(self._raw, gz, head, self._queue, self._stop, self._failure),
            name=f"write {path}",
            daemon=True,
        )
        self._thread.start()

    @property
    def planes(self) -> int:
        """How many planes the file holds (K)."""
        return self.shape[2]

    def write(self, block: NDArray) -> None:
        """Append planes: *block* is (I, J, n), the next n planes in k order.

        Its values are cast to the header's data type (and byte order); a type that does not
        hold them all exactly is refused.

        Raises
        ------
        ValueError
            A block of the wrong shape, more planes than the header has, values the stored
            type cannot hold exactly, or a writer that was closed already.
        OSError
            The compressing thread's failure to write (a full disk: naming path and free space).
        """
        if not self._open:
            raise ValueError(f"the writer of {self.path!r} is closed")
        block = np.asarray(block)
        i, j, k = self.shape
        if block.ndim != 3 or block.shape[:2] != (i, j) or block.shape[2] < 1:
            raise ValueError(
                f"a block of planes for {self.path!r} must have shape ({i}, {j}, n), n >= 1, "
                f"got {block.shape}"
            )
        if self.written + block.shape[2] > k:
            raise ValueError(
                f"{self.path!r} holds {k} planes: {self.written} written, "
                f"{block.shape[2]} more given"
            )
        data = _exact_cast(block, self.stored, self.path).tobytes(order="F")
        try:
            self._send(data)
        except BaseException as exc:
            failure = self._failed(exc)
            if failure is exc:
                raise
            raise failure from exc
        self.written += block.shape[2]

    def _send(self, item: object) -> None:
        """Put *item* for the compressing thread; raise its failure if it failed."""
        while True:
            if self._failure:
                raise self._failure[0]
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _failed(self, exc: BaseException) -> BaseException:
        """Abort; what the caller raises for *exc* (a full disk named as save_nifti does)."""
        self.abort()
        full = _io.disk_full_error(exc, self.path, self._folder)
        return exc if full is None else full

    def close(self) -> str:
        """Finish the file and rename it over *path*; return *path*.

        Raises
        ------
        ValueError
            Fewer planes than the header's K were written (the temporary file is removed).
        OSError
            The data could not be written (a full disk: naming path and free space).
        """
        if not self._open:
            raise ValueError(f"the writer of {self.path!r} is closed")
        if self.written != self.planes:
            self.abort()
            raise ValueError(
                f"{self.path!r} was not written: its header has {self.planes} planes of "
                f"{self.shape[0]} x {self.shape[1]}, {self.written} were given"
            )
        try:
            self._send(_END)
            self._thread.join()
            if self._failure:
                raise self._failure[0]
            self._raw.close()
            os.replace(self._tmp, self.path)
        except BaseException as exc:
            failure = self._failed(exc)
            if failure is exc:
                raise
            raise failure from exc
        self._open = False
        _io._IN_PROGRESS.discard(self._tmp)
        _io._fsync_folder(self._folder)
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file; *path* is left as it was."""
        self._open = False
        self._stop.set()
        _drain(self._queue)
        self._thread.join()
        self._raw.close()
        Path(self._tmp).unlink(missing_ok=True)
        _io._IN_PROGRESS.discard(self._tmp)

    def __enter__(self) -> PlaneWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._open:
            self.close()


def _compress(
    raw: Any,
    gz: bool,
    head: bytes,
    inbox: queue.Queue[Any],
    stop: threading.Event,
    failure: list[BaseException],
) -> None:
    """The writing thread: *head*, then every block of *inbox* until _END, into *raw* (through
    gzip when *gz*), then fsync; a failure is appended to *failure*."""
    try:
        stream = _io.gzip_writer(raw) if gz else raw
        stream.write(head)
        while True:
            try:
                item = inbox.get(timeout=_POLL)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _END:
                break
            if stop.is_set():
                return
            stream.write(item)
        if gz:
            stream.close()  # the gzip trailer; *raw* stays open
        raw.flush()
        os.fsync(raw.fileno())
    except BaseException as exc:
        failure.append(exc)


def _header_bytes(header: nib.Nifti1Header, slope: float, inter: float) -> bytes:
    """The bytes :func:`~napari_resample.io.nifti.save_nifti` writes before the voxels of a volume
    of *header*'s shape and type: nibabel's header, extensions and padding to ``vox_offset``."""
    native = header.get_data_dtype().newbyteorder("=")
    stand_in = np.broadcast_to(np.zeros((), dtype=native), header.get_data_shape())
    img = _io.image_to_write(stand_in, header, slope, inter)
    img.update_header()  # what nibabel's to_file_map does before writing the header
    hdr = img.header
    out = io.BytesIO()
    hdr.write_to(out)
    out.write(bytes(hdr.get_data_offset() - out.tell()))
    return out.getvalue()


def _exact_cast(block: NDArray, stored: np.dtype, path: str) -> NDArray:
    """*block* in the on-disk type *stored*: numpy's safe casts, or values that are the same
    after the cast (in range, integral for an integer type); ValueError otherwise."""
    if block.dtype == stored or np.can_cast(block.dtype, stored, "safe"):
        return block.astype(stored, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        cast = block.astype(stored)
        same = cast == block
        if stored.kind in "iu":
            info = np.iinfo(stored)
            same &= (block >= info.min) & (block <= info.max)
        elif block.dtype.kind == "f":
            same |= np.isnan(block) & np.isnan(cast)
    if not same.all():
        where = tuple(int(n) for n in np.argwhere(~same)[0])
        raise ValueError(
            f"{block.dtype} values for {path!r} must be exactly representable as its stored "
            f"type {stored}: got {block[where].item()!r} at {where} of the block"
        )
    return cast
