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
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, TextIO

from napari_resample.io.names import volume_suffix

#: File name of the manifest in the output folder.
MANIFEST_NAME = "resampling_manifest.jsonl"
#: Bytes hashed at each end of an input for its fingerprint, and the blocks sampled between.
_FINGERPRINT_EDGE = 1 << 16
_FINGERPRINT_BLOCK = 1 << 12
_FINGERPRINT_BLOCKS = 16
#: Bytes read at a time when hashing whole files.
_HASH_CHUNK = 1 << 20


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The latest record of each input in a manifest (absent file: none). Lines that do not
    parse (half a line left by a killed run) are ignored."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return latest
    with fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("input"), str):
                latest[record["input"]] = record
    return latest


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
    stat = os.stat(path)
    digest = hashlib.blake2b(digest_size=16)
    size = stat.st_size
    with open(path, "rb") as fh:
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
    return {"size": size, "mtime_ns": stat.st_mtime_ns, "sample_hash": digest.hexdigest()}


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
    for name, stat in _folder_files(folder):
        total += stat.st_size
        latest = max(latest, stat.st_mtime_ns)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        with open(os.path.join(folder, name), "rb") as fh:
            digest.update(fh.read(_FINGERPRINT_BLOCK))
            if stat.st_size > 2 * _FINGERPRINT_BLOCK:
                fh.seek(stat.st_size - _FINGERPRINT_BLOCK)
            digest.update(fh.read(_FINGERPRINT_BLOCK))
    return {"size": total, "mtime_ns": latest, "sample_hash": digest.hexdigest()}


def file_sha256(path: str) -> str:
    """SHA-256 of a whole file, as hex; for a folder (a DICOM series), SHA-256 of the lines
    ``<name> <size> <SHA-256 of the file>`` of its files (see the module docstring)."""
    if os.path.isdir(path):
        lines = hashlib.sha256()
        for name, stat in _folder_files(path):
            file_digest = file_sha256(os.path.join(path, name))
            lines.update(f"{name}\0{stat.st_size}\0{file_digest}\n".encode())
        return lines.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
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
        stat = os.stat(output)
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (
        record.get("output_size"),
        record.get("output_mtime_ns"),
    )


def manifest_problems(output_path: str | os.PathLike[str]) -> list[str]:
    """One sentence per input or output that no longer matches its record (changed or gone);
    see :func:`napari_resample.verify_dataset`."""
    manifest = os.path.join(os.fspath(output_path), MANIFEST_NAME)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {os.fspath(output_path)!r}")
    problems: list[str] = []
    for record in read_manifest(manifest).values():
        if record.get("status") != "done":
            continue
        for role in ("input", "output"):
            path = record[role]
            present = os.path.isfile(path) or (role == "input" and os.path.isdir(path))
            if not present:
                problems.append(f"{role} missing: {path}")
            elif file_sha256(path) != record.get(f"{role}_sha256"):
                problems.append(f"{role} changed since it was resampled: {path}")
    return problems
