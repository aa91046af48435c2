"""The geometry checks of a resampled pair: field of view, position, orientation, qform and
sform, and a reference grid's overlap (the value checks are in
:mod:`napari_resample.qc.value_checks`; :mod:`napari_resample.qc.checks` runs both).

Each check is one function ``check_<name>(inp, out, record)`` on the two
:class:`~napari_resample.qc.summary.VolumeSummary` of a pair and its dataset manifest record
(``params`` with ``desired_volume``, ``spacing`` or ``reference``, ``anchor``,
``fill_value``; ``interpolation_used``; ``overlap`` for a reference grid). It returns one
:class:`~napari_resample.qc.model.Finding` whose message is one sentence naming the output
file, the value found and the rule, or None when the check does not apply to the pair's
target (field of view and position for a reference grid, overlap for the others). The
tolerances are the named constants below, each with its reason.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Literal

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from napari_resample.io.names import nifti_suffix
from napari_resample.pipeline.targets import LOW_OVERLAP
from napari_resample.qc.model import Finding, Severity
from napari_resample.qc.summary import VolumeSummary

#: The relative difference of field of view a size target allows: float32 rounding of the
#: header's spacing (about 1e-7 relative), with margin; the engine keeps the field of view
#: exactly (spacing = field of view / size).
FOV_REL_TOL = 1e-5
#: The difference of field of view a spacing target allows, in output voxels per axis: the
#: rounding of ``size = round(fov / spacing)`` (half a voxel for a tool that keeps the spacing
#: asked for, none for this engine, which keeps the field of view), with margin.
FOV_SPACING_VOXELS = 1.0
#: How far the anchor point may move, in output voxels along any output axis. A correct output
#: is exact to float32 rounding of its header (under 1e-4 voxel on any real grid); a tenth of a
#: voxel still catches the classic half-voxel shift (0.5) and the other anchor's position at a
#: 2x downsample (0.25).
POSITION_TOL_VOXELS = 0.1
#: How far qform and sform may place a corner of the volume apart (mm) and still agree: far
#: above float32 rounding of the forms over a 1000 mm field of view (under 1e-4 mm), far below
#: any voxel (micro-CT voxels are 0.01 mm and more).
FORMS_TOL_MM = 1e-3

TargetKind = Literal["size", "spacing", "reference"]


def target_kind(record: dict[str, Any]) -> TargetKind | None:
    """Which target the run used: ``"size"``, ``"spacing"``, ``"reference"`` (None: unknown)."""
    params = record.get("params") or {}
    if params.get("reference") is not None:
        return "reference"
    if params.get("spacing") is not None:
        return "spacing"
    if params.get("desired_volume") is not None:
        return "size"
    return None


def file_name(summary: VolumeSummary) -> str:
    """How a sentence names a file: its base name."""
    return os.path.basename(summary.path) or summary.path


def triple(values: Any, unit: str = "") -> str:
    """Three numbers as ``a x b x c`` (4 significant digits), with *unit* after."""
    text = " x ".join(f"{float(v):.4g}" for v in values)
    return f"{text} {unit}".rstrip()


def fov(summary: VolumeSummary) -> NDArray[np.float64]:
    """Field of view (mm) along i, j, k: size x spacing."""
    return np.asarray(summary.shape, dtype=np.float64) * np.asarray(summary.spacing)


def box_corners(shape: tuple[int, int, int]) -> NDArray[np.float64]:
    """The 8 corners of the field of view box in voxel indices, as ``(4, 8)`` homogeneous
    columns (half a voxel beyond the outer voxel centres)."""
    lo, hi = np.full(3, -0.5), np.asarray(shape, dtype=np.float64) - 0.5
    corners = [[(hi if (n >> a) & 1 else lo)[a] for a in range(3)] + [1.0] for n in range(8)]
    return np.asarray(corners, dtype=np.float64).T


def check_fov_kept(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding | None:
    """Field of view (size x spacing per axis) kept: exactly (:data:`FOV_REL_TOL`) for a size
    target, within :data:`FOV_SPACING_VOXELS` output voxel per axis for a spacing target; None
    for a reference grid (the output has the reference's field of view)."""
    kind = target_kind(record)
    if kind not in ("size", "spacing"):
        return None
    before, after = fov(inp), fov(out)
    diff = np.abs(after - before)
    if kind == "size":
        tol = FOV_REL_TOL * before
        rule = f"a size target keeps it exactly (to {FOV_REL_TOL:g} relative)"
    else:
        tol = FOV_SPACING_VOXELS * np.asarray(out.spacing)
        rule = f"a spacing target keeps it within {FOV_SPACING_VOXELS:g} output voxel per axis"
    kept = bool(np.all(diff <= tol))
    verdict = "kept" if kept else f"changed by up to {diff.max():.4g} mm"
    return Finding(
        "fov_kept",
        "ok" if kept else "error",
        f"{file_name(out)}: field of view {triple(after, 'mm')} against the input's "
        f"{triple(before, 'mm')}, {verdict}: {rule}.",
    )


def anchor_point(summary: VolumeSummary, anchor: str) -> NDArray[np.float64]:
    """The world point (mm) an anchor keeps: the centre of voxel (0, 0, 0) for ``"origin"``,
    the corner of the field of view box before it (half a voxel out) for ``"center"``."""
    index = [0.0, 0.0, 0.0, 1.0] if anchor == "origin" else [-0.5, -0.5, -0.5, 1.0]
    return (summary.affine @ np.asarray(index))[:3]


def check_position_kept(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding | None:
    """The world position kept by the anchor rule (``params["anchor"]``, default
    ``"origin"``), within :data:`POSITION_TOL_VOXELS` output voxel; None for a reference grid.

    A NIfTI input without qform and sform (codes 0) has no world position (nibabel centres it
    on its field of view): the check says so and passes.
    """
    kind = target_kind(record)
    if kind not in ("size", "spacing"):
        return None
    name = file_name(out)
    if nifti_suffix(inp.path) is not None and inp.qform_code == 0 and inp.sform_code == 0:
        return Finding(
            "position_kept",
            "ok",
            f"{name}: the input has neither qform nor sform (codes 0), so it has no world "
            "position to keep.",
        )
    anchor = (record.get("params") or {}).get("anchor") or "origin"
    was, now = anchor_point(inp, anchor), anchor_point(out, anchor)
    try:  # the shift in output voxels along each output axis (oblique and sheared grids too)
        shift = np.linalg.solve(out.affine[:3, :3], now - was)
    except np.linalg.LinAlgError:
        return Finding(
            "position_kept", "error", f"{name}: the output's affine is singular, no position."
        )
    worst = float(np.max(np.abs(shift)))
    point = "centre of voxel (0, 0, 0)" if anchor == "origin" else "corner of the field of view"
    kept = worst <= POSITION_TOL_VOXELS
    return Finding(
        "position_kept",
        "ok" if kept else "error",
        f"{name}: the {point} moved by {float(np.linalg.norm(now - was)):.4g} mm "
        f"({worst:.3g} output voxel), where anchor {anchor!r} keeps it in place (within "
        f"{POSITION_TOL_VOXELS:g} voxel).",
    )


def axcodes(affine: NDArray[np.float64]) -> str:
    """The axis codes of *affine* (``"RAS"``), ``?`` for an axis of zero length."""
    return "".join(code or "?" for code in nib.aff2axcodes(affine))


@functools.lru_cache(maxsize=16)
def _reference_axcodes(path: str, stamp: tuple[int, int]) -> str:
    from napari_resample.pipeline.reference import reference_grid

    return axcodes(reference_grid(path).affine)


def reference_axcodes(path: str) -> str:
    """The axis codes of the reference grid at *path* (its header read once per version of
    the file).

    Raises
    ------
    OSError, ValueError
        As :func:`napari_resample.pipeline.reference.reference_grid` does.
    """
    stat = os.stat(path)
    return _reference_axcodes(path, (stat.st_mtime_ns, stat.st_size))


def check_orientation_kept(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding:
    """Axis codes (``nibabel.aff2axcodes``) of the output equal the input's, or for a
    reference grid the reference's (read from ``params["reference"]``; a warning when it
    cannot be read any more)."""
    name = file_name(out)
    now = axcodes(out.affine)
    if target_kind(record) == "reference":
        ref = os.fspath(record["params"]["reference"])
        try:
            want, whose = reference_axcodes(ref), f"those of the reference {ref!r}"
        except (OSError, ValueError) as exc:
            return Finding(
                "orientation_kept",
                "warning",
                f"{name}: orientation {now} not compared, the reference {ref!r} cannot be "
                f"read ({exc}).",
            )
    else:
        want, whose = axcodes(inp.affine), "the input's"
    kept = now == want
    return Finding(
        "orientation_kept",
        "ok" if kept else "error",
        f"{name}: axis codes {now} where {whose} are {want}"
        f"{'' if kept else ' (an axis flipped or swapped)'}; resampling keeps the orientation.",
    )


def form_disagreement(summary: VolumeSummary) -> float | None:
    """The largest distance (mm) between where qform and sform place a corner of the field
    of view; None unless both codes are set."""
    if summary.qform is None or summary.sform is None:
        return None
    if summary.qform_code == 0 or summary.sform_code == 0:
        return None
    corners = box_corners(summary.shape)
    gap = (summary.sform - summary.qform) @ corners
    return float(np.max(np.linalg.norm(gap[:3], axis=0)))


def check_forms_agree(inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]) -> Finding:
    """qform and sform agree in the output (within :data:`FORMS_TOL_MM` at every corner):
    an output disagreement is an error when the input agreed (or had one form), a warning when
    the input already disagreed (inherited)."""
    name = file_name(out)
    gap_out, gap_in = form_disagreement(out), form_disagreement(inp)
    was = "not both set" if gap_in is None else f"{gap_in:.4g} mm"
    severity: Severity
    if gap_out is None:
        severity, how = "ok", "the output does not set both"
    elif gap_out <= FORMS_TOL_MM:
        severity, how = "ok", f"they agree ({gap_out:.2g} mm)"
    elif gap_in is not None and gap_in > FORMS_TOL_MM:
        severity, how = "warning", f"they differ by {gap_out:.4g} mm, inherited"
    else:
        severity, how = "error", f"they differ by {gap_out:.4g} mm, made by the resampling"
    return Finding(
        "forms_agree",
        severity,
        f"{name}: qform and sform at the volume's corners: {how} (input: {was}; they agree "
        f"within {FORMS_TOL_MM:g} mm).",
    )


def check_overlap(
    inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]
) -> Finding | None:
    """For a reference grid, the overlap the run measured (``record["overlap"]``, the
    fraction of reference voxels inside the input): ok from
    :data:`napari_resample.pipeline.targets.LOW_OVERLAP`, a warning below, an error at 0 or
    when not recorded; None for other targets."""
    if target_kind(record) != "reference":
        return None
    name = file_name(out)
    overlap = record.get("overlap")
    if overlap is None:
        return Finding(
            "overlap", "error", f"{name}: the run recorded no overlap for a reference grid."
        )
    fraction = float(overlap)
    severity: Severity
    if fraction <= 0:
        severity = "error"
    else:
        severity = "ok" if fraction >= LOW_OVERLAP else "warning"
    return Finding(
        "overlap",
        severity,
        f"{name}: the input covers {fraction:.1%} of the reference grid (under "
        f"{LOW_OVERLAP:.0%} is a warning, none an error).",
    )
