"""NIfTI volumes written plane by plane, for volumes larger than memory.

:class:`PlaneWriter` takes (i, j) planes in k order, the order in which NIfTI stores them and
:func:`~napari_resample.io.plane_reader.open_planes` delivers them; the compression of a
``.nii.gz`` runs in a background thread that drains a bounded queue
(:mod:`napari_resample.io.plane_queue`), so that the producer's computation overlaps it (isal and
zlib release the GIL). The file is the one :func:`~napari_resample.io.nifti.save_nifti` writes:
same header bytes, same gzip level, a temporary file renamed into place only when complete
(:mod:`napari_resample.io.atomic`). Planes :meth:`~PlaneWriter.foresee` is shown are compressed
ahead of time by the same thread's compressors, used only if the planes written are the same.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.threads import engine_threads
from napari_resample.io.atomic import begin_temp, end_temp, fsync_folder, write_error
from napari_resample.io.gzip_write import GzipWriter
from napari_resample.io.names import nifti_suffix
from napari_resample.io.nifti import image_to_write
from napari_resample.io.plane_queue import END, POLL, drain, positive_int
from napari_resample.io.plane_sink import PlaneSink


class PlaneWriter(PlaneSink):
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
        if suffix not in (".nii", ".nii.gz"):  # a .nii.zarr is ZarrPlaneWriter's
            raise ValueError(f"output file must end with .nii or .nii.gz, got {path!r}")
        gz = suffix == ".nii.gz"
        if compress is not None and bool(compress) != gz:
            raise ValueError(
                f"compress={compress!r} contradicts the suffix of {path!r} (readers decompress "
                "exactly the .nii.gz files)"
            )
        self.take_header(header)
        queue_blocks = positive_int("queue_blocks", queue_blocks)
        head = _header_bytes(header, slope, inter)
        self._gz, self._head_bytes, self.foresees = gz, len(head), gz
        self._folder = os.path.dirname(os.path.abspath(path))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._failure: list[BaseException] = []
        self._open = True
        self._tmp = begin_temp(path, suffix)
        try:
            self._raw = open(self._tmp, "xb")  # closed by close() or abort()
        except BaseException as exc:
            end_temp(self._tmp)
            if (plain := write_error(exc, path)) is not exc:
                raise plain from exc
            raise
        self._thread = threading.Thread(
            target=_compress,
            args=(self._raw, gz, head, self._queue, self._stop, self._failure, engine_threads()),
            name=f"write {path}",
            daemon=True,
        )
        self._thread.start()

    def _send(self, item: object) -> None:
        """Put *item* for the compressing thread; raise its failure if it failed."""
        while True:
            if self._failure:
                raise self._failure[0]
            try:
                self._queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def put(self, data: NDArray, handed_over: bool) -> None:
        """Queue the planes' bytes for the compressing thread (a copy, unless handed over)."""
        self._send(_file_bytes(data, handed_over))

    def foresee(self, k0: int, block: NDArray) -> None:
        """Have the planes k0.. of *block* (I, J, n) compressed ahead of time, if this is a
        ``.nii.gz`` and *block* is in the stored type (see the module docstring)."""
        i, j, _ = self.shape
        if not (self._gz and self._open and block.dtype == self.stored and block.ndim == 3):
            return
        if block.shape[:2] != (i, j) or not 0 <= k0 <= self.shape[2] - block.shape[2]:
            return
        offset = self._head_bytes + k0 * i * j * self.stored.itemsize
        self._send(_Ahead(offset, _file_bytes(block, True)))

    def finish(self) -> None:
        """End the stream, wait for the compressing thread and rename the file onto *path*."""
        self._send(END)
        self._thread.join()
        if self._failure:
            raise self._failure[0]
        self._raw.close()
        os.replace(self._tmp, self.path)

    def finished(self) -> None:
        end_temp(self._tmp)
        fsync_folder(self._folder)

    def abort(self) -> None:
        """Stop writing and remove the temporary file; *path* is left as it was."""
        self._open = False
        self._stop.set()
        drain(self._queue)
        self._thread.join()
        with contextlib.suppress(OSError):  # the buffered rest of a file being removed
            self._raw.close()
        Path(self._tmp).unlink(missing_ok=True)
        end_temp(self._tmp)


def _file_bytes(data: NDArray, handed_over: bool) -> Any:
    """The bytes of planes *data* in the file's order: a read-only view of them when they are
    handed over and laid out so (no copy; the gzip writer keeps such a view), else a copy."""
    if handed_over and data.flags.f_contiguous:
        return data.T.data.cast("B").toreadonly()
    return data.tobytes(order="F")


class _Ahead:
    """Bytes the stream will probably hold from *offset* on (:meth:`PlaneWriter.foresee`)."""

    __slots__ = ("data", "offset")

    def __init__(self, offset: int, data: Any) -> None:
        self.offset, self.data = offset, data


def _compress(
    raw: Any,
    gz: bool,
    head: bytes,
    inbox: queue.Queue[Any],
    stop: threading.Event,
    failure: list[BaseException],
    threads: int,
) -> None:
    """The writing thread: *head*, then every block of *inbox* until END, into *raw* (through
    gzip on *threads* threads when *gz*), then fsync; a failure is appended to *failure*."""
    gzipped = None
    try:
        # GzipWriter cuts the data in fixed blocks: the same volume gives the same bytes
        # whatever the blocks were (the memory budget, the worker count, the thread count)
        gzipped = GzipWriter(raw, threads) if gz else None
        stream = gzipped if gzipped is not None else raw
        stream.write(head)
        while True:
            try:
                item = inbox.get(timeout=POLL)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is END:
                break
            if stop.is_set():
                return
            if isinstance(item, _Ahead):
                if gzipped is not None:
                    gzipped.foresee(item.offset, item.data)
                continue
            stream.write(item)
        if gzipped is not None:
            gzipped.close()  # the last block and the gzip trailer; *raw* stays open
        raw.flush()
        os.fsync(raw.fileno())
    except BaseException as exc:
        failure.append(exc)
    finally:
        if gzipped is not None and not gzipped.closed:
            gzipped.discard()


def _header_bytes(header: nib.Nifti1Header, slope: float, inter: float) -> bytes:
    """The bytes :func:`~napari_resample.io.nifti.save_nifti` writes before the voxels of a volume
    of *header*'s shape and type: nibabel's header, extensions and padding to ``vox_offset``."""
    native = header.get_data_dtype().newbyteorder("=")
    stand_in = np.broadcast_to(np.zeros((), dtype=native), header.get_data_shape())
    img = image_to_write(stand_in, header, slope, inter)
    img.update_header()  # what nibabel's to_file_map does before writing the header
    hdr = img.header
    out = io.BytesIO()
    hdr.write_to(out)
    out.write(bytes(hdr.get_data_offset() - out.tell()))
    return out.getvalue()
