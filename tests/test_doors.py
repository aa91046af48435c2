"""One product, one answer: every front door gives the same file for the same input and target.

The matrix: inputs (an image, a label map by its intent, a label map by the Labels rule only,
scaled integers, a float volume with NaN, an oblique file) x targets (size, spacing, a
reference grid) x doors (``resampling()`` / ``resample_to_spacing()`` /
``resample_to_reference()`` with their default ``interpolation``, the same under a small
``max_memory`` (streamed, first pass included), the command line in-process, and
``resampling_dataset`` with 1 and 2 workers). Every door must write the same bytes and report
the same ``interpolation_used``: label voting for label maps, B-spline for the rest
(docs/decisions.md, D22). The widget in napari is the last test, over a few of the cases.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _plugin_fixtures import rotation
from napari_resample import (
    resample_to_reference,
    resample_to_spacing,
    resampling,
    resampling_dataset,
)
from napari_resample.cli import main
from napari_resample.dataset.run import MANIFEST_NAME

SHAPE = (24, 20, 16)
SIZE = (17, 13, 11)
SPACING = (1.3, 1.1, 2.7)
AFFINE = np.diag([0.8, 0.9, 2.0, 1.0])
AFFINE[:3, 3] = (-9.0, 4.0, 12.0)


def _blocks(values) -> np.ndarray:
    """Piecewise-constant labels: blocks of *values* over SHAPE (0 around)."""
    i, j, k = np.indices(SHAPE)
    data = np.zeros(SHAPE, np.int64)
    for n, value in enumerate(values):
        inside = (abs(i - 6 - 4 * n) < 5) & (abs(j - 5 - 3 * n) < 5) & (abs(k - 4 - 2 * n) < 4)
        data[inside] = value
    return data


def _smooth(seed: int = 0) -> np.ndarray:
    i, j, k = (np.indices(SHAPE) / np.asarray(SHAPE)[:, None, None, None]) - 0.5
    rng = np.random.default_rng(seed)
    return 900 * np.exp(-(i**2 + j**2 + k**2) * 6) + 250 * i - 120 * k + rng.normal(0, 8, SHAPE)


def _write(path: Path, data: np.ndarray, affine=AFFINE, intent=0, scaling=None) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header["intent_code"] = intent
    if scaling is not None:
        img.header.set_slope_inter(*scaling)
    nib.save(img, str(path))
    return path


def _oblique_affine() -> np.ndarray:
    affine = AFFINE.copy()
    affine[:3, :3] = rotation("z", 14.0) @ rotation("x", -9.0) @ AFFINE[:3, :3]
    return affine


#: name -> (how it is written, the interpolation "auto" must use)
INPUTS = {
    "image": (lambda p: _write(p, np.round(_smooth()).astype(np.int16)), "bspline"),
    "label_intent": (
        lambda p: _write(p, _blocks([1, 2, 7]).astype(np.uint8), intent=1002),
        "label",
    ),
    "label_rule": (lambda p: _write(p, _blocks([3, 12]).astype(np.int16)), "label"),
    "scaled": (
        lambda p: _write(p, (_blocks(range(1, 10)) * 100).astype(np.int16), scaling=(0.5, -10)),
        "bspline",
    ),
    "float_nan": (lambda p: _write(p, _nan_volume()), "bspline"),
    "oblique": (
        lambda p: _write(p, np.round(_smooth(1)).astype(np.int16), affine=_oblique_affine()),
        "bspline",
    ),
}


def _nan_volume() -> np.ndarray:
    data = _smooth(2).astype(np.float32)
    data[3:5, 7, 2:9] = np.nan
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The inputs, each in its own folder (``<name>/<name>.nii.gz``), and the reference."""
    root = tmp_path_factory.mktemp("doors")
    made = {}
    for name, (write, _) in INPUTS.items():
        (root / name).mkdir()
        made[name] = write(root / name / f"{name}.nii.gz")
    ref_affine = np.diag([-1.1, 1.2, 1.7, 1.0])  # flipped x, other spacing, shifted
    ref_affine[:3, 3] = (9.0, 3.0, 13.0)
    made["reference"] = _write(
        root / "reference.nii.gz", np.zeros((19, 15, 17), np.uint8), ref_affine
    )
    return made


TARGETS = ("size", "spacing", "reference")


def _cli_target(target: str, files) -> list[str]:
    if target == "size":
        return ["--size", *map(str, SIZE)]
    if target == "spacing":
        return ["--spacing", *map(str, SPACING)]
    return ["--like", str(files["reference"])]


def _dataset_target(target: str, files) -> dict:
    if target == "size":
        return {"desired_volume": SIZE}
    if target == "spacing":
        return {"spacing": SPACING}
    return {"reference": files["reference"]}


def _function_door(target: str, src: Path, out: Path, files, **kwargs) -> None:
    if target == "size":
        resampling(src, out, SIZE, **kwargs)
    elif target == "spacing":
        resample_to_spacing(src, out, SPACING, **kwargs)
    else:
        resample_to_reference(src, files["reference"], out, **kwargs)


def _only_output(folder: Path) -> Path:
    (found,) = [p for p in folder.rglob("*.nii.gz") if "_resampled" in p.name]
    return found


def _bytes(path: Path) -> bytes:
    with gzip.open(path, "rb") as fh:
        return fh.read()


