"""What every writer of a volume plane by plane promises: :class:`PlaneSink`.

Planes come in k order as blocks ``(I, J, n)``, are cast exactly to the header's stored type
(:func:`exact_cast`) and go to a temporary file or folder beside the destination, renamed onto it
by :meth:`PlaneSink.close` only when every plane was written; :meth:`PlaneSink.abort`, an
exception inside a ``with`` block or a wrong number of planes leaves nothing behind. The
``.nii``/``.nii.gz`` writer (:class:`napari_resample.io.plane_writer.PlaneWriter`) and the
NIfTI-Zarr one (:class:`napari_resample.io.niizarr_write.ZarrPlaneWriter`) differ only in where
the planes go (:meth:`PlaneSink.put`) and how a complete volume is finished
(:meth:`PlaneSink.finish`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.io.atomic import write_error
from napari_resample.io.nifti import spatial_shape


class PlaneSink(ABC):
    """A volume written plane by plane, in k order, atomically (see the module docstring).

    Subclasses set ``path``, then call :meth:`take_header` (``shape``, ``stored``,
    ``written``), and set ``_open`` (True) in their constructor.
    """

    path: str
    shape: tuple[int, int, int]
    stored: np.dtype
    written: int
    _open: bool
    #: Whether :meth:`foresee` does anything with its planes (else nobody should make them).
    foresees: bool = False

    def take_header(self, header: object) -> None:
        """Set ``shape``, ``stored`` and ``written`` from *header* (``path`` already set).

        Raises
        ------
        ValueError
            A header that is not NIfTI-1 or NIfTI-2, or that holds more than one volume.
        """
        if not isinstance(header, nib.Nifti1Header):  # a Nifti2Header is one
            raise ValueError(f"header must be a NIfTI-1 or NIfTI-2 header, got {header!r}")
        self.shape = spatial_shape(header.get_data_shape(), self.path)
        self.stored = header.get_data_dtype()
        self.written = 0

    @property
    def planes(self) -> int:
        """How many planes the volume holds (K)."""
        return self.shape[2]

    def write(self, block: NDArray, *, handed_over: bool = False) -> None:
        """Append planes: *block* is (I, J, n), the next n planes in k order, cast exactly to
        the header's type (:func:`exact_cast`). *handed_over*: the caller will not change
        *block* again, so a writer may keep it instead of a copy.

        Raises
        ------
        ValueError
            A block of the wrong shape, more planes than the header has, values the stored
            type cannot hold exactly, or a writer that was closed already.
        OSError
            The planes could not be written (a full disk: naming path and free space).
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
        data = exact_cast(block, self.stored, self.path)
        try:
            self.put(data, handed_over or data is not block)
        except BaseException as exc:
            self._raise_failed(exc)
        self.written += block.shape[2]

    def close(self) -> str:
        """Finish the volume and rename it onto *path*; return *path*.

        Raises
        ------
        ValueError
            Fewer planes than the header's K were written (the temporary file or folder is
            removed).
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
            self.finish()
        except BaseException as exc:
            self._raise_failed(exc)
        self._open = False
        self.finished()
        return self.path

    def _raise_failed(self, exc: BaseException) -> None:
        """Abort, then raise *exc* or the one sentence the system's error becomes (a full disk
        named as :func:`~napari_resample.io.nifti.save_nifti` names it)."""
        self.abort()
        failure = write_error(exc, self.path)
        if failure is exc:
            raise exc
        raise failure from exc

    def foresee(self, k0: int, block: NDArray) -> None:
        """Planes k0.. that will probably be written later, as :meth:`write` will get them: a
        hint a writer may use to start work early (a ``.nii.gz`` compresses them ahead), and
        read later, so *block* must not change. The file holds only what :meth:`write` gets.
        By default, nothing is done."""
        return None  # a hint: ignoring it is always correct

    @abstractmethod
    def put(self, data: NDArray, handed_over: bool) -> None:
        """Take planes already checked and cast (I, J, n); *handed_over*: they will not
        change (see :meth:`write`)."""

    @abstractmethod
    def finish(self) -> None:
        """Finish the complete volume and rename it onto *path* (failures are aborted by
        :meth:`close`)."""

    @abstractmethod
    def finished(self) -> None:
        """What follows the rename (the temporary name forgotten, the folder synced)."""

    @abstractmethod
    def abort(self) -> None:
        """Stop writing and remove the temporary file or folder; *path* is left as it was."""

    def __enter__(self) -> PlaneSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._open:
            self.close()


def exact_cast(block: NDArray, stored: np.dtype, path: str) -> NDArray:
    """*block* in the on-disk type *stored*: numpy's safe casts, or values that are the same
    after the cast (in range, integral for an integer type); ValueError otherwise (naming
    *path*, the value and where it is)."""
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
