"""A plain OME-Zarr reader sees what we write as ``.nii.zarr`` as a valid multiscale image.

The ``ome-zarr`` package (and the napari-ome-zarr plugin) know nothing of NIfTI: they read the
group's ``ome`` attribute (OME-NGFF 0.5) and the pyramid levels. What they should find is
checked against expectations computed here from the resampling rule (spacing
``old_spacing * old_size / new_size``), from the pyramid rule of docs/niizarr.md (levels halve
every axis longer than one voxel until the largest side is at most 64), and from the same result
written as ``.nii.gz`` and read by nibabel, never from the OME metadata itself.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr
from ome_zarr.axes import Axes
from ome_zarr.format import FormatV05, format_from_version
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Node, Reader

from conftest import make_affine, rotation, smooth_volume
from napari_resample import resampling
from napari_resample.io.formats import load_volume

LABELS = (0, 2, 7, 41)


@dataclass
class Case:
    """A volume resampled by :func:`resampling`, written both as ``.nii.zarr`` and as
    ``.nii.gz``, with what a plain OME-Zarr reader must find in the ``.nii.zarr``: *levels*
    lists, per pyramid level, its (z, y, x) shape and how many level-0 voxels one of its voxels
    spans along z, y, x; *spacing* is the level-0 voxel spacing (i, j, k) in *unit*."""

    zarr: Path
    gz: Path
    spacing: np.ndarray
    levels: list[tuple[tuple[int, int, int], tuple[int, int, int]]]
    unit: str


def _resampled(folder: Path, name: str, data: np.ndarray, linear: np.ndarray, **how) -> Case:
    """Write *data* with the voxel axes *linear* (3 x 3, mm) as ``<name>.nii.gz`` and resample
    it to ``how["size"]`` in both formats; *how* also holds the xyzt *units*, the
    *interpolation* and the expected *levels*."""
    src = folder / f"{name}.nii.gz"
    img = nib.Nifti1Image(data, make_affine(linear, (-20.0, 5.0, 30.0)))
    img.header.set_xyzt_units(*how["units"])
    nib.save(img, src)
    for fmt in ("nii.zarr", "nii.gz"):
        resampling(src, folder, how["size"], output_format=fmt, interpolation=how["interpolation"])
    # The resampling rule: old spacing * old size / new size (the field of view is kept).
    spacing = np.linalg.norm(linear, axis=0) * np.array(data.shape) / np.array(how["size"])
    unit = {"mm": "millimeter", "micron": "micrometer"}[how["units"][0]]
    zarr_path, gz = (folder / f"{name}_resampled.{fmt}" for fmt in ("nii.zarr", "nii.gz"))
    return Case(zarr_path, gz, spacing, how["levels"], unit)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    folder = tmp_path_factory.mktemp("omezarr")
    image = np.round(smooth_volume((60, 40, 9), seed=3)).astype(np.int16)
    labels = np.random.default_rng(4).choice(np.array(LABELS, dtype=np.uint8), (65, 35, 11))
    return {
        "image": _resampled(
            folder,
            "ct",
            image,
            rotation(0.2, -0.1, 0.3) @ np.diag([1.0, 1.5, 4.0]),  # oblique: OME sees no rotation
            size=(300, 86, 3),
            units=("mm", "sec"),
            interpolation="linear",
            # k is one voxel from level 2 on: level 3 spans 4 level-0 voxels along z, 8 along
            # y and x.
            levels=[
                ((3, 86, 300), (1, 1, 1)),
                ((2, 43, 150), (2, 2, 2)),
                ((1, 22, 75), (4, 4, 4)),
                ((1, 11, 38), (4, 8, 8)),
            ],
        ),
        "labels": _resampled(
            folder,
            "seg",
            labels,
            np.diag([0.8, 0.8, 3.0]),
            size=(130, 70, 33),
            units=("micron", "sec"),
            interpolation="label",
            levels=[
                ((33, 70, 130), (1, 1, 1)),
                ((17, 35, 65), (2, 2, 2)),
                ((9, 18, 33), (4, 4, 4)),
            ],
        ),
    }


def _image_node(path: Path) -> Node:
    """The one node of *path* that ome-zarr reads as a multiscale image."""
    location = parse_url(str(path))
    assert location is not None, f"ome-zarr finds no Zarr group at {path}"
    nodes = list(Reader(location)())
    images = [node for node in nodes if any(isinstance(s, Multiscales) for s in node.specs)]
    assert len(nodes) == 1 and len(images) == 1, nodes
    return images[0]


def _stored_voxels(path: Path) -> np.ndarray:
    """The stored (I, J, K) voxels of a ``.nii.gz``, read by nibabel."""
    return np.asarray(nib.load(path).dataobj.get_unscaled())


@pytest.mark.parametrize("name", ["image", "labels"])
def test_one_multiscale_image_with_our_pyramid(cases, name):
    case = cases[name]
    node = _image_node(case.zarr)
    expected = [shape for shape, _ in case.levels]
    assert [tuple(level.shape) for level in node.data] == expected
    group = zarr.open_group(str(case.zarr), mode="r")
    assert [group[str(n)].shape for n in range(len(expected))] == expected
    assert str(len(expected)) not in group  # the last level fits a thumbnail
    assert "nifti" not in [d.get("path") for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
    assert all(level.dtype == _stored_voxels(case.gz).dtype for level in node.data)


@pytest.mark.parametrize("name", ["image", "labels"])
def test_axes_are_valid_ngff_spatial_axes(cases, name):
    case = cases[name]
    axes = _image_node(case.zarr).metadata["axes"]
    # "millimeter" and "micrometer" are NGFF's (UDUNITS-2) names of NIfTI's mm and micron.
    assert [(a["name"], a["type"], a["unit"]) for a in axes] == [
        (n, "space", case.unit) for n in "zyx"
    ]
    # ome-zarr's own check of 0.5 axes (ValueError if invalid): its reader takes the version
    # from multiscales[0], where 0.5 has none, and so skips that check when reading.
    Axes(axes, fmt=FormatV05())


def test_the_axis_validator_used_above_refuses_invalid_axes():
    # So that the validation above is a real check with the installed ome-zarr.
    with pytest.raises(ValueError, match="'time' axis must be first"):
        Axes([{"name": "z", "type": "space"}, {"name": "t", "type": "time"}], fmt=FormatV05())


@pytest.mark.parametrize("name", ["image", "labels"])
def test_scales_are_the_voxel_spacing_slowest_axis_first(cases, name):
    case = cases[name]
    transforms = _image_node(case.zarr).metadata["coordinateTransformations"]
    FormatV05().validate_coordinate_transformations(3, len(case.levels), transforms)
    spacing_zyx = case.spacing[::-1]
    # The header's pixdim, read by nibabel from the .nii.zarr's own header and from the
    # .nii.gz of the same call, agrees with the resampling rule (float32 in the header).
    blob = zarr.open_group(str(case.zarr), mode="r")["nifti"][:].tobytes()
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(blob))
    np.testing.assert_allclose(header.get_zooms()[:3], case.spacing, rtol=1e-6)
    np.testing.assert_allclose(nib.load(case.gz).header.get_zooms()[:3], case.spacing, rtol=1e-6)
    for (_, factor), steps in zip(case.levels, transforms, strict=True):
        by_type = {step["type"]: step[step["type"]] for step in steps}
        np.testing.assert_allclose(by_type["scale"], spacing_zyx * factor, rtol=1e-6)
        # A coarser voxel's centre is the centre of its window of level-0 voxels.
        shift = by_type.get("translation", [0.0, 0.0, 0.0])
        np.testing.assert_allclose(shift, (np.array(factor) - 1) / 2 * spacing_zyx, rtol=1e-6)


def _halved(volume: np.ndarray, labels: bool) -> np.ndarray:
    """One pyramid step of a (z, y, x) *volume*, computed here: 2-voxel windows along every
    axis longer than one (an odd end repeats its last voxel), rounded means for an image, the
    most frequent value (ties to the smallest) for a label map."""
    halved = [n > 1 for n in volume.shape]
    pad = [(0, n % 2 if h else 0) for n, h in zip(volume.shape, halved, strict=True)]
    volume = np.pad(volume, pad, mode="edge")
    split = []
    for n, h in zip(volume.shape, halved, strict=True):
        split += [n // 2, 2] if h else [n, 1]
    windows = volume.reshape(split).transpose(0, 2, 4, 1, 3, 5).reshape(*split[::2], -1)
    if not labels:
        return np.rint(windows.mean(axis=-1)).astype(volume.dtype)
    counts = np.stack([(windows == value).sum(axis=-1) for value in LABELS])
    return np.array(LABELS, dtype=volume.dtype)[np.argmax(counts, axis=0)]


@pytest.mark.parametrize("name", ["image", "labels"])
def test_levels_read_through_ome_zarr_are_our_voxels(cases, name):
    case = cases[name]
    data = _image_node(case.zarr).data
    stored = _stored_voxels(case.gz)  # (I, J, K); OME-Zarr's level 0 is (z, y, x) = (K, J, I)
    level0 = np.asarray(data[0].compute())
    assert level0.dtype == stored.dtype and np.array_equal(level0, stored.transpose(2, 1, 0))
    ours = load_volume(case.zarr).data
    assert np.array_equal(level0, ours.reshape(ours.shape[:3]).transpose(2, 1, 0))
    expected = level0
    for level in data[1:]:
        expected = _halved(expected, labels=name == "labels")
        assert np.array_equal(np.asarray(level.compute()), expected)
    if name == "labels":
        assert set(np.unique(data[-1].compute()).tolist()) <= set(LABELS)


def test_ome_zarr_reads_version_0_5_on_zarr_v3(cases):
    path = cases["image"].zarr
    location = parse_url(str(path))
    assert location is not None
    # OME-NGFF 0.5 keeps the version in the "ome" attribute (as nifti-zarr writes it too);
    # ome-zarr 0.17 detects a version only in multiscales[0] (where 0.4 kept it), finds none
    # and keeps the format it was asked for (0.5 by default). So the location's version alone
    # proves little: the attribute must name ome-zarr's 0.5 format, and the group and every
    # level must be on the Zarr format and chunk key encoding that this format declares.
    assert location.root_attrs["version"] == "0.5" and location.version == "0.5"
    fmt = format_from_version(location.root_attrs["version"])
    assert fmt == FormatV05()
    stored = json.loads((path / "zarr.json").read_text())
    assert stored["zarr_format"] == fmt.zarr_format == 3 and stored["node_type"] == "group"
    for level in range(len(cases["image"].levels)):
        array = json.loads((path / str(level) / "zarr.json").read_text())
        assert array["zarr_format"] == fmt.zarr_format
        encoding = array["chunk_key_encoding"]
        assert encoding["name"] == fmt.chunk_key_encoding["name"] == "default"
        assert encoding["configuration"]["separator"] == fmt.chunk_key_encoding["separator"]
        assert array["dimension_names"] == ["z", "y", "x"]


@pytest.mark.parametrize("name", ["image", "labels"])
def test_napari_ome_zarr_opens_a_multiscale_image(cases, name):
    # napari-ome-zarr, through its npe2 manifest as napari would call it (no viewer needed).
    # It reads OME metadata only: voxel space scaled by the spacing, no NIfTI rotation or
    # origin, and an image layer for a label map (we write no OME "image-label" metadata).
    import npe2  # napari's plugin engine (the testing extra brings napari)

    npe2.PluginManager.instance().discover()
    case = cases[name]
    layers = npe2.read([str(case.zarr)], stack=False, plugin_name="napari-ome-zarr")
    assert len(layers) == 1
    data, meta, layer_type = layers[0]
    assert layer_type == "image"
    assert [tuple(level.shape) for level in data] == [shape for shape, _ in case.levels]
    np.testing.assert_allclose(meta["scale"], case.spacing[::-1], rtol=1e-6)
    assert meta["axis_labels"] == ("z", "y", "x") and meta["units"] == (case.unit,) * 3
    assert np.array_equal(np.asarray(data[0][1].compute()), _stored_voxels(case.gz)[:, :, 1].T)
