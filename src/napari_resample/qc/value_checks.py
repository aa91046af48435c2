"""The value checks of a resampled pair: not constant, range, no NaN introduced, labels.

Same shape as the geometry checks of :mod:`napari_resample.qc.grid_checks`:
``check_<name>(inp, out, record)`` returns a :class:`~napari_resample.qc.model.Finding`, a
list of them, or None when the check does not apply. Values are compared scaled
(``scl_slope`` / ``scl_inter`` applied).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_resample.qc.grid_checks import box_corners, file_name
from napari_resample.qc.model import Finding, Severity
from napari_resample.qc.summary import VolumeSummary

#: How far past the input's range an output value may lie, relative to the largest magnitude
#: of that range: float rounding of the scaling only, since the engine clamps every mode to the
#: input's exact [min, max] (decision D21). A wrapped integer lies thousands of steps out.
RANGE_REL_TOL = 1e-6
#: A kept label's volume may differ from the input's by this fraction of it...
LABEL_VOLUME_REL_TOL = 0.2
#: ... plus this many output voxels' volume: label voting moves each boundary by up to half an
#: output voxel, which a small structure feels most (a 2-voxel lesion may gain or lose one).
LABEL_VOLUME_VOXELS = 2.0
#: How far (output voxels) the input's field of view may stick out of a reference grid with
#: its label volumes still compared: a grid made with anchor "origin" from the same field of
#: view is shifted by under half an output voxel, which moves a few boundary voxels only.
COVER_TOL_VOXELS = 0.5
#: The interpolations that make a label map (their outputs have label counts).
LABEL_INTERPOLATIONS = ("label", "nearest")


def fill_value(record: dict[str, Any]) -> float | None:
    """The fill value of a reference grid's run (outside the input's field of view), or None
    for other targets."""
    params = record.get("params") or {}
    if params.get("reference") is None:
        return None
    return float(params.get("fill_value", 0.0))


def check_not_constant(inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]) -> Finding:
    """The output is not constant (all zero, say) or without a finite voxel, unless the input
    is."""
    name = file_name(out)
    lo, hi = out.scaled(out.lo), out.scaled(out.hi)
    if inp.lo is None or inp.lo == inp.hi:
        return Finding(
            "not_constant", "ok", f"{name}: the input is constant too, nothing to compare."
        )
    severity: Severity
    if lo is None:
        severity, what = "error", "has no finite voxel"
    elif lo == hi:
        severity, what = (
            "error",
            f"holds {lo:g} in every voxel" + (" (all zero)" if lo == 0 else ""),
        )
    else:
        severity, what = "ok", f"spans {lo:g} to {hi:g}"
    return Finding(
        "not_constant",
        severity,
        f"{name}: the output {what}, where the input spans {inp.scaled(inp.lo):g} to "
        f"{inp.scaled(inp.hi):g} (an output is constant only when its input is).",
    )


def allowed_range(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> tuple[float, float]:
    """The scaled range an output may hold: the input's finite range, widened to the fill
    value of a reference grid (stored rounded: half an output step more for integers)."""
    lo, hi = inp.scaled(inp.lo), inp.scaled(inp.hi)
    assert lo is not None and hi is not None
    fill = fill_value(record)
    if fill is not None and math.isfinite(fill):
        half_step = abs(out.slope) / 2 if np.dtype(out.dtype).kind in "iub" else 0.0
        lo, hi = min(lo, fill - half_step), max(hi, fill + half_step)
    return lo, hi


def check_value_range(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding | None:
    """The output's values lie within the input's range (and a reference grid's fill value),
    to :data:`RANGE_REL_TOL`: the engine clamps every interpolation to it, so a value outside
    is an error (for integers, a wrap); None when either has no finite voxel."""
    if inp.lo is None or out.lo is None:
        return None
    name = file_name(out)
    lo, hi = allowed_range(inp, out, record)
    out_lo, out_hi = out.scaled(out.lo), out.scaled(out.hi)
    assert out_lo is not None and out_hi is not None
    tol = RANGE_REL_TOL * max(abs(lo), abs(hi), hi - lo, 1.0)
    low, high = out_lo < lo - tol, out_hi > hi + tol
    integer = np.dtype(out.dtype).kind in "iub"
    whose = "the input's" if fill_value(record) is None else "the input's and the fill value's"
    if not (low or high):
        why = f"within {whose} {lo:g} to {hi:g}"
    else:
        side = f"minimum {out_lo:g} is below" if low else f"maximum {out_hi:g} is above"
        why = f"{side} {whose} {lo if low else hi:g}" + (
            f" ({'an' if out.dtype.startswith('int') else 'a'} {out.dtype} wrap)"
            if integer
            else ""
        )
    return Finding(
        "value_range",
        "error" if (low or high) else "ok",
        f"{name}: output range {out_lo:g} to {out_hi:g}, {why}; the engine clamps every "
        "interpolation to the input's range.",
    )


def check_no_nan_introduced(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding:
    """No NaN or infinite voxel in the output unless the input had some (or a reference
    grid's fill value is one)."""
    name = file_name(out)
    bad_out, bad_in = out.nan + out.inf, inp.nan + inp.inf
    fill = fill_value(record)
    severity: Severity
    if bad_out == 0:
        severity, why = "ok", "none"
    elif bad_in > 0:
        severity, why = "ok", f"{bad_out}, as the input had {bad_in}"
    elif fill is not None and not math.isfinite(fill):
        severity, why = "ok", f"{bad_out}, the fill value {fill:g} outside the input"
    else:
        severity, why = (
            "error",
            f"{bad_out} ({out.nan} NaN, {out.inf} infinite) where the input had none",
        )
    return Finding(
        "no_nan_introduced",
        severity,
        f"{name}: non-finite voxels in the output: {why} (resampling introduces none).",
    )


def voxel_volume(summary: VolumeSummary) -> float:
    """One voxel's volume (mm^3): the determinant of the affine's voxel columns."""
    return float(abs(np.linalg.det(summary.affine[:3, :3])))


def is_label_map(out: VolumeSummary, record: dict[str, Any]) -> bool:
    """Whether the pair is a label map: counted as one, or resampled by label voting or
    nearest neighbour."""
    return out.label_map or record.get("interpolation_used") in LABEL_INTERPOLATIONS


def label_list(labels: list[int], volumes: dict[int, float]) -> str:
    """``"3 (12.5 mm^3), 4 (0.8 mm^3)"``: labels with their input volumes."""
    return ", ".join(f"{v} ({volumes[v]:.4g} mm^3)" for v in labels)


def check_labels_kept(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> list[Finding]:
    """A label map keeps its label set: an invented label (in the output, not in the input)
    is an error; lost labels are listed in a warning, those whose input volume is under one
    output voxel's as "smaller than an output voxel" (resampling cannot keep them). Empty for
    an image; a warning when the labels were not counted."""
    if not is_label_map(out, record):
        return []
    name = file_name(out)
    if inp.labels is None or out.labels is None:
        return [
            Finding(
                "labels_kept",
                "warning",
                f"{name}: a label map whose labels were not counted (a summary made with "
                "label_map=True counts them), so its label set is not checked.",
            )
        ]
    fill = fill_value(record)
    invented = sorted(set(out.labels) - set(inp.labels) - ({fill} if fill is not None else set()))
    lost = sorted(set(inp.labels) - set(out.labels))
    findings = []
    if invented:
        counts = ", ".join(f"{v} ({out.labels[v]} voxels)" for v in invented)
        findings.append(
            Finding(
                "labels_kept",
                "error",
                f"{name}: label{'s' * (len(invented) > 1)} {counts} not in the input "
                "(resampling a label map invents no label).",
            )
        )
    if lost:
        unit_in, unit_out = voxel_volume(inp), voxel_volume(out)
        volumes = {v: inp.labels[v] * unit_in for v in lost}
        small = [v for v in lost if volumes[v] < unit_out]
        large = [v for v in lost if volumes[v] >= unit_out]
        parts = [f"lost {label_list(large, volumes)}"] if large else []
        if small:
            parts.append(
                f"lost, smaller than an output voxel ({unit_out:.4g} mm^3): "
                f"{label_list(small, volumes)}"
            )
        findings.append(
            Finding(
                "labels_kept",
                "warning",
                f"{name}: input labels absent from the output: {'; '.join(parts)}.",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "labels_kept", "ok", f"{name}: all {len(inp.labels)} labels kept, none invented."
            )
        )
    return findings


def covers(out: VolumeSummary, inp: VolumeSummary) -> bool:
    """Whether the output's field of view holds the input's, but for
    :data:`COVER_TOL_VOXELS` (no label cropped by a reference grid)."""
    try:
        index = np.linalg.solve(out.affine, inp.affine @ box_corners(inp.shape))[:3]
    except np.linalg.LinAlgError:  # no grid to hold anything (position_kept says so)
        return False
    shape = np.asarray(out.shape, dtype=np.float64)[:, None]
    low, high = -0.5 - COVER_TOL_VOXELS, shape - 0.5 + COVER_TOL_VOXELS
    return bool(np.all(index >= low) and np.all(index <= high))


def check_label_volumes(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding | None:
    """Each kept label's volume (voxels x voxel volume, mm^3) within
    :data:`LABEL_VOLUME_REL_TOL` of the input's plus :data:`LABEL_VOLUME_VOXELS` output
    voxels, else a warning; None for an image, when the labels were not counted, or when a
    reference grid crops the input (the volumes are then not comparable)."""
    if not is_label_map(out, record) or inp.labels is None or out.labels is None:
        return None
    fill = fill_value(record)
    if fill is not None and not covers(out, inp):
        return None
    unit_in, unit_out = voxel_volume(inp), voxel_volume(out)
    allow = f"{LABEL_VOLUME_REL_TOL:.0%} + {LABEL_VOLUME_VOXELS:g} output voxels"
    off = []
    for v in sorted(set(inp.labels) & set(out.labels)):
        if fill is not None and v == fill:  # the fill grows with the grid's margin
            continue
        was, now = inp.labels[v] * unit_in, out.labels[v] * unit_out
        if abs(now - was) > LABEL_VOLUME_REL_TOL * was + LABEL_VOLUME_VOXELS * unit_out:
            off.append(f"{v} ({was:.4g} -> {now:.4g} mm^3)")
    name = file_name(out)
    if off:
        return Finding(
            "label_volumes",
            "warning",
            f"{name}: label volumes changed by more than {allow}: {', '.join(off)}.",
        )
    return Finding(
        "label_volumes",
        "ok",
        f"{name}: every kept label's volume is within {allow} of the input's.",
    )
