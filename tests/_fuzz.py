"""A NIfTI-1 header fuzzer: the mutation code shared by ``tests/test_fuzz.py`` (hypothesis, a
few hundred cases) and ``benchmarks/fuzz.py`` (thousands of cases, counted).

A small valid file (6 x 5 x 4 int16, written as ``.nii`` and ``.nii.gz``) has fields of its 348
header bytes overwritten by edge values (0, -1, huge, NaN, Inf, ...) or random bytes; each case
is then given to ``resampling(file, out, (3, 3, 3))``. The contract checked by :func:`classify`:
either one of the documented exceptions (``FileNotFoundError``, ``ValueError``, ``MemoryError``
with a message) or a valid 3 x 3 x 3 output, never any other exception.

Everything here is importable without hypothesis except :func:`mutations_strategy`.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: Target size of every fuzz case.
SIZE = (3, 3, 3)
#: The valid source volume.
SHAPE = (6, 5, 4)


@dataclass(frozen=True)
class Field:
    """One NIfTI-1 header field: name, byte offset, struct code of one element, element count."""

    name: str
    offset: int
    code: str
    count: int = 1

    @property
    def width(self) -> int:
        return struct.calcsize("<" + self.code)


#: The fields mutated, by their offsets in the NIfTI-1 header (nifti1.h).
FIELDS: tuple[Field, ...] = (
    Field("sizeof_hdr", 0, "i"),
    Field("dim", 40, "h", 8),
    Field("intent_code", 68, "h"),
    Field("datatype", 70, "h"),
    Field("bitpix", 72, "h"),
    Field("pixdim", 76, "f", 8),
    Field("vox_offset", 108, "f"),
    Field("scl_slope", 112, "f"),
    Field("scl_inter", 116, "f"),
    Field("xyzt_units", 123, "B"),
    Field("cal_max", 124, "f"),
    Field("cal_min", 128, "f"),
    Field("qform_code", 252, "h"),
    Field("sform_code", 254, "h"),
    Field("quatern", 256, "f", 3),
    Field("qoffset", 268, "f", 3),
    Field("srow", 280, "f", 12),
    Field("magic", 344, "B", 4),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}

#: Edge values tried for integer fields (clipped to the field's range when written).
INT_EDGES: tuple[int, ...] = (0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 255, 256, 352, 1000, 2**15 - 1)
#: Edge values tried for float fields.
FLOAT_EDGES: tuple[float, ...] = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-30,
    1e-45,
    1e30,
    -1e30,
    3.4e38,
    math.nan,
    math.inf,
    -math.inf,
    100.0,
    351.0,
    352.0,
    4096.0,
)
#: The codes that mean something for the datatype field (and some that do not).
DATATYPES: tuple[int, ...] = (
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    768,
    1024,
    1280,
    1536,
    1792,
    2304,
)

# A mutation: (field name, element index, value) where value is an int, a float, or bytes
# (written raw over the element, truncated to its width); or ("raw", offset, bytes).
Mutation = tuple[str, int, Any]


def _limits(code: str) -> tuple[int, int]:
    bits = 8 * struct.calcsize(code)
    if code.isupper():
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def apply(header: bytes, mutations: Sequence[Mutation]) -> bytes:
    """*header* with *mutations* written over it (see :data:`Mutation`)."""
    buf = bytearray(header)
    for name, index, value in mutations:
        if name == "raw":
            chunk = bytes(value)[: max(0, len(buf) - index)]
            buf[index : index + len(chunk)] = chunk
            continue
        field = FIELDS_BY_NAME[name]
        pos = field.offset + (index % field.count) * field.width
        if isinstance(value, bytes | bytearray):
            raw = bytes(value[: field.width]).ljust(field.width, b"\0")
        elif field.code == "f":
            raw = struct.pack("<f", float(value))
        else:
            lo, hi = _limits(field.code)
            raw = struct.pack("<" + field.code, min(max(int(value), lo), hi))
        buf[pos : pos + field.width] = raw
    return bytes(buf)


def source_files(folder: str | os.PathLike[str]) -> dict[str, bytes]:
    """The valid source file, by suffix (``.nii``, ``.nii.gz``): uncompressed bytes of each."""
    folder = Path(folder)
    data = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 7 % 300).astype(np.int16)
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = (-4.0, 3.0, 10.0)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    path = folder / "source.nii"
    nib.save(img, path)
    raw = path.read_bytes()
    path.unlink()
    return {".nii": raw, ".nii.gz": raw}


def write_case(folder: str | os.PathLike[str], suffix: str, raw: bytes, mutations) -> str:
    """Write the mutated file ``folder/case<suffix>`` and return its path."""
    content = apply(raw[:348], mutations) + raw[348:]
    path = os.path.join(folder, "case" + suffix)
    if suffix == ".nii.gz":
        content = gzip.compress(content, compresslevel=1, mtime=0)
    with open(path, "wb") as fh:
        fh.write(content)
    return path


def run_case(path: str, out_dir: str) -> str:
    """Resample *path* into *out_dir* (emptied first) and return what happened.

    Returns ``"valid"`` for a loadable 3 x 3 x 3 output, else the name of the documented
    exception raised. Raises AssertionError for an output that is not valid, and lets every
    undocumented exception through.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        _resample(path, out_dir)
    except (FileNotFoundError, ValueError) as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return type(exc).__name__
    except MemoryError as exc:
        assert str(exc), "MemoryError without a message"
        return "MemoryError"
    outputs = [n for n in os.listdir(out_dir) if not n.startswith(".")]
    assert len(outputs) == 1, f"expected one output, found {outputs}"
    img = nib.load(os.path.join(out_dir, outputs[0]))
    assert img.shape[:3] == SIZE and all(n == 1 for n in img.shape[3:]), img.shape
    np.asarray(img.dataobj)
    hdr = img.header
    for name, code, matrix in (
        ("sform", int(hdr["sform_code"]), hdr.get_sform()),
        ("qform", int(hdr["qform_code"]), hdr.get_qform()),
        ("affine", 1, img.affine),
    ):
        if code:
            assert np.all(np.isfinite(matrix)), f"output {name} is not finite: {matrix.tolist()}"
            assert np.linalg.det(matrix[:3, :3]) != 0, f"output {name} is singular: {matrix}"
    return "valid"


