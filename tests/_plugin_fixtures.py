"""Synthetic NIfTI files and helpers for the napari plugin tests (reader, writer, widget).

Every volume stores ``value = i + 100 * j + 10000 * k`` (plus an offset), so a voxel shown in
napari can be traced back to the stored index it came from without trusting the code under test.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about a world axis."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_from(linear, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = linear
    a[:3, 3] = origin
    return a


#: Named voxel -> RAS affines covering the cases the issue lists.
AFFINES: dict[str, np.ndarray] = {
    "ras_anisotropic": affine_from(np.diag([0.5, 0.8, 2.5]), [-40.0, 25.0, 10.0]),
    "las": affine_from(np.diag([-0.7, 0.9, 2.0]), [30.0, -20.0, -5.0]),
    "lps": affine_from(np.diag([-1.1, -0.6, 3.0]), [12.0, 40.0, 0.0]),
    # i -> Left, j -> Superior, k -> Anterior
    "lsa_permuted": affine_from([[-0.9, 0, 0], [0, 0, 2.0], [0, 1.2, 0]], [5.0, -7.0, 30.0]),
    # i -> Posterior, j -> Inferior, k -> Right
    "pir_permuted": affine_from([[0, 0, 1.5], [-0.8, 0, 0], [0, -2.2, 0]], [-3.0, 60.0, 44.0]),
    "oblique": affine_from(
        rotation("x", 17.0) @ rotation("z", -9.0) @ np.diag([0.6, 0.7, 2.4]), [-10.0, 5.0, 2.0]
    ),
    "sheared": affine_from([[0.8, 0.3, 0.0], [0.0, 0.9, 0.4], [0.0, 0.0, 2.0]], [1.0, 2.0, 3.0]),
}

AXIS_ALIGNED = ("ras_anisotropic", "las", "lps", "lsa_permuted", "pir_permuted")


def coded_volume(shape=(7, 6, 5), dtype=np.float32, offset: int = 0) -> np.ndarray:
    """``i + 100 j + 10000 k + offset`` over *shape* (I, J, K); float32 holds it exactly."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (i + 100 * j + 10000 * k + offset).astype(dtype)


def decode(value) -> tuple[int, int, int]:
    """Stored (i, j, k) of a :func:`coded_volume` value (offset 0)."""
    v = int(value)
    return v % 100, (v // 100) % 100, v // 10000


def write_nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    sform_code: int = 1,
    qform_code: int = 1,
    intent_code: int = 0,
    descrip: bytes = b"napari-resample test",
    units: tuple[str, str] = ("mm", "sec"),
    slope: float | None = None,
    inter: float | None = None,
    on_disk_dtype=None,
    time_step: float | None = None,
    big_endian: bool = False,
) -> Path:
    """Write a NIfTI-1 file with explicit header fields; return its path."""
    header = None
    if big_endian:
        header = nib.Nifti1Header(endianness=">")
        header.set_data_dtype(data.dtype)
    img = nib.Nifti1Image(data, affine, header=header)
    hdr = img.header
    hdr.set_sform(affine, code=sform_code)
    hdr.set_qform(affine, code=qform_code)
    hdr["intent_code"] = intent_code
    hdr["descrip"] = descrip
    hdr.set_xyzt_units(*units)
    if on_disk_dtype is not None:
        hdr.set_data_dtype(on_disk_dtype)
    if slope is not None:
        hdr.set_slope_inter(slope, inter or 0.0)
    if time_step is not None:
        pixdim = hdr["pixdim"].copy()
        pixdim[4] = time_step
        hdr["pixdim"] = pixdim
    img.update_header()
    nib.save(img, path)
    return path


def nifti_factory(folder: Path):
    """``make(name, affine_key_or_matrix, data=None, **header) -> Path`` writing into *folder*.

    ``tests/conftest.py`` wraps it in the ``nifti_file`` fixture over ``tmp_path``.
    """

    def make(name: str, affine="ras_anisotropic", data=None, **kwargs) -> Path:
        a = AFFINES[affine] if isinstance(affine, str) else np.asarray(affine, dtype=float)
        vol = coded_volume() if data is None else data
        return write_nifti(folder / name, vol, a, **kwargs)

    return make


def stored_world(affine: np.ndarray, ijk) -> np.ndarray:
    """RAS world of a stored voxel index."""
    return (affine @ np.append(np.asarray(ijk, dtype=float), 1.0))[:3]


# ------------------------------------------------ the widget in a viewer (tests/test_widget*.py)
# The `viewer` and `widget` fixtures are in conftest.py.

TIMEOUT_MS = 120_000  # a generous bound for waiting, never an assertion about speed


def _ct(shape=(24, 20, 10)) -> np.ndarray:
    """An int16 image with smooth structure and many distinct values."""
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return (1000 * np.exp(-(i**2 + j**2 + k**2) * 2) + 300 * i - 200 * k).astype(np.int16)


def _open(viewer, path):
    (layer,) = viewer.open(str(path), plugin="napari-resample")
    return layer


def _held(real, seen):
    """*real* (an engine call taking ``progress`` and ``cancel``) held after each progress
    report until the user cancels, so that no race decides; *seen* collects the fractions."""

    def held(*args, progress, cancel, **kwargs):
        def report(fraction):
            progress(fraction)
            seen.append(fraction)
            cancel.wait(TIMEOUT_MS / 1000)

        return real(*args, progress=report, cancel=cancel, **kwargs)

    return held


def _run(qtbot, widget):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return widget.result_layer


def _save(qtbot, widget):
    """Save in the background and wait: the path written, or None (refused or failed)."""
    worker = widget.save()
    if worker is None:
        return None
    qtbot.waitUntil(lambda: not widget.saving, timeout=TIMEOUT_MS)
    return widget.saved_path


def _errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        n.message
        for n in notification_manager.records
        if n.severity >= NotificationSeverity.WARNING
    ]
