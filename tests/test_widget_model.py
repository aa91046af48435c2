"""The widget's read-out model and runs without Qt or a viewer (plugin/widget/model.py, job.py).

Layers are stand-ins holding what napari layers hold (data, transforms, metadata): the model only
reads those attributes.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_resample.engine import memory
from napari_resample.engine.geometry import resampled_affine
from napari_resample.engine.grid import Grid, spacing_size, voxel_spacing
from napari_resample.engine.memory import format_bytes
from napari_resample.engine.resample import estimate_memory
from napari_resample.plugin.layer_volume import METADATA_KEY
from napari_resample.plugin.layout import napari_from_nifti
from napari_resample.plugin.widget.job import prepare_job, result_layer_data, run_job
from napari_resample.plugin.widget.model import (
    MATCH,
    NAME_CHARS,
    NO_LAYER,
    SIZE,
    SPACING,
    Source,
    Target,
    read_out,
    source_of,
)

#: 7 x 6 x 5 voxels of 0.5 x 0.8 x 2.5 mm: a field of view of 3.5 x 4.8 x 12.5 mm.
AFFINE = np.diag([0.5, 0.8, 2.5, 1.0])
SOURCE = Source("ct", (7, 6, 5), AFFINE, np.dtype("int16"))


def _grid(shape, spacing, origin, name="ref") -> Grid:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Grid(tuple(shape), affine, None, name)


def _layer(stored: np.ndarray, affine: np.ndarray, name: str = "v", **extra) -> SimpleNamespace:
    """A stand-in for a napari layer showing *stored* (I, J, K) voxels as the reader would."""
    layout = napari_from_nifti(stored, affine)
    kw = layout.kwargs
    n = layout.data.ndim
    return SimpleNamespace(
        name=name,
        data=layout.data,
        ndim=n,
        scale=kw["scale"],
        translate=kw["translate"],
        rotate=kw.get("rotate", np.eye(n)),
        shear=kw.get("shear", np.eye(n)),
        affine=SimpleNamespace(affine_matrix=np.eye(n + 1)),
        units=kw["units"],
        axis_labels=kw["axis_labels"],
        metadata={METADATA_KEY: {"storage": layout.storage.to_dict()}},
        opacity=0.7,
        blending="additive",
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        gamma=1.0,
        **extra,
    )


def _ct(shape=(10, 12, 8)) -> np.ndarray:
    """An int16 image with many distinct values, in stored (I, J, K) order."""
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return (1000 * np.exp(-(i**2 + j**2 + k**2)) + 300 * i - 200 * k).astype(np.int16)


# ----------------------------------------------------------------------------- read-out


def test_a_size_target_gives_the_spacing_that_keeps_the_field_of_view() -> None:
    shown = read_out(SOURCE, Target(SIZE, size=(14, 12, 10)), "bspline", free=None)
    spacing = voxel_spacing(resampled_affine(AFFINE, (7, 6, 5), (14, 12, 10), "origin"))
    assert np.allclose(spacing, [0.25, 0.4, 1.25])
    assert shown.lines[:3] == (
        "now: 7 x 6 x 5 voxels, spacing 0.5 x 0.8 x 2.5 mm",
        "new: 14 x 12 x 10 voxels, spacing 0.25 x 0.4 x 1.25 mm",
        "field of view (kept): 3.5 x 4.8 x 12.5 mm",
    )
    assert shown.lines[3] == f"output: {14 * 12 * 10 * 2 / 1024:.1f} KiB (int16)"
    assert shown.new_size == (14, 12, 10) and shown.can_run
    assert shown.refusal is None and shown.warning is None and shown.memory_warning == ""


def test_a_spacing_target_rounds_the_size_and_says_what_was_asked() -> None:
    shown = read_out(SOURCE, Target(SPACING, spacing=(0.3, 0.3, 0.3)), "bspline", free=None)
    size, spacing = spacing_size((7, 6, 5), AFFINE, (0.3, 0.3, 0.3))
    assert shown.new_size == size == (12, 16, 42)
    assert shown.lines[1].startswith("new: 12 x 16 x 42 voxels, spacing ")
    assert shown.lines[1].endswith("mm (asked 0.3 x 0.3 x 0.3 mm)")
    assert f"{spacing[2]:.3g}" in shown.lines[1]


def test_a_matched_layer_gives_its_grid_and_the_overlap() -> None:
    inside = _grid((4, 4, 4), (0.5, 0.5, 1.0), (0.5, 0.5, 1.0))
    shown = read_out(SOURCE, Target(MATCH, grid=inside), "bspline", free=None)
    assert shown.lines[1] == "new: 4 x 4 x 4 voxels, spacing 0.5 x 0.5 x 1 mm"
    assert shown.lines[2] == "overlap: 'ct' covers 100% of 'ref'"
    assert shown.new_size == (4, 4, 4) and shown.can_run and shown.warning is None


def test_little_overlap_warns_and_no_overlap_refuses() -> None:
    # 6 of the grid's 10 columns along x lie outside the source's field of view (0 to 3 mm)
    low = _grid((10, 2, 2), (1.0, 1.0, 1.0), (-1.0, 1.0, 2.0))
    shown = read_out(SOURCE, Target(MATCH, grid=low), "bspline", free=None)
    assert shown.warning is not None and shown.warning.startswith("Low overlap: 'ct' covers only")
    assert shown.refusal is None and shown.can_run
    far = _grid((3, 3, 3), (1.0, 1.0, 1.0), (500.0, 0.0, 0.0), "far")
    shown = read_out(SOURCE, Target(MATCH, grid=far), "bspline", free=None)
    assert shown.refusal is not None and shown.refusal.startswith("No overlap (0%)")
    assert "'far' spans" in shown.refusal and not shown.can_run


def test_no_layer_to_match_is_refused_with_the_reason() -> None:
    shown = read_out(SOURCE, Target(MATCH), "bspline", free=None)
    assert shown.lines[1] == "new: no layer to match"
    assert (
        shown.refusal == "Cannot match: open another 3D Image or Labels layer to match its grid."
    )
    assert not shown.can_run
    why = Target(MATCH, no_grid="'rgb' is an RGB image")
    assert read_out(SOURCE, why, "bspline", None).refusal == "Cannot match: 'rgb' is an RGB image."


def test_the_memory_line_is_the_engines_estimate_and_a_run_too_big_is_refused() -> None:
    target = Target(SIZE, size=(70, 60, 50))
    peak = estimate_memory((7, 6, 5), "int16", (70, 60, 50), "label")
    assert estimate_memory((7, 6, 5), "int16", (70, 60, 50), "bspline") != peak  # mode counts
    fits = read_out(SOURCE, target, "label", free=peak)
    assert fits.can_run and fits.memory_warning == ""
    assert fits.lines[-1].startswith(f"peak memory: {format_bytes(peak)} of ")
    too_big = read_out(SOURCE, target, "label", free=peak - 1)
    assert too_big.memory_warning.startswith("Too big: the run needs ")
    assert "available now" in too_big.memory_warning and not too_big.can_run
    unknown = read_out(SOURCE, target, "label", free=None)  # never refused on a guess
    assert unknown.can_run and "available" not in unknown.lines[-1]


def test_without_a_source_the_read_out_is_one_sentence() -> None:
    shown = read_out(NO_LAYER, Target(SIZE), None, None)
    assert shown.lines == (NO_LAYER,) and shown.new_size is None and shown.text == NO_LAYER
    assert not shown.can_run  # Run is disabled: there is nothing to resample


def test_memory_reads_in_gib_above_one_gib() -> None:
    free = int(22_571.5 * 2**20)  # what the read-out once showed as "22,571.5 MiB available"
    shown = read_out(SOURCE, Target(SIZE, size=(7, 6, 5)), "bspline", free=free)
    assert shown.lines[-1].endswith(" of 22.0 GiB available"), shown.lines[-1]
    assert "MiB available" not in shown.text
    huge = read_out(SOURCE, Target(SIZE, size=(4000, 4000, 4000)), "bspline", free=free)
    assert "GiB at its peak but only 22.0 GiB is available now" in huge.memory_warning
    assert format_bytes(1536 * 2**20) == "1.5 GiB" and format_bytes(3 * 2**20) == "3.0 MiB"


def test_long_layer_names_are_elided_in_the_read_out() -> None:
    name = "sub-01_ses-baseline_acq-highres_T1w_space-MNI152NLin2009cAsym_desc-preproc"
    source = Source(name, (7, 6, 5), np.diag([0.5, 0.5, 2.0, 1.0]), np.dtype("int16"))
    grid = _grid((4, 4, 4), (0.5, 0.5, 1.0), (0.0, 0.0, 0.0), name + "_reference")
    shown = read_out(source, Target(MATCH, grid=grid), "bspline", free=None)
    overlap = shown.lines[2]
    assert overlap.startswith("overlap: 'sub-01_ses…") and overlap.endswith("_reference'")
    assert max(len(word) for word in overlap.split()) <= NAME_CHARS + 2  # quotes


# -------------------------------------------------------------------------- the layer


def test_a_layer_is_read_in_the_files_voxel_order() -> None:
    lsa = np.array([[-0.9, 0, 0, 5.0], [0, 0, 2.0, -7.0], [0, 1.2, 0, 30.0], [0, 0, 0, 1]])
    layer = _layer(np.zeros((7, 6, 5), np.float32), lsa)
    assert layer.data.shape == (6, 5, 7)  # napari (S, A, R)
    source = source_of(layer)
    assert isinstance(source, Source)
    assert source.size == (7, 6, 5) and np.allclose(source.affine, lsa)
    assert source.dtype == np.float32


@pytest.mark.parametrize(
    ("extra", "ndim", "words"),
    [({"rgb": True}, 3, "RGB"), ({"multiscale": True}, 3, "multiscale"), ({}, 2, "not a single")],
)
def test_layers_that_cannot_resample_are_one_sentence(extra, ndim, words) -> None:
    layer = _layer(np.zeros((4, 5, 6), np.uint8), np.eye(4), name="x", **extra)
    layer.ndim = ndim
    assert words in source_of(layer)
    assert source_of(None) == NO_LAYER


# --------------------------------------------------------------------------------- runs


def test_auto_is_the_pipelines_rule_on_the_layers_voxels() -> None:
    image = _layer(_ct(), AFFINE)
    labels = _layer((_ct() > 500).astype(np.int16) * 3, AFFINE)  # two values: a label map
    reference = _layer(np.zeros((4, 4, 4), np.float32), np.eye(4), name="ref")
    match = Target(MATCH, grid=_grid((4, 4, 4), (1.0, 1.0, 1.0), (1.0, 1.0, 2.0)))
    for layer, expected in ((image, "bspline"), (labels, "label")):
        for target in (match, Target(SIZE, size=(5, 5, 5)), Target(SPACING)):  # every target
            job = prepare_job(layer, "image", target, "auto", False, reference)
            assert job.interpolation == expected, (target.kind, expected)
    chosen = prepare_job(labels, "labels", match, "linear", False, reference)
    assert chosen.interpolation == "linear"  # an explicit choice is kept


def test_a_size_run_gives_the_result_layer_data_and_its_record() -> None:
    layer = _layer(_ct(), AFFINE, name="ct")
    job = prepare_job(layer, "image", Target(SIZE, size=(5, 6, 4)), "auto", antialias=True)
    seen: list[float] = []
    outcome = run_job(job, progress=seen.append, cancel=lambda: False)
    (data, kwargs, layer_type), detail = result_layer_data(job, outcome)
    assert seen and seen[-1] == pytest.approx(1.0) and layer_type == "image"
    assert data.shape == (4, 6, 5) and detail == "5 x 6 x 4 voxels"  # napari (z, y, x)
    info = kwargs["metadata"][METADATA_KEY]
    assert info["interpolation"] == "bspline" and info["antialias"] is True
    assert info["resampled_from"]["shape"] == (10, 12, 8)
    assert kwargs["name"] == "ct_resampled" and kwargs["colormap"] == "magma"
    assert kwargs["opacity"] == 0.7 and job.suffix == "_resampled.nii.gz"


def test_a_matched_run_lies_on_the_matched_layer() -> None:
    source = _layer(_ct(), AFFINE, name="ct")
    ref_affine = np.diag([1.0, 1.0, 2.0, 1.0])
    reference = _layer(np.zeros((3, 4, 2), np.float32), ref_affine, name="ref")
    grid = _grid((3, 4, 2), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    job = prepare_job(source, "image", Target(MATCH, grid=grid), "nearest", False, reference)
    (data, kwargs, _), detail = result_layer_data(job, run_job(job, progress=None, cancel=None))
    assert data.shape == reference.data.shape and kwargs["scale"] == reference.scale
    assert detail == "3 x 4 x 2 voxels on the grid of 'ref', 100% covered"
    assert kwargs["name"] == "ct_resampled_to_ref" and job.suffix == "_resampled_to_ref.nii.gz"
    # nearest: every output voxel is the source voxel at the same world point
    stored = _ct()
    for i, j, k in [(0, 0, 0), (2, 3, 1), (1, 1, 1)]:  # no ties between two voxels
        src = np.rint([i / 0.5, j / 0.8, 2 * k / 2.5]).astype(int)
        assert data[k, j, i] == stored[tuple(src)]


def test_refusals_before_a_run(monkeypatch) -> None:
    layer = _layer(_ct(), AFFINE, name="ct")
    far = _grid((3, 3, 3), (1.0, 1.0, 1.0), (500.0, 0.0, 0.0), "far")
    reference = _layer(np.zeros((3, 3, 3), np.float32), far.affine, name="far")
    with pytest.raises(ValueError, match="'ct' and 'far' do not overlap"):
        prepare_job(layer, "image", Target(MATCH, grid=far), "auto", False, reference)
    with pytest.raises(ValueError, match="open another 3D Image or Labels layer"):
        prepare_job(layer, "image", Target(MATCH), "auto", False)
    with pytest.raises(ValueError, match="choose an Image or Labels layer"):
        prepare_job(None, "image", Target(SIZE), "auto", False)
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"the run needs .* but only 1000 bytes is available now"):
        prepare_job(layer, "image", Target(SIZE, size=(50, 50, 50)), "auto", False)


def test_labels_are_copied_but_images_are_not() -> None:
    stored = (_ct() > 500).astype(np.uint8)
    layer = _layer(stored, AFFINE)
    labels = prepare_job(layer, "labels", Target(SIZE, size=(4, 4, 4)), "auto", False)
    image = prepare_job(layer, "image", Target(SIZE, size=(4, 4, 4)), "auto", False)
    assert not np.shares_memory(labels.volume.data, layer.data)  # painting cannot reach it
    assert np.shares_memory(image.volume.data, layer.data)
    assert labels.interpolation == image.interpolation == "label"


def test_the_model_and_the_runs_import_no_gui() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import napari_resample.plugin.widget.model, napari_resample.plugin.widget.job\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "napari_resample" in loaded
    assert loaded.isdisjoint({"napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide6", "vispy"})
