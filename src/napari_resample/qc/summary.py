"""What quality control knows of one volume: :class:`VolumeSummary`, gathered plane by plane.

A :class:`Summarizer` is fed the stored (unscaled) voxels of a volume as they pass, in blocks of
whole k-planes ``(I, J, n)`` from plane ``k0`` (the blocks a streamed run reads or writes anyway,
or one block holding a whole in-memory volume), and keeps only what the checks and the pictures
need: the finite value range, the count of NaN and infinite values, each label's voxel count
(label maps only) and the three mid-planes, reduced to thumbnail size. Nothing it keeps grows
with the volume. :func:`summarize_file` reads a file's planes for a finished run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.grid import voxel_spacing

#: The longest side of a kept mid-plane, in pixels (a thumbnail's resolution).
THUMB_PIXELS = 256
#: Voxels counted at a time for a label map's counts (2 MiB as int64: in cache).
COUNT_PIECE = 1 << 18
#: Most values counted by one comparison each (:func:`_few_counts`); more go to ``bincount``.
FEW_LABELS = 16
#: Which axes each mid-plane spans, named by the axis it cuts (NIfTI voxel order i, j, k).
MID_PLANES = {"i": (1, 2), "j": (0, 2), "k": (0, 1)}


@dataclass
class VolumeSummary:
    """One volume as the QC checks see it: header facts, value facts and three mid-planes.

    Attributes
    ----------
    path : str
    shape : (3,) tuple of int
    dtype : str
        The stored type's name.
    slope, inter : float
        The stored scaling; every value below is a stored value, scale it to compare files.
    affine : (4, 4) ndarray
        nibabel's best affine (sform when its code is set, else qform, else pixdim).
    qform, sform : (4, 4) ndarray or None
        The forms whose code is not 0 (None: unset).
    qform_code, sform_code : int
    label_map : bool
        Whether the run treated the volume as a label map (labels counted).
    lo, hi : float or None
        The finite stored minimum and maximum (None: no finite voxel, or not seen).
    nan, inf : int
        NaN and infinite voxels.
    labels : dict of int to int or None
        Voxel count of each stored value of a label map (None for other volumes).
    mids : dict of str to 2-D ndarray
        The mid-plane cutting axis ``"i"``, ``"j"`` and ``"k"`` (see :data:`MID_PLANES`), in
        stored values, every ``step``-th voxel along each of its axes.
    steps : dict of str to (2,) tuple of int
        The stride each mid-plane was taken with along its two axes.
    """

    path: str
    shape: tuple[int, int, int]
    dtype: str
    slope: float = 1.0
    inter: float = 0.0
    affine: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))
    qform: NDArray[np.float64] | None = None
    sform: NDArray[np.float64] | None = None
    qform_code: int = 0
    sform_code: int = 0
    label_map: bool = False
    lo: float | None = None
    hi: float | None = None
    nan: int = 0
    inf: int = 0
    labels: dict[int, int] | None = None
    mids: dict[str, NDArray[Any]] = field(default_factory=dict)
    steps: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along i, j, k."""
        s = voxel_spacing(self.affine)
        return float(s[0]), float(s[1]), float(s[2])

    def scaled(self, value: float | None) -> float | None:
        """*value* (stored) with the file's scaling applied."""
        return None if value is None else value * self.slope + self.inter

    def mid_spacing(self, cut: str) -> tuple[float, float]:
        """Millimetres per pixel of mid-plane *cut* along its two axes (for true aspect)."""
        a, b = MID_PLANES[cut]
        sa, sb = self.steps.get(cut, (1, 1))
        return self.spacing[a] * sa, self.spacing[b] * sb

    def facts(self) -> dict[str, Any]:
        """The JSON-able facts (no mid-planes), for ``qc.json``."""
        return {
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "spacing": [round(v, 6) for v in self.spacing],
            "slope": self.slope,
            "inter": self.inter,
            "affine": np.round(self.affine, 6).tolist(),
            "qform_code": self.qform_code,
            "sform_code": self.sform_code,
            "axcodes": "".join(nib.aff2axcodes(self.affine)),
            "label_map": self.label_map,
            "min": self.scaled(self.lo),
            "max": self.scaled(self.hi),
            "nan": self.nan,
            "inf": self.inf,
            "labels": None if self.labels is None else {str(k): v for k, v in self.labels.items()},
        }


