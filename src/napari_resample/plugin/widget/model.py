"""The widget's read-out, from plain values: no Qt, no viewer.

The chosen layer becomes a :class:`Source` (its size and affine in the file's voxel order, its
data type), the target fields a :class:`Target`; :func:`read_out` turns them, with the
interpolation the pipeline resolved and the memory free now, into a :class:`ReadOut`: the lines
shown, why Run is disabled (a refusal, or a run too big for the memory free), and the warning of
a matched layer the source barely covers. The Qt parts only show what it says.

Examples
--------
>>> source = Source("ct", (100, 100, 40), np.diag([0.5, 0.5, 2.0, 1.0]), np.dtype("int16"))
>>> shown = read_out(source, Target(SPACING, spacing=(1.0, 1.0, 1.0)), "bspline", free=None)
>>> shown.lines[1], shown.can_run
('new: 50 x 50 x 80 voxels, spacing 1 x 1 x 1 mm (asked 1 x 1 x 1 mm)', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.geometry import resampled_affine
from napari_resample.engine.grid import (
    Grid,
    format_bounds,
    overlap_fraction,
    spacing_size,
    voxel_spacing,
    world_bounds,
)
from napari_resample.engine.memory import format_bytes
from napari_resample.engine.options import Anchor, Interpolation, validate_size
from napari_resample.engine.resample import estimate_memory
from napari_resample.pipeline.reference import LOW_OVERLAP
from napari_resample.plugin.layer_volume import plugin_info
from napari_resample.plugin.layout import StorageOrder, nifti_affine_from_napari, stored_shape

#: The specification's common target sizes (X, Y, Z).
PRESETS: dict[str, tuple[int, int, int]] = {
    "128 x 128 x 128": (128, 128, 128),
    "224 x 224 x 128": (224, 224, 128),
    "256 x 256 x 256": (256, 256, 256),
    "512 x 512 x 256": (512, 512, 256),
}
CUSTOM = "custom"
MAX_SIZE = 8192
TargetKind = Literal["size", "spacing", "match layer"]
#: What the result's grid is given by: a voxel count, a voxel size, or another layer's grid.
TARGETS: tuple[str, ...] = get_args(TargetKind)
SIZE, SPACING, MATCH = TARGETS
#: Bounds of the target spacing fields (mm); the smallest is also their precision (3 decimals).
MIN_SPACING, MAX_SPACING = 1e-3, 1e4
#: Characters of a status message shown before its middle is elided (the full text is the
#: status' tooltip and the notification's).
STATUS_CHARS = 90
#: Characters of a layer name shown in the read-out before its middle is elided: a name is one
#: word, which a word-wrapped label cannot break, so a longer one would be clipped.
NAME_CHARS = 30
#: What the read-out says when no layer is chosen.
NO_LAYER = "Open a volume (File > Open Sample > NIfTI Resample) to start."


@dataclass(frozen=True)
class Source:
    """The chosen layer as the read-out sees it.

    Attributes
    ----------
    name : str
    size : (3,) tuple of int, the file's voxel order (I, J, K)
    affine : (4, 4) ndarray, voxel (i, j, k) -> RAS mm, the layer's current geometry
    dtype : numpy.dtype, of the layer's data
    """

    name: str
    size: tuple[int, int, int]
    affine: NDArray[np.float64]
    dtype: np.dtype


@dataclass(frozen=True)
class Target:
    """The target fields' values.

    Attributes
    ----------
    kind : {"size", "spacing", "match layer"}
    size : (3,) tuple of int, voxels (X, Y, Z), for "size"
    spacing : (3,) tuple of float, mm (X, Y, Z), for "spacing"
    anchor : {"origin", "center"}
    grid : Grid or None
        The grid of the layer to match, for "match layer".
    no_grid : str
        Why there is no grid to match (shown when *grid* is None).
    """

    kind: str = SIZE
    size: tuple[int, ...] = (1, 1, 1)
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    anchor: Anchor = "origin"
    grid: Grid | None = None
    no_grid: str = "open another 3D Image or Labels layer to match its grid"


@dataclass(frozen=True)
class ReadOut:
    """What the read-out shows and what it allows.

    Attributes
    ----------
    lines : tuple of str
        The summary, one fact a line.
    refusal : str or None
        Why the target cannot run (shown in red; Run disabled).
    warning : str or None
        How little of the matched layer the source covers (shown in orange; Run allowed).
    memory_warning : str
        Why the run does not fit in the memory free now (red; Run disabled), or "".
    new_size : (3,) tuple of int or None
        The result's size, when the target gives one.
    """

    lines: tuple[str, ...]
    refusal: str | None = None
    warning: str | None = None
    memory_warning: str = ""
    new_size: tuple[int, ...] | None = field(default=None)

    @property
    def text(self) -> str:
        """The summary label's text."""
        return "\n".join(self.lines)

    @property
    def can_run(self) -> bool:
        """Whether Run is enabled (when no run or save is going): a result size, nothing
        refused, enough memory. A layer the widget refuses (RGB, multiscale, not 3D) or no
        layer has no result size."""
        return self.new_size is not None and self.refusal is None and not self.memory_warning


