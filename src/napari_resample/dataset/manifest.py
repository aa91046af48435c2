"""The manifest of a dataset run, and the fingerprints and hashes that prove a file done.

The manifest, ``<output_path>/resampling_manifest.jsonl``, gets one JSON line per file finished
(done or failed), appended as each file finishes. A rerun skips a file only when its latest line
says ``done`` with the same parameters and output path, the input still has the recorded
fingerprint (size, modification time, and a hash of its first and last 64 KiB and of 16 blocks
of 4 KiB spread over the file), and the output still has the recorded size and modification
time. The fingerprint is cheap (it reads about 200 KiB of each input) and catches any change
that goes through the file system's usual ways; a change that keeps the size and restores the
modification time and misses the sampled blocks would be missed: the full SHA-256 of every input
and output is recorded as well, and :func:`napari_resample.verify_dataset` checks them all.

A DICOM folder's fingerprint and SHA-256 are over its files (not sub-folders; hidden files and
volume files, which are never part of a series, left out): their sorted names, sizes and
modification times and, for the fingerprint, the first and last 4 KiB of each; its size is their
total, its modification time the latest.

A NIfTI-Zarr result (``.nii.zarr``, a folder of chunk files in sub-folders) is described the
same way over every file below it (:func:`output_stat`): its size is their total, its
modification time the latest, and its SHA-256 that of the lines
``<relative path> <size> <SHA-256 of the file>`` in sorted order.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import warnings
from typing import Any, TextIO

from napari_resample.io.atomic import write_error
from napari_resample.io.names import is_zarr_name, volume_suffix

#: File name of the manifest in the output folder.
MANIFEST_NAME = "resampling_manifest.jsonl"
#: Bytes hashed at each end of an input for its fingerprint, and the blocks sampled between.
_FINGERPRINT_EDGE = 1 << 16
_FINGERPRINT_BLOCK = 1 << 12
_FINGERPRINT_BLOCKS = 16
#: Bytes read at a time when hashing whole files.
_HASH_CHUNK = 1 << 20


def read_manifest(path: str | os.PathLike[str]) -> dict[RecordKey, dict[str, Any]]:
    """The latest record of each input in a manifest (absent file: none), by
    :func:`record_key`.

    A last line without its end (left by a killed run) is ignored; any other line that is not
    a record of this package (not UTF-8, not JSON, a record without its input, status or, when
    done, its output) is ignored with a ``UserWarning`` naming its number.

    Raises
    ------
    OSError
        If *path* is a symbolic link (never followed: see :func:`open_manifest`) or cannot be
        read.
    """
    latest: dict[RecordKey, dict[str, Any]] = {}
    _refuse_link(os.fspath(path))
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return latest
    with fh:
        lines = fh.read().split(b"\n")
    for number, raw in enumerate(lines[:-1], start=1):  # lines[-1]: after the last "\n"
        record, problem = _parse_line(raw)
        if record is not None:
            latest[record_key(record)] = record
        elif problem:
            warnings.warn(
                f"{os.fspath(path)}: line {number} is ignored: {problem}", UserWarning, 2
            )
    return latest


#: What tells the records of a manifest apart: the input and the DICOM series read from it.
RecordKey = tuple[str, "str | None"]
#: The statuses of a record: done, failed, not an input (skipped), or found changed by a
#: verification (stale: the next run redoes the file).
STATUSES = ("done", "failed", "skipped", "stale")


def record_key(record: dict[str, Any]) -> RecordKey:
    """The input and series of *record* (see :class:`napari_resample.dataset.job.Job.key`)."""
    params = record.get("params")
    series = params.get("series") if isinstance(params, dict) else None
    return (record["input"], series if isinstance(series, str) else None)


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The record of one manifest line, or None and why ("" for a blank line)."""
    if not raw.strip():
        return None, ""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError:
        return None, "not JSON"
    if not isinstance(record, dict):
        return None, f"not a record but {type(record).__name__}"
    if not isinstance(record.get("input"), str):
        return None, "no input path"
    if record.get("status") not in STATUSES:
        return None, f"unknown status {record.get('status')!r}"
    if record["status"] in ("done", "stale") and not isinstance(record.get("output"), str):
        return None, "no output path"
    if "params" in record and not isinstance(record["params"], dict | type(None)):
        return None, "parameters that are not a mapping"
    return record, ""