def add_header(summary: VolumeSummary, header: Any) -> None:
    """Set *summary*'s scaling, forms and codes from a NIfTI *header* as stored in its file
    (:func:`nifti_header`; its affine and shape stay those the voxels came with). The scaling
    is the one a reader applies (:func:`napari_resample.io.checks.usable_scaling`)."""
    from napari_resample.io.checks import usable_scaling

    slope, inter = usable_scaling(float(header["scl_slope"]), float(header["scl_inter"]))
    summary.slope, summary.inter = float(slope), float(inter)
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    summary.qform = None if qform is None else np.asarray(qform, dtype=np.float64)
    summary.sform = None if sform is None else np.asarray(sform, dtype=np.float64)
    summary.qform_code, summary.sform_code = int(qcode or 0), int(scode or 0)


def nifti_header(path: str | os.PathLike[str]) -> Any:
    """The NIfTI header of *path* as stored in the file, or None for another format.

    Only the header's bytes are read and parsed (with nibabel's checks and fixes, as
    ``nib.load`` makes them): ``nib.load`` would also build the image and its data proxy, 4x
    the time, and the header it gives has its scaling reset (``scl_slope`` and ``scl_inter``
    belong to the data proxy), where QC wants the file's.
    """
    from napari_resample.io.names import is_zarr_name, nifti_suffix

    path = os.fspath(path)
    if nifti_suffix(path) is None:
        return None
    if is_zarr_name(path):
        from napari_resample.io.volume_io import load_grid

        return load_grid(path)[0]  # the header a NIfTI-Zarr stores
    from nibabel.openers import ImageOpener

    with ImageOpener(path) as fh:
        block = fh.read(nib.Nifti2Header.template_dtype.itemsize)
    for klass in (nib.Nifti1Header, nib.Nifti2Header):  # told apart by sizeof_hdr, as nib.load
        size = klass.template_dtype.itemsize
        if len(block) >= size and size in (
            int.from_bytes(block[:4], "little"),
            int.from_bytes(block[:4], "big"),
        ):
            return klass(block[:size], check=True)
    raise ValueError(f"{path!r} has no NIfTI-1 or NIfTI-2 header (sizeof_hdr is not 348 or 540)")