@pytest.fixture
def spy(monkeypatch):
    """``(interpolation_used, streamed)`` of every in-process call of the file pipeline."""
    from napari_resample import api as _api
    from napari_resample.dataset import task as _dataset
    from napari_resample.pipeline.run import resample_file

    used: list[tuple[str, bool]] = []

    def recorded(*args, **kwargs):
        result = resample_file(*args, **kwargs)
        used.append((result.interpolation, result.streamed))
        return result

    monkeypatch.setattr(_api, "resample_file", recorded)
    monkeypatch.setattr(_dataset, "resample_file", recorded)
    return used


@pytest.mark.filterwarnings("ignore:.*covers only:UserWarning")
@pytest.mark.parametrize("target", TARGETS)
def test_every_door_writes_the_same_bytes(files, tmp_path, spy, target) -> None:
    names = list(INPUTS)
    outputs: dict[str, dict[str, bytes]] = {name: {} for name in names}
    used: dict[str, dict[str, str]] = {name: {} for name in names}
    for name in names:
        src = files[name]
        for door, kwargs in (("function", {}), ("streamed", {"max_memory": "1M"})):
            out = tmp_path / door / name
            _function_door(target, src, out, files, **kwargs)
            outputs[name][door] = _bytes(_only_output(out))
            used[name][door], streamed = spy.pop()
            if door == "streamed":  # what the streamed engine can take, it takes within 1M
                oblique = name == "oblique" and target == "reference"
                assert streamed is not (name == "float_nan" or oblique), name
        out = tmp_path / "cli" / name
        assert main([str(src), str(out), *_cli_target(target, files), "--quiet"]) == 0
        outputs[name]["cli"], used[name]["cli"] = _bytes(_only_output(out)), spy.pop()[0]
    for workers in (1, 2):
        out = tmp_path / f"dataset{workers}"
        written = resampling_dataset(
            [str(files[name]) for name in names],
            out,
            saving_mode="folder",
            workers=workers,
            progress=False,
            **_dataset_target(target, files),
        )
        assert len(written) == len(names)
        for line in (out / MANIFEST_NAME).read_text().splitlines():
            record = json.loads(line)
            name = Path(record["input"]).name.removesuffix(".nii.gz")
            door = f"dataset, {workers} workers"
            outputs[name][door] = _bytes(Path(record["output"]))
            used[name][door] = record["interpolation_used"]
    spy.clear()
    for name in names:
        expected = INPUTS[name][1]
        assert set(used[name].values()) == {expected}, (name, used[name])
        first = outputs[name]["function"]
        differ = [door for door, data in outputs[name].items() if data != first]
        assert not differ, f"{name} onto the {target}: {differ} differ from the function's file"


@pytest.mark.parametrize("name", ["label_intent", "label_rule"])
def test_label_maps_keep_their_label_set_at_the_file_functions(files, tmp_path, name) -> None:
    stored = np.asarray(nib.load(files[name]).dataobj)
    for target in TARGETS:
        out = tmp_path / target
        _function_door(target, files[name], out, files)
        result = np.asarray(nib.load(_only_output(out)).dataobj)
        assert set(np.unique(result).tolist()) <= set(np.unique(stored).tolist()), target


# --------------------------------------------------------------------------- the widget


@pytest.mark.gui
def test_the_widget_gives_the_files_bytes(files, tmp_path, make_napari_viewer, qtbot) -> None:
    from napari_resample.plugin.layer_volume import METADATA_KEY
    from napari_resample.plugin.widget.dock import ResampleWidget

    viewer = make_napari_viewer()
    widget = ResampleWidget(viewer, confirm_overwrite=lambda path: True)
    viewer.window.add_dock_widget(widget, name="Resample volume")
    (reference,) = viewer.open(str(files["reference"]), plugin="napari-resample")
    for name in ("image", "label_intent", "label_rule"):
        (layer,) = viewer.open(str(files[name]), plugin="napari-resample")
        for target in TARGETS:
            widget.layer.value = layer
            if target == "size":
                widget.target.value = "size"
                widget.target_size.value = SIZE
            elif target == "spacing":
                widget.target.value = "spacing"
                widget.target_spacing.value = SPACING
            else:
                widget.target.value = "match layer"
                widget.reference.value = reference
            assert widget.interpolation.value == "auto"
            assert widget.run() is not None, widget.status.value
            qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
            result = widget.result_layer
            assert result is not None, widget.status.value
            assert result.metadata[METADATA_KEY]["interpolation"] == INPUTS[name][1]
            out = tmp_path / "widget" / f"{name}_{target}"
            out.mkdir(parents=True)
            widget.output_dir.value = out
            assert widget.save() is not None, widget.status.value
            qtbot.waitUntil(lambda: not widget.saving, timeout=120_000)
            saved = nib.load(widget.saved_path)
            expected_dir = tmp_path / "function" / f"{name}_{target}"
            _function_door(target, files[name], expected_dir, files)
            expected = nib.load(_only_output(expected_dir))
            assert saved.get_data_dtype() == expected.get_data_dtype(), (name, target)
            assert np.asarray(saved.dataobj).tobytes() == np.asarray(expected.dataobj).tobytes(), (
                name,
                target,
            )
            viewer.layers.remove(result)
