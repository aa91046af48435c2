"""Targets resolved once: a size, a spacing or another image's grid becomes the one
:class:`OutputGrid` both engines consume.

As in nibabel's ``processing.py``, a target is in the end a shape and an affine; the grid adds
what the engines need (the input position each output voxel samples, the fill outside the
input's field of view), the header to write, and what the front doors report (requested and
achieved spacing, overlap). It is resolved from the input's header (:class:`Source`), before any
voxel is read, by :func:`resolve_target`: the streamed and the in-memory pipelines then work on
the same grid, so they cannot disagree on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from nibabel.spatialimages import HeaderDataError
from numpy.typing import NDArray

from napari_resample.engine.geometry import (
    Positions,
    grid_positions,
    inside_positions,
    resampled_affine,
)
from napari_resample.engine.grid import (
    Grid,
    aligned_positions,
    format_bounds,
    overlap_fraction,
    spacing_size,
    voxel_map,
    world_bounds,
)
from napari_resample.engine.options import Anchor
from napari_resample.io.header import XFORM_ALIGNED, header_for_affine, resampled_header, same_grid
from napari_resample.io.nifti import NiftiVolume, spatial_volume
from napari_resample.pipeline.rules import warn_caller

if TYPE_CHECKING:
    from napari_resample.io.plane_source import PlaneSource

#: Warn when the input covers less than this fraction of the reference's field of view.
LOW_OVERLAP = 0.5


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


@dataclass(frozen=True)
class Source:
    """What a target is resolved against: the input's header facts, not its voxels.

    Attributes
    ----------
    shape : (3,) tuple of int, voxel order (i, j, k)
    affine : (4, 4) ndarray, voxel -> RAS mm
    header : nibabel.Nifti1Header or None
    dtype : numpy.dtype
        Stored type, native byte order.
    slope, inter : float
        The stored scaling.
    xform_code : int
        The codes of a header made from nothing (:attr:`NiftiVolume.xform_code`).
    path : str or None
        For messages.
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]
    header: Any
    dtype: np.dtype
    slope: float = 1.0
    inter: float = 0.0
    xform_code: int = XFORM_ALIGNED
    path: str | None = None

    @classmethod
    def of_volume(cls, volume: NiftiVolume) -> Source:
        """The source of an in-memory volume (ValueError if it is not 3D)."""
        shape = spatial_volume(volume.data, volume.path).shape
        return cls(
            (shape[0], shape[1], shape[2]),
            np.asarray(volume.affine, dtype=np.float64),
            volume.header,
            volume.data.dtype.newbyteorder("="),
            volume.slope,
            volume.inter,
            volume.xform_code,
            volume.path,
        )

    @classmethod
    def of_reader(cls, reader: PlaneSource) -> Source:
        """The source of a NIfTI file opened for streaming."""
        return cls(
            reader.shape,
            reader.affine,
            reader.header,
            reader.dtype,
            reader.slope,
            reader.inter,
            XFORM_ALIGNED,
            reader.path,
        )


@dataclass(frozen=True)
class OutputGrid:
    """A target resolved against an input: what both engines consume.

    Attributes
    ----------
    shape : (3,) tuple of int
    affine : (4, 4) ndarray, output voxel -> RAS mm (as nibabel reads the header back)
    header : nibabel.Nifti1Header
        The output header, its data type still to set (a copy per use).
    perm : (3,) tuple of int or None
        Output axis ``c`` samples input axis ``perm[c]``; None for an oblique grid.
    positions : Positions or None
        The input continuous indices sampled along each output axis (after *perm*); None for
        an oblique grid.
    mapping : (4, 4) ndarray or None
        Output voxel -> input continuous index, for an oblique grid (None for size targets).
    fill : number or None
        The stored value outside the input's field of view (grid targets); None: the edge
        rules hold there.
    anchor : {"origin", "center"} or None
        The anchor of a size or spacing target; None for a grid target.
    antialias : bool
    info : dict
        What the front doors report: ``spacing_requested`` and ``spacing_achieved`` (spacing
        targets), ``overlap`` (grid targets).
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]
    header: Any
    perm: tuple[int, int, int] | None
    positions: Positions | None
    mapping: NDArray[np.float64] | None = None
    fill: float | int | None = None
    anchor: Anchor | None = None
    antialias: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def streamable(self) -> bool:
        """Whether the streamed engine can take it: axis-aligned, axes in the input's order."""
        return self.perm == (0, 1, 2)


