"""The QC checks on a seeded-fault corpus.

Real outputs first: the built-in phantom (CT-like int16 image, its uint8 label map and a float32
copy of the image) resampled by real dataset runs (size and spacing targets, both anchors, a
reference grid) and the Quick start's own command, whose manifest records the checks read.
Clean, they give no error and exactly the warnings that are due. Then each output is damaged
the way the trackers of resampling tools report it (a flipped axis, a half-voxel shift, an
all-zero volume, qform != sform, a wrapped integer, an invented label, a lost label, NaN, a
label map on another grid than its image) and the right check must flag it with the right
severity, and no other check may.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from conftest import CASES, build_case
from napari_resample import resampling_dataset
from napari_resample.cli import main as cli_main
from napari_resample.dataset.manifest import MANIFEST_NAME
from napari_resample.io.nifti import NiftiVolume, save_volume
from napari_resample.io.phantom import phantom_volumes
from napari_resample.qc.checks import CHECKS, run_checks
from napari_resample.qc.grid_checks import POSITION_TOL_VOXELS, check_overlap
from napari_resample.qc.model import Finding
from napari_resample.qc.pairs import PAIRING_RULE, check_pairing, pair_cases
from napari_resample.qc.summary import VolumeSummary, summarize_file

#: The phantom runs: name -> resampling_dataset's target options.
RUNS: dict[str, dict[str, Any]] = {
    "size_origin": {"desired_volume": [80, 96, 40]},
    "size_center": {"desired_volume": [120, 72, 90], "anchor": "center"},
    "spacing_origin": {"spacing": [1.3, 1.1, 3.1]},
    "spacing_center": {"spacing": [0.7, 0.9, 1.9], "anchor": "center"},
}
IMAGE_CHECKS = [
    "fov_kept",
    "position_kept",
    "orientation_kept",
    "forms_agree",
    "not_constant",
    "value_range",
    "no_nan_introduced",
]
LABEL_CHECKS = [*IMAGE_CHECKS, "labels_kept", "label_volumes"]


def write_phantom(folder: Path) -> None:
    """The built-in sample (image and label map) and a float32 copy of the image."""
    folder.mkdir(parents=True)
    volumes = phantom_volumes()
    for name, volume in volumes.items():
        save_volume(folder / f"{name}.nii.gz", volume)
    image = volumes["phantom"]
    header = image.header.copy()
    header.set_data_dtype(np.float32)
    float_image = NiftiVolume(image.data.astype(np.float32), image.affine, header)
    save_volume(folder / "phantom_float.nii.gz", float_image)


def records(folder: Path) -> dict[str, dict[str, Any]]:
    """The done records of a run's manifest, by output file name."""
    lines = (folder / MANIFEST_NAME).read_text().splitlines()
    done = [json.loads(line) for line in lines]
    return {Path(r["output"]).name: r for r in done if r.get("status") == "done"}


def is_labels(record: dict[str, Any]) -> bool:
    return record["interpolation_used"] in ("label", "nearest")


def summaries(record: dict[str, Any]) -> tuple[VolumeSummary, VolumeSummary]:
    labels = is_labels(record)
    inp = summarize_file(record["input"], label_map=labels)
    return inp, summarize_file(record["output"], label_map=labels)


def findings_of(record: dict[str, Any]) -> list[Finding]:
    return run_checks(*summaries(record), record)


def problems(findings: list[Finding]) -> list[tuple[str, str]]:
    """What is not ok, as sorted (check, severity) pairs."""
    return sorted((f.check, f.severity) for f in findings if f.severity != "ok")


