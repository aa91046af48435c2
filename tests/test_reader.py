"""The napari reader: world coordinates, data types, layer types, 4D, bad files."""

from __future__ import annotations

import gzip
import re

import nibabel as nib
import numpy as np
import pytest

import _fuzz
from _plugin_fixtures import (
    AFFINES,
    coded_volume,
    decode,
    stored_world,
)
from napari_resample.engine.labels import is_label_volume
from napari_resample.plugin.reader import get_reader, read_nifti


def _layers(path):
    from napari.layers import Layer

    return [Layer.create(*ld) for ld in read_nifti(str(path))]


def _error_messages():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR
    ]


@pytest.mark.parametrize("path", ["a.nii", "a.nii.gz", "dir/B.NII.GZ", ["a.nii.gz"]])
def test_get_reader_accepts_nifti_names(tmp_path, path):
    names = [path] if isinstance(path, str) else path
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # only the name is looked at, not the content
    given = str(tmp_path / path) if isinstance(path, str) else [str(tmp_path / n) for n in path]
    assert get_reader(given) is read_nifti


def test_get_reader_returns_none_for_a_stack_of_files(tmp_path):
    # napari passes several paths at once only for stack=True (one layer wanted): refuse it
    # rather than silently returning one layer per file.
    for name in ("a.nii.gz", "b.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    assert get_reader([str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")]) is None


@pytest.mark.gui
def test_viewer_open_several_files_without_stack_still_works(make_napari_viewer, nifti_file):
    viewer = make_napari_viewer()
    paths = [str(nifti_file("a.nii.gz")), str(nifti_file("b.nii.gz", "las"))]
    layers = viewer.open(paths, plugin="napari-resample")
    assert [layer.name for layer in layers] == ["a", "b"]


@pytest.mark.parametrize("name", ["folder.nii.gz", "missing.nii.gz", "missing.nii"])
def test_get_reader_returns_none_for_folders_and_missing_files(tmp_path, name):
    (tmp_path / "folder.nii.gz").mkdir()
    assert get_reader(str(tmp_path / name)) is None
    assert get_reader([str(tmp_path / name)]) is None
    assert get_reader(tmp_path / name) is None  # os.PathLike too


@pytest.mark.parametrize(
    "path", ["a.tif", "a.nii.zip", "a.gz", "", [], ["a.nii", "b.png"], None, 42, [None]]
)
def test_get_reader_returns_none_for_anything_else_and_never_raises(path):
    assert get_reader(path) is None


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # napari, oblique 2D
@pytest.mark.parametrize("key", sorted(AFFINES))
def test_napari_world_of_every_voxel_is_its_ras_world(nifti_file, key):
    path = nifti_file(f"{key}.nii.gz", key)
    (layer,) = _layers(path)
    for index in np.ndindex(layer.data.shape):
        world = np.asarray(layer.data_to_world(index))
        expected = stored_world(AFFINES[key], decode(layer.data[index]))
        np.testing.assert_allclose(world[::-1], expected, atol=1e-6)


