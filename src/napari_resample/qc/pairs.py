"""The cases of a dataset: which output label map goes with which output image
(:func:`pair_cases`, by the name convention :data:`PAIRING_RULE`), and whether the two share
one grid (:func:`check_pairing`, on the :meth:`~napari_resample.qc.summary.VolumeSummary.facts`
that ``qc.json`` keeps, so pairs are checked when the report is assembled).

The convention is the one of BraTS and most challenge datasets (``<case>_seg``), of the
built-in sample (``phantom`` and ``phantom_labels``) and of nnU-Net / the Medical Segmentation
Decathlon (``imagesTr/<case>_0000`` and ``labelsTr/<case>``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from napari_resample.io.names import OUTPUT_SUFFIX, REFERENCE_SUFFIX, volume_name
from napari_resample.qc.grid_checks import box_corners
from napari_resample.qc.model import Finding

#: What ends a label map's name, after its image's (compared ignoring case).
LABEL_SUFFIXES: tuple[str, ...] = ("_seg", "_segmentation", "_label", "_labels", "_mask")
#: nnU-Net's channel suffix: the image of a case may be its first channel.
CHANNEL_SUFFIX = "_0000"
#: nnU-Net's label folders and the image folder beside each.
LABEL_FOLDERS: dict[str, str] = {"labelsTr": "imagesTr", "labelsTs": "imagesTs"}

#: The name convention, in one sentence (the report states it).
PAIRING_RULE = (
    "A label map and an image are one case when, names taken without the output suffix "
    "(_resampled, _resampled_to_ref) and side by side in one folder (or in sibling case "
    "folders), the label map is named as the image followed by _seg, _segmentation, _label, "
    "_labels or _mask (BraTS, the sample's phantom_labels), or, in nnU-Net's layout, lies in "
    "labelsTr (labelsTs) with the name of the image in imagesTr (imagesTs); the image's name "
    "may end in nnU-Net's channel suffix _0000."
)

#: How far (in the image's smallest voxel size) the label map's grid may place a corner of
#: its field of view from where the image's grid does: float rounding of the two headers and
#: the 6 decimals of ``qc.json``'s affines, far below a voxel of any grid the pair could
#: really be on.
PAIR_TOL_VOXELS = 0.1


def case_name(path: str) -> tuple[str, str]:
    """``(folder, name)`` of an output: its name without the output suffix, and its folder,
    the parent of a case folder (``<out>/<PREFIX>/<PREFIX>_resampled.nii.gz``) being taken for
    it."""
    base = os.path.basename(path)
    for suffix in (REFERENCE_SUFFIX, OUTPUT_SUFFIX):
        if base.lower().endswith(suffix):
            name = base[: -len(suffix)]
            break
    else:
        name = volume_name(base)
    folder = os.path.dirname(path)
    if os.path.basename(folder) == name:
        folder = os.path.dirname(folder)
    return folder, name


def image_candidates(folder: str, name: str) -> list[tuple[str, str]]:
    """The ``(folder, name)`` an image of label map *name* in *folder* may have, preferred
    first."""
    found = []
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            case = name[: -len(suffix)]
            found += [(folder, case + CHANNEL_SUFFIX), (folder, case)]
    images = LABEL_FOLDERS.get(os.path.basename(folder))
    if images is not None:
        beside = os.path.join(os.path.dirname(folder), images)
        found += [(beside, name + CHANNEL_SUFFIX), (beside, name)]
    return found


def pair_cases(outputs: Iterable[str]) -> dict[str, str]:
    """Label map output -> image output of the same case, by :data:`PAIRING_RULE`.

    Parameters
    ----------
    outputs : iterable of str
        The output paths of a run.

    Returns
    -------
    dict of str to str
        Each label map (by name) whose image is among *outputs*.

    Examples
    --------
    >>> pair_cases(["out/phantom_resampled.nii.gz", "out/phantom_labels_resampled.nii.gz"])
    {'out/phantom_labels_resampled.nii.gz': 'out/phantom_resampled.nii.gz'}
    >>> pair_cases(["o/imagesTr/la_3_0000_resampled.nii.gz", "o/labelsTr/la_3_resampled.nii.gz"])
    {'o/labelsTr/la_3_resampled.nii.gz': 'o/imagesTr/la_3_0000_resampled.nii.gz'}
    """
    paths = [os.fspath(p) for p in outputs]
    by_name = {case_name(p): p for p in paths}
    pairs = {}
    for path in paths:
        for key in image_candidates(*case_name(path)):
            image = by_name.get(key)
            if image is not None and image != path:
                pairs[path] = image
                break
    return pairs


def check_pairing(
    label_facts: dict[str, Any], image_facts: dict[str, Any], label_path: str, image_path: str
) -> Finding:
    """A case's label map lies on its image's grid: the same shape, and the corners of the
    field of view within :data:`PAIR_TOL_VOXELS` of the image's smallest voxel; else an error.

    Parameters
    ----------
    label_facts, image_facts : dict
        :meth:`napari_resample.qc.summary.VolumeSummary.facts` of the two outputs (``shape``,
        ``affine``, ``spacing`` used).
    label_path, image_path : str
        How the sentence names them.
    """
    label, image = os.path.basename(label_path), os.path.basename(image_path)
    shape_l, shape_i = tuple(label_facts["shape"]), tuple(image_facts["shape"])
    if shape_l != shape_i:
        return Finding(
            "pairing",
            "error",
            f"{label}: {'x'.join(map(str, shape_l))} voxels where its image {image} has "
            f"{'x'.join(map(str, shape_i))} (a case's label map lies on its image's grid).",
        )
    corners = box_corners((int(shape_l[0]), int(shape_l[1]), int(shape_l[2])))
    gap = (np.asarray(label_facts["affine"]) - np.asarray(image_facts["affine"])) @ corners
    worst = float(np.max(np.linalg.norm(gap[:3], axis=0)))
    tol = PAIR_TOL_VOXELS * float(min(image_facts["spacing"]))
    return Finding(
        "pairing",
        "ok" if worst <= tol else "error",
        f"{label}: its field of view's corners lie {worst:.3g} mm from those of its image "
        f"{image} (a case's label map lies on its image's grid, within {tol:.3g} mm).",
    )
