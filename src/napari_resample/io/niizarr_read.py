"""NIfTI-Zarr volumes (``.nii.zarr``) read: whole, or plane by plane for the streamed engine.

The header is the one the group stores byte for byte (its ``nifti`` array), checked as a
``.nii``'s is (:func:`~napari_resample.io.checks.check_header`) before any voxel is read; the
voxels are level 0 of the OME-Zarr multiscales, in (z, y, x) = (k, j, i) order, so that its C
order bytes are the NIfTI (i, j, k) F order bytes. Any NIfTI-Zarr is read, ours
(:mod:`napari_resample.io.niizarr_write`) or the reference implementation's (``nifti-zarr``,
Zarr v2 or v3, OME-NGFF 0.4 or 0.5, a time or channel axis of length 1).

Examples
--------
>>> import os, shutil, tempfile
>>> import nibabel as nib
>>> from napari_resample.io.niizarr_write import save_niizarr
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "a.nii.zarr")
>>> header = nib.Nifti1Header()
>>> header.set_data_dtype(np.int16)
>>> _ = save_niizarr(path, np.arange(60, dtype=np.int16).reshape((4, 3, 5), order="F"), header)
>>> with open_zarr_planes(path, block_bytes=24) as planes:
...     print(planes.shape, [(k0, b.shape[2]) for k0, b in planes][:2])
(4, 3, 5) [(0, 1), (1, 1)]
>>> load_niizarr(path).data[1, 0, :].tolist()
[1, 13, 25, 37, 49]
>>> shutil.rmtree(folder)
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.memory import check_memory
from napari_resample.io.checks import (
    check_header,
    check_voxel_type,
    ignored_header_fields,
    repair_unused_forms,
    usable_scaling,
    wrap_read_errors,
)
from napari_resample.io.nifti import NiftiVolume, spatial_shape
from napari_resample.io.plane_queue import positive_int
from napari_resample.io.plane_reader import BLOCK_BYTES
from napari_resample.io.plane_source import PlaneSource


def read_niizarr_header(path: str) -> tuple[nib.Nifti1Header, Any, tuple[float, float]]:
    """The checked header of the NIfTI-Zarr *path*, its level-0 array and its scaling
    ``(slope, inter)``; no voxel read. The header is as nibabel's image of a ``.nii`` holds
    it (``vox_offset`` 0, the scaling taken out: ``scl_slope`` and ``scl_inter`` NaN), so that
    it is written back the same way.

    Raises
    ------
    FileNotFoundError
        No folder at *path*.
    ValueError
        Not a NIfTI-Zarr (no ``nifti`` array, no multiscales), an impossible header
        (:func:`~napari_resample.io.checks.check_header`), a level 0 whose shape or type is not
        the header's, or more than one volume; each naming *path*.
    """
    import zarr

    if not os.path.isdir(path):
        raise FileNotFoundError(f"NIfTI-Zarr folder not found: {path!r}")
    with wrap_read_errors(path):
        group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        if "nifti" not in group:
            raise ValueError("no 'nifti' array: not a NIfTI-Zarr (an OME-Zarr without header?)")
        nifti: Any = group["nifti"]
        blob = np.asarray(nifti[:]).tobytes()
        header = _parse_header(blob)
        attrs: Any = dict(group.attrs)
        ome: Any = attrs.get("ome", attrs).get("multiscales")
        if not ome:
            raise ValueError("no OME multiscales metadata")
        names = [str(axis["name"]) for axis in ome[0]["axes"]]
        level0: Any = group[str(ome[0]["datasets"][0]["path"])]
    repair_unused_forms(header, path)
    if float(header["vox_offset"]) < header.single_vox_offset:
        header["vox_offset"] = header.single_vox_offset  # no voxels follow a stored header
    check_header(header, path)
    shape = spatial_shape(header.get_data_shape(), path)
    if sorted(names[-3:]) != ["x", "y", "z"] or names[-3:] != ["z", "y", "x"]:
        raise ValueError(f"the axes of {path!r} must end with z, y, x, got {names}")
    if any(int(n) != 1 for n in level0.shape[:-3]):
        raise ValueError(f"{path!r} holds more than one volume: level 0 is {level0.shape}")
    if tuple(int(n) for n in level0.shape[-3:]) != shape[::-1]:
        raise ValueError(
            f"level 0 of {path!r} has shape {level0.shape} (z, y, x), its header {shape} (i, j, k)"
        )
    check_voxel_type(np.dtype(level0.dtype), path)
    if np.dtype(level0.dtype).newbyteorder("=") != header.get_data_dtype().newbyteorder("="):
        raise ValueError(
            f"level 0 of {path!r} holds {level0.dtype}, its header says {header.get_data_dtype()}"
        )
    scaling = _scaling(header)
    header.set_data_offset(0)  # what nibabel's image of a file holds
    header.set_slope_inter(None, None)
    return header, level0, scaling


def _parse_header(blob: bytes) -> nib.Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header (and extensions) in *blob*, either byte order."""
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        for order in "<>":
            if len(blob) >= size and int(np.frombuffer(blob, order + "i4", 1)[0]) == size:
                return klass.from_fileobj(io.BytesIO(blob), check=False)
    raise ValueError(f"the 'nifti' array ({len(blob)} bytes) holds no NIfTI-1 or NIfTI-2 header")


