"""Damaged gzip streams: each corruption and the message a reader must give for it (shared by
``test_io.py`` and ``test_niistream.py``)."""

from __future__ import annotations

import gzip


def _flip(blob: bytes, start: int, stop: int) -> bytes:
    return blob[:start] + bytes(b ^ 0xFF for b in blob[start:stop]) + blob[stop:]


def _stored_with_flipped_voxel(blob: bytes) -> bytes:
    # Level 0: the voxel bytes sit in the file as they are, so flipping one is silent to deflate;
    # only the CRC-32 can tell.
    raw = bytearray(gzip.decompress(blob))
    stored = bytearray(gzip.compress(bytes(raw), compresslevel=0, mtime=0))
    at = stored.index(bytes(raw[600:632]))  # a run of voxel bytes, found in the stored block
    stored[at + 5] ^= 0x10
    return bytes(stored)


CORRUPTIONS = {
    "crc": (lambda b: _flip(b, len(b) - 8, len(b) - 4), "CRC check failed"),
    "isize": (lambda b: _flip(b, len(b) - 4, len(b)), "length check failed"),
    "no trailer": (lambda b: b[:-8], "ends before its gzip trailer"),
    "half a trailer": (lambda b: b[:-3], "ends before its gzip trailer"),
    "trailing garbage": (lambda b: b + b"garbage!", "trailing data after the gzip stream"),
    "stored block, voxel flipped": (_stored_with_flipped_voxel, "CRC check failed"),
    "cut in the deflate data": (lambda b: b[: len(b) - 2000], "ends in the middle"),
    "deflate bytes flipped": (
        lambda b: _flip(b, len(b) // 2, len(b) // 2 + 64),
        "(corrupt deflate data|CRC check failed|length check failed)",
    ),
}
