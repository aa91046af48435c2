"""Shared fixtures: small synthetic NIfTI files written to ``tmp_path`` with nibabel.

Never patient data. Every volume is a few thousand voxels so the whole core suite stays fast.

``make_nifti(data, affine, **opts)`` writes one file with exactly the header asked for (qform /
sform and their codes, endianness, scaling, extra header fields). ``nifti_case(name)`` builds one
of the named geometric / header cases listed in ``CASES``; tests parametrize over those names.
``nifti_file(name, affine_key, data=None, **header)`` writes the traceable coded volumes of
``_plugin_fixtures`` that the napari reader, writer and widget tests use.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from _plugin_fixtures import nifti_factory

_KEEP = object()


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """3x3 rotation: about x by *ax*, then y by *ay*, then z by *az* (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(linear: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    """4x4 affine from a 3x3 linear part (columns = voxel axes in mm) and an origin."""
    a = np.eye(4)
    a[:3, :3] = linear
    a[:3, 3] = origin
    return a


def smooth_volume(shape: tuple[int, ...], seed: int = 0, lo: float = 100.0, hi: float = 900.0):
    """A smooth, strictly positive float64 volume (a blob plus a gentle ramp) in [lo, hi]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, rng.uniform(-0.3, 0.3, len(shape)), strict=True))
    vol = np.exp(-2.0 * r2) + 0.3 * grids[0] + 0.2 * grids[-1]
    vol = (vol - vol.min()) / (vol.max() - vol.min())
    return lo + (hi - lo) * vol


@pytest.fixture
def make_nifti(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a NIfTI-1 file into ``tmp_path / folder`` and returning its path.

    Parameters (all keyword-only except *data* and *affine*)
    ----------
    data : ndarray, stored values (already in the on-disk type unless *dtype* is given)
    affine : (4, 4) used as sform (code 2) and qform (code 2) unless overridden; None = identity
    name, folder : file name and sub-folder of ``tmp_path``
    dtype : on-disk data type (default: data's type)
    endianness : '<' or '>'
    qform, sform : (4, 4) override one of the two matrices
    qform_code, sform_code : int codes (0 disables the matrix for readers)
    slope, inter : scl_slope / scl_inter written with the stored values unchanged
    fields : dict of other header fields (descrip, xyzt_units, intent_code, pixdim4, ...)
    """

    def make(
        data: np.ndarray,
        affine: np.ndarray | None = None,
        *,
        name: str = "scan.nii.gz",
        folder: str = "in",
        dtype: Any = None,
        endianness: str = "<",
        qform: np.ndarray | None = None,
        sform: np.ndarray | None = None,
        qform_code: int = 2,
        sform_code: int = 2,
        slope: float | None = None,
        inter: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Path:
        data = np.asarray(data)
        base = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        hdr = nib.Nifti1Header(endianness=endianness)
        hdr.set_data_dtype(data.dtype if dtype is None else dtype)
        hdr.set_data_shape(data.shape)
        hdr.set_qform(base if qform is None else qform, code=qform_code)
        hdr.set_sform(base if sform is None else sform, code=sform_code)
        for key, value in (fields or {}).items():
            if key == "pixdim4":
                hdr["pixdim"][4] = value
            else:
                hdr[key] = value
        img = nib.Nifti1Image(data.astype(hdr.get_data_dtype().newbyteorder("=")), None, hdr)
        if slope is not None:
            img.header.set_slope_inter(slope, 0.0 if inter is None else inter)
        out = tmp_path / folder / name
        out.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, out)
        return out

    return make


@pytest.fixture
def nifti_file(tmp_path: Path) -> Callable[..., Path]:
    """``nifti_file(name, affine="ras_anisotropic", data=None, **header) -> Path`` in ``tmp_path``.

    See :func:`_plugin_fixtures.nifti_factory` (affine keys are those of ``AFFINES``).
    """
    return nifti_factory(tmp_path)


@pytest.fixture
def small_filesystem(tmp_path: Path):
    """A 2 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("this machine does not let us mount a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def file_endianness(path: Path) -> str:
    """'<' or '>' read from the raw bytes: ``sizeof_hdr`` (348) in the first 4 bytes."""
    with gzip.open(path, "rb") as fh:
        head = fh.read(4)
    if int.from_bytes(head, "little") == 348:
        return "<"
    if int.from_bytes(head, "big") == 348:
        return ">"
    raise AssertionError(f"{path} does not start with a NIfTI-1 header: {head!r}")


# --------------------------------------------------------------------------- named cases

SHEAR = np.array([[1.0, 0.25, 0.1], [0.0, 1.0, -0.2], [0.0, 0.0, 1.0]])


@dataclass
class Case:
    """A synthetic input: stored data, affine, and the options passed to ``make_nifti``."""

    data: np.ndarray
    affine: np.ndarray
    opts: dict[str, Any] = field(default_factory=dict)


def build_case(name: str) -> Case:
    """The synthetic case *name* of :data:`CASES`: data, affine and ``make_nifti`` options."""
    shape = (9, 8, 6)
    vol = smooth_volume(shape, seed=len(name))
    aniso = np.diag([0.5, 0.75, 2.5])
    origin = (-12.0, 7.5, 30.0)
    i16 = np.round(vol).astype(np.int16)
    if name == "anisotropic":
        return Case(i16, make_affine(aniso, origin))
    if name == "flipped_las":  # x axis runs to the left
        return Case(i16, make_affine(np.diag([-0.5, 0.75, 2.5]), origin))
    if name == "permuted_lsa":  # i -> left, j -> superior, k -> anterior
        perm = np.array([[-0.5, 0, 0], [0, 0, 2.5], [0, 0.75, 0]])
        return Case(i16, make_affine(perm, origin))
    if name == "oblique":
        return Case(i16, make_affine(rotation(0.3, -0.2, 0.5) @ aniso, origin))
    if name == "sheared":  # sform only can hold a shear; qform keeps the unsheared part
        sform = make_affine(rotation(0.1, 0.0, 0.2) @ SHEAR @ aniso, origin)
        qform = make_affine(rotation(0.1, 0.0, 0.2) @ aniso, origin)
        return Case(i16, sform, {"qform": qform, "qform_code": 1})
    if name == "big_endian":
        return Case(i16, make_affine(aniso, origin), {"endianness": ">"})
    if name == "big_endian_float":
        return Case(vol.astype(np.float32), make_affine(aniso, origin), {"endianness": ">"})
    if name == "scaled":  # int16 stored, scl_slope / scl_inter
        return Case(i16, make_affine(aniso, origin), {"slope": 0.25, "inter": -40.0})
    if name == "qform_ne_sform":  # different offsets, rotations and a z flip in the qform
        qform = make_affine(rotation(0.0, 0.0, 0.2) @ np.diag([0.5, 0.75, -2.5]), (1.0, 2.0, 3.0))
        return Case(i16, make_affine(aniso, origin), {"qform": qform, "qform_code": 1})
    if name == "qform_only":
        return Case(i16, make_affine(rotation(0.2, 0.1, 0.0) @ aniso, origin), {"sform_code": 0})
    if name == "sform_only":
        return Case(i16, make_affine(rotation(0.0, 0.3, 0.1) @ aniso, origin), {"qform_code": 0})
    if name == "codes_0_0":
        return Case(i16, make_affine(aniso, (0, 0, 0)), {"qform_code": 0, "sform_code": 0})
    if name == "singleton_4d":
        return Case(i16[..., None], make_affine(aniso, origin))
    if name == "uint8":
        return Case(np.round(vol / 4).astype(np.uint8), make_affine(aniso, origin))
    if name == "float32":
        return Case(vol.astype(np.float32), make_affine(aniso, origin))
    if name == "float64":
        return Case(vol, make_affine(aniso, origin))
    if name == "labels":
        return Case(label_volume(shape), make_affine(aniso, origin))
    raise KeyError(name)


#: Inputs that ``resampling()`` must accept (true 4D and non-finite data have their own tests).
CASES: tuple[str, ...] = (
    "anisotropic",
    "flipped_las",
    "permuted_lsa",
    "oblique",
    "sheared",
    "big_endian",
    "big_endian_float",
    "scaled",
    "qform_ne_sform",
    "qform_only",
    "sform_only",
    "codes_0_0",
    "singleton_4d",
    "uint8",
    "float32",
    "float64",
    "labels",
)


def label_volume(shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 label map: background 0, labels 1, 2 and 7 as nested / adjacent blocks."""
    lab = np.zeros(shape, dtype=np.uint8)
    i, j, k = shape
    lab[1 : i - 1, 1 : j - 1, 1 : k - 1] = 1
    lab[2 : i // 2 + 1, 2 : j - 2, 1 : k - 1] = 2
    lab[i // 2 + 1 : i - 2, 2 : j // 2, 2 : k - 1] = 7
    return lab


@pytest.fixture
def nifti_case(make_nifti: Callable[..., Path]) -> Callable[[str], tuple[Path, Case]]:
    """``nifti_case(name) -> (path, case)``: write the named case and return both."""

    def build(name: str) -> tuple[Path, Case]:
        case = build_case(name)
        return make_nifti(case.data, case.affine, **case.opts), case

    return build


@pytest.fixture
def true_4d(make_nifti: Callable[..., Path]) -> Path:
    """A 4D file with three volumes."""
    return make_nifti(np.ones((5, 4, 3, 3), dtype=np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))


@pytest.fixture
def nonfinite_float(make_nifti: Callable[..., Path]) -> Path:
    """float32 volume with one NaN, one +Inf and one -Inf voxel away from each other."""
    data = smooth_volume((8, 8, 6)).astype(np.float32)
    data[2, 3, 2] = np.nan
    data[5, 5, 3] = np.inf
    data[6, 1, 4] = -np.inf
    return make_nifti(data, np.diag([1.0, 1.0, 2.0, 1.0]))


@pytest.fixture
def gz_volume(tmp_path: Path) -> tuple[Path, bytes, np.ndarray]:
    """A valid .nii.gz (noisy, so that it does not compress to nothing) and its bytes."""
    data = np.random.default_rng(3).integers(-1000, 3000, size=(30, 20, 10), dtype=np.int16)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path, path.read_bytes(), data


# ------------------------------------------------------------------ napari (tests/test_widget*.py)


@pytest.fixture
def viewer(make_napari_viewer):
    """A napari viewer (Qt under Xvfb), closed by napari's ``make_napari_viewer``."""
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    """The "Resample volume" widget docked in ``viewer``.

    ``widget.answers`` holds what the overwrite confirmation answers, in order (yes once it is
    empty). A worker a failed test leaves held is cancelled at teardown.
    """
    from napari_resample.plugin.widget.dock import ResampleWidget

    answers: list[bool] = []
    w = ResampleWidget(viewer, confirm_overwrite=lambda path: answers.pop(0) if answers else True)
    w.answers = answers
    viewer.window.add_dock_widget(w, name="Resample volume")
    yield w
    if w.run_row.cancel_event is not None:
        w.run_row.cancel_event.set()
