"""DICOM series: found by GDCM, read through SimpleITK with its C++ warnings muted.

Which series a folder holds (:func:`list_dicom_series`, :func:`choose_series`), whether a folder
is one series (:func:`is_dicom_series_folder`, the rule every door asks), and the two pieces
every
SimpleITK read here shares: :class:`quiet_itk` (its C++ warnings would reach the terminal with
its build paths; we say what matters in our words) and :func:`itk_message`. The checks of each
slice before a series is read are in :mod:`napari_resample.io.dicom_slices`.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

#: DICOM tag of the series description (shown to tell series apart).
SERIES_DESCRIPTION = "0008|103e"
#: Bytes read to tell a DICOM file (:func:`is_dicom_head`).
HEAD_BYTES = 132


class DicomSeries(NamedTuple):
    """One DICOM series in a folder, as :func:`list_dicom_series` finds it."""

    uid: str
    description: str
    n_files: int


def list_dicom_series(folder: str | os.PathLike[str]) -> list[DicomSeries]:
    """The DICOM series in *folder* (not its sub-folders), as GDCM groups them.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of DicomSeries
        ``(uid, description, n_files)`` per series: its SeriesInstanceUID, SeriesDescription
        (0008|103e, "" when absent) and number of files; empty when the folder holds none.

    Raises
    ------
    FileNotFoundError
        If *folder* is not a folder.
    ValueError
        If GDCM cannot parse a file of the folder (naming the folder and GDCM's reason).
    """
    import SimpleITK as sitk

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder: {folder!r}")
    found = []
    try:
        with quiet_itk():
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
                files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
                found.append(DicomSeries(uid, _description(files[0]) if files else "", len(files)))
    except RuntimeError as exc:  # GDCM stops at the first file it cannot make sense of
        raise ValueError(
            f"cannot list the DICOM series in {folder!r}, a file is damaged: {itk_message(exc)}"
        ) from exc
    return found


def itk_message(exc: BaseException) -> str:
    """The useful line of an ITK exception (they hold the C++ file, line and a description)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith(("itk::error", "sitk::error")):
            return line.split(":", 3)[-1].strip() or line
    return lines[-1] if lines else type(exc).__name__


class quiet_itk:
    """Switch SimpleITK's C++ warnings off inside the block (back as they were after)."""

    def __enter__(self) -> None:
        import SimpleITK as sitk

        self.before = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)

    def __exit__(self, *exc: object) -> None:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(self.before)


def _description(dicom_file: str) -> str:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(dicom_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    if not reader.HasMetaDataKey(SERIES_DESCRIPTION):
        return ""
    return reader.GetMetaData(SERIES_DESCRIPTION).strip()


def describe_series(found: list[DicomSeries]) -> str:
    """One line per series, for messages and choosers: ``UID 'description' (N files)``.

    Examples
    --------
    >>> describe_series([DicomSeries("1.2.3", "T1 axial", 40)])
    "1.2.3 'T1 axial' (40 files)"
    """
    return "\n".join(
        f"{s.uid} {s.description!r} ({s.n_files} file{'s' if s.n_files != 1 else ''})"
        for s in found
    )


def choose_series(folder: str, series: str | None) -> str:
    """The SeriesInstanceUID to read from *folder*: *series*, or its only series.

    Raises
    ------
    ValueError
        No series in the folder, several and no *series*, or a *series* it does not hold.
    """
    found = list_dicom_series(folder)
    if not found:
        raise ValueError(f"no DICOM series found in the folder {folder!r}")
    if series is None:
        if len(found) > 1:
            raise ValueError(
                f"the folder {folder!r} holds {len(found)} DICOM series; choose one with "
                f"series=UID:\n{describe_series(found)}"
            )
        return found[0].uid
    if series not in {s.uid for s in found}:
        raise ValueError(
            f"no DICOM series {series!r} in the folder {folder!r}; it holds:\n"
            f"{describe_series(found)}"
        )
    return series


def is_dicom_head(head: bytes) -> bool:
    """Whether the first bytes of a file are DICOM's: the Part 10 marker ``DICM`` at byte 128,
    or, for files without the preamble, a first element of group 0008."""
    return head[128:132] == b"DICM" or head[:2] == b"\x08\x00"


def read_head(path: str) -> bytes:
    """The first :data:`HEAD_BYTES` of a regular file, opened so that a FIFO or device put in
    its place cannot block (OSError when *path* is not a regular file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)


def is_dicom_series_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether *folder* is one input, a DICOM series: **the rule of DICOM folders**.

    A folder is a DICOM series when it holds at least one DICOM file and nothing else: every
    entry whose name does not start with ``.`` is a regular file (symbolic links followed)
    that is a DICOM file (:func:`is_dicom_head`) or a ``DICOMDIR`` index. Any other folder (a
    volume file, a note, a sub-folder or a FIFO beside DICOM files) is not: one stray DICOM
    file never makes a folder of volumes a series (datasets group such loose files by series,
    :mod:`napari_resample.dataset.plan`). Every front door (the file functions, the command
    line, datasets, napari's reader) asks this one rule. Never raises.

    Examples
    --------
    >>> is_dicom_series_folder("no/such/folder")
    False
    """
    try:
        with os.scandir(folder) as scan:
            entries = [e for e in scan if not e.name.startswith(".")]
    except OSError:
        return False
    found = False
    for entry in entries:
        if entry.name.upper().startswith("DICOMDIR"):
            continue  # an index of a whole file set (no voxels)
        try:
            if not is_dicom_head(read_head(entry.path)):
                return False
        except OSError:
            return False  # a sub-folder, a FIFO, a device, an unreadable file
        found = True
    return found