def resolve_target(target: Target, source: Source) -> OutputGrid:
    """The output grid of *target* for *source*: the one place a target becomes a grid.

    Raises
    ------
    ValueError
        A header whose geometry cannot be resampled; for a grid target, no overlap at all or a
        fill value the stored type cannot hold.

    Warns
    -----
    UserWarning
        For a grid target the input covers under :data:`LOW_OVERLAP` of (with the %); when the
        input has a single voxel along an axis and the grid samples it more than once along
        that axis (a 64 x 64 x 1 slice "upsampled" to 32 slices repeats the one slice:
        :func:`warn_single_voxel`, naming the file and the axis).

    Examples
    --------
    >>> src = Source((4, 4, 2), np.diag([0.5, 0.5, 2.0, 1.0]), None, np.dtype(np.int16))
    >>> grid = resolve_target(SpacingTarget((1.0, 1.0, 2.0)), src)
    >>> grid.shape, np.diag(grid.affine).tolist(), grid.info["spacing_achieved"]
    ((2, 2, 2), [1.0, 1.0, 2.0, 1.0], [1.0, 1.0, 2.0])
    """
    grid = _onto_grid(target, source) if isinstance(target, GridTarget) else _sized(target, source)
    warn_single_voxel(source, grid)
    return grid


def _sized(target: SizeTarget | SpacingTarget, source: Source) -> OutputGrid:
    info: dict[str, Any] = {}
    if isinstance(target, SpacingTarget):
        size, achieved = spacing_size(source.shape, source.affine, target.spacing)
        info.update(spacing_requested=list(target.spacing), spacing_achieved=list(achieved))
    else:
        size = target.size
    header, affine = size_header(
        source.header,
        source.affine,
        source.shape,
        size,
        target.anchor,
        source.xform_code,
        source.path,
    )
    positions = grid_positions(source.shape, size, target.anchor)
    return OutputGrid(
        size,
        affine,
        header,
        (0, 1, 2),
        positions,
        anchor=target.anchor,
        antialias=target.antialias,
        info=info,
    )


def warn_single_voxel(source: Source, grid: OutputGrid) -> None:
    """Warn when *source* has one voxel along an axis and *grid* samples it more than once
    along that axis: the output repeats the one slice there (nothing to interpolate).

    Axis-aligned grids count the output voxels along the axis (those inside the input with a
    fill value; without, the edge rules repeat it everywhere); an oblique grid warns when one of
    its axes steps across that voxel in less than a voxel.
    """
    name = repr(source.path) if source.path else "the input"
    for a in (a for a in range(3) if source.shape[a] == 1):
        if grid.perm is not None and grid.positions is not None:
            x = grid.positions[grid.perm.index(a)]
            count = x.size if grid.fill is None else int(inside_positions(1, x).sum())
            repeats, how = count > 1, f"the output holds {count} voxels along it"
        else:
            assert grid.mapping is not None  # an oblique grid's
            steps = [abs(grid.mapping[a, c]) for c in range(3) if grid.shape[c] > 1]
            step = min((x for x in steps if x > 0), default=1.0)
            repeats, how = step < 1, f"the oblique grid steps across it in {step:.3g} of a voxel"
        if repeats:
            warn_caller(
                f"{name} ({'x'.join(map(str, source.shape))}) has a single voxel along axis "
                f"{'ijk'[a]} and {how}: those output voxels repeat the one slice (nothing is "
                "interpolated along that axis)"
            )


