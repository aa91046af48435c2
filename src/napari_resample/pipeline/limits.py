"""What a file resampling may take, checked once the grid is known and before any work: the
free space of the output's folder (:func:`check_free_space`) and the memory budget of the
in-memory engines (:func:`check_in_memory`).

Both are called by :func:`napari_resample.pipeline.run.resample_file` only, the path of every
front door that writes files (``resampling()``, ``resample_to_spacing()``,
``resample_to_reference()``, the command line and the dataset runner), so each rule lives here
and nowhere else. The streamed engine keeps its own window within the budget
(:mod:`napari_resample.pipeline.streamed`); what it hands to the in-memory engines (float
volumes with NaN or Inf, oblique grids, grids that swap or reverse axes, NRRD / MetaImage /
DICOM inputs) must fit the same budget, so that ``max_memory`` is a promise on every path.
"""

from __future__ import annotations

import math
import os
import shutil

import numpy as np

from napari_resample.engine.clamp import work_dtype
from napari_resample.engine.memory import format_bytes
from napari_resample.engine.options import AutoInterpolation, Interpolation
from napari_resample.engine.resample import estimate_memory
from napari_resample.io.header import storable_dtype
from napari_resample.pipeline.rules import (
    Counts,
    VolumeFacts,
    choose_interpolation,
    voxels_decide,
)
from napari_resample.pipeline.targets import OutputGrid, Source

__all__ = ["NIFTI_HEADER_BYTES", "check_free_space", "check_in_memory", "in_memory_need"]

#: Bytes before the voxels of a single-file NIfTI-1 (348 header bytes and 4 extension flags).
NIFTI_HEADER_BYTES = 352


def check_free_space(out_file: str, grid: OutputGrid, dtype: np.dtype) -> None:
    """Refuse a result that cannot fit the free space of its folder, before any work.

    The bound is the result's uncompressed size (its voxels in the type NIfTI stores, and the
    header): a ``.nii.gz`` usually takes less, never much more, so a result refused here would
    not fit uncompressed, and one accepted fits however it compresses. Where the free space
    cannot be read, nothing is checked (the write itself says if the disk fills).

    Parameters
    ----------
    out_file : str
        The result's path (its folder exists).
    grid : OutputGrid
        The resolved target (its shape).
    dtype : numpy.dtype
        The input's stored type (the result's).

    Raises
    ------
    OSError
        Naming the result, the bytes it needs, the folder and its free bytes.
    """
    folder = os.path.dirname(os.path.abspath(out_file))
    stored = storable_dtype(dtype)
    need = math.prod(grid.shape) * stored.itemsize + NIFTI_HEADER_BYTES
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if need > free:
        shape = "x".join(map(str, grid.shape))
        raise OSError(
            f"the result {out_file!r} ({shape} {stored}) needs up to {format_bytes(need)} "
            f"({need} bytes uncompressed), but its folder {folder!r} has only "
            f"{format_bytes(free)} ({free} bytes) free: free some space or choose another "
            "output folder (check_disk=False, or --no-disk-check, writes anyway)"
        )


def in_memory_need(source: Source, grid: OutputGrid, modes: tuple[str, ...]) -> int:
    """Bytes the in-memory engines take to resample *source* onto *grid*: the input held in
    memory, the engine's work for the costliest of *modes*
    (:func:`napari_resample.engine.resample.estimate_memory`, or SimpleITK's copies for an
    oblique grid), and a float input's non-finite filling (a filled copy, its masks)."""
    n_in = math.prod(source.shape)
    item = source.dtype.itemsize
    need = n_in * item
    if source.dtype.kind == "f":
        need += n_in * (item + 13)  # the filled copy, masks and indices of fill_nonfinite
    if grid.perm is not None:
        shape = tuple(source.shape[p] for p in grid.perm)
        work = max(
            estimate_memory(shape, source.dtype, grid.shape, mode, antialias=grid.antialias)
            for mode in modes
        )
    else:  # SimpleITK: its copy of the input (labels: their int64 and uint32 index), outputs
        n_out = math.prod(grid.shape)
        wide = work_dtype(source.dtype).itemsize
        work = n_in * (item + 12) + n_out * (3 * wide + item + 1)
    return need + work


def check_in_memory(
    source: Source,
    grid: OutputGrid,
    interpolation: AutoInterpolation,
    budget: int,
    why: str,
) -> None:
    """Refuse in-memory work over *budget* (``max_memory``), before the input is read (or, for
    the formats read whole, before it is resampled).

    *why* says why the work is in memory (for the message). ``"auto"`` counts as the costlier of
    label voting and B-spline unless the header decides
    (:func:`napari_resample.pipeline.rules.voxels_decide`).

    Raises
    ------
    MemoryError
        Naming the input, both sizes, the mode and *why*.
    """
    modes: tuple[Interpolation, ...]
    if interpolation != "auto":
        modes = (interpolation,)
    else:
        scaled = (source.slope, source.inter) != (1.0, 0.0)
        intent = 0 if source.header is None else int(source.header["intent_code"])
        facts = VolumeFacts(source.dtype, intent, scaled, repr(source.path))
        if voxels_decide(facts):
            modes = ("label", "bspline")
        else:
            modes = (choose_interpolation("auto", facts, _unasked),)
    need = in_memory_need(source, grid, modes)
    if need > budget:
        shape = "x".join(map(str, source.shape))
        raise MemoryError(
            f"resampling {source.path!r} ({shape} {source.dtype}) to "
            f"{'x'.join(map(str, grid.shape))} ({' or '.join(modes)}) needs "
            f"{format_bytes(need)} in memory ({why}), over the budget of "
            f"{format_bytes(budget)} (max_memory)"
        )


def _unasked() -> Counts:
    raise AssertionError("the header decides: no voxel counts asked")  # pragma: no cover
