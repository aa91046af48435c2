"""NRRD and MetaImage headers read and checked in Python before SimpleITK sees them.

SimpleITK's readers (NrrdIO, MetaIO) run native code on whatever a header says: a fuzzed
MetaImage header with ``NDims = -1`` spins forever, ``NDims = 65535`` or ``%n`` in
``ElementDataFile`` kill the process, a detached data file may name ``/etc/passwd``. So
:func:`check_itk_header` reads the header itself and refuses, with a ValueError naming the
file, the field and the value:

- a header that is not NRRD (``NRRD000x`` magic) or MetaImage (``Key = Value`` lines up to
  ``ElementDataFile``), longer than :data:`MAX_HEADER_BYTES`, or with a field twice;
- a number of dimensions other than 3, or 4 with one volume (the 4th size 1); a size that is
  not a whole number from 1 to :data:`MAX_AXIS`; per-axis fields (spacing, origin,
  directions) that are not that many finite numbers;
- an element type that is not a real scalar (NRRD ``block``, MetaImage arrays or several
  channels), an unknown encoding (NRRD: raw, gzip, bzip2, ascii, hex; MetaImage: binary data,
  compressed or not), a missing ``endian`` for multi-byte raw data;
- data files breaking the rule of :mod:`napari_resample.io.untrusted` (inside the header's
  folder, regular files, no ``%``);
- voxel bytes the data cannot hold: raw data must hold every byte the header claims, compressed
  data must inflate to them (counted, :func:`~napari_resample.io.untrusted.check_inflated_bytes`);
  text data (NRRD ascii) must hold at least two characters per value.

What it returns (:class:`ClaimedData`) gives the bytes the voxels take, checked against the
memory budget by the caller.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_resample.io.untrusted import (
    check_inflated_bytes,
    check_raw_bytes,
    check_regular_file,
    data_file_inside,
)

#: Longest header read (a LIST of data files included).
MAX_HEADER_BYTES = 1 << 20
#: Most dimensions a header may state (only 3, or 4 holding one volume, are read).
MAX_DIMENSIONS = 16
#: Largest size of one axis (ITK's readers take 32-bit sizes in places).
MAX_AXIS = 2**31 - 1

_NRRD_TYPES: dict[np.dtype, tuple[str, ...]] = {
    np.dtype(np.int8): ("signed char", "int8", "int8_t"),
    np.dtype(np.uint8): ("uchar", "unsigned char", "uint8", "uint8_t"),
    np.dtype(np.int16): (
        "short", "short int", "signed short", "signed short int", "int16", "int16_t"
    ),
    np.dtype(np.uint16): ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    np.dtype(np.int32): ("int", "signed int", "int32", "int32_t"),
    np.dtype(np.uint32): ("uint", "unsigned int", "uint32", "uint32_t"),
    np.dtype(np.int64): (
        "longlong", "long long", "long long int", "signed long long", "signed long long int",
        "int64", "int64_t",
    ),
    np.dtype(np.uint64): (
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"
    ),
    np.dtype(np.float32): ("float",),
    np.dtype(np.float64): ("double",),
}  # fmt: skip
_NRRD_DTYPE = {name: dtype for dtype, names in _NRRD_TYPES.items() for name in names}
_NRRD_ENCODINGS = {
    "raw": "raw", "gzip": "zlib", "gz": "zlib", "bzip2": "bzip2", "bz2": "bzip2",
    "ascii": "text", "text": "text", "txt": "text", "hex": "hex",
}  # fmt: skip
_MET_DTYPE: dict[str, np.dtype] = {
    "MET_CHAR": np.dtype(np.int8), "MET_UCHAR": np.dtype(np.uint8),
    "MET_SHORT": np.dtype(np.int16), "MET_USHORT": np.dtype(np.uint16),
    "MET_INT": np.dtype(np.int32), "MET_UINT": np.dtype(np.uint32),
    "MET_LONG": np.dtype(np.int32), "MET_ULONG": np.dtype(np.uint32),
    "MET_LONG_LONG": np.dtype(np.int64), "MET_ULONG_LONG": np.dtype(np.uint64),
    "MET_FLOAT": np.dtype(np.float32), "MET_DOUBLE": np.dtype(np.float64),
}  # fmt: skip
#: MetaImage fields holding one number per axis, and NDims x NDims numbers.
_MET_PER_AXIS = (
    "ElementSpacing",
    "ElementSize",
    "Offset",
    "Position",
    "Origin",
    "CenterOfRotation",
)
_MET_MATRIX = ("TransformMatrix", "Rotation", "Orientation")
#: MetaImage fields that are True or False (MetaIO reads other text its own way).
_MET_FLAGS = ("BinaryData", "CompressedData", "BinaryDataByteOrderMSB", "ElementByteOrderMSB")
_VECTOR = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True)
class ClaimedData:
    """What a checked header claims: the voxel grid and where its bytes are.

    Attributes
    ----------
    path : str
        The header file.
    shape : tuple of int
        Sizes per axis, fastest first (3 or 4 values).
    dtype : numpy.dtype
        The element type (native order).
    nbytes : int
        Bytes the voxels take in memory.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def check_itk_header(
    path: str, kind: str, check_size: Callable[[int], None] | None = None
) -> ClaimedData:
    """Read and check the NRRD or MetaImage header of *path* (the module's rules).

    Parameters
    ----------
    path : str
        A ``.nrrd`` / ``.nhdr`` (*kind* ``"NRRD"``) or ``.mha`` / ``.mhd`` (``"MetaImage"``).
    kind : {"NRRD", "MetaImage"}
    check_size : callable, optional
        Called with the voxel bytes claimed as soon as they are known, before any data is
        counted or inflated: the caller's memory budget (it raises to refuse).

    Returns
    -------
    ClaimedData

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        Naming the file, the field and the value, for anything the module refuses.
    """
    size = check_regular_file(path, f"the {kind} file")
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES + 1)
    check = check_size or (lambda nbytes: None)
    if kind == "NRRD":
        return _check_nrrd(path, head, size, check)
    return _check_metaimage(path, head, size, check)


