"""A run of the widget, without Qt: captured on the main thread (:func:`prepare_job`), computed
in the worker (:func:`run_job`), and turned into the result layer's data
(:func:`result_layer_data`).

The rules are the pipeline's: ``interpolation="auto"`` is resolved by
:func:`napari_resample.pipeline.rules.resolve_for_layer` on the volume the layer holds, the
same rule every other front door applies; the targets go through
:func:`napari_resample.pipeline.run.resample_volume` (size, spacing) and
:func:`napari_resample.pipeline.reference.resample_volume_to_grid` (match layer).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_resample.engine import memory
from napari_resample.engine.grid import Grid, overlap_fraction, voxel_spacing
from napari_resample.engine.options import Anchor, AutoInterpolation, Interpolation
from napari_resample.engine.progress import CancelSignal, ProgressCallback
from napari_resample.io.names import OUTPUT_SUFFIX, REFERENCE_SUFFIX
from napari_resample.io.nifti import NiftiVolume
from napari_resample.pipeline.reference import resample_volume_to_grid
from napari_resample.pipeline.rules import resolve_for_layer
from napari_resample.pipeline.run import resample_volume
from napari_resample.plugin.layer_volume import METADATA_KEY, plugin_info, volume_from_layer
from napari_resample.plugin.layout import StorageOrder, napari_from_stored
from napari_resample.plugin.reader import LayerData, layer_data_from_volume
from napari_resample.plugin.widget.model import (
    MATCH,
    SPACING,
    Source,
    Target,
    fmt,
    layer_state,
    memory_refusal,
    new_grid,
    percent,
    source_of,
)

#: The matched layer's transforms a result laid on it takes.
_TRANSFORMS = ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels")


@dataclass(frozen=True)
class Job:
    """Everything a run needs, captured on the main thread before the worker starts."""

    layer: Any
    layer_type: str
    volume: NiftiVolume  # the layer's volume in file voxel order (I, J, K)
    size: tuple[int, int, int]
    interpolation: Interpolation
    anchor: Anchor
    antialias: bool
    target: str
    spacing: tuple[float, ...] | None = None  # asked, for target "spacing"
    grid: Grid | None = None  # for target "match layer"
    reference: dict[str, Any] | None = None  # the matched layer's name, storage and transforms

    @property
    def where(self) -> str:
        """Where the run goes, for the status line."""
        if self.grid is None:
            return f"to {fmt(self.size, 6)}"
        return f"onto the grid of {self.grid.name}"

    @property
    def suffix(self) -> str:
        """The result's file-name suffix (``_resampled.nii.gz``, ``_resampled_to_ref.nii.gz``)."""
        return OUTPUT_SUFFIX if self.reference is None else REFERENCE_SUFFIX


