"""What every reader of a volume plane by plane offers: :class:`PlaneSource`.

A volume's facts (path, header, affine, shape, stored type, scaling, what of the header was
ignored) are known before any voxel is read; iterating yields ``(k0, block)`` in k order once.
The ``.nii``/``.nii.gz`` reader (:class:`napari_resample.io.plane_reader.PlaneReader`, a
decompressing thread) and the NIfTI-Zarr one
(:class:`napari_resample.io.niizarr_read.ZarrPlaneReader`, slabs of chunks) differ only in how
the blocks come (:meth:`PlaneSource._blocks`) and what closing stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from napari_resample.io.nifti import spatial_shape


class PlaneSource(ABC):
    """The planes of a volume, read once, in k order.

    Iterating yields ``(k0, block)``: *block* is an (I, J, n) ndarray, native byte order,
    holding the stored (unscaled) values of planes ``k0 .. k0 + n - 1``. Iterate again and
    RuntimeError is raised.

    Attributes
    ----------
    path : str
    header : nibabel.Nifti1Header or nibabel.Nifti2Header
        A copy of the volume's header (an unusable qform or sform whose code is 0 replaced, as
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

    path: str
    header: Any
    affine: NDArray[np.float64]
    shape: tuple[int, int, int]
    dtype: np.dtype
    slope: float
    inter: float
    ignored: tuple[str, ...]
    planes_per_block: int
    _iterated: bool
    _closed: bool

    def take_volume(
        self,
        path: str,
        header: Any,
        affine: Any,
        shape: tuple[int, ...],
        stored: np.dtype,
        scaling: tuple[float, float],
        ignored: tuple[str, ...],
        block_bytes: int,
    ) -> int:
        """Set the volume's facts and ``planes_per_block`` (blocks of at most *block_bytes*,
        one plane at least); return the bytes of one plane.

        Raises
        ------
        ValueError
            A *shape* that is not one 3D volume
            (:func:`~napari_resample.io.nifti.spatial_shape`).
        """
        self.path, self.header = path, header
        self.affine = np.array(affine, dtype=np.float64)
        self.shape = spatial_shape(shape, path)
        self.dtype = np.dtype(stored).newbyteorder("=")
        self.slope, self.inter = scaling
        self.ignored = ignored
        i, j, k = self.shape
        plane = i * j * self.dtype.itemsize
        self.planes_per_block = max(1, min(k, block_bytes // plane))
        self._iterated = self._closed = False
        return plane

    def __iter__(self) -> Iterator[tuple[int, NDArray]]:
        if self._iterated or self._closed:
            raise RuntimeError(f"the planes of {self.path!r} were read already; open it again")
        self._iterated = True
        return self._blocks()

    @abstractmethod
    def _blocks(self) -> Iterator[tuple[int, NDArray]]:
        """The blocks, in k order."""

    @abstractmethod
    def close(self) -> None:
        """Stop reading; what the reader holds open is closed when this returns."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()