def _scaling(header: nib.Nifti1Header) -> tuple[float, float]:
    slope, inter = header.get_slope_inter()
    return usable_scaling(
        1.0 if slope is None else float(slope), 0.0 if inter is None else float(inter)
    )


def load_niizarr(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI-Zarr volume whole, as :func:`~napari_resample.io.nifti.load_nifti` reads a
    ``.nii``: the stored values (native byte order) in the header's (I, J, K[, 1...]) shape,
    the header, the best affine and the scaling.

    Raises
    ------
    FileNotFoundError, ValueError
        Those of :func:`read_niizarr_header`, before any voxel is read.
    MemoryError
        The voxels do not fit in the memory available now (naming the sizes).
    """
    path = os.fspath(path)
    header, level0, (slope, inter) = read_niizarr_header(path)
    dtype = np.dtype(level0.dtype).newbyteorder("=")
    shape = tuple(int(n) for n in header.get_data_shape())
    check_memory(int(np.prod(shape)) * dtype.itemsize, f"reading the voxel data of {path!r}")
    with wrap_read_errors(path):
        zyx = np.asarray(level0[...]).reshape(level0.shape[-3:])
    data = zyx.transpose(2, 1, 0).astype(dtype, copy=False).reshape(shape, order="F")
    affine = np.array(header.get_best_affine(), dtype=np.float64)
    ignored = tuple(ignored_header_fields(header, path))
    return NiftiVolume(data, affine, header, slope, inter, path, ignored)


def open_zarr_planes(
    path: str | os.PathLike[str], *, block_bytes: int = BLOCK_BYTES, queue_blocks: int = 2
) -> ZarrPlaneReader:
    """Open a NIfTI-Zarr volume to read its (i, j) planes in k order, a block at a time (the
    interface of :func:`~napari_resample.io.plane_reader.open_planes`)."""
    return ZarrPlaneReader(path, block_bytes=block_bytes, queue_blocks=queue_blocks)


class ZarrPlaneReader(PlaneSource):
    """The planes of a NIfTI-Zarr volume (see :func:`open_zarr_planes`; the attributes and
    iteration of :class:`~napari_resample.io.plane_source.PlaneSource`).

    Planes are read a slab of chunks along k at a time (each chunk decoded once, Zarr's threads
    decoding a slab's chunks in parallel) and handed out in blocks of ``planes_per_block``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_bytes: int = BLOCK_BYTES,
        queue_blocks: int = 2,
    ) -> None:
        block_bytes = positive_int("block_bytes", block_bytes)
        positive_int("queue_blocks", queue_blocks)  # no queue: checked for the same interface
        path = os.fspath(path)
        header, self._level0, scaling = read_niizarr_header(path)
        plane = self.take_volume(
            path,
            header,
            header.get_best_affine(),
            header.get_data_shape(),
            np.dtype(self._level0.dtype),
            scaling,
            tuple(ignored_header_fields(header, path)),
            block_bytes,
        )
        depth = int(self._level0.chunks[-3])
        self._slab = max(depth, self.planes_per_block - self.planes_per_block % depth)
        check_memory(
            (self._slab + self.planes_per_block) * plane,
            f"reading {path!r} in slabs of {self._slab} planes",
        )

    def _blocks(self) -> Iterator[tuple[int, NDArray]]:
        k = self.shape[2]
        for s0 in range(0, k, self._slab):
            s1 = min(s0 + self._slab, k)
            with wrap_read_errors(self.path):
                zyx = np.asarray(self._level0[..., s0:s1, :, :]).reshape(
                    (s1 - s0, *self._level0.shape[-2:])
                )
            slab = zyx.transpose(2, 1, 0).astype(self.dtype, copy=False)  # (I, J, n), F order
            for k0 in range(s0, s1, self.planes_per_block):
                k1 = min(k0 + self.planes_per_block, s1)
                yield k0, slab[:, :, k0 - s0 : k1 - s0]
            if self._closed:
                return
        self._closed = True

    def close(self) -> None:
        """Stop reading (nothing is left open between blocks)."""
        self._closed = True
