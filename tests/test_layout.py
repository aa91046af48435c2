"""NIfTI (i, j, k) + affine <-> napari (z, y, x) + scale / translate / rotate / shear."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.orientations import aff2axcodes

from _plugin_fixtures import AFFINES, AXIS_ALIGNED, coded_volume, decode, stored_world
from napari_resample.io.nifti import apply_scaling
from napari_resample.plugin.layer_volume import METADATA_KEY, grid_of_layer, stored_from_display
from napari_resample.plugin.layout import (
    StorageOrder,
    napari_from_nifti,
    napari_from_stored,
    napari_matrix,
    nifti_affine_from_napari,
    nifti_from_napari,
    split_linear,
    stored_shape,
)


def _napari_world(kwargs: dict, ndim: int, index) -> np.ndarray:
    """World of a napari data index, composed exactly as napari does (checked in test_reader)."""
    m = napari_matrix(
        ndim,
        scale=kwargs["scale"],
        translate=kwargs["translate"],
        rotate=kwargs.get("rotate"),
        shear=kwargs.get("shear"),
    )
    return (m @ np.append(np.asarray(index, dtype=float), 1.0))[:ndim]


@pytest.mark.parametrize("key", sorted(AFFINES))
def test_every_voxel_lands_on_its_nifti_world_position(key):
    affine = AFFINES[key]
    data = coded_volume()
    layout = napari_from_nifti(data, affine)
    shown = layout.data
    assert sorted(shown.shape) == sorted(data.shape)
    for index in np.ndindex(shown.shape):
        ijk = decode(shown[index])
        world = _napari_world(layout.kwargs, 3, index)
        np.testing.assert_allclose(world[::-1], stored_world(affine, ijk), atol=1e-9)


@pytest.mark.parametrize("key", AXIS_ALIGNED)
def test_axis_aligned_files_need_only_scale_and_translate(key):
    layout = napari_from_nifti(coded_volume(), AFFINES[key])
    assert "rotate" not in layout.kwargs and "shear" not in layout.kwargs
    spacing = np.sqrt((AFFINES[key][:3, :3] ** 2).sum(axis=0))
    # napari's (z, y, x) scale is the spacing of the S, A and R oriented axes: all positive.
    codes = aff2axcodes(AFFINES[key])
    ras_axis_of_stored = [
        next(n for n, c in enumerate(codes) if c in p) for p in ("SI", "AP", "RL")
    ]
    np.testing.assert_allclose(layout.kwargs["scale"], spacing[ras_axis_of_stored])
    assert layout.kwargs["units"] == ("mm", "mm", "mm")
    assert layout.kwargs["axis_labels"] == ("superior", "anterior", "right")


def test_reordering_is_a_view_not_a_copy():
    data = coded_volume()
    layout = napari_from_nifti(data, AFFINES["lsa_permuted"])
    assert np.shares_memory(layout.data, data)


def test_big_endian_data_becomes_native_with_the_same_values():
    data = coded_volume().astype(">f4")
    layout = napari_from_nifti(data, AFFINES["las"])
    assert layout.data.dtype == np.float32 and layout.data.dtype.isnative
    assert sorted(layout.data.ravel().tolist()) == sorted(data.ravel().tolist())


@pytest.mark.parametrize("key", sorted(AFFINES))
def test_round_trip_restores_storage_order_and_affine(key):
    data = coded_volume()
    layout = napari_from_nifti(data, AFFINES[key])
    stored, affine = nifti_from_napari(layout.data, layout.storage, layout.kwargs)
    assert np.array_equal(stored, data)
    np.testing.assert_allclose(affine, AFFINES[key], atol=1e-12)


def test_oblique_keeps_a_residual_rotation():
    layout = napari_from_nifti(coded_volume(), AFFINES["oblique"])
    rotate = layout.kwargs["rotate"]
    assert not np.allclose(rotate, np.eye(3))
    np.testing.assert_allclose(rotate @ rotate.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(layout.kwargs["shear"], np.eye(3), atol=1e-12)


def test_four_d_has_time_first_with_its_step():
    import nibabel as nib

    data = np.stack([coded_volume(), coded_volume() + 1], axis=-1)
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "msec")
    header["pixdim"][4] = 750.0
    layout = napari_from_nifti(data, AFFINES["lps"], header)
    assert layout.data.shape[0] == 2
    assert layout.kwargs["scale"][0] == 750.0
    assert layout.kwargs["units"][0] == "ms" and layout.kwargs["axis_labels"][0] == "time"
    assert np.array_equal(layout.data[1], layout.data[0] + 1)
    for index in [(0, 0, 0, 0), (1, 4, 3, 2)]:
        world = _napari_world(layout.kwargs, 4, index)
        np.testing.assert_allclose(
            world[1:][::-1], stored_world(AFFINES["lps"], decode(layout.data[(0, *index[1:])]))
        )
    stored, affine = nifti_from_napari(layout.data, layout.storage, layout.kwargs)
    assert np.array_equal(stored, data)
    np.testing.assert_allclose(affine, AFFINES["lps"], atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 6), (7, 6, 5, 1)])
def test_two_d_and_singleton_four_d_show_as_3d_and_restore_their_axes(shape):
    data = coded_volume(shape=(7, 6, 5))[..., : 1 if len(shape) == 2 else 5].reshape(shape)
    layout = napari_from_nifti(data, AFFINES["ras_anisotropic"])
    assert layout.data.ndim == 3
    stored, _ = nifti_from_napari(layout.data, layout.storage, layout.kwargs)
    assert stored.shape == shape and np.array_equal(stored, data)


def test_too_many_axes_is_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2, 2, 2\)"):
        napari_from_nifti(np.zeros((2, 2, 2, 2, 2)), np.eye(4))


def test_layer_without_source_is_taken_as_zyx_with_scale_as_spacing():
    state = {"scale": (3.0, 2.0, 1.0), "translate": (30.0, 20.0, 10.0)}
    data = np.zeros((4, 5, 6), dtype=np.uint8)
    stored, affine = nifti_from_napari(data, StorageOrder.identity(), state)
    assert stored.shape == (6, 5, 4)
    np.testing.assert_allclose(affine, affine_diag([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]))


def affine_diag(spacing, origin):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def test_current_scale_wins_over_what_was_read():
    layout = napari_from_nifti(coded_volume(), AFFINES["las"])
    state = dict(layout.kwargs, scale=tuple(2 * s for s in layout.kwargs["scale"]))
    affine = nifti_affine_from_napari(layout.data.shape, layout.storage, state)
    expected_spacing = 2 * np.abs(np.diag(AFFINES["las"])[:3])
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), expected_spacing)


def test_napari_layer_affine_is_composed_outside():
    outer = np.eye(4)
    outer[:3, 3] = [1.0, 2.0, 3.0]
    m = napari_matrix(3, scale=(2.0, 2.0, 2.0), affine=outer)
    np.testing.assert_allclose(m[:3, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"affine must be 4x4 for a 3D layer, got \(5, 5\)"):
        napari_matrix(3, affine=np.eye(5))


def test_shear_vector_and_matrix_agree():
    vec = [0.1, 0.2, 0.3]
    full = np.array([[1, 0.1, 0.2], [0, 1, 0.3], [0, 0, 1.0]])
    np.testing.assert_allclose(napari_matrix(3, shear=vec), napari_matrix(3, shear=full))
    with pytest.raises(ValueError, match="must hold 3 values, got 2"):
        napari_matrix(3, shear=[0.1, 0.2])


def test_split_linear_recomposes_and_refuses_singular():
    m = AFFINES["sheared"][:3, :3][::-1, ::-1]
    r, k, s = split_linear(m)
    np.testing.assert_allclose(r @ k @ np.diag(s), m, atol=1e-12)
    assert np.all(s > 0) and np.allclose(np.tril(k, -1), 0) and np.allclose(np.diag(k), 1)
    with pytest.raises(ValueError, match="singular"):
        split_linear(np.diag([1.0, 0.0, 1.0]) + np.triu(np.ones((3, 3)), 1))


def test_stored_shape_is_file_voxel_order():
    layout = napari_from_nifti(coded_volume(shape=(7, 6, 5)), AFFINES["lsa_permuted"])
    assert stored_shape(layout.data.shape, layout.storage) == (7, 6, 5)


def test_storage_order_from_dict_checks_its_shape():
    with pytest.raises(ValueError, match=r"\(3, 2\) array, got \[\[0.0, 1.0\]\]"):
        StorageOrder.from_dict({"ornt": [[0.0, 1.0]]})
    assert StorageOrder.from_dict(None).ndim == 3


def test_scaled_values_unscale_exactly_or_not_at_all():
    stored = np.array([[[-3, 0, 7]]], dtype=np.int16)
    shown = apply_scaling(stored, 0.5, 10.0)
    assert shown.dtype == np.float32
    back = stored_from_display(shown, 0.5, 10.0, np.dtype(">i2"))
    assert back is not None and np.array_equal(back, stored)
    assert stored_from_display(shown + np.float32(0.1), 0.5, 10.0, np.dtype("i2")) is None
    assert stored_from_display(shown * 1e6, 0.5, 10.0, np.dtype("i2")) is None
    assert stored_from_display(stored, 1.0, 0.0, np.dtype(">i2")) is stored
    assert stored_from_display(stored.astype(np.float32), 1.0, 0.0, np.dtype("i2")) is None


@pytest.mark.parametrize("key", sorted(AFFINES))
def test_stored_voxels_go_back_to_the_layer_order_they_came_from(key):
    layout = napari_from_nifti(coded_volume(), AFFINES[key])
    stored, _ = nifti_from_napari(layout.data, layout.storage, layout.kwargs)
    shown = napari_from_stored(stored, layout.storage)
    assert shown.shape == layout.data.shape and np.array_equal(shown, layout.data)
    with pytest.raises(ValueError, match=r"needs 3D voxels, got shape \(7, 6\)"):
        napari_from_stored(stored[:, :, 0], layout.storage)


def _file_state(key, header):
    layout = napari_from_nifti(coded_volume(), AFFINES[key])
    metadata = {METADATA_KEY: {"storage": layout.storage.to_dict(), "header": header}}
    return layout, {**layout.kwargs, "metadata": metadata}


@pytest.mark.parametrize("key", ["lsa_permuted", "oblique"])
def test_a_layer_grid_is_its_file_grid_with_the_header_until_moved(key):
    import nibabel as nib

    header = nib.Nifti1Image(coded_volume(), AFFINES[key]).header
    layout, state = _file_state(key, header)
    grid = grid_of_layer(layout.data.shape, state, "ref")
    assert grid.shape == (7, 6, 5) and grid.name == "ref" and grid.header is header
    np.testing.assert_allclose(grid.affine, AFFINES[key], atol=1e-6)
    moved = dict(state, translate=tuple(t + 1.0 for t in layout.kwargs["translate"]))
    grid = grid_of_layer(layout.data.shape, moved)
    assert grid.header is None  # the file's header no longer describes the layer
    np.testing.assert_allclose(grid.affine[:3, 3], AFFINES[key][:3, 3] + 1.0, atol=1e-6)


def test_a_grid_needs_a_3d_layer():
    with pytest.raises(ValueError, match=r"must be a 3D layer, got shape \(2, 4, 5, 6\)"):
        grid_of_layer((2, 4, 5, 6), {})
