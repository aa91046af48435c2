"""The one pipeline: a volume in, the resampled volume with its header out.

:func:`resample_volume` resamples a volume in memory (the napari widget's worker calls it);
:func:`resample_file` takes a file to a file for every front door that reads files
(``resampling()``, ``resample_to_spacing()``, ``resample_to_reference()``, the command line and
the dataset runner), streaming NIfTI files and falling back to :func:`resample_volume` (or
:func:`napari_resample.pipeline.reference.resample_volume_to_grid`) for the rest.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from nibabel.spatialimages import HeaderDataError
from numpy.typing import NDArray

from napari_resample.engine.geometry import grid_positions, resampled_affine
from napari_resample.engine.grid import (
    Grid,
    aligned_positions,
    spacing_size,
    voxel_map,
    voxel_spacing,
)
from napari_resample.engine.memory import default_budget, parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    Anchor,
    AutoInterpolation,
    check_choice,
    validate_size,
)
from napari_resample.engine.progress import CancelSignal, ProgressCallback
from napari_resample.engine.resample import resample_array
from napari_resample.io.header import (
    header_for_affine,
    resampled_header,
    same_grid,
    set_stored_dtype,
    storable_dtype,
)
from napari_resample.io.names import nifti_suffix
from napari_resample.io.nifti import NiftiVolume, save_volume, spatial_volume
from napari_resample.pipeline.rules import resolve_interpolation

if TYPE_CHECKING:  # the streaming modules load scipy.sparse: imported when a file is resampled
    from napari_resample.io.plane_reader import PlaneReader
    from napari_resample.pipeline.streamed import StreamTarget


def resample_volume(
    volume: NiftiVolume,
    desired_volume: Sequence[int],
    *,
    interpolation: AutoInterpolation = "bspline",
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
    interpolation : {"bspline", "linear", "nearest", "label", "auto"}
        ``"auto"`` picks ``"label"`` for label maps and ``"bspline"`` otherwise.
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
    data = spatial_volume(volume.data, volume.path)
    header, new_affine = size_header(
        volume.header, volume.affine, data.shape, size, anchor, volume.xform_code, volume.path
    )
    out, _ = resample_array(
        data,
        size,
        affine=volume.affine,
        interpolation=mode,
        anchor=anchor,
        antialias=antialias,
        progress=progress,
        cancel=cancel,
    )
    set_stored_dtype(header, storable_dtype(out.dtype))  # bool, float16: converted on save
    return NiftiVolume(
        out, new_affine, header, volume.slope, volume.inter, xform_code=volume.xform_code
    )


def size_header(
    template: Any,
    affine: NDArray[np.float64],
    shape: Sequence[int],
    size: tuple[int, int, int],
    anchor: Anchor,
    xform_code: int,
    path: str | None = None,
) -> tuple[Any, NDArray[np.float64]]:
    """The header and affine of a volume resampled to *size* (its data type still to set).

    When *template* (the file's header) still describes the grid, it is moved by the voxel
    transform (qform and sform each, codes, units, intent, time step kept); otherwise a header
    is made from the new affine with the template's other fields (and, without a template,
    codes *xform_code* and units mm).
    """
    shape3 = tuple(int(n) for n in shape[:3])
    if template is not None and same_grid(template, affine, shape3):
        try:
            header = resampled_header(template, shape3, size, anchor)
        except (ValueError, HeaderDataError, np.linalg.LinAlgError) as exc:
            where = f" of {path!r}" if path else ""
            raise ValueError(f"cannot resample the geometry in the header{where}: {exc}") from exc
        # codes 0/0 files: keep what nibabel will read back
        return header, np.asarray(header.get_best_affine(), dtype=np.float64)
    new_affine = resampled_affine(affine, shape3, size, anchor)
    header = header_for_affine(new_affine, size, template, code=xform_code)
    if template is None:  # an affine is in mm (a NIfTI file made from nothing says unknown)
        header.set_xyzt_units(xyz="mm")
    return header, new_affine


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class SizeTarget:
    """A target size (X, Y, Z), field of view kept."""

    size: tuple[int, int, int]
    anchor: Anchor = "origin"
    antialias: bool = False


@dataclass(frozen=True)
class SpacingTarget:
    """A target spacing (mm, i, j, k), field of view kept: the size is
    :func:`napari_resample.engine.grid.spacing_size`'s."""

    spacing: tuple[float, float, float]
    anchor: Anchor = "origin"
    antialias: bool = False


@dataclass(frozen=True)
class GridTarget:
    """Another image's grid (:class:`napari_resample.engine.grid.Grid`), *fill_value* outside the
    input's field of view (in the image's values)."""

    grid: Grid
    fill_value: float = 0.0