@pytest.mark.parametrize("key", ["las", "lsa_permuted", "pir_permuted"])
def test_slices_have_the_true_aspect_ratio(nifti_file, key):
    (layer,) = _layers(nifti_file("v.nii.gz", key))
    spacing = np.sqrt((AFFINES[key][:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(sorted(layer.scale), sorted(spacing), rtol=1e-6)
    assert np.all(np.asarray(layer.scale) > 0)
    np.testing.assert_allclose(layer.rotate, np.eye(3))


def test_qform_and_sform_disagree_the_sform_wins(tmp_path):
    sform = AFFINES["las"]
    qform = AFFINES["ras_anisotropic"]
    img = nib.Nifti1Image(coded_volume(), sform)
    img.header.set_sform(sform, code=2)
    img.header.set_qform(qform, code=1)
    nib.save(img, tmp_path / "q.nii.gz")
    (layer,) = _layers(tmp_path / "q.nii.gz")
    world = np.asarray(layer.data_to_world((0, 0, 0)))
    np.testing.assert_allclose(world[::-1], stored_world(sform, decode(layer.data[0, 0, 0])))


def test_stored_type_is_kept_and_never_float64(nifti_file):
    data = (coded_volume(shape=(12, 10, 6)) - 20000).astype(np.int16)
    (layer,) = _layers(nifti_file("ct.nii.gz", "las", data=data))
    assert layer.data.dtype == np.int16
    assert layer._type_string == "image"


def test_scaled_file_becomes_float32_with_scaled_values(nifti_file):
    data = (coded_volume() - 20000).astype(np.int16)
    path = nifti_file("scaled.nii.gz", data=data, slope=0.5, inter=-3.0)
    (layer,) = _layers(path)
    assert layer.data.dtype == np.float32
    np.testing.assert_allclose(np.sort(layer.data.ravel()), np.sort(data.ravel() * 0.5 - 3.0))


def test_big_endian_file_opens_native_with_the_same_values(nifti_file):
    data = (coded_volume() - 20000).astype(np.int16)
    path = nifti_file("be.nii", data=data, big_endian=True)
    assert nib.load(path).get_data_dtype().byteorder == ">"
    (layer,) = _layers(path)
    assert layer.data.dtype == np.int16 and layer.data.dtype.isnative
    assert np.array_equal(np.sort(layer.data.ravel()), np.sort(data.ravel()))


def test_metadata_holds_path_affine_and_full_header(nifti_file):
    path = nifti_file("meta.nii.gz", "lsa_permuted", descrip=b"hello header")
    ((_, kwargs, _),) = read_nifti(str(path))
    info = kwargs["metadata"]["napari_resample"]
    assert info["source_path"] == str(path)
    np.testing.assert_allclose(info["affine"], AFFINES["lsa_permuted"], atol=1e-6)
    header = info["header"]
    assert isinstance(header, nib.Nifti1Header)
    assert header["descrip"].item() == b"hello header"
    assert bytes(header.binaryblock) == bytes(nib.load(path).header.binaryblock)
    assert kwargs["units"] == ("mm", "mm", "mm")
    assert kwargs["axis_labels"] == ("superior", "anterior", "right")
    assert kwargs["name"] == "meta"


def test_micron_units_are_passed_on(nifti_file):
    ((_, kwargs, _),) = read_nifti(str(nifti_file("um.nii", units=("micron", "sec"))))
    assert kwargs["units"] == ("um", "um", "um")


@pytest.mark.parametrize(
    ("data", "intent", "expected"),
    [
        (np.arange(1000, dtype=np.int16).reshape(10, 10, 10) % 600, 1002, "labels"),
        (np.arange(1000, dtype=np.int16).reshape(10, 10, 10) % 600, 1003, "labels"),
        (np.arange(1000, dtype=np.int16).reshape(10, 10, 10) % 600, 0, "image"),
        (np.arange(1000, dtype=np.int32).reshape(10, 10, 10) % 5 * 1000, 0, "labels"),
        (np.arange(1000, dtype=np.uint8).reshape(10, 10, 10) % 5, 0, "labels"),
        (np.arange(1000, dtype=np.uint8).reshape(10, 10, 10) % 100, 0, "image"),
        (np.arange(1000, dtype=np.float32).reshape(10, 10, 10) % 5, 1002, "image"),
    ],
    ids=[
        "intent-label",
        "intent-neuroname",
        "many-values",
        "few-int32",
        "few-uint8",
        "many-uint8",
        "float-with-intent",
    ],
)
def test_layer_type_rule(nifti_file, data, intent, expected):
    ((_, _, layer_type),) = read_nifti(str(nifti_file("l.nii.gz", data=data, intent_code=intent)))
    assert layer_type == expected


def test_labels_keep_their_stored_type_and_values(nifti_file):
    data = (np.arange(1000).reshape(10, 10, 10) % 7).astype(np.uint16)
    (layer,) = _layers(nifti_file("seg.nii.gz", "lps", data=data, intent_code=1002))
    assert layer._type_string == "labels"
    assert layer.data.dtype == np.uint16
    assert set(np.unique(layer.data).tolist()) == set(range(7))


def test_label_rule_counts_without_copying_the_volume():
    import tracemalloc

    rng = np.random.default_rng(0)
    seg = np.asfortranarray(rng.integers(0, 20, (256, 256, 200)).astype(np.uint8))  # as nibabel
    tracemalloc.start()
    try:
        assert is_label_volume(seg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # was a flattened copy plus an int64 copy: 9x the volume
    assert peak < seg.nbytes / 2, (
        f"{peak / 2**20:.1f} MiB for a {seg.nbytes / 2**20:.1f} MiB volume"
    )


@pytest.mark.parametrize(
    "values",
    [
        np.arange(-5, 250, 5),  # 51 values, negative ones included
        np.arange(0, 256 * 10**6, 10**6),  # a wide range: 256 values
        np.arange(0, 257 * 10**6, 10**6),  # 257 values
    ],
    ids=["negative", "wide-256", "wide-257"],
)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_label_rule_counts_exactly(values, order, byteorder):
    from napari_resample.engine.labels import count_distinct, distinct_values

    data = (
        np.resize(values, 400_000)
        .reshape(100, 80, 50)
        .astype(np.dtype("int32").newbyteorder(byteorder), order=order)
    )
    assert count_distinct(data, 1000) == len(values)
    np.testing.assert_array_equal(distinct_values(data), np.unique(data))
    # More than 32 values that change from voxel to voxel: not piecewise constant, an image.
    assert not is_label_volume(data)


def _voronoi_labels(n_labels, shape=(60, 50, 40), dtype=np.uint8, seed=0):
    """A segmentation-like volume: *n_labels* uniform cells inside a body, 0 outside."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n_labels, 3)) * shape
    grid = np.indices(shape).reshape(3, -1).T
    cell = cKDTree(centres).query(grid)[1].reshape(shape) + 1
    x, y, z = (np.linspace(-1, 1, n) for n in shape)
    body = x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2 < 0.9
    return np.asfortranarray(np.where(body, cell, 0).astype(dtype))


def _smooth_image(levels, shape=(60, 50, 40), dtype=np.uint8, seed=0):
    """An image with few grey levels: smooth anatomy plus noise, quantised to *levels* values."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    anatomy = ndimage.gaussian_filter(rng.normal(0, 1, shape), 4)
    anatomy = (anatomy - anatomy.min()) / np.ptp(anatomy)
    noisy = anatomy + rng.normal(0, 0.02, shape)
    return np.asfortranarray(np.clip(np.rint(noisy * (levels - 1)), 0, levels - 1).astype(dtype))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_voronoi_labels(117), "labels"),  # whole-body-like: ~90 labels in uniform cells, uint8
        (_voronoi_labels(200, dtype=np.int16), "labels"),
        (_voronoi_labels(600, dtype=np.int16), "image"),  # over MAX_LABELS distinct values
        (_smooth_image(100), "image"),  # an 8-bit image with 100 grey levels
        (_smooth_image(250, dtype=np.int16), "image"),  # an MR stored 0..249 in int16
        (_smooth_image(30), "labels"),  # 32 values or fewer: always labels
    ],
    ids=["seg117-u8", "seg200-i16", "seg600-i16", "img100-u8", "img250-i16", "img30-u8"],
)
def test_label_rule_tells_segmentations_from_images(data, expected):
    from napari_resample.engine.labels import equal_neighbours

    assert ("labels" if is_label_volume(data) else "image") == expected, equal_neighbours(data)


def test_a_many_label_segmentation_file_opens_as_labels(nifti_file):
    (layer,) = _layers(nifti_file("totalseg.nii.gz", "ras_anisotropic", data=_voronoi_labels(117)))
    assert layer._type_string == "labels"


def test_scaled_integer_file_is_never_labels():
    data = np.zeros((4, 4, 4), dtype=np.int16)
    assert not is_label_volume(data, 1002, scaled=True)
    assert is_label_volume(data, 1002, scaled=False)


def test_four_d_opens_time_first_with_spatial_scale_on_the_others(nifti_file):
    data = np.stack([coded_volume() + 7 * t for t in range(3)], axis=-1)
    path = nifti_file("fmri.nii.gz", "las", data=data, time_step=2.5)
    (layer,) = _layers(path)
    assert layer.data.shape[0] == 3 and layer.data.ndim == 4
    np.testing.assert_allclose(layer.scale, [2.5, 2.0, 0.9, 0.7])
    assert layer.axis_labels[0] == "time" and str(layer.units[0]) == "second"
    for t in range(3):
        index = (t, 1, 2, 3)
        spatial = decode(layer.data[index] - 7 * t)
        world = np.asarray(layer.data_to_world(index))
        np.testing.assert_allclose(world[1:][::-1], stored_world(AFFINES["las"], spatial))


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_one_volume_with_singleton_axes_opens_as_3d_and_resamples(nifti_file, tmp_path, extra):
    # One rule for what counts as 3D (_io.spatial_volume): the reader and resampling() agree.
    from napari_resample import resampling

    data = coded_volume().reshape(coded_volume().shape + extra)
    path = nifti_file("one.nii.gz", data=data)
    (layer,) = _layers(path)
    assert layer.ndim == 3
    resampling(path, tmp_path / "out", (4, 4, 4))
    assert nib.load(tmp_path / "out" / "one_resampled.nii.gz").shape == (4, 4, 4)


def _bad_files(tmp_path):
    good = nib.Nifti1Image(coded_volume(shape=(30, 30, 30)), np.eye(4))
    nib.save(good, tmp_path / "good.nii.gz")
    raw = (tmp_path / "good.nii.gz").read_bytes()
    files = {
        "truncated.nii.gz": raw[: len(raw) // 2],
        "text.nii": b"this is not a NIfTI file\n" * 20,
        "empty.nii.gz": b"",
        "gzipped_text.nii.gz": gzip.compress(b"hello" * 100),
    }
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    return paths


def test_bad_files_give_an_error_notification_naming_the_file(tmp_path):
    for path in _bad_files(tmp_path):
        before = len(_error_messages())
        assert read_nifti(str(path)) == [(None,)]
        new = _error_messages()[before:]
        assert len(new) == 1 and path.name in new[0], new


def test_a_bad_file_does_not_stop_the_good_ones(nifti_file, tmp_path):
    good = nifti_file("fine.nii.gz")
    bad = _bad_files(tmp_path)[0]
    layers = read_nifti([str(bad), str(good)])
    assert len(layers) == 1 and layers[0][1]["name"] == "fine"


@pytest.mark.gui
def test_viewer_open_with_plugin_gives_true_world_coordinates(make_napari_viewer, nifti_file):
    viewer = make_napari_viewer()
    path = nifti_file("lsa.nii.gz", "lsa_permuted")
    (layer,) = viewer.open(str(path), plugin="napari-resample")
    assert layer.name == "lsa"
    corner = np.asarray(layer.data.shape) - 1
    for index in [(0, 0, 0), tuple(corner), (1, 2, 3)]:
        world = np.asarray(layer.data_to_world(index))
        expected = stored_world(AFFINES["lsa_permuted"], decode(layer.data[index]))
        np.testing.assert_allclose(world[::-1], expected, atol=1e-6)
    assert tuple(viewer.dims.axis_labels) == ("superior", "anterior", "right")


@pytest.mark.gui
def test_viewer_open_of_a_corrupt_file_notifies_instead_of_crashing(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = _bad_files(tmp_path)[0]
    before = len(_error_messages())
    assert viewer.open(str(bad), plugin="napari-resample") == []
    assert len(viewer.layers) == 0
    assert any(bad.name in m for m in _error_messages()[before:])


@pytest.mark.parametrize(("count", "expected"), [(32, True), (33, False)])
def test_few_labels_threshold_is_exactly_32_values(count, expected):
    # Up to FEW_LABELS (32) distinct values: a label map whatever its texture; one more value
    # on a texture that changes from voxel to voxel is an image.
    from napari_resample.engine.labels import FEW_LABELS, equal_neighbours

    rng = np.random.default_rng(count)
    data = rng.permutation(np.arange(20 * 20 * 10) % count).astype(np.int16).reshape(20, 20, 10)
    assert FEW_LABELS == 32 and len(np.unique(data)) == count
    assert equal_neighbours(data) < 0.6  # not piecewise constant: only the count decides
    assert is_label_volume(data) is expected


# --------------------------------------------------------------------------- fuzzed headers


def _warning_messages():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        n.message
        for n in notification_manager.records
        if n.severity == NotificationSeverity.WARNING
    ]


def _fuzzed(tmp_path, name, mutations, suffix=".nii.gz"):
    folder = tmp_path / name
    folder.mkdir()
    sources = _fuzz.source_files(folder)
    return _fuzz.write_case(folder, suffix, sources[suffix], mutations)


@pytest.mark.parametrize("case", sorted(_fuzz.BAD_HEADERS))
def test_impossible_header_gives_one_error_notification_and_no_layer(tmp_path, case):
    path = _fuzzed(tmp_path, case, _fuzz.BAD_HEADERS[case][0])
    before = len(_error_messages())
    assert read_nifti(path) == [(None,)]
    new = _error_messages()[before:]
    assert len(new) == 1 and repr(path) in new[0], new


@pytest.mark.parametrize("case", sorted(_fuzz.ODD_HEADERS))
def test_odd_header_opens_with_a_warning_saying_what_was_ignored(tmp_path, case):
    mutations, expected = _fuzz.ODD_HEADERS[case]
    path = _fuzzed(tmp_path, case, mutations)
    before_errors, before = len(_error_messages()), len(_warning_messages())
    ((data, kwargs, _),) = read_nifti(path)
    assert data.shape == _fuzz.SHAPE[::-1]
    assert kwargs["units"] == ("mm", "mm", "mm")
    assert _error_messages()[before_errors:] == []
    new = _warning_messages()[before:]
    assert len(new) == 1 and re.search(expected, new[0]) and repr(path) in new[0], new


@pytest.mark.gui
@pytest.mark.parametrize("case", ["valid", *sorted(_fuzz.ODD_HEADERS)])
def test_every_accepted_header_shows_in_2d_and_3d(make_napari_viewer, tmp_path, case):
    mutations = [] if case == "valid" else _fuzz.ODD_HEADERS[case][0]
    path = _fuzzed(tmp_path, case, mutations)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-resample")
    assert np.all(np.isfinite(layer.affine.affine_matrix))
    for ndisplay in (2, 3, 2):
        viewer.dims.ndisplay = ndisplay
        viewer.reset_view()
        assert viewer.screenshot(canvas_only=True).size > 0


@pytest.mark.gui
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the fuzzed headers
def test_fuzzed_headers_either_notify_or_show_in_2d_and_3d(make_napari_viewer, tmp_path):
    import random

    from napari.layers import Layer

    sources = _fuzz.source_files(tmp_path)
    rng = random.Random(0)
    viewer = make_napari_viewer()
    shown = 0
    for _ in range(20):
        suffix = rng.choice(sorted(sources))
        mutations = _fuzz.random_mutations(rng)
        path = _fuzz.write_case(tmp_path, suffix, sources[suffix], mutations)
        before = len(_error_messages())
        layers = read_nifti(path)
        if layers[0][0] is None:
            assert len(_error_messages()) == before + 1, mutations
            continue
        viewer.layers.append(Layer.create(*layers[0]))
        for ndisplay in (2, 3, 2):
            viewer.dims.ndisplay = ndisplay
            viewer.reset_view()
            viewer.screenshot(canvas_only=True)
        viewer.layers.clear()
        shown += 1
    assert shown >= 5  # the sample does exercise napari


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int64", "float32"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_distinct_values_is_numpy_unique(dtype, order):
    """The linear-time table gives np.unique's answer on every integer type (wrapping ranges,
    negative values, a span over 2**20 for int64) and floats pass through the sort."""
    from napari_resample.engine.labels import distinct_values

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if dtype != "float32" else None
    lo, hi = (info.min, info.max) if info is not None else (-1e6, 1e6)
    if dtype == "int64":
        lo, hi = -(1 << 40), 1 << 40
    data = rng.integers(lo, hi, (40, 30, 20), endpoint=True).astype(dtype)
    data.flat[:5] = [lo, hi, 0, 1, 1]
    data = np.asarray(data, order=order)
    got = distinct_values(data)
    np.testing.assert_array_equal(got, np.unique(data))
    assert got.dtype == data.dtype
