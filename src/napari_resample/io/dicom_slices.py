"""The slices of a DICOM series, each header checked before GDCM reads a pixel.

GDCM's series reader trusts its files: it allocates rows x columns x slices from the first
header, stacks slices whatever their orientation, and places unevenly spaced slices at their
average step. Before it reads a pixel, :func:`napari_resample.io.formats.load_volume` reads
every slice's header
(SimpleITK's ``ReadImageInformation``: tags, no pixels) and refuses, with a ValueError naming
the folder:

- a slice that cannot be read, or whose pixel data is shorter than its rows x columns x bits
  (uncompressed transfer syntaxes; compressed ones must not claim more than
  :data:`~napari_resample.io.gzip.DEFLATE_MAX_RATIO` times their size): damaged or truncated;
- slices of different sizes, or whose orientations (ImageOrientationPatient) differ: they are
  not one volume (the message gives the two orientations);
- several slices without a position (ImagePositionPatient), or two at the same position
  (a duplicated slice);
- a volume whose voxels (as SimpleITK returns them, rescaled) do not fit ``max_memory``.

Slices that are unevenly spaced (a gap, a missing slice) are read, with a UserWarning naming
the folder, the largest gap and the typical step. SimpleITK's own C++ warnings are switched off
while it reads (:class:`napari_resample.io.dicom.quiet_itk`); this module says it instead.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

import numpy as np

from napari_resample.io.dicom import is_dicom_head, quiet_itk
from napari_resample.io.gzip import DEFLATE_MAX_RATIO

#: Transfer syntaxes whose pixel data is stored uncompressed (implicit / explicit VR little
#: endian, explicit big endian).
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
#: Largest difference of two direction cosines still taken as the same orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Largest deviation of ImageOrientationPatient from two orthogonal unit vectors.
ORTHONORMAL_TOLERANCE = 1e-3
#: Largest pixel spacing or position coordinate, mm (10 km: anything beyond is damage).
MAX_COORDINATE = 1e7
#: Relative deviation of a slice step from the typical one that counts as uneven spacing.
SPACING_TOLERANCE = 0.01
#: Bytes per voxel of SimpleITK's pixel types, by name.
_ITEMSIZE = {"8": 1, "16": 2, "32": 4, "64": 8}


class SliceInfo(NamedTuple):
    """What one file's header says about its slice."""

    path: str
    size: tuple[int, ...]
    itemsize: int
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    stored_bytes: int


def read_slice_info(path: str, folder: str) -> SliceInfo:
    """The header of one DICOM file (no pixels), refused when it cannot be read or holds fewer
    pixel bytes than it claims."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ValueError(
            f"a slice of the DICOM series in {folder!r} cannot be read (damaged file?): {path!r}"
        ) from exc
    size = tuple(int(n) for n in reader.GetSize())
    # SimpleITK's pixel type ("16-bit signed integer"), widened when the slice is rescaled
    width = _ITEMSIZE.get(sitk.GetPixelIDValueAsString(reader.GetPixelID()).split("-")[0], 8)
    components = int(reader.GetNumberOfComponents())

    def tag(key: str) -> str | None:
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None

    stored = _stored_bytes(tag, size, components)
    _check_pixel_bytes(path, folder, stored)
    _check_slice_geometry(path, folder, tag)
    return SliceInfo(
        path,
        size,
        width * components,
        _numbers(tag("0020|0037"), 6),
        _numbers(tag("0020|0032"), 3),
        stored,
    )


def _check_slice_geometry(path: str, folder: str, tag: Any) -> None:
    """Refuse a slice whose pixel spacing, orientation or position cannot be a geometry (GDCM
    and ITK would compute with them and print their own complaints)."""
    problem = None
    spacing, cosines, position = tag("0028|0030"), tag("0020|0037"), tag("0020|0032")
    if spacing is not None:
        values = _numbers(spacing, 2)
        if values is None or not all(0 < v < MAX_COORDINATE for v in values):
            problem = f"PixelSpacing {spacing!r}"
    if cosines is not None:
        values = _numbers(cosines, 6)
        if values is None or not _orthonormal(np.asarray(values)):
            problem = f"ImageOrientationPatient {cosines!r} (not two orthogonal unit vectors)"
    if position is not None:
        values = _numbers(position, 3)
        if values is None or not all(abs(v) < MAX_COORDINATE for v in values):
            problem = f"ImagePositionPatient {position!r}"
    if problem is not None:
        raise ValueError(
            f"a slice of the DICOM series in {folder!r} has an impossible {problem}: {path!r}"
        )


def _orthonormal(cosines: np.ndarray) -> bool:
    row, col = cosines[:3], cosines[3:]
    return bool(
        abs(np.linalg.norm(row) - 1) < ORTHONORMAL_TOLERANCE
        and abs(np.linalg.norm(col) - 1) < ORTHONORMAL_TOLERANCE
        and abs(np.dot(row, col)) < ORTHONORMAL_TOLERANCE
    )


def _numbers(value: str | None, count: int) -> tuple[float, ...] | None:
    """A multi-valued DICOM decimal string, or None when absent or not *count* numbers."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split("\\"))
    except ValueError:
        return None
    return numbers if len(numbers) == count and np.all(np.isfinite(numbers)) else None


def _stored_bytes(tag: Any, size: tuple[int, ...], components: int) -> int:
    """Bytes of pixel data the header claims: rows x columns x frames x samples x bits."""
    try:
        bits = int(tag("0028|0100") or 16)
    except ValueError:
        bits = 16
    return int(np.prod(size, dtype=np.int64)) * components * max(bits, 1) // 8


