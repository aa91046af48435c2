"""NIfTI-Zarr volumes (``.nii.zarr``) written plane by plane, with their pyramid.

:class:`ZarrPlaneWriter` has the interface of
:class:`~napari_resample.io.plane_writer.PlaneWriter`: (I, J, n) blocks of planes in k order,
then :meth:`~ZarrPlaneWriter.close`. Level 0 is written a slab of chunks at a time as the planes
arrive, by a thread of its own while the next slab fills (chunk files written as Zarr writes
them: :mod:`napari_resample.io.niizarr_chunks`), and the pyramid is made from the same planes as
they pass (:mod:`napari_resample.io.niizarr_pyramid`), so memory stays two slabs and a chunk
depth of each level whatever the volume's size. The whole group is written into a temporary
folder beside the destination and renamed onto it only once complete (layout and choices:
:mod:`napari_resample.io.niizarr_layout`).

Examples
--------
>>> import os, shutil, tempfile
>>> import nibabel as nib
>>> folder = tempfile.mkdtemp()
>>> header = nib.Nifti1Header()
>>> header.set_data_shape((100, 4, 3))
>>> header.set_data_dtype(np.uint8)
>>> with ZarrPlaneWriter(os.path.join(folder, "ramp.nii.zarr"), header) as out:
...     for k in range(3):
...         out.write(np.full((100, 4, 1), k, dtype=np.uint8))
>>> sorted(os.listdir(os.path.join(folder, "ramp.nii.zarr")))
['0', '1', 'nifti', 'zarr.json']
>>> shutil.rmtree(folder)
"""

from __future__ import annotations

import contextlib
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.grid import voxel_spacing
from napari_resample.engine.labels import LABEL_INTENTS
from napari_resample.io.atomic import begin_temp, end_temp, fsync_folder, remove_path, write_error
from napari_resample.io.names import ZARR_SUFFIX, is_zarr_name, volume_name
from napari_resample.io.nifti import image_to_write, spatial_shape
from napari_resample.io.niizarr_chunks import ChunkFiles
from napari_resample.io.niizarr_layout import (
    CHUNK,
    SLAB_CAP,
    SPACE_UNITS,
    ZSTD_LEVEL,
    level0_chunks,
    level_chunks,
    multiscales,
    pyramid_shapes,
)
from napari_resample.io.niizarr_pyramid import Cascade, cascade_memory
from napari_resample.io.plane_sink import PlaneSink

#: Memory a :class:`ZarrPlaneWriter` may add to its two slabs and its pyramid's planes: the
#: chunk being compressed and its bytes, a label map's votes, Zarr's metadata.
WRITER_EXTRA = 24 << 20


def writer_memory(shape: tuple[int, int, int], dtype: np.dtype) -> int:
    """Bytes a :class:`ZarrPlaneWriter` of an (I, J, K) volume of *dtype* holds at most: two
    slabs of planes (one filled while the other is written), the pyramid's planes
    (:func:`~napari_resample.io.niizarr_pyramid.cascade_memory`) and :data:`WRITER_EXTRA`."""
    itemsize = np.dtype(dtype).itemsize
    depth = level0_chunks(shape, itemsize)[0]
    slab = shape[0] * shape[1] * depth * itemsize
    zyx = [(c, b, a) for a, b, c in pyramid_shapes(shape)]
    pyramid = cascade_memory(zyx, [depth] + [level_chunks(s)[0] for s in zyx[1:]], itemsize)
    return 2 * slab + pyramid + WRITER_EXTRA


def header_blob(header: nib.Nifti1Header, slope: float = 1.0, inter: float = 0.0) -> bytes:
    """The ``nifti`` array of a NIfTI-Zarr: the header nibabel writes at the start of a ``.nii``
    of *header* and scaling *slope*, *inter* (348 bytes, 540 for NIfTI-2), followed by the
    extension flag and the extensions only when there are extensions."""
    native = header.get_data_dtype().newbyteorder("=")
    stand_in = np.broadcast_to(np.zeros((), dtype=native), header.get_data_shape())
    img = image_to_write(stand_in, header, slope, inter)
    img.update_header()  # what nibabel does before writing a file
    out = io.BytesIO()
    img.header.write_to(out)
    blob = out.getvalue()
    if not img.header.extensions:
        blob = blob[: img.header.sizeof_hdr]
    return blob