def fmt(values: Any, digits: int = 3) -> str:
    """Values joined by " x ", with *digits* significant digits.

    Examples
    --------
    >>> fmt((0.5, 0.8, 2.5)), fmt((224, 224, 128), 6)
    ('0.5 x 0.8 x 2.5', '224 x 224 x 128')
    """
    return " x ".join(f"{v:.{digits}g}" for v in values)


def percent(fraction: float) -> str:
    """A fraction as a percentage, never rounded to 0 % or 100 % when it is not.

    Examples
    --------
    >>> percent(0.25), percent(1e-5), percent(0.99999), percent(1.0)
    ('25.0%', '<0.1%', '>99.9%', '100%')
    """
    if fraction >= 1.0:
        return "100%"
    if 0.0 < fraction < 0.001:
        return "<0.1%"
    if 0.999 < fraction < 1.0:
        return ">99.9%"
    return f"{100 * fraction:.1f}%"


def elide_middle(text: str, limit: int = STATUS_CHARS) -> str:
    """*text* cut to *limit* characters by an ellipsis in its middle (its end says the most).

    Examples
    --------
    >>> elide_middle("Saved /a/very/long/path/scan_resampled.nii.gz", 30)
    'Saved /a/v…an_resampled.nii.gz'
    """
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}…{text[len(text) - (limit - head - 1) :]}"


def quoted(name: str) -> str:
    """A layer name as the read-out shows it: quoted, its middle elided beyond
    :data:`NAME_CHARS` characters.

    Examples
    --------
    >>> quoted("ct"), quoted("sub-01_ses-baseline_T1w_space-MNI152NLin2009cAsym")
    ("'ct'", "'sub-01_ses…MNI152NLin2009cAsym'")
    """
    return repr(elide_middle(name, NAME_CHARS))


def layer_state(layer: Any) -> dict[str, Any]:
    """The geometry attributes of a napari layer, as writers receive them."""
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": layer.affine.affine_matrix,
        "metadata": layer.metadata,
    }


def unusable(layer: Any) -> str | None:
    """One sentence saying why *layer* cannot be resampled, or None when it can."""
    name = quoted(layer.name)
    if getattr(layer, "multiscale", False):
        return f"{name} is a multiscale image: only single-resolution volumes resample."
    if getattr(layer, "rgb", False):
        return f"{name} is an RGB image: only single-channel volumes resample."
    if layer.ndim != 3:
        return f"{name} is not a single 3D volume (shape {layer.data.shape})."
    return None


def source_of(layer: Any) -> Source | str:
    """The :class:`Source` a napari layer (or None) is, or the sentence saying why it is none."""
    if layer is None:
        return NO_LAYER
    problem = unusable(layer)
    if problem is not None:
        return problem
    storage = StorageOrder.from_dict(plugin_info(layer.metadata).get("storage"))
    affine = nifti_affine_from_napari(layer.data.shape, storage, layer_state(layer))
    size = stored_shape(layer.data.shape, storage)
    return Source(layer.name, (size[0], size[1], size[2]), affine, np.dtype(layer.data.dtype))


