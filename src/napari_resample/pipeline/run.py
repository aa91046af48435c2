"""The one pipeline: a volume in, the resampled volume with its header out.

Every target resolves once into an :class:`~napari_resample.pipeline.targets.OutputGrid`
(:func:`~napari_resample.pipeline.targets.resolve_target`) and every interpolation once
(:mod:`napari_resample.pipeline.rules`); the engines consume both.
:func:`resample_volume` resamples a volume in memory (the napari widget's worker calls it;
:func:`napari_resample.pipeline.reference.resample_volume_to_grid` for a reference grid);
:func:`resample_file` takes a file to a file for every front door that reads files
(``resampling()``, ``resample_to_spacing()``, ``resample_to_reference()``, the command line and
the dataset runner), streaming NIfTI files when :func:`napari_resample.pipeline.streamed.
decide_stream` says so and using the in-memory engines (:func:`resample_onto`) for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.grid import voxel_spacing
from napari_resample.engine.memory import default_budget, parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    Anchor,
    AutoInterpolation,
    Interpolation,
    check_choice,
    validate_size,
)
from napari_resample.engine.progress import CancelSignal, ProgressCallback
from napari_resample.engine.resample import resample_array, sample_grid
from napari_resample.io.header import set_stored_dtype, storable_dtype
from napari_resample.io.names import nifti_suffix
from napari_resample.io.nifti import NiftiVolume, spatial_volume
from napari_resample.io.volume_io import write_volume
from napari_resample.pipeline.limits import check_free_space, check_in_memory
from napari_resample.pipeline.oblique import sample_oblique
from napari_resample.pipeline.observe import Observers, labels_counted
from napari_resample.pipeline.rules import resolve_interpolation
from napari_resample.pipeline.targets import (
    GridTarget,
    OutputGrid,
    SizeTarget,
    Source,
    SpacingTarget,
    Target,
    resolve_target,
)

__all__ = [
    "METHODS",
    "FileResult",
    "GridTarget",
    "Method",
    "SizeTarget",
    "SpacingTarget",
    "Target",
    "geometry",
    "resample_file",
    "resample_onto",
    "resample_volume",
]

#: The engine for a reference grid: ``"auto"`` (separable when axis-aligned, else SimpleITK),
#: or one forced (tests compare them).
Method = Literal["auto", "separable", "itk"]
METHODS: tuple[str, ...] = get_args(Method)


def resample_volume(
    volume: NiftiVolume,
    desired_volume: Sequence[int],
    *,
    interpolation: AutoInterpolation = "auto",
    anchor: Anchor = "origin",
    antialias: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
) -> NiftiVolume:
    """Resample a 3D NIfTI volume to *desired_volume* voxels, keeping its field of view.

    Parameters
    ----------
    volume : NiftiVolume
        Stored voxels (unscaled) in NIfTI order with their affine, the file's header (or None
        for a volume that came from no NIfTI file) and scaling. A 4D volume counts when its extra
        axes are all 1 (:func:`napari_resample.io.nifti.spatial_volume`).
    desired_volume : (3,) sequence of int
        Target size (X, Y, Z) in the volume's voxel order (i, j, k).
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        ``"auto"`` (default) picks ``"label"`` for label maps and ``"bspline"`` otherwise
        (:func:`napari_resample.pipeline.rules.choose_interpolation`, which also warns about
        ``"bspline"`` or ``"linear"`` on a label map).
    anchor : {"origin", "center"}
    antialias : bool
    progress : callable, optional
        Called with the fraction done (0 to 1) after every slab, monotone.
    cancel : threading.Event or callable returning bool, optional
        Checked between slabs: once set, the call raises
        :class:`napari_resample.ResamplingCancelled` within one slab.

    Returns
    -------
    NiftiVolume
        ``data`` in the input's type (the header's on-disk type is the one NIfTI can store:
        bool -> uint8, float16 -> float32, converted on save),
        ``affine`` the new voxel -> RAS affine, ``header`` the header to write: when the volume's
        header still describes its grid, the file's header with qform and sform each moved by the
        same voxel transform (codes, units, intent, time step, other fields kept); otherwise one
        made from the new affine with the template's other fields (and, without a template,
        qform and sform codes ``volume.xform_code``, 1 (scanner) for a volume read from NRRD,
        MetaImage or DICOM, and units mm). Scaling and ``xform_code`` are kept.

    Raises
    ------
    ValueError
        For a bad option or size, a volume that is not 3D, or a header whose geometry cannot be
        resampled; before any voxel is computed.
    napari_resample.ResamplingCancelled
        When *cancel* was set.
    """
    size = validate_size(desired_volume)
    check_choice("anchor", anchor, ANCHORS)
    mode = resolve_interpolation(interpolation, volume)
    grid = resolve_target(SizeTarget(size, anchor, bool(antialias)), Source.of_volume(volume))
    return resample_onto(volume, grid, mode, progress=progress, cancel=cancel)


def resample_onto(
    volume: NiftiVolume,
    grid: OutputGrid,
    mode: Interpolation,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    force_itk: bool = False,
) -> NiftiVolume:
    """The in-memory engines on a resolved grid: *volume* resampled onto *grid* with *mode*.

    A size or spacing target goes through :func:`napari_resample.resample_array` (which streams
    what does not fit in memory); an axis-aligned grid through the separable engine on the
    input transposed by the grid's permutation (:func:`napari_resample.engine.resample.
    sample_grid`); an oblique one (or any, with *force_itk*) through SimpleITK
    (:func:`napari_resample.pipeline.oblique.sample_oblique`).

    Returns
    -------
    NiftiVolume
        ``data`` in the input's type (the header's on-disk type is the one NIfTI can store:
        bool -> uint8, float16 -> float32, converted on save), the grid's affine and a copy of
        its header; scaling and ``xform_code`` kept.
    """
    data = spatial_volume(volume.data, volume.path)
    if grid.anchor is not None:
        out, _ = resample_array(
            data,
            grid.shape,
            affine=volume.affine,
            interpolation=mode,
            anchor=grid.anchor,
            antialias=grid.antialias,
            progress=progress,
            cancel=cancel,
        )
    elif grid.perm is not None and grid.positions is not None and not force_itk:
        out = sample_grid(
            data.transpose(grid.perm),
            grid.positions,
            interpolation=mode,
            fill_value=grid.fill,
            progress=progress,
            cancel=cancel,
        )
    else:
        assert grid.mapping is not None and grid.fill is not None  # a grid target's
        name = repr(volume.path) if volume.path else "the volume"
        out = sample_oblique(
            data, grid.mapping, grid.shape, mode, grid.fill, progress, cancel, name=name
        )
    header = grid.header.copy()
    set_stored_dtype(header, storable_dtype(out.dtype))  # bool, float16: converted on save
    return NiftiVolume(
        out, grid.affine, header, volume.slope, volume.inter, xform_code=volume.xform_code
    )


# --------------------------------------------------------------------------- files


@dataclass
class FileResult:
    """What :func:`resample_file` did: the geometry before and after (shape, spacing, field of
    view, data type), the interpolation used, whether the volume was streamed (and read twice),
    and what the target adds (requested and achieved spacing, overlap)."""

    before: dict[str, Any]
    after: dict[str, Any]
    interpolation: str
    streamed: bool
    first_pass: bool
    info: dict[str, Any] = field(default_factory=dict)


def geometry(shape: Sequence[int], affine: NDArray, dtype: np.dtype) -> dict[str, Any]:
    """Shape, spacing, field of view (mm) and data type, for records and summaries."""
    shape3 = [int(n) for n in shape[:3]]
    spacing = [float(v) for v in voxel_spacing(affine)]
    return {
        "shape": shape3,
        "spacing": spacing,
        "fov": [n * s for n, s in zip(shape3, spacing, strict=True)],
        "dtype": np.dtype(dtype).name,
    }


def resample_file(
    path: str,
    out_file: str,
    target: Target,
    *,
    interpolation: AutoInterpolation,
    series: str | None = None,
    max_memory: int | str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    check_disk: bool = True,
    observers: Observers | None = None,
) -> FileResult:
    """Resample the volume at *path* onto *target* and write it to *out_file* (its folder must
    exist): the file pipeline of every front door that reads files.

    *observers* (:class:`napari_resample.pipeline.observe.Observers`) see the stored voxels of
    the input and of the output as they pass, without a second read.

    The target resolves once, from the header, into the grid both engines use. NIfTI files are
    **streamed** when :func:`napari_resample.pipeline.streamed.decide_stream` says so:
    decompression, resampling and compression run at the same time, and memory stays within
    *max_memory* whatever the volume's size. Other formats, float volumes with NaN or Inf,
    grids read backwards along k or oblique, and ``"auto"`` on volumes that fit in memory go
    through the in-memory engines (:func:`resample_onto`), within *max_memory* too
    (:func:`napari_resample.pipeline.limits.check_in_memory`). Both give the same file, bit for
    bit. With *check_disk* (default), a result that cannot fit the free space of its folder is
    refused first (:func:`napari_resample.pipeline.limits.check_free_space`).

    Raises
    ------
    FileNotFoundError, ValueError, OSError
        As the front doors say (OSError also for a result larger than the free space, with
        *check_disk*); nothing is left behind.
    MemoryError
        When the work cannot fit *max_memory* (default: half the memory available now) even
        streamed, or in memory where it cannot be streamed, before anything is written.
    """
    from napari_resample.io.formats import load_volume
    from napari_resample.pipeline import streamed

    budget = default_budget() if max_memory is None else parse_bytes(max_memory)
    if nifti_suffix(path) is None:
        # the budget bounds the read too: the header's claim is checked before any voxel
        volume = load_volume(path, series=series, max_memory=budget)
        source = Source.of_volume(volume)
        grid = resolve_target(target, source)
        if check_disk:
            check_free_space(out_file, grid, source.dtype)
        check_in_memory(source, grid, interpolation, budget, _READ_WHOLE)
        return _in_memory(
            volume, source, grid, out_file, interpolation, progress, cancel, observers
        )
    reader = streamed.open_planes(path)
    try:
        source = Source.of_reader(reader)
        grid = resolve_target(target, source)
        if check_disk:
            check_free_space(out_file, grid, source.dtype)
        done = streamed.stream_file(
            reader,
            out_file,
            grid,
            interpolation=interpolation,
            budget=budget,
            progress=progress,
            cancel=cancel,
            observers=observers,
        )
    finally:
        reader.close()
    if done is not None:
        before = geometry(source.shape, source.affine, source.dtype)
        after = geometry(done.shape, done.affine, done.dtype)
        return FileResult(before, after, done.interpolation, True, done.first_pass, _info(grid))
    check_in_memory(source, grid, interpolation, budget, _not_streamed(grid))
    volume = load_volume(path, series=series)
    return _in_memory(volume, source, grid, out_file, interpolation, progress, cancel, observers)


#: Why a volume is resampled in memory, for :func:`check_in_memory`'s message.
_READ_WHOLE = "NRRD, MetaImage and DICOM inputs are read and resampled whole"


def _not_streamed(grid: OutputGrid) -> str:
    if grid.perm is None:
        return "a grid oblique to the input's is resampled whole, by SimpleITK"
    if not grid.streamable:
        return "a grid that swaps the input's axes is resampled whole"
    return "float voxels with NaN or Inf, and grids read backwards along k, are resampled whole"


def _in_memory(
    volume: NiftiVolume,
    source: Source,
    grid: OutputGrid,
    out_file: str,
    interpolation: AutoInterpolation,
    progress: ProgressCallback | None,
    cancel: CancelSignal | None,
    observers: Observers | None = None,
) -> FileResult:
    """*volume* (read from *source*'s file) resampled in memory onto *grid* and saved; the
    *observers* see both volumes whole."""
    before = geometry(source.shape, source.affine, source.dtype)
    mode = resolve_interpolation(interpolation, volume)
    if observers is not None:
        labels = labels_counted(mode, source.dtype)
        observers.input.begin(source.shape, source.affine, source.dtype, labels)
        observers.input.add(0, volume.data.reshape(source.shape))
    result = resample_onto(volume, grid, mode, progress=progress, cancel=cancel)
    del volume
    write_volume(out_file, result, labels=labels_counted(mode, source.dtype))
    if observers is not None:
        data = result.data
        observers.output.begin(data.shape, result.affine, data.dtype, labels)
        observers.output.add(0, data.reshape(data.shape[:3]))
    after = geometry(result.data.shape, result.affine, result.data.dtype)
    return FileResult(before, after, mode, False, False, _info(grid))


def _info(grid: OutputGrid) -> dict[str, Any]:
    """What the target adds to a file's record (the overlap to 6 digits)."""
    info = dict(grid.info)
    if "overlap" in info:
        info["overlap"] = round(float(info["overlap"]), 6)
    return info
