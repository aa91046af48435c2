"""NIfTI-Zarr in napari: a lazy multiscale layer with the ``.nii.gz`` reader's world geometry.

Each ``.nii.zarr`` here is written by our io writer (or ``resampling(output_format=...)``) from
the same stored voxels and header as a ``.nii.gz``; both are opened in a viewer with this
plugin and compared: world coordinates of the 8 corners, level-0 values, layer type and
metadata. Laziness is counted, not timed: the Zarr store's reads are recorded while a
512^3 volume is opened and its first slice drawn.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

import napari_resample
from _plugin_fixtures import AFFINES, coded_volume, write_nifti
from napari_resample.io.nifti import load_nifti
from napari_resample.io.niizarr_read import load_niizarr
from napari_resample.io.niizarr_write import ZarrPlaneWriter
from napari_resample.io.volume_io import write_volume
from napari_resample.plugin.layer_volume import METADATA_KEY
from napari_resample.plugin.reader import get_reader, read_niizarr
from napari_resample.plugin.zarr_layers import SAMPLE_VOXELS, bounded_sample

# napari's note on oblique layers (2D slices drawn in the layer's own grid: plugin/layout.py)
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")

PLUGIN = "napari-resample"
#: (I, J, K): a side over 64 voxels, so the pyramid has more than one level.
SHAPE = (90, 70, 33)


def _pair(folder: Path, name: str, data: np.ndarray, affine, **header) -> tuple[Path, Path]:
    """A ``.nii.gz`` and the ``.nii.zarr`` our writer makes of it (same voxels and header)."""
    matrix = AFFINES[affine] if isinstance(affine, str) else affine
    gz = write_nifti(folder / f"{name}.nii.gz", data, matrix, **header)
    labels = bool(header.get("intent_code") in (1002, 1003))
    zr = Path(write_volume(folder / f"{name}.nii.zarr", load_nifti(gz), labels=labels))
    return gz, zr


def _open(viewer, path: Path):
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    return layer


def _corners(shape) -> list[tuple[int, ...]]:
    return [tuple(c) for c in itertools.product(*[(0, n - 1) for n in shape])]


@pytest.mark.parametrize("affine", sorted(AFFINES))
def test_niizarr_opens_multiscale_with_the_nii_gz_world(make_napari_viewer, tmp_path, affine):
    viewer = make_napari_viewer()
    gz, zr = _pair(tmp_path, "vol", coded_volume(SHAPE, np.int32), affine)
    lazy, plain = _open(viewer, zr), _open(viewer, gz)
    assert lazy.multiscale and len(lazy.data) == 2
    assert type(lazy).__name__ == type(plain).__name__ == "Image"
    assert lazy.name == "vol" and lazy.data.shape == plain.data.shape
    for corner in _corners(plain.data.shape):
        np.testing.assert_allclose(
            lazy.data_to_world(corner), plain.data_to_world(corner), atol=1e-9, err_msg=corner
        )
    np.testing.assert_array_equal(np.asarray(lazy.data[0]), np.asarray(plain.data))
    ours, theirs = lazy.metadata[METADATA_KEY], plain.metadata[METADATA_KEY]
    assert ours["storage"] == theirs["storage"] and ours["stored_dtype"] == theirs["stored_dtype"]
    np.testing.assert_array_equal(ours["affine"], theirs["affine"])
    assert tuple(lazy.axis_labels) == tuple(plain.axis_labels)
    # coarser levels show the same field of view, every axis longer than 1 halved
    half = tuple((n + 1) // 2 for n in plain.data.shape)
    assert [tuple(level.shape) for level in lazy.data] == [plain.data.shape, half]


@pytest.mark.parametrize("version", [2, 3])
def test_what_nifti_zarr_writes_opens_with_the_nii_gz_world(make_napari_viewer, tmp_path, version):
    niizarr = pytest.importorskip("niizarr")
    viewer = make_napari_viewer()
    gz = write_nifti(tmp_path / "src.nii.gz", coded_volume(SHAPE, np.int32), AFFINES["oblique"])
    theirs = tmp_path / "theirs.nii.zarr"
    niizarr.nii2zarr(str(gz), str(theirs), zarr_version=version)
    lazy, plain = _open(viewer, theirs), _open(viewer, gz)
    assert lazy.multiscale and lazy.data.shape == plain.data.shape
    for corner in _corners(plain.data.shape):
        np.testing.assert_allclose(lazy.data_to_world(corner), plain.data_to_world(corner))
    np.testing.assert_array_equal(np.asarray(lazy.data[0]), np.asarray(plain.data))


def test_label_maps_open_as_multiscale_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = (coded_volume(SHAPE, np.int32) // 2000 % 7).astype(np.uint8)  # 7 labels, blocky
    _, zr = _pair(tmp_path, "seg", labels, AFFINES["las"])
    seg = _open(viewer, zr)
    assert type(seg).__name__ == "Labels" and seg.multiscale
    np.testing.assert_array_equal(
        np.asarray(seg.data[0]), np.asarray(_open(viewer, tmp_path / "seg.nii.gz").data)
    )
    # many labels, but the header's label intent decides
    many = (coded_volume(SHAPE, np.int32) % 1000).astype(np.int16)
    _, zr = _pair(tmp_path, "atlas", many, AFFINES["lps"], intent_code=1002)
    assert type(_open(viewer, zr)).__name__ == "Labels"
    # the same integers without the intent are an image
    _, zr = _pair(tmp_path, "image", many, AFFINES["lps"])
    assert type(_open(viewer, zr)).__name__ == "Image"


def test_resampled_niizarr_opens_with_its_type_and_scaled_values(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    seg = (coded_volume(SHAPE, np.int32) // 5000 % 4).astype(np.int16)
    source = write_nifti(tmp_path / "seg.nii.gz", seg, AFFINES["oblique"])
    napari_resample.resampling(source, tmp_path / "out", (60, 50, 40), output_format="nii.zarr")
    layer = _open(viewer, tmp_path / "out" / "seg_resampled.nii.zarr")
    assert type(layer).__name__ == "Labels" and set(np.unique(np.asarray(layer.data[-1]))) <= {
        0,
        1,
        2,
        3,
    }
    # scaled stored values are shown scaled, as the .nii.gz reader shows them
    ct = coded_volume(SHAPE, np.int32) % 3000
    gz, zr = _pair(tmp_path, "ct", ct.astype(np.int16), AFFINES["sheared"], slope=0.5, inter=-7.0)
    plain, lazy = _open(viewer, gz), _open(viewer, zr)
    assert lazy.data[0].dtype == plain.data.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(lazy.data[0]), np.asarray(plain.data))
    lo, hi = lazy.contrast_limits
    assert -7.0 <= lo < hi <= 0.5 * 2999 - 7.0
    assert lazy.metadata[METADATA_KEY]["slope"] == 0.5


def test_get_reader_claims_only_zarr_groups_named_nii_zarr(tmp_path):
    _, zr = _pair(tmp_path, "a", coded_volume((8, 7, 6), np.int16), AFFINES["las"])
    assert get_reader(str(zr)) is read_niizarr and get_reader([str(zr) + "/"]) is read_niizarr
    (tmp_path / "empty.nii.zarr").mkdir()
    (tmp_path / "file.nii.zarr").write_bytes(b"not a folder")
    for name in ("empty.nii.zarr", "file.nii.zarr", "missing.nii.zarr"):
        assert get_reader(str(tmp_path / name)) is None, name


def test_a_broken_niizarr_is_an_error_notification(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    group = zarr.open_group(str(tmp_path / "bad.nii.zarr"), mode="w")
    group.create_array("0", shape=(4, 4, 4), dtype="int16")
    assert viewer.open(str(tmp_path / "bad.nii.zarr"), plugin=PLUGIN) == []
    assert len(viewer.layers) == 0


def test_bounded_sample_reads_a_few_planes_of_a_large_level(tmp_path):
    big = zarr.open_array(
        str(tmp_path / "x.zarr"),
        mode="w",
        shape=(1, 160, 120, 120),
        chunks=(1, 8, 120, 120),
        dtype="uint16",
    )
    big[0] = np.arange(160, dtype=np.uint16)[:, None, None]
    assert big.size > SAMPLE_VOXELS
    sample = bounded_sample(big)
    assert sample.shape == (8, 120, 120) and sample[0, 0, 0] == 0 and sample[-1, 0, 0] == 159
    small = bounded_sample(
        zarr.open_array(str(tmp_path / "y.zarr"), mode="w", shape=(3, 4, 5), dtype=">i2")
    )
    assert small.shape == (3, 4, 5) and small.dtype.isnative


# --------------------------------------------------------------------------- the writer
@pytest.mark.parametrize(
    ("layer_type", "affine"), [("image", "oblique"), ("labels", "lsa_permuted")]
)
def test_napari_saves_a_layer_as_niizarr_with_the_nii_gz_header(tmp_path, layer_type, affine):
    from napari.layers import Layer
    from napari.plugins.io import save_layers
    from npe2 import PluginManager

    PluginManager.instance().discover()  # what a viewer does at start-up
    values = coded_volume(SHAPE, np.int32) // 3000 % 5 if layer_type == "labels" else None
    data = coded_volume(SHAPE, np.int32) if values is None else (values * 50).astype(np.uint8)
    source = write_nifti(
        tmp_path / "src.nii.gz",
        data,
        AFFINES[affine],
        slope=None,
        descrip=b"kept",
        units=("micron", "sec"),
    )
    ((layer_data),) = get_reader(str(source))(str(source))
    layer = Layer.create(*layer_data)
    assert layer_data[2] == layer_type
    written = save_layers(str(tmp_path / "out.nii.zarr"), [layer], plugin=PLUGIN)
    assert written == [str(tmp_path / "out.nii.zarr")]
    again, ref = load_niizarr(written[0]), load_nifti(source)
    np.testing.assert_array_equal(again.data, ref.data)
    np.testing.assert_allclose(again.affine, ref.affine, atol=1e-6)
    for field in ("qform_code", "sform_code", "xyzt_units", "descrip", "intent_code"):
        assert again.header[field] == ref.header[field], field
    top = zarr.open_array(str(tmp_path / "out.nii.zarr" / "1"), mode="r")[...]
    if layer_type == "labels":  # voted: only labels of the volume
        assert set(np.unique(top).tolist()) <= set(np.unique(data).tolist())
    else:  # averaged: values between the stored ones appear
        assert not set(np.unique(top).tolist()) <= set(np.unique(data).tolist())


def test_a_multiscale_layer_is_refused_not_written_from_its_smallest_level(tmp_path):
    from napari.layers import Layer

    from napari_resample.plugin.writer import write_nifti

    _, zr = _pair(tmp_path, "a", coded_volume(SHAPE, np.int32), "las")
    ((layer_data),) = read_niizarr(str(zr))
    data, meta, _ = Layer.create(*layer_data).as_layer_data_tuple()
    assert type(data).__name__ == "MultiScaleData"
    with pytest.raises(ValueError, match=r"multiscale layer as NIfTI \(2 levels\)"):
        write_nifti(str(tmp_path / "out.nii.gz"), data, meta)
    assert not (tmp_path / "out.nii.gz").exists()


# --------------------------------------------------------------------------- laziness
N = 512


@pytest.fixture(scope="module")
def big_niizarr(tmp_path_factory) -> Path:
    """A 512^3 int16 image (256 MB of voxels) written 64 planes at a time."""
    path = tmp_path_factory.mktemp("big") / "big.nii.zarr"
    header = nib.Nifti1Header()
    header.set_data_shape((N, N, N))
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([0.5, 0.5, 0.5, 1.0]), code=1)
    header.set_sform(np.diag([0.5, 0.5, 0.5, 1.0]), code=1)
    i, j = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    with ZarrPlaneWriter(path, header) as out:
        for k0 in range(0, N, 64):
            k = np.arange(k0, k0 + 64)
            out.write(((i[..., None] + 2 * j[..., None] + 3 * k) % 2000).astype(np.int16))
        out.close()
    return path


@pytest.fixture
def store_reads(monkeypatch) -> list[str]:
    """The keys every local Zarr store reads from now on."""
    keys: list[str] = []
    real = zarr.storage.LocalStore.get

    async def get(self, key, *args, **kwargs):
        keys.append(key)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", get)
    return keys


def _chunks_of(keys: list[str], level: int) -> set[str]:
    return {k for k in keys if k.startswith(f"{level}/c/")}


def _levels_read(keys: list[str]) -> set[str]:
    """The pyramid levels (not the header) whose chunks were read."""
    return {k.split("/")[0] for k in keys if "/c/" in k and k.split("/")[0].isdigit()}


def test_opening_and_drawing_a_large_volume_reads_a_bounded_number_of_chunks(
    make_napari_viewer, big_niizarr, store_reads
):
    level0 = zarr.open_array(str(big_niizarr / "0"), mode="r")
    total = level0.nchunks
    viewer = make_napari_viewer()
    layer = _open(viewer, big_niizarr)
    assert layer.multiscale and layer.data[0].shape == (N, N, N)
    smallest = str(len(layer.data) - 1)
    assert _levels_read(store_reads) <= {"0", smallest}
    viewer.screenshot(canvas_only=True)
    read0 = _chunks_of(store_reads, 0)
    # the slice drawn is one plane of level 0 at most: one slab of chunks along z, 1/8 of them
    assert 0 < len(read0) <= total // 8, (len(read0), total)
    assert len({key.split("/")[2] for key in read0}) == 1
    assert _levels_read(store_reads) <= {"0", smallest}