class Summarizer:
    """Gathers a :class:`VolumeSummary` from blocks of k-planes (see the module's docstring).

    Call :meth:`begin` (again to start over, as when a streamed run falls back to memory), then
    :meth:`add` for every block in k order, then :meth:`finish`.

    Parameters
    ----------
    path : str
        The volume's file, for the summary and its messages.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.summary = VolumeSummary(os.fspath(path), (0, 0, 0), "")
        self._rows: dict[str, list[NDArray[Any]]] = {"i": [], "j": []}
        self._steps: dict[str, tuple[int, int]] = {}
        self._counts: NDArray[np.int64] | None = None
        self._offset = 0
        self._range_needed = True

    def begin(
        self,
        shape: tuple[int, ...],
        affine: NDArray[Any],
        dtype: np.dtype,
        label_map: bool,
        *,
        range_given: bool = False,
    ) -> None:
        """Start (over): the volume's shape and affine, the stored type of the blocks to come,
        whether labels are to be counted, and whether :meth:`value_range` will give the range
        (then the blocks' range is not computed: the engine computed it)."""
        shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.summary = VolumeSummary(
            self.summary.path,
            shape3,
            np.dtype(dtype).newbyteorder("=").name,
            affine=np.asarray(affine, dtype=np.float64),
            label_map=bool(label_map),
        )
        self._rows = {"i": [], "j": []}
        self._steps = {cut: _steps(shape3, cut) for cut in MID_PLANES}
        self._counts, self._offset = None, 0
        # the range comes from the run, or from the label counts: no pass over the voxels
        self._range_needed = not range_given and not (label_map and np.dtype(dtype).kind in "iub")

    def value_range(self, lo: float, hi: float) -> None:
        """The volume's exact finite [min, max] (stored values), found by the run."""
        self.summary.lo, self.summary.hi = float(lo), float(hi)

    def add(self, k0: int, block: NDArray[Any]) -> None:
        """Take planes ``k0 .. k0 + n - 1`` (*block*: ``(I, J, n)``, stored values)."""
        s = self.summary
        if self._range_needed:
            self._range(block)
        if s.label_map:
            self._count(block)
        step = self._steps["k"][0]  # one stride on every axis (see _steps)
        first = -k0 % step  # the block's first plane k with k % step == 0
        if first < block.shape[2]:  # copies: a block's memory may be reused for the next
            self._rows["i"].append(np.array(block[s.shape[0] // 2, ::step, first::step]))
            self._rows["j"].append(np.array(block[::step, s.shape[1] // 2, first::step]))
        mid_k = s.shape[2] // 2
        if k0 <= mid_k < k0 + block.shape[2]:
            a, b = self._steps["k"]
            s.mids["k"] = np.array(block[::a, ::b, mid_k - k0])

    def finish(self, header: Any = None) -> VolumeSummary:
        """The summary, mid-planes joined and labels counted; *header* (the file's NIfTI
        header, if it has one) adds its forms, codes and scaling."""
        s = self.summary
        if header is not None:
            add_header(s, header)
        for cut, rows in self._rows.items():
            if rows:
                s.mids[cut] = np.concatenate(rows, axis=1)
        s.steps = {cut: self._steps[cut] for cut in s.mids}
        if s.label_map and self._counts is not None:
            nz = np.flatnonzero(self._counts)
            s.labels = {int(v + self._offset): int(self._counts[v]) for v in nz}
            if not self._range_needed and s.lo is None and s.labels:
                s.lo, s.hi = float(min(s.labels)), float(max(s.labels))
        return s

    def _range(self, block: NDArray[Any]) -> None:
        s = self.summary
        values = block
        if block.dtype.kind == "f":
            finite = np.isfinite(block)
            if not finite.all():
                nan = int(np.isnan(block).sum())
                s.nan += nan
                s.inf += int(block.size - finite.sum()) - nan
                values = block[finite]
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            s.lo = lo if s.lo is None else min(s.lo, lo)
            s.hi = hi if s.hi is None else max(s.hi, hi)

    def _count(self, block: NDArray[Any]) -> None:
        if block.dtype.kind not in "iub":
            values, counts = np.unique(block[np.isfinite(block)], return_counts=True)
            if np.all(values == np.round(values)):
                self._add_counts(values.astype(np.int64), counts)
            return
        flat = block.reshape(-1, order="A")
        if block.dtype == np.uint8 and flat.flags.c_contiguous and flat.size:
            counts = _sparse_byte_counts(flat)  # unsigned: no minimum to find
            self._add_counts(np.flatnonzero(counts), counts[counts > 0])
            return
        lo = int(flat.min()) if flat.size else 0
        span = int(flat.max()) - lo + 1 if flat.size else 1
        if block.dtype.itemsize == 1 and lo == 0 and flat.flags.c_contiguous:
            counts = _sparse_byte_counts(flat)
            self._add_counts(np.flatnonzero(counts), counts[counts > 0])
        elif block.dtype.itemsize == 1 or span <= 1 << 16:
            counts = _counts(flat, lo, span)
            self._add_counts(np.flatnonzero(counts) + lo, counts[counts > 0])
        else:
            values, counts = np.unique(flat, return_counts=True)
            self._add_counts(values.astype(np.int64), counts)

    def _add_counts(self, values: NDArray[np.int64], counts: NDArray[Any]) -> None:
        if values.size == 0:
            return
        lo, hi = int(values.min()), int(values.max())
        if self._counts is None:
            self._offset, self._counts = lo, np.zeros(hi - lo + 1, dtype=np.int64)
        if lo < self._offset or hi >= self._offset + self._counts.size:
            new_lo = min(lo, self._offset)
            new_hi = max(hi, self._offset + self._counts.size - 1)
            grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
            grown[self._offset - new_lo : self._offset - new_lo + self._counts.size] = self._counts
            self._offset, self._counts = new_lo, grown
        np.add.at(self._counts, values - self._offset, counts)


def _counts(flat: NDArray[Any], lo: int, span: int) -> NDArray[np.int64]:
    """Voxel count of each value ``lo .. lo + span - 1`` of integer *flat*. ``bincount`` casts
    to 64 bits: in pieces that stay in cache (2.3x faster on uint8 than in one go)."""
    counts = np.zeros(span, dtype=np.int64)
    for start in range(0, flat.size, COUNT_PIECE):
        piece = flat[start : start + COUNT_PIECE].astype(np.int64)
        piece -= lo
        counts += np.bincount(piece, minlength=span)
    return counts


def _few_counts(flat: NDArray[Any], span: int) -> NDArray[np.int64]:
    """:func:`_counts` from 0 for few values (span <= :data:`FEW_LABELS`): one counting
    comparison per value, without the cast to 64 bits (2.8x faster on 5 labels)."""
    if span > FEW_LABELS:
        return _counts(flat, 0, span)
    counts = np.zeros(span, dtype=np.int64)
    for value in range(1, span):
        counts[value] = np.count_nonzero(flat == value)
    counts[0] = flat.size - counts[1:].sum()
    return counts


def _sparse_byte_counts(flat: NDArray[Any]) -> NDArray[np.int64]:
    """:func:`_counts` of contiguous one-byte labels from 0 (0 the background, no value
    below it), up to the largest: read as 8-byte words, only the words holding a label are
    counted (a label map is mostly background: 20x faster than :func:`_counts` on the dataset
    benchmark's, 3 % labelled); the rest are 8 zeros each, and the largest value is found among
    the others."""
    whole = flat.size - flat.size % 8
    words = flat[:whole].view(np.uint64)
    busy = words != 0  # one comparison per 8 bytes
    n_busy = int(np.count_nonzero(busy))
    if n_busy * 2 > words.size:  # mostly labelled: no gain in the gather
        return _counts(flat, 0, int(flat.max()) + 1)
    # the busy words gathered as words (a 1-D gather: 5x faster than one of 8-byte rows),
    # then seen as their bytes, in any order: only the counts matter
    labelled = words[busy].view(np.uint8)
    tail = flat[whole:]
    span = max(int(labelled.max(initial=0)), int(tail.max(initial=0))) + 1
    counts = _few_counts(labelled, span)
    counts += _few_counts(tail, span)
    counts[0] += (words.size - n_busy) * 8
    return counts


def _steps(shape: tuple[int, int, int], cut: str) -> tuple[int, int]:
    """The strides that bring mid-plane *cut* to at most :data:`THUMB_PIXELS` a side, the same
    stride for every axis so the aspect stays true (k shares the i and j cuts' stride)."""
    step = max(1, -(-max(shape) // THUMB_PIXELS))
    return step, step


def summarize_file(path: str | os.PathLike[str], *, label_map: bool) -> VolumeSummary:
    """The summary of the volume at *path* (NIfTI read plane by plane; NRRD, MetaImage and
    DICOM read whole), for the checks of a finished run.

    Raises
    ------
    FileNotFoundError, ValueError, OSError
        As the readers of :mod:`napari_resample.io` do.
    """
    from napari_resample.io.formats import load_volume
    from napari_resample.io.names import nifti_suffix
    from napari_resample.io.volume_io import open_volume_planes as open_planes

    summarizer = Summarizer(path)
    if nifti_suffix(os.fspath(path)) is not None:
        with open_planes(path) as reader:
            summarizer.begin(reader.shape, reader.affine, reader.dtype, label_map)
            for k0, block in reader:
                summarizer.add(k0, block)
        return summarizer.finish(nifti_header(path))  # as stored: the scaling too
    volume = load_volume(os.fspath(path))
    data = volume.data.reshape(volume.data.shape[:3])
    summarizer.begin(data.shape, volume.affine, data.dtype, label_map)
    summarizer.add(0, data)
    summary = summarizer.finish(volume.header)
    summary.slope, summary.inter = volume.slope, volume.inter
    return summary