def geometry_copy(layer: Any) -> dict[str, Any]:
    """The layer's name, storage order, transforms, units and axis labels now: what a result
    laid on it takes (copied, so that moving the layer during a run does not move the result)."""
    return {
        "name": layer.name,
        "storage": StorageOrder.from_dict(plugin_info(layer.metadata).get("storage")),
        "scale": tuple(float(v) for v in layer.scale),
        "translate": tuple(float(v) for v in layer.translate),
        "rotate": np.array(layer.rotate, dtype=np.float64),
        "shear": np.array(layer.shear, dtype=np.float64),
        "affine": np.array(layer.affine.affine_matrix, dtype=np.float64),
        "units": tuple(layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }


def _check_layer(layer: Any) -> Source:
    """The layer's :class:`Source`, or ValueError naming why it cannot be resampled."""
    if layer is None:
        raise ValueError("choose an Image or Labels layer to resample")
    if getattr(layer, "multiscale", False):
        raise ValueError(f"cannot resample the multiscale layer {layer.name!r}")
    if getattr(layer, "rgb", False):
        raise ValueError(f"cannot resample the RGB layer {layer.name!r}: one channel only")
    if layer.ndim != 3:
        raise ValueError(
            f"resampling needs a 3D layer; {layer.name!r} has shape {layer.data.shape}"
        )
    source = source_of(layer)
    if isinstance(source, str):
        raise ValueError(source)
    return source


def prepare_job(
    layer: Any,
    layer_type: str,
    target: Target,
    interpolation: AutoInterpolation,
    antialias: bool,
    reference: Any = None,
) -> Job:
    """The :class:`Job` resampling *layer* to *target*, or ValueError naming why there is none.

    Parameters
    ----------
    layer : napari layer
    layer_type : {"image", "labels"}
    target : Target
    interpolation : {"auto", "bspline", "linear", "nearest", "label"}
        Resolved by the pipeline's rule on the layer's volume.
    antialias : bool
    reference : napari layer, optional
        The layer matched, for the target "match layer" (its grid is ``target.grid``).
    """
    source = _check_layer(layer)
    spacing = copy = None
    if target.kind == MATCH:
        grid = target.grid
        if grid is None or reference is None:
            raise ValueError(target.no_grid)
        if overlap_fraction(source.size, source.affine, grid.shape, grid.affine) == 0.0:
            raise ValueError(f"{source.name!r} and {grid.name!r} do not overlap")
        size, copy = grid.shape, geometry_copy(reference)
    else:
        grid, size = None, new_grid(source, target)[0]
        spacing = target.spacing if target.kind == SPACING else None
    # ndim 3: a 2D or single-volume 4D file is resampled (and saved) as the 3D volume shown
    volume = volume_from_layer(layer.data, layer_state(layer), 3)
    # an explicit choice is checked (and warned about) by the pipeline in the worker
    mode = resolve_for_layer(interpolation, volume, layer_type == "labels", warn=False)
    _, too_big = memory_refusal(source, size, mode, memory.available_memory())
    if too_big is not None:
        raise ValueError(too_big)
    if layer_type == "labels" and np.shares_memory(volume.data, layer.data):
        # painting during the run must not reach the worker
        volume = replace(volume, data=volume.data.copy())
    anchor = target.anchor
    return Job(
        layer, layer_type, volume, size, mode, anchor, antialias, target.kind, spacing, grid, copy
    )


def run_job(
    job: Job, *, progress: ProgressCallback, cancel: CancelSignal
) -> NiftiVolume | tuple[NiftiVolume, float]:
    """Compute *job* (in the worker): the result volume, and for a matched layer the fraction
    of its grid the source covers."""
    if job.grid is None:
        return resample_volume(
            job.volume,
            job.size,
            interpolation=job.interpolation,
            anchor=job.anchor,
            antialias=job.antialias,
            progress=progress,
            cancel=cancel,
        )
    # without the low-overlap warning: the read-out showed it before the run and the status
    # reports the overlap after it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* covers only ", category=UserWarning)
        return resample_volume_to_grid(
            job.volume, job.grid, interpolation=job.interpolation, progress=progress, cancel=cancel
        )


def result_layer_data(
    job: Job, outcome: NiftiVolume | tuple[NiftiVolume, float]
) -> tuple[LayerData, str]:
    """The result layer's data (the reader's conversion, the source's display settings, the
    run recorded in its metadata) and what was added, for the status line: the size (and for a
    matched layer how much of it the source covers)."""
    source = job.layer
    result, overlap = outcome if isinstance(outcome, tuple) else (outcome, None)
    name = source.name + job.suffix.removesuffix(".nii.gz")
    data, kwargs, _ = layer_data_from_volume(
        replace(result, path=job.volume.path), name=name, layer_type=job.layer_type
    )
    info = kwargs["metadata"][METADATA_KEY]
    info.update(
        shape=job.size,
        spacing=tuple(float(v) for v in voxel_spacing(result.affine)),
        resampled_from={
            "layer": source.name,
            "shape": tuple(int(n) for n in job.volume.data.shape),
            "spacing": tuple(float(v) for v in voxel_spacing(job.volume.affine)),
            "affine": job.volume.affine,
        },
        interpolation=job.interpolation,
    )
    done = f"{fmt(job.size, 6)} voxels"
    if job.reference is None:
        info.update(anchor=job.anchor, antialias=job.antialias)
        if job.spacing is not None:
            info.update(target_spacing=job.spacing)
    else:
        values = result.scaled_data() if job.layer_type == "image" else result.data
        data = lay_on(job.reference, values, kwargs)
        info["resampled_to"] = {"layer": job.reference["name"], "overlap": overlap}
        if overlap is not None:
            done += f" on the grid of {job.reference['name']!r}, {percent(overlap)} covered"
    kwargs["metadata"] = {**source.metadata, **kwargs["metadata"]}
    kwargs.update(opacity=source.opacity, blending=source.blending)
    if job.layer_type == "image":
        kwargs.update(
            colormap=source.colormap, contrast_limits=source.contrast_limits, gamma=source.gamma
        )
    return (data, kwargs, job.layer_type), done


def lay_on(reference: dict[str, Any], values: np.ndarray, kwargs: dict[str, Any]) -> Any:
    """The result's napari data (from its stored-order *values*) in the matched layer's data
    order, and that layer's own transforms (units, axis labels) in *kwargs*: the two then map
    every voxel index to the same world point.

    The reader's conversion would reorder the axes by the grid's orientation, which for a layer
    rotated in napari need not be that layer's order.
    """
    storage = StorageOrder(reference["storage"].ornt, 3)
    for key in _TRANSFORMS:
        kwargs[key] = reference[key]
    kwargs["metadata"][METADATA_KEY]["storage"] = storage.to_dict()
    return napari_from_stored(values, storage)