def _resample(path: str, out_dir: str) -> None:
    """``resampling()`` for ``.nii.gz``; its same steps for ``.nii``, which it does not take."""
    from napari_resample import resampling
    from napari_resample.io.nifti import load_nifti, save_volume
    from napari_resample.pipeline.run import resample_volume

    if path.endswith(".nii.gz"):
        resampling(path, out_dir, SIZE)
        return
    result = resample_volume(load_nifti(path), SIZE)
    os.makedirs(out_dir, exist_ok=True)
    save_volume(os.path.join(out_dir, "case_resampled.nii.gz"), result)


def random_mutations(rng: random.Random) -> list[Mutation]:
    """One to four random mutations (the benchmark's generator; same vocabulary as
    :func:`mutations_strategy`)."""
    out: list[Mutation] = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.05:
            offset = rng.randrange(348)
            out.append(("raw", offset, rng.randbytes(rng.randint(1, 16))))
            continue
        field = rng.choice(FIELDS)
        index = rng.randrange(field.count)
        roll = rng.random()
        if roll < 0.15:
            value: Any = rng.randbytes(field.width)
        elif field.code == "f":
            value = rng.choice(FLOAT_EDGES) if roll < 0.8 else rng.uniform(-1e3, 1e3)
        elif field.name == "datatype":
            value = rng.choice(DATATYPES) if roll < 0.8 else rng.randint(-5, 3000)
        else:
            lo, hi = _limits(field.code)
            value = rng.choice((*INT_EDGES, lo, hi)) if roll < 0.8 else rng.randint(lo, hi)
        out.append((field.name, index, value))
    return out


def mutations_strategy() -> Any:
    """hypothesis strategy of mutation lists (the test's generator)."""
    from hypothesis import strategies as st

    def one_field(field: Field) -> Any:
        lo, hi = _limits(field.code) if field.code != "f" else (0, 0)
        if field.code == "f":
            values = st.sampled_from(FLOAT_EDGES) | st.floats(width=32)
        elif field.name == "datatype":
            values = st.sampled_from(DATATYPES) | st.integers(lo, hi)
        else:
            values = st.sampled_from((*INT_EDGES, lo, hi)) | st.integers(lo, hi)
        values = values | st.binary(min_size=field.width, max_size=field.width)
        return st.tuples(st.just(field.name), st.integers(0, field.count - 1), values)

    raw = st.tuples(st.just("raw"), st.integers(0, 347), st.binary(min_size=1, max_size=16))
    one = st.one_of(*[one_field(f) for f in FIELDS], raw)
    return st.lists(one, min_size=1, max_size=4)


def scratch() -> str:
    """A fresh temporary folder."""
    return tempfile.mkdtemp(prefix="nr-fuzz-")