class ZarrPlaneWriter(PlaneSink):
    """Write a NIfTI-Zarr volume plane by plane, in k order, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.nii.zarr`` (a folder; an existing one is replaced when the new one is
        complete); its parent folder must exist.
    header : nibabel.Nifti1Header or nibabel.Nifti2Header
        Stored byte for byte (as a ``.nii`` would start); its shape (one volume) says how many
        planes are expected, its data type how they are stored.
    slope, inter : float
        Scaling written to ``scl_slope`` / ``scl_inter``; the planes are stored values.
    labels : bool, optional
        Whether the pyramid votes (a label map) instead of averaging; by default, whether the
        header's intent is a label one (1002, 1003).

    Raises
    ------
    ValueError
        A *path* that is not ``.nii.zarr``, a header that is not NIfTI-1/2 or not one volume.
    OSError
        The temporary folder cannot be made (a missing folder: FileNotFoundError).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: nib.Nifti1Header,
        *,
        slope: float = 1.0,
        inter: float = 0.0,
        labels: bool | None = None,
    ) -> None:
        import zarr

        self.path = path = os.fspath(path).rstrip("/" + os.sep) or os.fspath(path)
        if not is_zarr_name(path):
            raise ValueError(f"a NIfTI-Zarr output must end with .nii.zarr, got {path!r}")
        self.take_header(header)
        self.dtype = self.stored.newbyteorder("=")
        if labels is None:
            labels = int(header["intent_code"]) in LABEL_INTENTS
        self.labels = bool(labels)
        blob = header_blob(header, slope, inter)
        self._spacing = voxel_spacing(header.get_best_affine())
        self._unit = SPACE_UNITS.get(int(header["xyzt_units"]) & 7, "millimeter")
        self._folder = os.path.dirname(os.path.abspath(path))
        self._open = True
        self._tmp = begin_temp(path, ZARR_SUFFIX)
        try:
            os.mkdir(self._tmp)
            self._group = zarr.create_group(store=zarr.storage.LocalStore(self._tmp))
            nifti = self._group.create_array(
                "nifti", shape=(len(blob),), chunks=(len(blob),), dtype="u1", compressors=None
            )
            nifti[:] = np.frombuffer(blob, dtype=np.uint8)
            i, j, k = self.shape
            self._level0 = self._new_level(
                0, (k, j, i), level0_chunks(self.shape, self.dtype.itemsize)
            )
            zyx = [(c, b, a) for a, b, c in pyramid_shapes(self.shape)]
            levels = [self._new_level(n, s, level_chunks(s)) for n, s in enumerate(zyx) if n]
            self._cascade = Cascade(levels, zyx, self.labels)
        except BaseException as exc:
            self._open = False
            self._remove_temp()
            if (plain := write_error(exc, path)) is not exc:
                raise plain from exc
            raise
        depth = self._level0.chunks[0]
        self._slab = np.empty((i, j, depth), dtype=self.dtype, order="F")
        self._spare: NDArray | None = None  # the other slab, once one is being written
        self._filled = self._flushed = 0
        # level 0 is written by one thread, a slab at a time, while the engine fills the other
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write .nii.zarr")
        self._writing: Future[None] | None = None

    def _new_level(
        self, level: int, shape_zyx: tuple[int, ...], chunks: tuple[int, ...]
    ) -> ChunkFiles:
        """Level *level*'s array, made by Zarr (its metadata), its chunks written by us."""
        from numcodecs import Blosc
        from zarr.codecs import BloscCodec

        array = self._group.create_array(
            str(level),
            shape=shape_zyx,
            chunks=chunks,
            dtype=self.dtype,
            compressors=BloscCodec(cname="zstd", clevel=ZSTD_LEVEL, shuffle="shuffle"),
            fill_value=0,
            dimension_names=("z", "y", "x"),
        )
        codec = Blosc(cname="zstd", clevel=ZSTD_LEVEL, shuffle=Blosc.SHUFFLE, blocksize=0)
        return ChunkFiles(self._tmp, str(level), array, codec)

    def put(self, data: NDArray, handed_over: bool) -> None:
        """Copy the planes into the slab, handing it to the writing thread whenever it is full."""
        done = 0
        while done < data.shape[2]:
            take = min(data.shape[2] - done, self._slab.shape[2] - self._filled)
            self._slab[:, :, self._filled : self._filled + take] = data[:, :, done : done + take]
            self._filled += take
            done += take
            if self._filled == self._slab.shape[2]:
                self._flush()

    def _flush(self) -> None:
        """Hand the planes held in the slab (whole chunks along k but maybe the last) to the
        writing thread, once it has written the slab before; go on in the other slab."""
        if not self._filled:
            return
        k0, k1 = self._flushed, self._flushed + self._filled
        self._wait()
        full = self._slab
        self._writing = self._writer.submit(self._write_level0, full, k0, k1)
        if self._spare is None:
            self._spare = np.empty_like(full, order="F")
        self._slab, self._spare = self._spare, full
        self._flushed = k1
        self._filled = 0

    def _wait(self) -> None:
        """Wait for the slab being written (raising its failure)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def _write_level0(self, slab: NDArray, k0: int, k1: int) -> None:
        # (I, J, n) in F order is (n, J, I) in C order: no copy; each chunk is copied once
        planes = slab[:, :, : k1 - k0].transpose(2, 1, 0)
        self._level0.write(k0, planes)
        self._cascade.feed(1, planes)  # the levels above, while the slab is at hand

    def finish(self) -> None:
        """Write the last planes, the pyramid and the metadata, and rename the folder onto
        *path*."""
        self._flush()
        self._wait()
        self._writer.shutdown()
        self._slab = self._spare = np.empty((0, 0, 0), dtype=self.dtype)
        self._cascade.finish()
        shapes = pyramid_shapes(self.shape)
        name = volume_name(self.path)
        self._group.attrs["ome"] = multiscales(shapes, self._spacing, self._unit, name)
        _replace_folder(self._tmp, self.path)

    def finished(self) -> None:
        end_temp(self._tmp)
        fsync_folder(self._folder)

    def abort(self) -> None:
        """Stop writing and remove the temporary folder; *path* is left as it was."""
        self._open = False
        with contextlib.suppress(Exception):  # the failure being handled is the one to see
            self._wait()
        self._writer.shutdown()
        self._remove_temp()

    def _remove_temp(self) -> None:
        try:
            remove_path(self._tmp)
        except FileNotFoundError:
            pass
        end_temp(self._tmp)


def _replace_folder(tmp: str, path: str) -> None:
    """Rename the complete folder *tmp* onto *path*: what is there already (a folder or a file)
    is first renamed aside under a temporary name (removed at once, or by a later run if this
    process dies in between), since a rename cannot replace a folder that holds files."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    aside = begin_temp(path, ZARR_SUFFIX)
    try:
        os.replace(path, aside)
        os.replace(tmp, path)
        remove_path(aside)
    finally:
        end_temp(aside)


def save_niizarr(
    path: str | os.PathLike[str],
    data: NDArray,
    header: nib.Nifti1Header,
    *,
    slope: float = 1.0,
    inter: float = 0.0,
    labels: bool | None = None,
) -> str:
    """Write the (I, J, K) volume *data* (stored values) as the NIfTI-Zarr *path* with
    *header*, atomically (:class:`ZarrPlaneWriter`, fed a slab at a time); return *path*."""
    header = header.copy()
    header.set_data_shape(data.shape)
    volume = data.reshape(spatial_shape(data.shape, os.fspath(path)), order="A")
    per = max(1, SLAB_CAP // max(1, volume.shape[0] * volume.shape[1] * volume.dtype.itemsize))
    per = max(CHUNK, per - per % CHUNK) if per >= CHUNK else per
    with ZarrPlaneWriter(path, header, slope=slope, inter=inter, labels=labels) as out:
        for k0 in range(0, volume.shape[2], per):
            out.write(volume[:, :, k0 : k0 + per])
        return out.close()