Target = SizeTarget | SpacingTarget | GridTarget


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
) -> FileResult:
    """Resample the volume at *path* onto *target* and write it to *out_file* (its folder must
    exist): the file pipeline of every front door that reads files.

    NIfTI files are **streamed** (:mod:`napari_resample.pipeline.streamed`): decompression,
    resampling and compression run at the same time, and memory stays within *max_memory*
    whatever the volume's size. Other formats, float volumes with NaN or Inf, grids read
    backwards along k or oblique, and ``"auto"`` on volumes that fit in memory go through the
    in-memory pipeline (:func:`resample_volume`, :func:`_reference.resample_volume_to_grid`).
    Both give the same file, bit for bit.

    Raises
    ------
    FileNotFoundError, ValueError, OSError
        As the front doors say; nothing is left behind.
    MemoryError
        When the work cannot fit *max_memory* (default: half the memory available now) even
        streamed, before anything is written.
    """
    from napari_resample.pipeline.streamed import stream_file

    budget = default_budget() if max_memory is None else parse_bytes(max_memory)
    if nifti_suffix(path) is not None:
        info: dict[str, Any] = {}
        grid_of = _stream_target(target, info, path)
        streamed = stream_file(
            path,
            out_file,
            grid_of,
            interpolation=interpolation,
            antialias=getattr(target, "antialias", False),
            budget=budget,
            progress=progress,
            cancel=cancel,
        )
        if streamed is not None:
            for message in info.pop("_warnings", ()):
                warnings.warn(message, stacklevel=2)
            return FileResult(
                info.pop("before"),
                geometry(streamed.shape, streamed.affine, streamed.dtype),
                streamed.interpolation,
                True,
                streamed.first_pass,
                info,
            )
    return _in_memory(path, out_file, target, interpolation, series, progress, cancel)


def _stream_target(
    target: Target, info: dict[str, Any], path: str
) -> Callable[[PlaneReader], StreamTarget | None]:
    """The callback giving :func:`stream_file` the output grid from the opened input; it fills
    *info* with the geometry before and what the target adds."""

    from napari_resample.pipeline.streamed import StreamTarget

    def grid_of(reader: PlaneReader) -> StreamTarget | None:
        info["before"] = geometry(reader.shape, reader.affine, reader.dtype)
        if isinstance(target, GridTarget):
            return _stream_grid(target, reader, info)
        size = target.size if isinstance(target, SizeTarget) else None
        if isinstance(target, SpacingTarget):
            size, achieved = spacing_size(reader.shape, reader.affine, target.spacing)
            info.update(spacing_requested=list(target.spacing), spacing_achieved=list(achieved))
        assert size is not None
        header, affine = size_header(
            reader.header, reader.affine, reader.shape, size, target.anchor, 2, path
        )
        return StreamTarget(grid_positions(reader.shape, size, target.anchor), header, affine)

    return grid_of


def _stream_grid(
    target: GridTarget, reader: PlaneReader, info: dict[str, Any]
) -> StreamTarget | None:
    from napari_resample.pipeline.reference import check_overlap, reference_header, stored_fill
    from napari_resample.pipeline.streamed import StreamTarget

    grid = target.grid
    shell = NiftiVolume(
        np.empty((0, 0, 0), reader.dtype),
        reader.affine,
        reader.header,
        reader.slope,
        reader.inter,
        reader.path,
    )
    aligned = aligned_positions(reader.shape, voxel_map(reader.affine, grid.affine), grid.shape)
    if aligned is None or aligned[0] != (0, 1, 2):
        return None  # oblique, or axes swapped: the in-memory pipeline checks it all
    fill = stored_fill(target.fill_value, shell, reader.dtype)
    # A low-overlap warning is given once the file is written (by resample_file): when the
    # streaming gives up after this point, the in-memory pipeline gives its own.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info["overlap"] = round(check_overlap(shell, grid, reader.shape), 6)
    info["_warnings"] = [w.message for w in caught]
    header = reference_header(reader.header, grid, grid.shape)
    affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    return StreamTarget(aligned[1], header, affine, fill)


def _in_memory(
    path: str,
    out_file: str,
    target: Target,
    interpolation: AutoInterpolation,
    series: str | None,
    progress: ProgressCallback | None,
    cancel: CancelSignal | None,
) -> FileResult:
    from napari_resample.io.formats import load_volume

    volume = load_volume(path, series=series)
    before = geometry(volume.data.shape, volume.affine, volume.data.dtype)
    mode = resolve_interpolation(interpolation, volume)
    info: dict[str, Any] = {}
    if isinstance(target, GridTarget):
        from napari_resample.pipeline.reference import resample_volume_to_grid

        result, overlap = resample_volume_to_grid(
            volume,
            target.grid,
            interpolation=mode,
            fill_value=target.fill_value,
            progress=progress,
            cancel=cancel,
        )
        info["overlap"] = round(overlap, 6)
    else:
        size = target.size if isinstance(target, SizeTarget) else None
        if isinstance(target, SpacingTarget):
            size, achieved = spacing_size(volume.data.shape, volume.affine, target.spacing)
            info.update(spacing_requested=list(target.spacing), spacing_achieved=list(achieved))
        assert size is not None
        result = resample_volume(
            volume,
            size,
            interpolation=mode,
            anchor=target.anchor,
            antialias=target.antialias,
            progress=progress,
            cancel=cancel,
        )
    del volume
    save_volume(out_file, result)
    after = geometry(result.data.shape, result.affine, result.data.dtype)
    return FileResult(before, after, mode, False, False, info)
