"""Voxel-space geometry of a resampling (docs/decisions.md, D1).

Invariants, for any affine (flipped, permuted, oblique, sheared):
- new_spacing = old_spacing * old_size / new_size, so size * spacing (the FOV) is unchanged;
- the new affine is the old one with its three voxel columns scaled by old_size / new_size;
- anchor "origin": the centre of voxel (0, 0, 0) stays in place;
- anchor "center": the outer edges of the FOV stay in place, and the origin moves by
  direction @ (new_spacing - old_spacing) / 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from _affine import direction_of, origin_of, ras_to_lps, spacing_of
from conftest import SHEAR, make_affine, rotation
from napari_resample import resample_array
from napari_resample.engine.geometry import (
    index_offset,
    resampled_affine,
    sample_positions,
    scale_factors,
    voxel_transform,
)
from napari_resample.io.itk import itk_geometry, ras_affine

ANISO = np.diag([0.5, 0.75, 2.5])
AFFINES = {
    "identity": np.eye(4),
    "anisotropic": make_affine(ANISO, (-12.0, 7.5, 30.0)),
    "flipped_las": make_affine(np.diag([-0.5, 0.75, 2.5]), (40.0, -3.0, 1.0)),
    "permuted_lsa": make_affine(np.array([[-0.5, 0, 0], [0, 0, 2.5], [0, 0.75, 0]]), (5, 6, 7)),
    "oblique": make_affine(rotation(0.3, -0.2, 0.5) @ ANISO, (1.0, -2.0, 3.0)),
    "sheared": make_affine(rotation(0.1, 0.0, 0.2) @ SHEAR @ ANISO, (-1.0, 2.0, -3.0)),
}
SHAPES = [
    ((512, 512, 300), (256, 256, 128)),  # the specification's example (docs/decisions.md, D15)
    ((9, 8, 6), (18, 24, 12)),  # 2x and 3x upsampling
    ((9, 8, 6), (4, 3, 5)),  # downsampling by non-integer factors
    ((9, 8, 6), (9, 16, 2)),  # one axis unchanged
    ((1, 8, 6), (3, 1, 6)),  # single-voxel axes
]


def hom(idx) -> np.ndarray:
    return np.append(np.asarray(idx, dtype=np.float64), 1.0)


def test_spec_example_spacing_and_fov() -> None:
    # docs/decisions.md, D15: 512 x 512 x 300 at 0.5 x 0.5 x 1.0 mm -> (256, 256, 128):
    # 1.0 x 1.0 x 2.34 mm.
    new = resampled_affine(np.diag([0.5, 0.5, 1.0, 1.0]), (512, 512, 300), (256, 256, 128))
    np.testing.assert_allclose(spacing_of(new), [1.0, 1.0, 300 / 128], rtol=1e-12)
    np.testing.assert_allclose(spacing_of(new) * (256, 256, 128), [256.0, 256.0, 300.0])


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize(("old", "new"), SHAPES)
@pytest.mark.parametrize("name", list(AFFINES))
def test_columns_scaled_by_old_over_new(name: str, old, new, anchor: str) -> None:
    a = AFFINES[name]
    b = resampled_affine(a, old, new, anchor)
    f = np.asarray(old, float) / np.asarray(new, float)
    np.testing.assert_allclose(b[:3, :3], a[:3, :3] * f, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(b[3], [0, 0, 0, 1])
    # new_spacing = old_spacing * old_size / new_size, so the FOV (size * spacing) is kept.
    np.testing.assert_allclose(spacing_of(b), spacing_of(a) * f, rtol=1e-12)
    np.testing.assert_allclose(spacing_of(b) * new, spacing_of(a) * old, rtol=1e-12)
    # Direction is preserved (columns only change length).
    np.testing.assert_allclose(direction_of(b), direction_of(a), atol=1e-12)


@pytest.mark.parametrize(("old", "new"), SHAPES)
@pytest.mark.parametrize("name", list(AFFINES))
def test_anchor_origin_keeps_first_voxel_centre(name: str, old, new) -> None:
    a = AFFINES[name]
    b = resampled_affine(a, old, new, "origin")
    np.testing.assert_allclose(origin_of(b), origin_of(a), atol=1e-12)
    np.testing.assert_allclose(b @ hom([0, 0, 0]), a @ hom([0, 0, 0]), atol=1e-12)


@pytest.mark.parametrize(("old", "new"), SHAPES)
@pytest.mark.parametrize("name", list(AFFINES))
def test_anchor_center_keeps_outer_edges(name: str, old, new) -> None:
    a = AFFINES[name]
    b = resampled_affine(a, old, new, "center")
    old_a, new_a = np.asarray(old, float), np.asarray(new, float)
    # Every corner of the FOV box (voxel edges, at index -1/2 and size - 1/2) stays in place.
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner, float)
        old_edge = hom(-0.5 + c * old_a)
        new_edge = hom(-0.5 + c * new_a)
        np.testing.assert_allclose(b @ new_edge, a @ old_edge, atol=1e-9)
    # docs/decisions.md, D1: the origin moves by direction @ (new_spacing - old_spacing) / 2.
    shift = direction_of(a) @ (spacing_of(b) - spacing_of(a)) / 2
    np.testing.assert_allclose(origin_of(b), origin_of(a) + shift, atol=1e-9)


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_anchors_differ_when_size_changes(anchor: str) -> None:
    # The two anchors are distinct behaviours: a test of one cannot pass for the other.
    a = AFFINES["oblique"]
    other = "center" if anchor == "origin" else "origin"
    b1 = resampled_affine(a, (9, 8, 6), (18, 4, 6), anchor)
    b2 = resampled_affine(a, (9, 8, 6), (18, 4, 6), other)
    assert not np.allclose(b1[:3, 3], b2[:3, 3])
    np.testing.assert_allclose(b1[:3, :3], b2[:3, :3])


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize(("old", "new"), SHAPES)
def test_sample_positions_are_world_consistent(old, new, anchor: str) -> None:
    # Output voxel i' sits, in world space, exactly where it samples the input: A' i' = A x(i').
    a = AFFINES["sheared"]
    b = resampled_affine(a, old, new, anchor)
    pos = [sample_positions(o, n, anchor) for o, n in zip(old, new, strict=True)]
    for out_idx in [(0, 0, 0), tuple(n - 1 for n in new), tuple(n // 2 for n in new)]:
        in_idx = [p[i] for p, i in zip(pos, out_idx, strict=True)]
        np.testing.assert_allclose(b @ hom(out_idx), a @ hom(in_idx), atol=1e-9)


def test_sample_positions_values() -> None:
    # x = o + f * i', f = old / new; o = 0 (origin) or (f - 1) / 2 (center).
    np.testing.assert_allclose(sample_positions(6, 3, "origin"), [0, 2, 4])
    np.testing.assert_allclose(sample_positions(6, 3, "center"), [0.5, 2.5, 4.5])
    np.testing.assert_allclose(sample_positions(4, 8, "origin"), np.arange(8) * 0.5)
    np.testing.assert_allclose(sample_positions(4, 8, "center"), np.arange(8) * 0.5 - 0.25)
    np.testing.assert_allclose(sample_positions(5, 5, "center"), np.arange(5))
    # Center anchor: the samples are symmetric about the middle of the input.
    x = sample_positions(7, 3, "center")
    np.testing.assert_allclose(x + x[::-1], 6.0)


def test_voxel_transform_and_factors() -> None:
    np.testing.assert_allclose(scale_factors((512, 512, 300), (256, 256, 128)), [2, 2, 2.34375])
    np.testing.assert_allclose(index_offset([2.0, 0.5, 1.0], "origin"), [0, 0, 0])
    np.testing.assert_allclose(index_offset([2.0, 0.5, 1.0], "center"), [0.5, -0.25, 0])
    t = voxel_transform((8, 4, 6), (4, 8, 6), "center")
    np.testing.assert_allclose(t, [[2, 0, 0, 0.5], [0, 0.5, 0, -0.25], [0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("anchor", ["origin", "center"])
def test_same_size_is_identity(anchor: str) -> None:
    a = AFFINES["sheared"]
    np.testing.assert_array_equal(resampled_affine(a, (9, 8, 6), (9, 8, 6), anchor), a)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"anchor must be one of .*'middle'"):
        index_offset([1.0, 1.0, 1.0], "middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"affine must be a 4x4 matrix, got shape \(3, 3\)"):
        resampled_affine(np.eye(3), (2, 2, 2), (4, 4, 4))


@pytest.mark.parametrize("name", [n for n in AFFINES if n != "sheared"])
def test_itk_geometry_is_the_affine_in_lps_and_back(name: str) -> None:
    # What SimpleITK is given for a NIfTI affine: spacing, LPS origin and unit directions.
    a = AFFINES[name]
    spacing, origin, direction = itk_geometry(a)
    lps = ras_to_lps(a)
    np.testing.assert_allclose(spacing, spacing_of(a))
    np.testing.assert_allclose(origin, origin_of(lps))
    np.testing.assert_allclose(np.reshape(direction, (3, 3)), direction_of(lps), atol=1e-15)
    np.testing.assert_allclose(ras_affine(spacing, origin, direction), a, atol=1e-12)


def test_itk_geometry_refuses_a_sheared_affine() -> None:
    with pytest.raises(ValueError, match="the affine has shear, which an ITK image"):
        itk_geometry(AFFINES["sheared"])


@pytest.mark.parametrize("anchor", ["origin", "center"])
@pytest.mark.parametrize("name", list(AFFINES))
def test_resample_array_returns_the_geometry_affine(name: str, anchor: str) -> None:
    a = AFFINES[name]
    data = np.zeros((9, 8, 6), dtype=np.float32)
    _, b = resample_array(data, (4, 16, 6), affine=a, anchor=anchor)
    assert b.dtype == np.float64
    np.testing.assert_allclose(b, resampled_affine(a, (9, 8, 6), (4, 16, 6), anchor), atol=1e-12)


def test_resample_array_default_affine_is_identity() -> None:
    _, b = resample_array(np.zeros((4, 6, 8), np.float32), (8, 3, 8))
    np.testing.assert_allclose(b, np.diag([0.5, 2.0, 1.0, 1.0]))


@pytest.mark.parametrize("past_edge, inside", [(0.5, True), (2.0, False)])
def test_one_field_of_view_tolerance_for_samples_and_overlap(past_edge, inside) -> None:
    # A sample FOV_TOL * past_edge beyond the half-voxel edge: the fill rule of the engines
    # (inside_positions) and the overlap of a reference grid (overlap_fraction) agree.
    from napari_resample.engine.geometry import FOV_TOL, inside_positions
    from napari_resample.engine.grid import overlap_fraction

    for at in (-0.5 - past_edge * FOV_TOL, 3.5 + past_edge * FOV_TOL):
        assert bool(inside_positions(4, np.array([at]))[0]) is inside
        ref = np.eye(4)
        ref[0, 3] = at  # the reference's one voxel sits at input index `at` along i
        assert overlap_fraction((4, 1, 1), np.eye(4), (1, 1, 1), ref) == float(inside)


def test_nearest_index_is_the_nearest_voxel_with_halves_up_and_edges_held() -> None:
    from napari_resample.engine.geometry import nearest_index

    x = np.array([-3.0, -0.5, -0.49, 0.49, 0.5, 1.5, 2.49, 2.5, 9.0])
    assert nearest_index(3, x).tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2]
    data = np.arange(3, dtype=np.int16).reshape(3, 1, 1)
    got, _ = resample_array(data, (7, 1, 1), interpolation="nearest")  # x = 3 / 7 * i
    want = nearest_index(3, sample_positions(3, 7, "origin"))
    assert got.ravel().tolist() == want.tolist() == [0, 0, 1, 1, 2, 2, 2]