def _header_lines(path: str, head: bytes, end: int, kind: str) -> list[str]:
    if end < 0:
        raise ValueError(
            f"cannot read {path!r} as {kind}: no header ending within its first "
            f"{MAX_HEADER_BYTES} bytes"
        )
    try:
        text = head[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path!r}: the {kind} header is not text ({exc})") from exc
    lines = [line.rstrip("\r") for line in text.split("\n")]
    for number, line in enumerate(lines, 1):
        # Python's split() takes control characters for spaces, the native readers do not:
        # a line we would parse differently from them is refused, not guessed.
        bad = next((c for c in line if c < " " and c != "\t"), None)
        if bad is not None:
            raise ValueError(
                f"{path!r}: the {kind} header holds a control character ({bad!r}) in line "
                f"{number}: {line[:60]!r}"
            )
    return lines


def _fail(path: str, field: str, value: object, rule: str) -> ValueError:
    return ValueError(f"{path!r}: {field} {value!r} refused: {rule}")


def _integers(path: str, field: str, value: str, count: int | None = None) -> list[int]:
    try:
        numbers = [int(v) for v in value.split()]
    except ValueError:
        raise _fail(path, field, value, "expected whole numbers") from None
    if count is not None and len(numbers) != count:
        raise _fail(path, field, value, f"expected {count} whole numbers")
    return numbers


