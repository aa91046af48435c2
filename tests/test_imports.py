"""The core imports no GUI and no SimpleITK (docs/decisions.md, D14).

Checked in a fresh interpreter, since this test session itself may already hold napari & co.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = [
    "napari",
    "magicgui",
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "SimpleITK",
    "vispy",
    "npe2",
    "superqt",
]


def loaded_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "code",
    [
        "import napari_resample",
        "import napari_resample.api, napari_resample.engine.resample, napari_resample.io.nifti, "
        "napari_resample.engine.geometry",
    ],
)
def test_core_import_leaves_gui_and_simpleitk_out(code: str) -> None:
    loaded = top_level(loaded_after(code))
    assert "napari_resample" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_core_runs_without_gui_or_simpleitk(tmp_path) -> None:
    # Using the core (not just importing it) still needs no GUI and no SimpleITK.
    code = f"""
import numpy as np, nibabel as nib
from napari_resample import resampling, resample_array
resample_array(np.ones((4, 4, 4), np.float32), (8, 2, 4))
nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)), {str(tmp_path / "a.nii.gz")!r})
resampling({str(tmp_path / "a.nii.gz")!r}, {str(tmp_path / "out")!r}, (2, 2, 2))
"""
    loaded = top_level(loaded_after(code))
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    assert (tmp_path / "out" / "a_resampled.nii.gz").is_file()


def test_cli_runs_without_gui_or_simpleitk(tmp_path) -> None:
    # The Quick start of a server install (no napari there): write the sample, resample it.
    code = f"""
from napari_resample.cli import main
assert main(["--sample", {str(tmp_path)!r}, "--size", "32", "32", "16"]) == 0
"""
    loaded = top_level(loaded_after(code))
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    assert (tmp_path / "phantom_resampled.nii.gz").is_file()


#: What napari imports on every file open (the reader) and what importing the package costs
#: must stay above nibabel's own import by no more than these modules: the engine (scipy's
#: sparse matrices, ~0.25 s), tqdm and the dataset runner's pool are loaded when used.
ENGINE = {
    "scipy.sparse",
    "scipy.linalg",
    "scipy.ndimage",
    "napari_resample.engine.stream",
    "napari_resample.engine.vote",
    "napari_resample.engine.operators",
    "tqdm",
    "concurrent.futures.process",
}


@pytest.mark.parametrize(
    "code", ["import napari_resample.plugin.reader", "import napari_resample"]
)
def test_reader_import_does_not_load_the_engine(code: str) -> None:
    # Compared as module sets, not times: `python -X importtime -c "import
    # napari_resample.plugin.reader"` measured 0.02 s above nibabel's import (0.26 s with the
    # engine).
    # Measured above nibabel's own import: with pydicom installed (the testing extra), nibabel
    # imports it, and it brings tqdm and requests; that cost is nibabel's, not ours.
    loaded = loaded_after(code) - loaded_after("import nibabel")
    assert loaded.isdisjoint(ENGINE), sorted(loaded & ENGINE)
    # Nothing else from outside the standard library comes with it either.
    extra = top_level(loaded) - {"napari_resample", "numpy"}
    assert extra <= set(sys.stdlib_module_names) | {"_uuid"}, extra


def test_sanity_the_engine_is_seen_once_used() -> None:
    used = loaded_after(
        "import numpy as np, napari_resample as n; n.resample_array(np.ones((4, 4, 4)), (2, 2, 2))"
    )
    assert {"scipy.sparse", "napari_resample.engine.stream"} <= used
