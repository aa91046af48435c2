"""A built-in synthetic head phantom (CT-like, anisotropic) and its label map.

Generated in code, so the package ships no binary data and no patient data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from napari_resample.io.nifti import NiftiVolume

#: Default phantom geometry: voxels (i, j, k) and spacing in mm, as a thick-slice head CT.
PHANTOM_SHAPE: tuple[int, int, int] = (160, 192, 64)
PHANTOM_SPACING: tuple[float, float, float] = (0.5, 0.5, 2.5)

#: Label values of :func:`make_phantom`'s label map.
LABELS: dict[int, str] = {0: "background", 1: "skull", 2: "brain", 3: "ventricles", 4: "lesion"}


def phantom_affine(
    shape: tuple[int, int, int] = PHANTOM_SHAPE,
    spacing: tuple[float, float, float] = PHANTOM_SPACING,
) -> NDArray[np.float64]:
    """RAS+ affine placing the phantom's centre at the world origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return affine


def make_phantom(
    shape: tuple[int, int, int] = PHANTOM_SHAPE,
    spacing: tuple[float, float, float] = PHANTOM_SPACING,
    seed: int = 0,
) -> tuple[NDArray[np.int16], NDArray[np.uint8], NDArray[np.float64]]:
    """A head-like CT phantom with soft edges, its label map and their affine.

    The head is an ellipsoid filling about 90 % of the field of view: a skull shell (~1000 HU)
    around brain (~35 HU) with two ventricles (~5 HU) and a small lesion (~70 HU), in air
    (-1000 HU), with mild noise. Edges are smooth over about one in-plane millimetre.

    Parameters
    ----------
    shape : (3,) tuple of int
        Voxels along (i, j, k).
    spacing : (3,) tuple of float
        Voxel size in mm along (i, j, k).
    seed : int
        Seed of the noise.

    Returns
    -------
    image : (I, J, K) ndarray of int16
        Hounsfield-like values in [-1024, 3000].
    labels : (I, J, K) ndarray of uint8
        Values of :data:`LABELS`.
    affine : (4, 4) ndarray of float64, voxel -> RAS mm

    Examples
    --------
    >>> image, labels, affine = make_phantom((40, 48, 16))
    >>> image.shape, image.dtype.name, sorted(np.unique(labels).tolist())
    ((40, 48, 16), 'int16', [0, 1, 2, 3, 4])
    """
    affine = phantom_affine(shape, spacing)
    # World coordinates (mm) of every voxel centre, normalised by the head's semi-axes.
    half = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    axes = [np.linspace(-h, h, n, dtype=np.float32) for h, n in zip(half, shape, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    semi = 0.9 * half
    r_head = np.sqrt((x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2)
    r_brain = np.sqrt(
        (x / (semi[0] - 3.5)) ** 2 + (y / (semi[1] - 3.5)) ** 2 + (z / (semi[2] - 5.0)) ** 2
    )
    edge = 1.0 / min(semi)  # about 1 mm of soft edge, in normalised units
    head = _soft_inside(r_head, edge)
    brain = _soft_inside(r_brain, edge)
    vent = np.maximum(
        _soft_inside(
            _ellipsoid(
                x,
                y,
                z,
                (-0.18 * semi[0], 0.05 * semi[1], 0.1 * semi[2]),
                (0.1 * semi[0], 0.3 * semi[1], 0.25 * semi[2]),
            ),
            3 * edge,
        ),
        _soft_inside(
            _ellipsoid(
                x,
                y,
                z,
                (0.18 * semi[0], 0.05 * semi[1], 0.1 * semi[2]),
                (0.1 * semi[0], 0.3 * semi[1], 0.25 * semi[2]),
            ),
            3 * edge,
        ),
    )
    lesion = _soft_inside(
        _ellipsoid(
            x,
            y,
            z,
            (0.35 * semi[0], -0.4 * semi[1], -0.2 * semi[2]),
            (0.12 * semi[0], 0.1 * semi[1], 0.15 * semi[2]),
        ),
        3 * edge,
    )
    hu = -1000.0 + 2000.0 * head - 965.0 * brain - 30.0 * vent + 65.0 * lesion * (1 - vent)
    rng = np.random.default_rng(seed)
    hu += rng.normal(0.0, 8.0, size=shape).astype(np.float32)
    image = np.clip(np.rint(hu), -1024, 3000).astype(np.int16)

    labels = np.zeros(shape, dtype=np.uint8)
    labels[np.broadcast_to(head > 0.5, shape)] = 1
    labels[np.broadcast_to(brain > 0.5, shape)] = 2
    labels[np.broadcast_to((vent > 0.5) & (brain > 0.5), shape)] = 3
    labels[np.broadcast_to((lesion > 0.5) & (brain > 0.5) & (vent <= 0.5), shape)] = 4
    return image, labels, affine


def phantom_volumes() -> dict[str, NiftiVolume]:
    """The default phantom and its label map as NIfTI volumes with their headers.

    The one definition of the sample, used by the command line (``--sample`` writes them) and
    by napari's *File > Open Sample*: RAS affine, mm units, a description, and the label map's
    intent code ``NIFTI_INTENT_LABEL`` (1002).

    Returns
    -------
    dict
        ``{"phantom": image volume (int16), "phantom_labels": label volume (uint8)}``.
    """
    from napari_resample.engine.labels import NIFTI_INTENT_LABEL
    from napari_resample.io.header import header_for_affine
    from napari_resample.io.nifti import NiftiVolume

    image, labels, affine = make_phantom()
    volumes = {}
    for name, data, descrip, intent in (
        ("phantom", image, b"napari-resample synthetic head phantom", 0),
        ("phantom_labels", labels, b"napari-resample phantom labels", NIFTI_INTENT_LABEL),
    ):
        header = header_for_affine(affine, data.shape)
        header.set_data_dtype(data.dtype)
        header.set_xyzt_units("mm", "sec")
        header["descrip"] = descrip
        header["intent_code"] = intent
        volumes[name] = NiftiVolume(data, affine, header)
    return volumes


def _ellipsoid(x: NDArray, y: NDArray, z: NDArray, centre: tuple, semi: tuple) -> NDArray:
    return np.sqrt(
        ((x - centre[0]) / semi[0]) ** 2
        + ((y - centre[1]) / semi[1]) ** 2
        + ((z - centre[2]) / semi[2]) ** 2
    )


def _soft_inside(r: NDArray, width: float) -> NDArray:
    """1 inside the unit level set of *r*, 0 outside, a smooth ramp of *width* between."""
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / (width / 4), -60.0, 60.0)))
