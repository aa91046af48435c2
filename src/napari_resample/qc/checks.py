"""Every check of a resampled pair, run in a fixed order: :func:`run_checks`.

The checks are one function each, ``check_<name>(inp, out, record)`` on the two
:class:`~napari_resample.qc.summary.VolumeSummary` of a pair and its dataset manifest record,
returning a :class:`~napari_resample.qc.model.Finding` (one sentence naming the output file,
the value found and the rule), a list of them, or None when the check does not apply to the
pair's target. Geometry checks live in :mod:`napari_resample.qc.grid_checks`, value checks in
:mod:`napari_resample.qc.value_checks`; their tolerances are named constants there. The
image / label map pairing of one case is :mod:`napari_resample.qc.pairs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_resample.qc.grid_checks import (
    check_forms_agree,
    check_fov_kept,
    check_orientation_kept,
    check_overlap,
    check_position_kept,
)
from napari_resample.qc.model import Finding
from napari_resample.qc.summary import VolumeSummary
from napari_resample.qc.value_checks import (
    check_label_volumes,
    check_labels_kept,
    check_no_nan_introduced,
    check_not_constant,
    check_value_range,
)

__all__ = [
    "CHECKS",
    "check_forms_agree",
    "check_fov_kept",
    "check_label_volumes",
    "check_labels_kept",
    "check_no_nan_introduced",
    "check_not_constant",
    "check_orientation_kept",
    "check_overlap",
    "check_position_kept",
    "check_value_range",
    "run_checks",
]

#: A check: input and output summaries and the manifest record in, its finding(s) out.
Check = Callable[[VolumeSummary, VolumeSummary, dict[str, Any]], "Finding | list[Finding] | None"]

#: Every check of a pair, in the order :func:`run_checks` runs them.
CHECKS: tuple[Check, ...] = (
    check_fov_kept,
    check_position_kept,
    check_orientation_kept,
    check_forms_agree,
    check_not_constant,
    check_value_range,
    check_no_nan_introduced,
    check_labels_kept,
    check_label_volumes,
    check_overlap,
)


def run_checks(inp: VolumeSummary, out: VolumeSummary, record: dict[str, Any]) -> list[Finding]:
    """Every check of :data:`CHECKS` on one resampled pair, in order.

    Parameters
    ----------
    inp, out : VolumeSummary
        Input and output (label counts needed for label maps:
        ``summarize_file(path, label_map=True)``).
    record : dict
        The pair's dataset manifest record.

    Returns
    -------
    list of Finding
        The findings of the checks that apply, in :data:`CHECKS` order.
    """
    findings: list[Finding] = []
    for check in CHECKS:
        found = check(inp, out, record)
        if isinstance(found, Finding):
            findings.append(found)
        elif found is not None:
            findings.extend(found)
    return findings