def new_grid(
    source: Source, target: Target
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """The result's size and the spacing it gives, for the "size" and "spacing" targets.

    Examples
    --------
    >>> source = Source("v", (7, 6, 5), np.diag([0.5, 0.8, 2.5, 1.0]), np.dtype("float32"))
    >>> new_grid(source, Target(SIZE, size=(14, 12, 10)))
    ((14, 12, 10), (0.25, 0.4, 1.25))
    """
    if target.kind == SPACING:
        return spacing_size(source.size, source.affine, target.spacing)
    new = validate_size(tuple(int(n) for n in target.size))
    affine = resampled_affine(source.affine, source.size, new, target.anchor)
    spacing = voxel_spacing(affine)
    return new, (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def memory_refusal(
    source: Source, new_size: tuple[int, ...], interpolation: Interpolation, free: int | None
) -> tuple[int, str | None]:
    """The peak bytes a run needs (the engine's estimate) and, when more than *free*, why it
    is refused ("the run needs ...")."""
    peak = estimate_memory(source.size, source.dtype, new_size, interpolation)
    if free is None or peak <= free:
        return peak, None
    needs, available = format_bytes(peak), format_bytes(free)
    return peak, f"the run needs {needs} at its peak but only {available} is available now"


def read_out(
    source: Source | str, target: Target, interpolation: Interpolation | None, free: int | None
) -> ReadOut:
    """The read-out of *source* resampled to *target*.

    Parameters
    ----------
    source : Source or str
        The chosen layer, or the sentence saying why there is none to resample.
    target : Target
    interpolation : {"bspline", "linear", "nearest", "label"} or None
        What the run would use (resolved by the pipeline); it sizes the memory estimate. Only
        None when *source* is a sentence.
    free : int or None
        Bytes of memory available now (None: unknown, never refused).
    """
    if isinstance(source, str):
        return ReadOut((source,))
    now = f"now: {fmt(source.size, 6)} voxels, spacing {fmt(voxel_spacing(source.affine))} mm"
    refusal = warning = None
    if target.kind == MATCH:
        if target.grid is None:
            return ReadOut((now, "new: no layer to match"), f"Cannot match: {target.no_grid}.")
        new, lines, refusal, warning = _match_lines(source, target.grid)
    else:
        new, new_spacing = new_grid(source, target)
        asked = f" (asked {fmt(target.spacing, 4)} mm)" if target.kind == SPACING else ""
        fov = np.asarray(source.size) * voxel_spacing(source.affine)
        lines = [
            f"new: {fmt(new, 6)} voxels, spacing {fmt(new_spacing)} mm{asked}",
            f"field of view (kept): {fmt(fov, 4)} mm",
        ]
    if interpolation is None:
        raise ValueError(f"the read-out of {source.name!r} needs the interpolation, got None")
    peak, too_big = memory_refusal(source, new, interpolation, free)
    output = np.prod(new, dtype=np.float64) * source.dtype.itemsize
    lines += [
        f"output: {format_bytes(output)} ({source.dtype})",
        f"peak memory: {format_bytes(peak)}"
        + (f" of {format_bytes(free)} available" if free else ""),
    ]
    memory_warning = f"Too big: {too_big}. Choose a smaller size." if too_big else ""
    return ReadOut((now, *lines), refusal, warning, memory_warning, new)


def _match_lines(
    source: Source, grid: Grid
) -> tuple[tuple[int, ...], list[str], str | None, str | None]:
    """The result's size, the read-out lines, the refusal (no overlap) and the warning (little
    overlap) of matching *grid*."""
    fraction = overlap_fraction(source.size, source.affine, grid.shape, grid.affine)
    name, grid_name = quoted(source.name), quoted(grid.name)
    lines = [  # the grid's name is in the "match layer" field above: not repeated
        f"new: {fmt(grid.shape, 6)} voxels, spacing {fmt(voxel_spacing(grid.affine))} mm",
        f"overlap: {name} covers {percent(fraction)} of {grid_name}",
    ]
    refusal = warning = None
    if fraction == 0.0:
        refusal = (
            f"No overlap (0%): {name} and {grid_name} do not overlap. "
            f"{name} spans {format_bounds(world_bounds(source.size, source.affine))}; "
            f"{grid_name} spans {format_bounds(world_bounds(grid.shape, grid.affine))}."
        )
    elif fraction < LOW_OVERLAP:
        warning = (
            f"Low overlap: {name} covers only {percent(fraction)} of "
            f"{grid_name}; the rest of the result will be 0."
        )
    return grid.shape, lines, refusal, warning