def _floats(path: str, field: str, value: str, count: int) -> list[float]:
    try:
        numbers = [float(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise _fail(path, field, value, f"expected {count} numbers") from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise _fail(path, field, value, f"expected {count} finite numbers")
    return numbers


def _check_grid(path: str, fields: dict[str, str], names: tuple[str, str]) -> tuple[int, ...]:
    """The sizes of the header's *names* (dimension field, sizes field), refused unless they
    make one 3D volume (4D with a 4th size of 1 included)."""
    dim_field, size_field = names
    value = fields.get(dim_field, "")
    (ndim,) = _integers(path, dim_field, value, 1)
    if not 1 <= ndim <= MAX_DIMENSIONS:
        raise _fail(path, dim_field, value, f"expected 1 to {MAX_DIMENSIONS} dimensions")
    sizes = fields.get(size_field, "")
    shape = tuple(_integers(path, size_field, sizes, ndim))
    if not all(1 <= n <= MAX_AXIS for n in shape):
        raise _fail(path, size_field, sizes, f"every size must be from 1 to {MAX_AXIS}")
    if ndim not in (3, 4) or shape[3:] not in ((), (1,)):
        raise ValueError(
            f"input must be a 3D volume, got a {ndim}D image of size {shape} in {path!r} "
            f"({dim_field} {value}, {size_field} {sizes})"
        )
    return shape


# --------------------------------------------------------------------------------------- NRRD


def _check_nrrd(
    path: str, head: bytes, size: int, check_size: Callable[[int], None]
) -> ClaimedData:
    if not re.match(rb"NRRD000[1-5]\r?\n", head[:10]):
        raise ValueError(f"cannot read {path!r} as NRRD: no NRRD0001-5 magic on its first line")
    end = head.find(b"\n\n")
    end = head.find(b"\r\n\r\n") if end < 0 else end
    detached = end < 0 and len(head) == size  # a .nhdr may end without a blank line
    lines = _header_lines(path, head, size if detached else end, "NRRD")[1:]
    fields, listed = _nrrd_fields(path, lines)
    shape = _check_grid(path, fields, ("dimension", "sizes"))
    ndim = len(shape)
    dtype = _NRRD_DTYPE.get(fields.get("type", ""))
    if dtype is None:
        raise _fail(path, "type", fields.get("type"), "not a real scalar NRRD type")
    encoding = _NRRD_ENCODINGS.get(fields.get("encoding", ""))
    if encoding is None:
        raise _fail(path, "encoding", fields.get("encoding"), "raw, gzip, bzip2, ascii or hex")
    if dtype.itemsize > 1 and encoding in ("raw", "zlib", "bzip2", "hex"):
        if fields.get("endian") not in ("little", "big"):
            raise _fail(path, "endian", fields.get("endian"), "'little' or 'big' is required")
    _check_nrrd_geometry(path, fields, ndim)
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes)
    skip = _integers(path, "byte skip", fields.get("byte skip", "0"), 1)[0]
    lines_skipped = _integers(path, "line skip", fields.get("line skip", "0"), 1)[0]
    if skip < -1 or lines_skipped < 0 or (skip == -1 and encoding != "raw"):
        raise _fail(path, "byte skip / line skip", (skip, lines_skipped), "not a valid skip")
    names = _nrrd_data_files(path, fields.get("data file"), listed)
    if names:
        parts = [(data_file_inside(path, n, "data file"), 0) for n in names]
    else:
        parts = [(path, end + (4 if head[end : end + 4] == b"\r\n\r\n" else 2))]
    if lines_skipped:
        parts = [(parts[0][0], _after_lines(path, *parts[0], lines_skipped)), *parts[1:]]
    what = f"sizes {shape} of {fields['type']} ({fields['encoding']})"
    _check_nrrd_bytes(path, what, nbytes, dtype.itemsize, max(skip, 0), parts, encoding)
    return ClaimedData(path, shape, dtype, nbytes)


def _nrrd_fields(path: str, lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """Field -> value of NRRD header *lines*, and the names after ``data file: LIST``."""
    fields: dict[str, str] = {}
    for n, line in enumerate(lines):
        if not line or line.startswith("#") or ":=" in line.split(": ", 1)[0]:
            continue  # comments and key/value pairs (free text)
        key, sep, value = line.partition(": ")
        if not sep:
            raise _fail(path, "header line", line[:80], "expected 'field: value'")
        key = "data file" if key.lower() == "datafile" else key.lower()
        if key in fields:
            raise _fail(path, key, value, "the field is given twice")
        fields[key] = value.strip()
        if key == "data file" and value.split()[:1] == ["LIST"]:
            return fields, [name for name in lines[n + 1 :] if name]
    return fields, []


def _nrrd_data_files(path: str, value: str | None, listed: list[str]) -> list[str]:
    if value is None:
        return []
    words = value.split()
    if words[:1] == ["LIST"]:
        if not listed:
            raise _fail(path, "data file", value, "LIST names no file")
        return listed
    if len(words) > 1 and ("%" in words[0] or words[1].lstrip("-").isdigit()):
        raise _fail(path, "data file", value, "printf-style file patterns are not read")
    return [value]


def _check_nrrd_geometry(path: str, fields: dict[str, str], ndim: int) -> None:
    space = fields.get("space dimension", "3")
    if space not in ("3", str(ndim)):
        raise _fail(path, "space dimension", space, f"expected 3 or {ndim}")
    if "space origin" in fields:
        _floats(path, "space origin", fields["space origin"].strip("() "), int(space))
    if "space directions" in fields:
        value = fields["space directions"]
        vectors = _VECTOR.findall(value)
        nones = value.split().count("none")
        if len(vectors) + nones != ndim:
            raise _fail(path, "space directions", value, f"expected {ndim} vectors or 'none'")
        for vector in vectors:
            _floats(path, "space directions", vector, int(space))
    for field in ("spacings", "thicknesses", "axis mins", "axis maxs"):
        if field in fields:
            words = fields[field].split()
            if len(words) != ndim:
                raise _fail(path, field, fields[field], f"expected {ndim} values")


def _after_lines(path: str, data: str, offset: int, count: int) -> int:
    """The offset in *data* after *count* lines from *offset* (NRRD's ``line skip``)."""
    with open(data, "rb") as fh:
        fh.seek(offset)
        block = fh.read(MAX_HEADER_BYTES)
    pos = 0
    for _ in range(count):
        pos = block.find(b"\n", pos) + 1
        if pos == 0:
            raise _fail(path, "line skip", count, "the data file does not hold that many lines")
    return offset + pos


def _check_nrrd_bytes(
    path: str,
    what: str,
    nbytes: int,
    itemsize: int,
    skip: int,
    parts: list[tuple[str, int]],
    encoding: str,
) -> None:
    stored = [os.path.getsize(p) - off for p, off in parts]
    if encoding in ("zlib", "bzip2"):
        check_inflated_bytes(path, what, nbytes + skip, parts, encoding)
    elif encoding == "raw":
        # byte skip -1: the data is the last bytes of each file, so only the count matters
        share = nbytes // len(parts)
        for (name, _), held in zip(parts, stored, strict=True):
            check_raw_bytes(path, f"{what}, in {name!r},", share + skip, held)
    else:  # text: a digit and a separator per value at least; hex: two digits per byte
        needed = 2 * nbytes if encoding == "hex" else 2 * (nbytes // itemsize) - 1
        check_raw_bytes(path, what, needed, sum(stored))


# ---------------------------------------------------------------------------------- MetaImage


def _check_metaimage(
    path: str, head: bytes, size: int, check_size: Callable[[int], None]
) -> ClaimedData:
    found = re.search(rb"(?m)^[ \t]*ElementDataFile[ \t]*[=:][^\n]*(\n|$)", head)
    end = found.end() if found else -1
    lines = _header_lines(path, head, end, "MetaImage")
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        match = re.match(r"\s*([^=:]*?)\s*[=:]\s*(.*)$", line)
        if match is None:
            raise _fail(path, "header line", line[:80], "expected 'Key = Value'")
        key, value = match.groups()
        if key.lower() in (k.lower() for k in fields):
            raise _fail(path, key, value, "the field is given twice")
        fields[key] = value.strip()
    shape = _check_grid(path, fields, ("NDims", "DimSize"))
    ndim = len(shape)
    dtype = _MET_DTYPE.get(fields.get("ElementType", ""))
    if dtype is None:
        raise _fail(path, "ElementType", fields.get("ElementType"), "not a real scalar type")
    channels = fields.get("ElementNumberOfChannels", "1")
    if channels != "1":
        raise ValueError(
            f"{path!r} holds {channels} components per voxel (ElementNumberOfChannels "
            f"{channels!r}: an RGB or vector image); only single-valued (scalar) volumes can "
            "be resampled"
        )
    flags = {field: _met_flag(path, fields, field) for field in _MET_FLAGS}
    if not flags["BinaryData"]:
        raise _fail(path, "BinaryData", fields["BinaryData"], "text voxel data is not read")
    for field in _MET_PER_AXIS:
        if field in fields:
            _floats(path, field, fields[field], ndim)
    for field in _MET_MATRIX:
        if field in fields:
            _floats(path, field, fields[field], ndim * ndim)
    for field in ("HeaderSize", "CompressedDataSize"):
        if field in fields and _integers(path, field, fields[field], 1)[0] < -1:
            raise _fail(path, field, fields[field], "must not be negative")
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes)
    parts = _met_parts(path, fields["ElementDataFile"], lines, head, end)
    what = f"DimSize {shape} of {fields['ElementType']}"
    compressed = flags["CompressedData"]
    skip = int(fields.get("HeaderSize", "0"))
    if compressed:
        limit = int(fields["CompressedDataSize"]) if "CompressedDataSize" in fields else None
        located = [(p, o + max(skip, 0)) for p, o in parts]
        check_inflated_bytes(path, what, nbytes, located, "zlib", limit or None)
        return ClaimedData(path, shape, dtype, nbytes)
    share = nbytes // len(parts)
    for name, offset in parts:
        held = os.path.getsize(name) - offset - max(skip, 0)
        check_raw_bytes(path, f"{what}, in {name!r},", share, held)
    return ClaimedData(path, shape, dtype, nbytes)


def _met_flag(path: str, fields: dict[str, str], field: str) -> bool:
    """A MetaImage True / False field (absent: the default, True for BinaryData only)."""
    value = fields.get(field, "True" if field == "BinaryData" else "False")
    if value.lower() not in ("true", "false"):
        raise _fail(path, field, value, "expected True or False")
    return value.lower() == "true"


def _met_parts(
    path: str, value: str, lines: list[str], head: bytes, end: int
) -> list[tuple[str, int]]:
    """Where the MetaImage voxel data lies: (file, offset) per data file."""
    if value == "LOCAL":
        return [(path, end)]
    words = value.split()
    if words[:1] == ["LIST"]:
        tail = head[end:].decode("utf-8", errors="replace").splitlines()
        names = [name.strip() for name in tail if name.strip()]
        if not names:
            raise _fail(path, "ElementDataFile", value, "LIST names no file")
        return [(data_file_inside(path, name, "ElementDataFile"), 0) for name in names]
    if len(words) > 1 and ("%" in words[0] or words[-1].lstrip("-").isdigit()):
        raise _fail(path, "ElementDataFile", value, "printf-style file patterns are not read")
    return [(data_file_inside(path, value, "ElementDataFile"), 0)]