def _onto_grid(target: GridTarget, source: Source) -> OutputGrid:
    grid = target.grid
    fill = stored_fill(target.fill_value, source.dtype, source.slope, source.inter)
    overlap = check_overlap(source, grid)
    mapping = voxel_map(source.affine, grid.affine)
    aligned = aligned_positions(source.shape, mapping, grid.shape)
    header = reference_header(source.header, grid, grid.shape, code=source.xform_code)
    return OutputGrid(
        grid.shape,
        np.asarray(header.get_best_affine(), dtype=np.float64),
        header,
        None if aligned is None else aligned[0],
        None if aligned is None else aligned[1],
        mapping,
        fill,
        info={"overlap": overlap},
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
    try:
        header = header_for_affine(new_affine, size, template, code=xform_code)
    except HeaderDataError as exc:  # a size NIfTI-1 cannot store (over 32767 voxels)
        where = f" of {path!r}" if path else ""
        raise ValueError(f"cannot make the NIfTI header of the result{where}: {exc}") from exc
    if template is None:  # an affine is in mm (a NIfTI file made from nothing says unknown)
        header.set_xyzt_units(xyz="mm")
    return header, new_affine


def check_overlap(source: Source, grid: Grid) -> float:
    """The fraction of *grid*'s voxels inside the input's field of view, checked.

    Raises
    ------
    ValueError
        When nothing overlaps: names both, the count that decided (0 of N reference voxel
        centres inside the input) and their world bounds (boxes: oblique ones may overlap).

    Warns
    -----
    UserWarning
        When under :data:`LOW_OVERLAP` of the reference's voxels are covered (with the %).
    """
    fraction = overlap_fraction(source.shape, source.affine, grid.shape, grid.affine)
    name = repr(source.path) if source.path else "the input"
    if fraction == 0.0:
        total = grid.shape[0] * grid.shape[1] * grid.shape[2]
        raise ValueError(
            f"{name} and {grid.name!r} do not overlap: 0 of {total} reference voxel centres "
            "fall inside the input's field of view (world bounds, axis-aligned boxes that can "
            "overlap when oblique grids do not: the input "
            f"{format_bounds(world_bounds(source.shape, source.affine))}, the reference "
            f"{format_bounds(world_bounds(grid.shape, grid.affine))})"
        )
    if fraction < LOW_OVERLAP:
        warn_caller(
            f"{name} covers only {100 * fraction:.1f}% of the field of view of "
            f"{grid.name!r}; the rest of the output holds the fill value"
        )
    return fraction


def stored_fill(
    fill_value: float, dtype: np.dtype, slope: float = 1.0, inter: float = 0.0
) -> float | int:
    """*fill_value* (in the image's values, scaling ``slope * x + inter`` applied) as a stored
    value of *dtype*.

    Raises
    ------
    ValueError
        If the stored type cannot hold it (an integer type and a fractional or out-of-range
        value, or NaN).

    Examples
    --------
    >>> int16 = np.dtype(np.int16)
    >>> stored_fill(-1024, int16, 2.0, -1024.0), stored_fill(0, int16, 2.0, -1024.0)
    (0, 512)
    """
    value = float(fill_value)
    stored = (value - inter) / slope
    if dtype.kind == "f":
        return stored
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    rounded = round(stored) if np.isfinite(stored) else None
    if (
        rounded is None
        or abs(stored - rounded) > 1e-6 * max(1.0, abs(stored))
        or (info is not None and not info.min <= rounded <= info.max)
        or (dtype.kind == "b" and rounded not in (0, 1))
    ):
        scaled = (slope, inter) != (1.0, 0.0)
        raise ValueError(
            f"fill_value {fill_value!r} cannot be stored in the input's data type {dtype}"
            + (f" (scaling {slope} * x + {inter})" if scaled else "")
        )
    return int(rounded)


def reference_header(
    template: Any | None,
    grid: Grid,
    shape: tuple[int, int, int],
    *,
    code: int = XFORM_ALIGNED,
) -> Any:
    """The output header: the reference's geometry exactly, every other field the input's.

    From a grid with a header (a NIfTI reference, or the header
    :func:`napari_resample.pipeline.reference.reference_grid` makes for NRRD, MetaImage and
    DICOM, codes 1, scanner): its qform and sform with their codes, and its pixdim (spacing and
    qfac) and spatial units. From a grid without one (a layer made in a session): a header made
    from its affine with the *template*'s codes, or *code* for both without a template (the
    input volume's ``xform_code``). The data type, scaling, intent, description and time fields
    stay the input's.
    """
    if grid.header is None:
        try:
            made = header_for_affine(grid.affine, shape, template, code=code)
        except HeaderDataError as exc:  # a grid NIfTI-1 cannot store (over 32767 voxels)
            raise ValueError(
                f"cannot make a NIfTI header for the grid of {grid.name!r}: {exc}"
            ) from exc
        if template is None:  # an affine is in mm (a NIfTI file made from nothing says unknown)
            made.set_xyzt_units(xyz="mm")
        return made
    ref = grid.header
    hdr = template.copy() if template is not None else type(ref)()
    pixdim = np.array(hdr["pixdim"], dtype=np.float64)  # set_data_shape resets the time step
    hdr.set_data_shape(shape)
    hdr.set_sform(ref.get_sform(coded=False), code=int(ref["sform_code"]))
    hdr.set_qform(ref.get_qform(coded=False), code=int(ref["qform_code"]))
    pixdim[:4] = np.asarray(ref["pixdim"], dtype=np.float64)[:4]
    hdr["pixdim"] = pixdim
    space = ref.get_xyzt_units()[0]
    hdr.set_xyzt_units(xyz=space, t=hdr.get_xyzt_units()[1])
    return hdr


def describe_spacing(
    requested: Sequence[float], achieved: Sequence[float], size: Sequence[int]
) -> str:
    """``Spacing requested (...) mm, achieved (...) mm, size (...)``: the line every front door
    prints for a spacing target.

    Examples
    --------
    >>> describe_spacing((1, 1, 1), (1.0011173, 1.0011173, 1.0), (358, 358, 300))
    'Spacing requested (1, 1, 1) mm, achieved (1.00112, 1.00112, 1) mm, size (358, 358, 300)'
    """

    def mm(values: Sequence[float]) -> str:
        return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"

    size_text = "(" + ", ".join(str(int(n)) for n in size) + ")"
    return f"Spacing requested {mm(requested)} mm, achieved {mm(achieved)} mm, size {size_text}"
