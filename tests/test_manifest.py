"""The npe2 manifest: valid, discoverable, every command working; sample data; import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from npe2 import PluginManager, PluginManifest
from npe2.manifest.utils import import_python_name

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari.yaml"


@pytest.fixture(scope="module")
def manifest() -> PluginManifest:
    return PluginManifest.from_file(MANIFEST)


def test_manifest_identity(manifest):
    assert manifest.name == "napari-resample"
    assert manifest.display_name == "NIfTI Resample"
    assert {str(c) for c in manifest.categories} == {"IO", "Image Processing"}


def test_installed_entry_point_gives_this_manifest(manifest):
    pm = PluginManager.instance()
    pm.discover()
    installed = pm.get_manifest("napari-resample")
    assert installed.contributions.model_dump() == manifest.contributions.model_dump()


def test_every_command_does_what_its_contribution_promises(manifest, tmp_path):
    # Each python_name resolves to the product function napari calls, and that function works:
    # the reader opens what the writers write, the widget is a widget napari can dock (Qt or
    # magicgui), the sample has two layers.
    from magicgui.widgets import Widget
    from qtpy.QtWidgets import QWidget

    commands = {
        c.id.removeprefix("napari-resample."): import_python_name(c.python_name)
        for c in manifest.contributions.commands or []
    }
    assert len(commands) == 8
    source = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4)), source)
    read = commands["get_reader"]
    assert read(str(tmp_path / "notes.txt")) is None
    ((data, meta, kind),) = read(str(source))(str(source))
    assert kind == "image"
    for command, name in [
        ("write_image", "image.nii.gz"),
        ("write_labels", "labels.nii"),
        ("write_nrrd", "image.nrrd"),
        ("write_mha", "image.mha"),
    ]:
        (written,) = commands[command](str(tmp_path / name), data, meta)
        ((again, _, _),) = read(written)(written)
        np.testing.assert_array_equal(np.asarray(again), np.asarray(data), err_msg=command)
    assert issubclass(commands["resample_widget"], QWidget | Widget)
    assert issubclass(commands["qc_browser"], QWidget | Widget)
    assert [layer[2] for layer in commands["sample_phantom"]()] == ["image", "labels"]


def test_contributions_point_at_declared_commands(manifest):
    ids = {c.id for c in manifest.contributions.commands or []}
    contrib = manifest.contributions
    used = {r.command for r in contrib.readers or []}
    used |= {w.command for w in contrib.writers or []}
    used |= {w.command for w in contrib.widgets or []}
    used |= {s.command for s in contrib.sample_data or []}
    used |= {m.command for m in contrib.menus["napari/layers/transform"]}
    assert used == ids


def test_reader_and_writers_match_volume_names(manifest):
    (reader,) = manifest.contributions.readers
    assert set(reader.filename_patterns) == {
        "*.nii",
        "*.nii.gz",
        "*.nii.zarr",
        "*.nrrd",
        "*.nhdr",
        "*.mha",
        "*.mhd",
    }
    assert reader.accepts_directories  # DICOM series folders, .nii.zarr folders
    pm = PluginManager.instance()
    pm.discover()
    for layer_type in ("image", "labels"):
        for name, command in [
            ("out.nii.gz", f"write_{layer_type}"),
            ("out.nii", f"write_{layer_type}"),
            ("out.nrrd", "write_nrrd"),
            ("out.mha", "write_mha"),
        ]:
            writer, path = pm.get_writer(name, [layer_type], plugin_name="napari-resample")
            assert writer is not None and path == name, (layer_type, name)
            assert writer.command == f"napari-resample.{command}"


def test_npe2_validate_with_imports_passes():
    npe2_cli = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2_cli), "validate", "napari-resample", "--imports"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_discovery_modules_do_not_import_qt_or_napari():
    code = (
        "import sys, napari_resample.plugin.reader, napari_resample.plugin.writer, "
        "napari_resample.plugin.sample_data, napari_resample.plugin.layout\n"
        "print(sorted(m for m in ('napari', 'qtpy', 'PyQt5', 'magicgui') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sample_data_has_true_anisotropic_geometry():
    from napari.layers import Layer

    from napari_resample.io.phantom import make_phantom
    from napari_resample.plugin.sample_data import make_sample_data

    image_ld, labels_ld = make_sample_data()
    assert (image_ld[2], labels_ld[2]) == ("image", "labels")
    image, labels = Layer.create(*image_ld), Layer.create(*labels_ld)
    stored_image, stored_labels, affine = make_phantom()
    assert image.data.dtype == stored_image.dtype and labels.data.dtype == stored_labels.dtype
    np.testing.assert_allclose(image.scale, [2.5, 0.5, 0.5])
    np.testing.assert_allclose(labels.scale, [2.5, 0.5, 0.5])
    assert set(np.unique(labels.data).tolist()) == set(np.unique(stored_labels).tolist())
    for ijk in [(0, 0, 0), tuple(np.array(stored_image.shape) - 1), (10, 20, 30)]:
        k, j, i = ijk[2], ijk[1], ijk[0]
        assert image.data[k, j, i] == stored_image[ijk]
        world = np.asarray(image.data_to_world((k, j, i)))[::-1]
        np.testing.assert_allclose(world, (affine @ np.append(ijk, 1.0))[:3])


@pytest.mark.gui
def test_sample_opens_from_the_menu_entry(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-resample", "phantom")
    assert [lay.name for lay in viewer.layers] == ["phantom", "phantom_labels"]
    assert viewer.layers["phantom_labels"]._type_string == "labels"