def _refuse_link(manifest: str) -> None:
    if os.path.islink(manifest):
        raise OSError(
            errno.ELOOP,
            f"the manifest {manifest!r} is a symbolic link; it is never followed: remove it "
            "or give another output folder",
        )


def open_manifest(manifest: str) -> TextIO:
    """*manifest* opened for appending (created if missing), never through a symbolic link.

    Raises
    ------
    OSError
        If it is a symbolic link (ELOOP), or cannot be written (the message names the folder:
        :func:`napari_resample.io.atomic.write_error`).
    """
    _refuse_link(manifest)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(manifest, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse_link(manifest)
        raise write_error(exc, manifest) from exc
    # ASCII JSON (ensure_ascii): a name that is not UTF-8 keeps its undecodable bytes as the
    # \udcXX escapes os.fsdecode gives them, and the file stays valid UTF-8.
    return os.fdopen(fd, "a", encoding="utf-8")


def append_record(log: TextIO, record: dict[str, Any]) -> None:
    """Write *record* as one line of *log* (ASCII JSON, keys sorted) and flush it."""
    log.write(json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n")
    log.flush()


def end_line(log: TextIO, manifest: str) -> None:
    """Start a fresh line if a killed run left half a line at the end of the manifest."""
    with open(manifest, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            log.write("\n")


def input_fingerprint(path: str) -> dict[str, Any]:
    """Size, modification time and a hash of sampled blocks: cheap to compute (about 200 KiB
    read per file; 8 KiB per file of a DICOM folder), enough to tell a changed input in
    practice. See the module docstring for its limits and for folders."""
    if os.path.isdir(path):
        return _folder_fingerprint(path)
    fh = open_regular(path)
    info = os.fstat(fh.fileno())
    digest = hashlib.blake2b(digest_size=16)
    size = info.st_size
    with fh:
        if size <= 2 * _FINGERPRINT_EDGE + _FINGERPRINT_BLOCKS * _FINGERPRINT_BLOCK:
            digest.update(fh.read())
        else:
            digest.update(fh.read(_FINGERPRINT_EDGE))
            span = size - 2 * _FINGERPRINT_EDGE - _FINGERPRINT_BLOCK
            for n in range(_FINGERPRINT_BLOCKS):
                fh.seek(_FINGERPRINT_EDGE + span * n // (_FINGERPRINT_BLOCKS - 1))
                digest.update(fh.read(_FINGERPRINT_BLOCK))
            fh.seek(size - _FINGERPRINT_EDGE)
            digest.update(fh.read(_FINGERPRINT_EDGE))
    return {"size": size, "mtime_ns": info.st_mtime_ns, "sample_hash": digest.hexdigest()}


def open_regular(path: str) -> Any:
    """*path* opened for reading in binary, if it is a regular file (symbolic links followed).

    A FIFO or a device is never read (opening does not block: ``O_NONBLOCK``).

    Raises
    ------
    OSError
        If it is not a regular file (EINVAL, naming its kind) or cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"not a regular file, never read: {path!r}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _folder_files(folder: str) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of the files of a DICOM folder that can belong to a series, sorted."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or volume_suffix(entry.name) is not None:
                continue
            if entry.is_file():
                found.append((entry.name, entry.stat()))
    return sorted(found, key=lambda item: item[0])


def _folder_fingerprint(folder: str) -> dict[str, Any]:
    digest = hashlib.blake2b(digest_size=16)
    total = latest = 0
    # a NIfTI-Zarr input: every file below it, by name, size and time (its chunks are many:
    # none is read); a DICOM folder: its files, and the first and last 4 KiB of each
    zarr = is_zarr_name(folder)
    for name, info in _tree_files(folder) if zarr else _folder_files(folder):
        total += info.st_size
        latest = max(latest, info.st_mtime_ns)
        digest.update(os.fsencode(name) + f"\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
        if zarr:
            continue
        with open_regular(os.path.join(folder, name)) as fh:
            digest.update(fh.read(_FINGERPRINT_BLOCK))
            if info.st_size > 2 * _FINGERPRINT_BLOCK:
                fh.seek(info.st_size - _FINGERPRINT_BLOCK)
            digest.update(fh.read(_FINGERPRINT_BLOCK))
    return {"size": total, "mtime_ns": latest, "sample_hash": digest.hexdigest()}


def _tree_files(folder: str) -> list[tuple[str, os.stat_result]]:
    """``(relative path, stat)`` of every regular file below a NIfTI-Zarr *folder*, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                found.append((os.path.relpath(path, folder), info))
    return sorted(found, key=lambda item: item[0])


def output_stat(path: str) -> tuple[int, int]:
    """``(size, modification time in ns)`` of a result: its own for a file; for a NIfTI-Zarr
    folder the total size and the latest time of the files below it.

    Raises
    ------
    OSError
        If *path* is gone.
    """
    if is_zarr_name(path) and os.path.isdir(path):
        files = _tree_files(path)
        return (
            sum(info.st_size for _, info in files),
            max((info.st_mtime_ns for _, info in files), default=0),
        )
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def file_sha256(path: str) -> str:
    """SHA-256 of a whole file, as hex; for a folder (a DICOM series), SHA-256 of the lines
    ``<name> <size> <SHA-256 of the file>`` of its files, and for a NIfTI-Zarr folder of
    every file below it by relative path (see the module docstring)."""
    if is_zarr_name(path) and os.path.isdir(path):
        lines = hashlib.sha256()
        for name, info in _tree_files(path):
            file_digest = file_sha256(os.path.join(path, name))
            lines.update(os.fsencode(name) + f"\0{info.st_size}\0{file_digest}\n".encode())
        return lines.hexdigest()
    if os.path.isdir(path):
        lines = hashlib.sha256()
        for name, info in _folder_files(path):
            file_digest = file_sha256(os.path.join(path, name))
            lines.update(os.fsencode(name) + f"\0{info.st_size}\0{file_digest}\n".encode())
        return lines.hexdigest()
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def still_done(
    record: dict[str, Any], params: dict[str, Any], output: str, fingerprint: dict[str, Any]
) -> bool:
    """Whether *record* proves a file done with *params* into *output*: the same parameters,
    the input still has *fingerprint* and the output the recorded size and time."""
    if record.get("status") != "done" or record.get("params") != params:
        return False
    if record.get("output") != output:
        return False
    recorded = {
        "size": record.get("input_size"),
        "mtime_ns": record.get("input_mtime_ns"),
        "sample_hash": record.get("input_sample_hash"),
    }
    if recorded != fingerprint:
        return False
    try:
        size, mtime_ns = output_stat(output)
    except OSError:
        return False
    return (size, mtime_ns) == (record.get("output_size"), record.get("output_mtime_ns"))


def verify_manifest(output_path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """Re-hash every input and output that the manifest of *output_path* records as done; see
    :func:`napari_resample.verify_dataset`.

    A file whose input or output no longer matches gets a ``stale`` record appended, so that
    the next run redoes it (its cheap check, size and modification time, could miss a change
    that the full hash sees); a file found stale by an earlier verification is reported again
    until a run redoes it.

    Returns
    -------
    int
        The number of files checked (done or stale).
    list of str
        One sentence per mismatch: an input or output changed or gone.
    """
    manifest = os.path.join(os.fspath(output_path), MANIFEST_NAME)
    if not os.path.lexists(manifest):
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {os.fspath(output_path)!r}")
    records = [r for r in read_manifest(manifest).values() if r["status"] in ("done", "stale")]
    problems: list[str] = []
    stale: list[dict[str, Any]] = []
    for record in records:
        if record["status"] == "stale":
            problems.append(f"{record.get('error')} (found earlier; the next run redoes it)")
            continue
        found = _record_problems(record)
        if found:
            problems.extend(found)
            stale.append({**record, "status": "stale", "error": "; ".join(found)})
    if stale:
        try:
            with open_manifest(manifest) as log:
                end_line(log, manifest)
                for record in stale:
                    append_record(log, record)
        except OSError as exc:
            warnings.warn(
                f"the mismatches could not be recorded ({exc}): a run with --no-resume "
                "(resume=False) redoes the files",
                UserWarning,
                2,
            )
    return len(records), problems


def _record_problems(record: dict[str, Any]) -> list[str]:
    """The mismatches of a done *record*: its input, its output, or both."""
    problems = []
    for role in ("input", "output"):
        path = record[role]
        present = os.path.isfile(path) or (
            os.path.isdir(path) and (role == "input" or is_zarr_name(path))
        )
        if not present:
            problems.append(f"{role} missing: {path}")
            continue
        try:
            digest = file_sha256(path)
        except OSError as exc:
            problems.append(f"{role} cannot be read ({exc.strerror or exc}): {path}")
            continue
        if digest != record.get(f"{role}_sha256"):
            problems.append(f"{role} changed since it was resampled: {path}")
    return problems