#: Headers that must be refused (a ValueError naming the file and the value) before any voxel
#: is read, by name: the mutations applied to the valid source (sform code 2, qform code 1).
BAD_HEADERS: dict[str, tuple[list[Mutation], str]] = {
    "nan-sform": ([("srow", 3, math.nan)], r"non-finite sform .*nan"),
    "inf-sform": ([("srow", 0, math.inf)], r"non-finite sform .*inf"),
    "nan-qform-offset": ([("sform_code", 0, 0), ("qoffset", 0, math.nan)], r"qform .*nan"),
    "nan-quaternion": ([("quatern", 1, math.nan)], r"non-finite qform .*nan"),
    "nan-pixdim-codes-0": (
        [("qform_code", 0, 0), ("sform_code", 0, 0), ("pixdim", 2, math.nan)],
        r"pixdim\[1:4\] .*nan",
    ),
    "zero-column-sform": (
        [("srow", 0, 0.0), ("srow", 4, 0.0), ("srow", 8, 0.0)],
        r"sform .* zero .*length",
    ),
    "singular-sform": ([("srow", 1, 1.5), ("srow", 5, 0.0)], r"sform .* singular"),
    "zero-size-dim": ([("dim", 2, 0)], r"dimension.*dim\[1:4\] = \[6, 0, 4\]"),
    "negative-dim": ([("dim", 3, -4)], r"dimension.*dim\[1:4\] = \[6, 5, -4\]"),
    "no-dims": ([("dim", 0, 0)], r"dim\[0\] .* got 0"),
    "too-many-dims": ([("dim", 0, 8)], r"dim\[0\] .* got 8"),
    "vox-offset-in-header": ([("vox_offset", 0, 100.0)], r"vox_offset .*352.* got 100"),
    "vox-offset-zero": ([("vox_offset", 0, 0.0)], r"vox_offset .*352.* got 0"),
    "vox-offset-nan": ([("vox_offset", 0, math.nan)], r"vox_offset .*352.* got nan"),
}

#: Odd headers that open anyway, with what the reader reports as ignored.
ODD_HEADERS: dict[str, tuple[list[Mutation], str | None]] = {
    "unknown-xyzt-units": ([("xyzt_units", 0, 7)], r"unknown xyzt_units code 7 .*assuming mm"),
    "nan-pixdim-5": ([("pixdim", 5, math.nan)], r"non-finite pixdim\[5\] = nan"),
    "inf-time-step": ([("pixdim", 4, math.inf)], r"non-finite pixdim\[4\] = inf"),
    "nan-unused-qform": (
        [("qform_code", 0, 0), ("quatern", 0, math.nan)],
        r"unusable qform \(its qform_code is 0\)",
    ),
    "nan-unused-sform": (
        [("sform_code", 0, 0), ("srow", 0, math.nan)],
        r"unusable sform \(its sform_code is 0\)",
    ),
    "huge-unused-pixdim": ([("qform_code", 0, 0), ("pixdim", 1, math.inf)], r"unusable qform"),
}


#: Memory a case may take beyond the session's own: the output is 27 voxels, so anything
#: near this is reading (or allocating) far more than the file holds.
MAX_GROWTH_MB = 256


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hypothesis_session(cases: int, timeout: int = 20) -> None:
    """Run *cases* hypothesis-generated cases in this process (``tests/test_fuzz.py`` runs it
    in a subprocess with limited memory); each case under ``signal.alarm(timeout)``, and
    failing if the process's peak memory grew by :data:`MAX_GROWTH_MB` or more.

    Raises whatever hypothesis reports for a failing case (after shrinking it).
    """
    import logging
    import signal

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    logging.getLogger("nibabel").setLevel(logging.ERROR)
    np.seterr(all="ignore")
    work = scratch()
    sources = source_files(work)

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"a fuzz case took more than {timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    run_case(write_case(work, ".nii.gz", sources[".nii.gz"], []), os.path.join(work, "out"))
    base = peak_rss_mb()

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(suffix=st.sampled_from(sorted(sources)), mutations=mutations_strategy())
    def case(suffix: str, mutations: list[Mutation]) -> None:
        path = write_case(work, suffix, sources[suffix], mutations)
        signal.alarm(timeout)
        try:
            run_case(path, os.path.join(work, "out"))
        finally:
            signal.alarm(0)
        grown = peak_rss_mb() - base
        assert grown < MAX_GROWTH_MB, f"the case took {grown:.0f} MB more memory"

    try:
        case()
    finally:
        shutil.rmtree(work, ignore_errors=True)