def _check_pixel_bytes(path: str, folder: str, stored: int) -> None:
    held = os.path.getsize(path)
    syntax = transfer_syntax(path)
    compressed = syntax is not None and syntax not in _UNCOMPRESSED
    bound = held * DEFLATE_MAX_RATIO if compressed else held
    if stored > bound:
        how = f"at most {bound} bytes compressed" if compressed else f"only {held} bytes"
        raise ValueError(
            f"a slice of the DICOM series in {folder!r} claims {stored} bytes of pixel data "
            f"but the file holds {how} (truncated or damaged file): {path!r}"
        )


def transfer_syntax(path: str) -> str | None:
    """The TransferSyntaxUID (0002,0010) of a DICOM Part 10 file, None without a file meta
    group (such files are implicit VR little endian: uncompressed)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 2:
            return None
        vr = head[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            (length,) = struct.unpack_from("<I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            start = pos + 8
        if element == 0x0010:
            return head[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return None


def check_no_slice_dropped(folder: str, uid: str, files: list[str]) -> None:
    """Refuse the series *uid* when a file of the folder belongs to it (by its
    SeriesInstanceUID, read here) but GDCM left it out of *files*: it could not parse it (a
    truncated or damaged slice), and the series would be read with a gap."""
    listed = {os.path.realpath(f) for f in files}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or os.path.realpath(entry.path) in listed:
                continue
            try:
                if not entry.is_file() or sniff_series_uid(entry.path) != uid:
                    continue
            except OSError:
                continue
            raise ValueError(
                f"a slice of the DICOM series in {folder!r} cannot be read (truncated or "
                f"damaged file): {entry.path!r}"
            )


def sniff_series_uid(path: str) -> str | None:
    """The SeriesInstanceUID (0020,000E) of a DICOM file read from its first 64 KiB without a
    DICOM library (little endian, explicit or implicit VR), None when not found."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not is_dicom_head(head):
        return None
    at = head.find(b"\x20\x00\x0e\x00")
    if at < 0 or at + 8 > len(head):
        return None
    if head[at + 4 : at + 6] == b"UI":
        (length,) = struct.unpack_from("<H", head, at + 6)
    else:
        (length,) = struct.unpack_from("<I", head, at + 4)
    value = head[at + 8 : at + 8 + min(length, 64)]
    return value.rstrip(b"\x00 ").decode("ascii", "replace")


def check_slices(folder: str, slices: list[SliceInfo]) -> list[str]:
    """Refuse slices that are not one volume; the warnings their spacing deserves.

    Returns
    -------
    list of str
        A sentence for slices that are not evenly spaced (naming the folder, the largest gap
        and the typical step), else empty.

    Raises
    ------
    ValueError
        Naming the folder and the two files: sizes or orientations that differ, a multi-slice
        series without positions, two slices at the same position.
    """
    first = slices[0]
    for other in slices[1:]:
        if other.size != first.size:
            raise ValueError(
                f"the slices of the DICOM series in {folder!r} differ in size: {first.size} in "
                f"{first.path!r}, {other.size} in {other.path!r}; not one volume"
            )
        if (first.orientation is None) != (other.orientation is None) or (
            first.orientation is not None
            and other.orientation is not None
            and np.max(np.abs(np.subtract(first.orientation, other.orientation)))
            > ORIENTATION_TOLERANCE
        ):
            raise ValueError(
                f"the slices of the DICOM series in {folder!r} have different orientations "
                f"(ImageOrientationPatient {_cosines(first.orientation)} in {first.path!r}, "
                f"{_cosines(other.orientation)} in {other.path!r}): not one volume"
            )
    if len(slices) == 1:
        return []
    if first.orientation is None or any(s.position is None for s in slices):
        missing = next(s.path for s in slices if s.position is None or s.orientation is None)
        raise ValueError(
            f"the DICOM series in {folder!r} has {len(slices)} slices but no position "
            f"(ImagePositionPatient / ImageOrientationPatient) in {missing!r}: their order and "
            "spacing are unknown"
        )
    return _spacing_notes(folder, slices, np.asarray(first.orientation))


def _cosines(orientation: tuple[float, ...] | None) -> str:
    return "none" if orientation is None else "[" + ", ".join(f"{v:g}" for v in orientation) + "]"


def _spacing_notes(folder: str, slices: list[SliceInfo], cosines: np.ndarray) -> list[str]:
    normal = np.cross(cosines[:3], cosines[3:])
    along = np.array([float(np.dot(s.position, normal)) for s in slices])  # type: ignore[arg-type]
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    typical = float(np.median(steps))
    for n, step in enumerate(steps):
        if step <= max(1e-3 * typical, 1e-4):
            a, b = slices[order[n]].path, slices[order[n + 1]].path
            raise ValueError(
                f"two slices of the DICOM series in {folder!r} lie at the same position "
                f"({along[order[n]]:g} mm along the slice normal): {a!r} and {b!r} "
                "(a duplicated slice?)"
            )
    worst = int(np.argmax(np.abs(steps - typical)))
    if abs(steps[worst] - typical) <= SPACING_TOLERANCE * typical:
        return []
    return [
        f"the slices of the DICOM series in {folder!r} are not evenly spaced: a step of "
        f"{steps[worst]:g} mm between slices {worst + 1} and {worst + 2} of {len(slices)}, "
        f"where the typical step is {typical:g} mm (a gap or a missing slice?)"
    ]