@pytest.fixture(scope="module")
def qc_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real dataset runs of the phantom: one folder per target of :data:`RUNS`, a reference
    grid (``reference``: the size run's image grid) and a reference grid the input covers 30%
    of, filled with -2000 (``partial``)."""
    root = tmp_path_factory.mktemp("qc")
    write_phantom(root / "in")
    for name, target in RUNS.items():
        resampling_dataset(root / "in", root / name, progress=False, **target)
    grid = root / "size_origin" / "phantom_resampled.nii.gz"
    resampling_dataset(root / "in", root / "reference", progress=False, reference=grid)
    far = nib.load(grid)
    affine = far.affine.copy()
    affine[0, 3] += 0.7 * 80.0  # 70% of the 80 mm field of view along x: 30% overlap
    nib.save(nib.Nifti1Image(np.zeros(far.shape, np.int16), affine), root / "far.nii.gz")
    resampling_dataset(
        [root / "in" / "phantom.nii.gz"],
        root / "partial",
        progress=False,
        reference=root / "far.nii.gz",
        fill_value=-2000,  # below the input's -1024: the fill is not a value out of range
    )
    return root


def expected_checks(run: str, record: dict[str, Any]) -> list[str]:
    checks = LABEL_CHECKS if is_labels(record) else IMAGE_CHECKS
    if run in ("reference", "partial"):
        checks = [c for c in checks if c not in ("fov_kept", "position_kept")] + ["overlap"]
    return checks


@pytest.mark.parametrize("run", [*RUNS, "reference"])
def test_clean_phantom_outputs_have_nothing_to_report(qc_corpus: Path, run: str) -> None:
    done = records(qc_corpus / run)
    assert len(done) == 3
    for name, record in done.items():
        findings = findings_of(record)
        assert problems(findings) == [], [f.message for f in findings]
        assert [f.check for f in findings] == expected_checks(run, record)
        for f in findings:  # one sentence naming the file
            assert f.message.startswith(f"{name}: ") and f.message.endswith(".")
            assert f.message.count(". ") == 0, f.message


def test_quick_start_sample_has_nothing_to_report(tmp_path: Path) -> None:
    # The README's Quick start, through the command line: napari-resample --sample ... --size.
    assert cli_main(["--sample", str(tmp_path), "--size", "128", "128", "64"]) == 0
    done = records(tmp_path)
    assert sorted(done) == ["phantom_labels_resampled.nii.gz", "phantom_resampled.nii.gz"]
    for record in done.values():
        assert problems(findings_of(record)) == []
    assert pair_cases([r["output"] for r in done.values()]) == {
        done["phantom_labels_resampled.nii.gz"]["output"]: done["phantom_resampled.nii.gz"][
            "output"
        ]
    }


def test_partial_reference_overlap_is_a_warning_with_its_number(qc_corpus: Path) -> None:
    (record,) = records(qc_corpus / "partial").values()
    assert record["overlap"] == pytest.approx(0.3, abs=0.02)
    findings = findings_of(record)
    assert problems(findings) == [("overlap", "warning")]
    assert summarize_file(record["output"], label_map=False).lo == -2000
    (overlap,) = [f for f in findings if f.check == "overlap"]
    assert f"{record['overlap']:.1%}" in overlap.message


@pytest.mark.parametrize(("overlap", "severity"), [(0.0, "error"), (None, "error"), (0.5, "ok")])
def test_overlap_severity(qc_corpus: Path, overlap: float | None, severity: str) -> None:
    record = dict(records(qc_corpus / "reference")["phantom_resampled_to_ref.nii.gz"])
    record["overlap"] = overlap
    finding = check_overlap(*summaries(record), record)
    assert finding is not None and finding.severity == severity


def test_a_reference_gone_is_a_warning_not_a_verdict(qc_corpus: Path, tmp_path: Path) -> None:
    record = dict(records(qc_corpus / "reference")["phantom_resampled_to_ref.nii.gz"])
    record["params"] = {**record["params"], "reference": str(tmp_path / "gone.nii.gz")}
    findings = findings_of(record)
    assert problems(findings) == [("orientation_kept", "warning")]
    assert "gone.nii.gz' cannot be read" in message(findings, "orientation_kept", "warning")


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_the_other_anchors_rule_is_a_position_error(qc_corpus: Path, anchor: str) -> None:
    # A clean output checked against the anchor it was not made with: at these factors the
    # other anchor's point lies over POSITION_TOL_VOXELS away.
    record = dict(records(qc_corpus / f"size_{anchor}")["phantom_resampled.nii.gz"])
    other = "center" if anchor == "origin" else "origin"
    record["params"] = {**record["params"], "anchor": other}
    assert problems(findings_of(record)) == [("position_kept", "error")]


# ----------------------------------------------------------------------------- the faults


def rewrite(
    src: Path,
    dest: Path,
    data: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    qform: np.ndarray | None = None,
) -> None:
    """Write *src* again as *dest* with its data, both forms (*affine*) or its qform replaced,
    every other header field kept."""
    img = nib.load(src)
    header = img.header.copy()
    stored = np.asanyarray(img.dataobj) if data is None else data
    if affine is not None:
        header.set_sform(affine, code=int(header["sform_code"]))
    if affine is not None or qform is not None:
        header.set_qform(affine if qform is None else qform, code=int(header["qform_code"]))
    nib.save(nib.Nifti1Image(stored, None, header), dest)


def column_negated(img: Any) -> dict[str, Any]:
    affine = img.affine.copy()
    affine[:3, 0] *= -1  # the i axis now runs to the left: RAS -> LAS
    return {"affine": affine}


def reoriented(img: Any) -> dict[str, Any]:
    ornt = np.array([[0, -1], [1, 1], [2, 1]])  # i reversed, data and affine together
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), ornt)
    return {"data": data, "affine": img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)}


def half_voxel_shift(img: Any) -> dict[str, Any]:
    affine = img.affine.copy()
    affine[:3, 3] += affine[:3, 1] / 2  # the grid moved half an output voxel along j
    return {"affine": affine}


def all_zero(img: Any) -> dict[str, Any]:
    return {"data": np.zeros(img.shape, img.get_data_dtype())}


def qform_moved(img: Any) -> dict[str, Any]:
    qform = img.affine.copy()
    qform[:3, 3] += (0.0, 10.0, 0.0)  # one viewer shows the scan 10 mm from another
    return {"qform": qform}


def wrapped(img: Any) -> dict[str, Any]:
    # Bone plus 32000 computed in int16: past 32767 it wraps to large negative values.
    data = np.asanyarray(img.dataobj).astype(np.int32)
    data[data > 900] += 32000
    return {"data": data.astype(np.int16)}


def invented_label(img: Any) -> dict[str, Any]:
    data = np.array(np.asanyarray(img.dataobj))
    data[:2, :2, :2] = 9  # a label the input never had, in a background corner
    return {"data": data}


def lost_label(img: Any) -> dict[str, Any]:
    data = np.array(np.asanyarray(img.dataobj))
    data[data == 4] = 2  # the lesion swallowed by the brain
    return {"data": data}


def nan_introduced(img: Any) -> dict[str, Any]:
    data = np.array(np.asanyarray(img.dataobj))
    data[10:12, 20:22, 5] = np.nan
    return {"data": data}


#: Fault -> (output damaged, the damage, what the checks must report).
FAULTS: dict[str, tuple[str, Callable[[Any], dict[str, Any]], list[tuple[str, str]]]] = {
    "flipped_axis": ("phantom_resampled", column_negated, [("orientation_kept", "error")]),
    # With anchor "center" the flipped column also moves the kept corner of the box.
    "flipped_axis_center": (
        "phantom_resampled",
        column_negated,
        [("orientation_kept", "error"), ("position_kept", "error")],
    ),
    "reoriented": (
        "phantom_resampled",
        reoriented,
        [("orientation_kept", "error"), ("position_kept", "error")],
    ),
    "half_voxel_shift": ("phantom_resampled", half_voxel_shift, [("position_kept", "error")]),
    "all_zero": ("phantom_resampled", all_zero, [("not_constant", "error")]),
    "all_zero_labels": (
        "phantom_labels_resampled",
        all_zero,
        [("label_volumes", "warning"), ("labels_kept", "warning"), ("not_constant", "error")],
    ),
    "qform_ne_sform": ("phantom_resampled", qform_moved, [("forms_agree", "error")]),
    "wrapped_integer": ("phantom_resampled", wrapped, [("value_range", "error")]),
    "invented_label": (
        "phantom_labels_resampled",
        invented_label,
        [("labels_kept", "error"), ("value_range", "error")],
    ),
    "lost_label": ("phantom_labels_resampled", lost_label, [("labels_kept", "warning")]),
    "nan_introduced": (
        "phantom_float_resampled",
        nan_introduced,
        [("no_nan_introduced", "error")],
    ),
}


def damaged(qc_corpus: Path, run: str, fault: str, dest: Path) -> dict[str, Any]:
    """The record of *run*'s output damaged by *fault*, written into *dest*."""
    output, damage, _ = FAULTS[fault]
    record = dict(records(qc_corpus / run)[f"{output}.nii.gz"])
    path = dest / f"{output}.nii.gz"
    rewrite(Path(record["output"]), path, **damage(nib.load(record["output"])))
    return {**record, "output": str(path)}


FAULT_RUNS = [
    (fault, run)
    for fault in FAULTS
    for run in ("size_origin", "spacing_center")
    if fault != ("flipped_axis" if run.endswith("center") else "flipped_axis_center")
]


@pytest.mark.parametrize(("fault", "run"), FAULT_RUNS)
def test_every_seeded_fault_is_flagged_by_its_check(
    qc_corpus: Path, tmp_path: Path, run: str, fault: str
) -> None:
    record = damaged(qc_corpus, run, fault, tmp_path)
    findings = findings_of(record)
    assert problems(findings) == FAULTS[fault][2], [f.message for f in findings]
    for f in findings:
        assert f.message.startswith(f"{Path(record['output']).name}: ")


def message(findings: list[Finding], check: str, severity: str) -> str:
    (found,) = [f.message for f in findings if (f.check, f.severity) == (check, severity)]
    return found


def test_fault_sentences_name_the_value_and_the_rule(qc_corpus: Path, tmp_path: Path) -> None:
    wrap = findings_of(damaged(qc_corpus, "size_origin", "wrapped_integer", tmp_path))
    text = message(wrap, "value_range", "error")
    assert "minimum -3" in text and "input's -1024" in text and "int16 wrap" in text
    lost = findings_of(damaged(qc_corpus, "size_origin", "lost_label", tmp_path))
    assert "lost 4 (823.8 mm^3)" in message(lost, "labels_kept", "warning")
    shift = findings_of(damaged(qc_corpus, "size_origin", "half_voxel_shift", tmp_path))
    assert "(0.5 output voxel)" in message(shift, "position_kept", "error")
    forms = findings_of(damaged(qc_corpus, "size_origin", "qform_ne_sform", tmp_path))
    assert "differ by 10 mm, made by the resampling" in message(forms, "forms_agree", "error")
    assert POSITION_TOL_VOXELS < 0.25  # the other anchor at a 2x downsample is caught


def test_a_label_smaller_than_an_output_voxel_is_reported_lost_not_wrong(tmp_path: Path) -> None:
    # A one-voxel structure (0.625 mm^3) cannot survive voting onto 40 mm^3 voxels: a warning
    # that says why, not an error of the engine.
    labels = phantom_volumes()["phantom_labels"]
    data = labels.data.copy()
    data[82, 98, 34] = 5  # between the sample positions (multiples of 4)
    (tmp_path / "in").mkdir()
    save_volume(
        tmp_path / "in" / "tiny_labels.nii.gz", NiftiVolume(data, labels.affine, labels.header)
    )
    resampling_dataset(tmp_path / "in", tmp_path / "out", [40, 48, 16], progress=False)
    (record,) = records(tmp_path / "out").values()
    findings = findings_of(record)
    assert problems(findings) == [("labels_kept", "warning")]
    text = message(findings, "labels_kept", "warning")
    assert "lost, smaller than an output voxel (40 mm^3): 5 (0.625 mm^3)" in text


def test_a_label_map_summarised_without_counts_says_its_labels_are_unchecked(
    qc_corpus: Path,
) -> None:
    record = records(qc_corpus / "size_origin")["phantom_labels_resampled.nii.gz"]
    inp, out = (summarize_file(record[k], label_map=False) for k in ("input", "output"))
    findings = run_checks(inp, out, record)
    assert problems(findings) == [("labels_kept", "warning")]
    assert "not counted" in message(findings, "labels_kept", "warning")


def test_label_map_on_another_grid_than_its_image_is_a_pairing_error(
    qc_corpus: Path, tmp_path: Path
) -> None:
    image = records(qc_corpus / "size_origin")["phantom_resampled.nii.gz"]["output"]
    elsewhere = records(qc_corpus / "size_center")["phantom_labels_resampled.nii.gz"]["output"]
    here = records(qc_corpus / "size_origin")["phantom_labels_resampled.nii.gz"]["output"]
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(image, case / "phantom_resampled.nii.gz")
    shutil.copy(elsewhere, case / "phantom_labels_resampled.nii.gz")
    rewrite(Path(here), tmp_path / "shifted_labels.nii.gz", **half_voxel_shift(nib.load(here)))
    facts = {
        p: summarize_file(p, label_map=False).facts()
        for p in (image, elsewhere, here, str(tmp_path / "shifted_labels.nii.gz"))
    }
    outputs = [
        str(case / "phantom_resampled.nii.gz"),
        str(case / "phantom_labels_resampled.nii.gz"),
    ]
    assert pair_cases(outputs) == {outputs[1]: outputs[0]}
    other_shape = check_pairing(facts[elsewhere], facts[image], elsewhere, image)
    assert other_shape.severity == "error" and "120x72x90 voxels" in other_shape.message
    moved = str(tmp_path / "shifted_labels.nii.gz")
    shifted = check_pairing(facts[moved], facts[image], moved, image)
    assert shifted.severity == "error" and "lie 0.5 mm" in shifted.message
    assert check_pairing(facts[here], facts[image], here, image).severity == "ok"


@pytest.mark.parametrize(
    ("outputs", "pairs"),
    [
        (
            ["o/a_resampled.nii.gz", "o/a_seg_resampled.nii.gz"],
            {"o/a_seg_resampled.nii.gz": "o/a_resampled.nii.gz"},
        ),
        (
            ["o/c1_0000_resampled.nii.gz", "o/c1_mask_resampled.nii.gz", "o/c1_resampled.nii.gz"],
            {"o/c1_mask_resampled.nii.gz": "o/c1_0000_resampled.nii.gz"},
        ),
        (
            ["o/imagesTr/la_3_0000_resampled.nii.gz", "o/labelsTr/la_3_resampled.nii.gz"],
            {"o/labelsTr/la_3_resampled.nii.gz": "o/imagesTr/la_3_0000_resampled.nii.gz"},
        ),
        (  # reference grids' outputs; nnU-Net test images without a channel suffix
            ["o/imagesTs/la_4_resampled_to_ref.nii.gz", "o/labelsTs/la_4_resampled_to_ref.nii.gz"],
            {"o/labelsTs/la_4_resampled_to_ref.nii.gz": "o/imagesTs/la_4_resampled_to_ref.nii.gz"},
        ),
        (  # saving_mode="case": sibling case folders
            ["o/b/b_resampled.nii.gz", "o/b_Labels/b_Labels_resampled.nii.gz"],
            {"o/b_Labels/b_Labels_resampled.nii.gz": "o/b/b_resampled.nii.gz"},
        ),
        (["o/x/a_resampled.nii.gz", "o/y/a_seg_resampled.nii.gz"], {}),  # other folders
        (["o/a_resampled.nii.gz", "o/b_seg_resampled.nii.gz", "o/_seg_resampled.nii.gz"], {}),
    ],
)
def test_pairing_follows_the_stated_name_convention(outputs: list[str], pairs: dict) -> None:
    assert pair_cases(outputs) == pairs
    assert "_seg" in PAIRING_RULE and "labelsTr" in PAIRING_RULE and "_0000" in PAIRING_RULE


# --------------------------------------------------------------- the test suite's own cases


def test_other_formats_in_a_real_ct_and_an_oblique_nrrd(tmp_path: Path) -> None:
    # pydicom's real CT series and an oblique NRRD: clean, then the NRRD's output shifted by
    # half a voxel (their world position comes from their own headers, not from NIfTI codes).
    from _formats import CT, OBLIQUE, write_sitk

    nrrd = write_sitk(tmp_path / "oblique.nrrd", phantom_volumes()["phantom"].data, *OBLIQUE)
    resampling_dataset([CT, nrrd], tmp_path / "out", [12, 10, 7], progress=False)
    done = records(tmp_path / "out")
    assert sorted(done) == ["CT5N_resampled.nii.gz", "oblique_resampled.nii.gz"]
    for record in done.values():
        assert problems(findings_of(record)) == []
    record = done["oblique_resampled.nii.gz"]
    shifted = tmp_path / "oblique_resampled.nii.gz"
    rewrite(Path(record["output"]), shifted, **half_voxel_shift(nib.load(record["output"])))
    found = findings_of({**record, "output": str(shifted)})
    assert problems(found) == [("position_kept", "error")]


@pytest.mark.parametrize(
    "target",
    [
        {"desired_volume": [12, 10, 4]},
        {"desired_volume": [5, 4, 9], "anchor": "center"},
        {"spacing": [0.4, 1.0, 3.0], "anchor": "center"},
    ],
)
def test_the_suites_synthetic_cases_have_no_error(
    make_nifti: Callable[..., Path], tmp_path: Path, target: dict[str, Any]
) -> None:
    # Flipped, permuted, oblique, sheared, big-endian, scaled, codes 0/0, one form only...
    for name in CASES:
        case = build_case(name)
        make_nifti(case.data, case.affine, name=f"{name}.nii.gz", **case.opts)
    resampling_dataset(tmp_path / "in", tmp_path / "out", progress=False, **target)
    done = records(tmp_path / "out")
    assert len(done) == len(CASES)
    found = {name: problems(findings_of(r)) for name, r in done.items()}
    # Due: the input's own qform/sform disagreement, inherited; the 9x8x6 label map's
    # 2-voxel-thick structures change volume by over 20% on these grids.
    due = {
        "qform_ne_sform_resampled.nii.gz": [("forms_agree", "warning")],
        "sheared_resampled.nii.gz": [("forms_agree", "warning")],
    }
    labels = found.pop("labels_resampled.nii.gz")
    assert labels in ([], [("label_volumes", "warning")])
    assert {k: v for k, v in found.items() if v} == due


def test_run_checks_runs_every_check_in_order() -> None:
    names = [c.__name__.removeprefix("check_") for c in CHECKS]
    assert names == [*LABEL_CHECKS, "overlap"]
