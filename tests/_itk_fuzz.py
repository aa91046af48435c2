"""A NRRD and MetaImage header fuzzer, run as a script in a child process.

Valid small files (a ``.nrrd`` / ``.nhdr`` and a ``.mha`` / ``.mhd``, 4 x 3 x 2 int16, with a
detached data file beside the detached headers) are mutated line by line: a field's value
replaced by an edge value (out-of-range dimensions, printf patterns, paths out of the folder,
devices, non-numbers, other encodings and types), a line dropped, doubled or added, bytes
flipped, the data cut short. Each case goes to :func:`napari_resample.io.formats.load_volume`.

The contract: only ValueError, OSError or MemoryError (documented) or a volume; the script
prints one JSON line with the counts and the undocumented exceptions, and exits 0. A process
death (signal) or a hang shows to its caller as a negative return code or a timeout.

DICOM folders (``dicom`` as a 4th argument) are copies of pydicom's 5-slice CT test series
with one or two slices edited by pydicom: sizes, bits, samples and frames claimed, orientation
and position changed or garbled, a slice truncated, duplicated or removed.

With ``napari`` as an argument, each case goes through the napari reader instead, in the same
process (what napari does when a user drops the file): it must never raise.

Usage: ``python _itk_fuzz.py CASES SEED FOLDER [dicom] [napari]``
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

DATA = bytes(range(48))  # 4 x 3 x 2 int16
NRRD = [
    "NRRD0004",
    "type: short",
    "dimension: 3",
    "space: left-posterior-superior",
    "sizes: 4 3 2",
    "space directions: (1,0,0) (0,1,0) (0,0,2.5)",
    "kinds: domain domain domain",
    "endian: little",
    "encoding: raw",
    "space origin: (0,0,0)",
]
MHA = [
    "ObjectType = Image",
    "NDims = 3",
    "BinaryData = True",
    "BinaryDataByteOrderMSB = False",
    "CompressedData = False",
    "TransformMatrix = 1 0 0 0 1 0 0 0 1",
    "Offset = 0 0 0",
    "ElementSpacing = 1 1 2.5",
    "DimSize = 4 3 2",
    "ElementType = MET_SHORT",
]
VALUES = [
    "-1", "0", "1", "2", "4", "65535", "1000000000", "18446744073709551617", "3.5", "nan",
    "inf", "-1e308", "abc", "", "%s%n", "%n%n%n%n", "%s", "../x.raw", "/etc/passwd",
    "/dev/zero", "/proc/self/environ", "LIST", "LIST 2D", "LOCAL", "data.raw", "4 3",
    "4 3 2 1", "4 3 2 2", "1 2 3 4 5 6 7 8 9", "-4 3 2", "(1,0,0) (0,1,0)", "(nan,0,0)",
    "gzip", "raw", "bzip2", "hex", "ascii", "True", "False", "MET_DOUBLE", "MET_STRING",
    "block", "big", "little", "x%03d.raw 1 4 1", "data.raw 0 3 1",
]  # fmt: skip
EXTRA_LINES = {
    "nrrd": ["data file: data.raw", "byte skip: -1", "line skip: 3", "encoding: gzip",
             "space dimension: 4", "datafile: LIST", "data.raw", "dimension: 4"],
    "mha": ["ElementNumberOfChannels = 3", "HeaderSize = -1", "HeaderSize = 100000",
            "CompressedDataSize = 5", "CompressedData = True", "NDims = 2",
            "ElementDataFile = data.raw"],
}  # fmt: skip


def mutate(lines: list[str], sep: str, extra: list[str], rng: random.Random) -> list[str]:
    """*lines* with up to three random mutations (none in one case of five)."""
    lines = list(lines)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op = rng.random()
        n = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
        if op < 0.55 and n:
            key = lines[n].split(sep, 1)[0]
            lines[n] = f"{key}{sep}{rng.choice(VALUES)}"
        elif op < 0.65 and n:
            del lines[n]
        elif op < 0.75 and n:
            lines.insert(n, lines[n])
        else:
            lines.insert(n or 1, rng.choice(extra))
    return lines


def make_case(folder: Path, n: int, rng: random.Random) -> Path:
    """Write fuzz case *n* in *folder* (emptied) and return the file to read."""
    for old in folder.iterdir():
        old.unlink()
    kind = rng.choice(["nrrd", "nhdr", "mha", "mhd"])
    nrrd = kind in ("nrrd", "nhdr")
    sep = ": " if nrrd else " = "
    lines = mutate(NRRD if nrrd else MHA, sep, EXTRA_LINES["nrrd" if nrrd else "mha"], rng)
    data = DATA[: rng.choice([len(DATA), len(DATA), 10, 0])]
    (folder / "data.raw").write_bytes(data)
    if kind == "nhdr":
        lines.append("data file: data.raw")
    elif kind == "mhd":
        lines.append("ElementDataFile = data.raw")
    elif kind == "mha":
        lines.append("ElementDataFile = LOCAL")
    text = "\n".join(lines).encode() + (b"\n\n" if nrrd else b"\n")
    if rng.random() < 0.15:  # flipped bytes in the header
        raw = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        text = bytes(raw)
    path = folder / f"case{n}.{kind}"
    path.write_bytes(text + (data if kind in ("nrrd", "mha") else b""))
    return path


DICOM_EDITS = {
    "Rows": [0, 1, 15, 17, 12000, 65535],
    "Columns": [0, 1, 15, 12000],
    "BitsAllocated": [0, 1, 8, 12, 32, 64],
    "SamplesPerPixel": [0, 3, 255],
    "NumberOfFrames": [0, 2, 1000],
    "ImageOrientationPatient": [[0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0.01], [0, 0, 0, 0, 0, 0]],
    "ImagePositionPatient": [[0, 0, 0], [-72.2, -143, 6.2625], [1e300, 0, 0]],
    "PixelSpacing": [[0, 0], [-1, 1], [1e-30, 1]],
    "RescaleSlope": ["0", "1e308", "0.5"],
}


def make_dicom_case(folder: Path, n: int, rng: random.Random) -> Path:
    """Write DICOM fuzz case *n* (an edited copy of the CT5N test series) under *folder*."""
    import shutil

    import pydicom

    source = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    source = source / "98892001" / "CT5N"
    case = folder / f"dicom{n}"
    shutil.rmtree(folder, ignore_errors=True)
    case.mkdir(parents=True)
    files = sorted(source.iterdir())
    for _ in range(rng.randint(1, 2)):
        victim = rng.randrange(len(files))
        op = rng.random()
        if op < 0.7:
            ds = pydicom.dcmread(files[victim])
            field = rng.choice(list(DICOM_EDITS))
            setattr(ds, field, rng.choice(DICOM_EDITS[field]))
            ds.save_as(case / files[victim].name)
        elif op < 0.85:
            raw = files[victim].read_bytes()
            (case / files[victim].name).write_bytes(raw[: rng.randrange(len(raw))])
        else:
            shutil.copy(files[victim], case / f"copy_{files[victim].name}")
    for path in files:
        if not (case / path.name).exists() and rng.random() > 0.05:
            shutil.copy(path, case / path.name)
    return case


def run(cases: int, seed: int, folder: Path, dicom: bool = False, napari: bool = False) -> dict:
    """Counts of the outcomes of *cases* fuzz cases: through ``load_volume``, or with *napari*
    through the napari reader in this process (``get_reader``, then its reader), which must
    return layers or ``[(None,)]`` and never raise."""
    from napari_resample.io.formats import load_volume
    from napari_resample.plugin.reader import get_reader

    rng = random.Random(seed)
    counts: dict = {"read": 0, "refused": 0, "undocumented": []}
    for n in range(cases):
        path = make_dicom_case(folder, n, rng) if dicom else make_case(folder, n, rng)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # uneven slices: read, noted
                if napari:
                    reader = get_reader(str(path))
                    layers = reader(str(path)) if reader is not None else [(None,)]
                    read = layers[0][0] is not None
                    counts["read" if read else "refused"] += 1
                    continue
                load_volume(path)
            counts["read"] += 1
        except (ValueError, OSError, MemoryError):
            if napari:  # the reader shows errors as notifications: raising is a bug
                raise
            counts["refused"] += 1
        except Exception as exc:  # the contract is broken: report it
            counts["undocumented"].append(f"{path.name}: {exc!r}")
    return counts


if __name__ == "__main__":
    cases, seed, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    modes = sys.argv[4:]
    print(json.dumps(run(cases, seed, folder, "dicom" in modes, "napari" in modes)))
