"""Thumbnails of the three mid-planes of a resampled pair, for the QC page (Pillow: JPEG for
grey images, PNG for label colours and outlines).

Every thumbnail is drawn in world orientation, the same for input and output whatever their
voxel order: of a plane's two world axes (from the affine's nearest axis codes, RAS order) the
first runs left to right and the second bottom to top, each towards its positive end. So an
axial plane shows the patient's right on the right and anterior up (the neurological
convention), a coronal plane right on the right and superior up, a sagittal plane anterior on
the right and superior up. An output whose data or affine was flipped by mistake shows flipped
beside its input.

Pixels are square millimetres (true aspect ratio, from
:meth:`~napari_resample.qc.summary.VolumeSummary.mid_spacing`), and input and output are drawn
at one scale, the input's: its longest extent in millimetres is :data:`THUMB_SIDE` pixels, so a
field of view that changed shows as a thumbnail of another size. Both are windowed alike, from
the 1st to the 99th percentile of the input's scaled mid-plane values. Label maps are drawn in
a fixed colour per label value (:func:`label_colour`), and also as outlines: each label's
boundary in its colour, transparent elsewhere (roles ``"outline_input"`` and
``"outline_output"``), for the page to lay over the paired image's thumbnails.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from nibabel.orientations import io_orientation
from numpy.typing import NDArray
from PIL import Image

from napari_resample.io.atomic import begin_temp, end_temp, make_dirs, write_error
from napari_resample.qc.model import FileQC
from napari_resample.qc.summary import MID_PLANES, VolumeSummary

#: The longest side of the input's thumbnails, in pixels (the output shares their scale).
THUMB_SIDE = 176
#: Bounds of any thumbnail side: an output whose field of view went wrong stays drawable.
MIN_SIDE, MAX_SIDE = 8, 2 * THUMB_SIDE
#: zlib level of the PNGs: fast over small (the page costs at most a few percent of a run).
PNG_LEVEL = 1
#: JPEG quality of the grey thumbnails (85: no visible artefact at thumbnail size).
JPEG_QUALITY = 85
#: Values the grey window's percentiles are taken from, at most (a display window).
WINDOW_SAMPLE = 1 << 15
#: The folder of the thumbnails inside the ``qc`` folder.
THUMBS_DIR = "thumbs"
#: Label colours (RGB), chosen by label value: distinct hues that show on grey and on black.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


def label_colour(value: int) -> tuple[int, int, int]:
    """The RGB colour of label *value* (0, the background, is black), the same in every file.

    Examples
    --------
    >>> label_colour(0), label_colour(1), label_colour(21) == label_colour(1)
    ((0, 0, 0), (230, 25, 75), True)
    """
    return (0, 0, 0) if value == 0 else PALETTE[(value - 1) % len(PALETTE)]


def render_thumbs(
    fq: FileQC, inp: VolumeSummary, out: VolumeSummary, qc_dir: str, stem: str
) -> None:
    """Write the mid-plane thumbnails of *inp* and *out* and list them in ``fq.thumbs``.

    Parameters
    ----------
    fq : FileQC
        Its ``thumbs`` gets role (``"input"``, ``"output"``, and for a label map
        ``"outline_input"``, ``"outline_output"``) -> cut (``"i"``, ``"j"``, ``"k"``) -> path of
        the picture (``.jpg`` grey, ``.png`` labels and outlines) relative to *qc_dir*; a
        cut missing from a summary's ``mids`` is left out.
    inp, out : VolumeSummary
        The input and the output; a label map when ``out.label_map`` is set.
    qc_dir : str
        The ``qc`` folder; the pictures go to its ``thumbs`` folder (created), each written under a
        temporary name and renamed into place, named ``<stem>_<role>_<cut>.jpg`` or ``.png``.
    stem : str
        Unique per file within the run (a file name's characters).

    Raises
    ------
    OSError
        When a picture cannot be written (one sentence naming the folder and the reason, as
        :func:`napari_resample.io.atomic.write_error` words it).
    """
    label_map = bool(out.label_map or inp.label_map)
    mm_per_px = _scale(inp)
    window = None if label_map else _window(inp)
    folder = os.path.join(qc_dir, THUMBS_DIR)
    make_dirs(folder, [])
    for role, summary in (("input", inp), ("output", out)):
        ornt = _orientation(summary)
        for cut in sorted(summary.mids):
            plane = _oriented(summary, cut, ornt)
            values = plane.values * summary.slope + summary.inter
            size = _size(plane, mm_per_px)
            if label_map:
                labels = _resized_labels(values, size)
                codes = _label_codes(labels)
                pictures = {
                    role: _palette_picture(codes),
                    f"outline_{role}": _palette_picture(
                        np.where(_edges(labels), codes, 0), clear=True
                    ),
                }
            else:
                pictures = {role: _grey(values, window, size)}
            for name, picture in pictures.items():
                # grey pictures as JPEG (10x faster to write than PNG, smaller); colours and
                # outlines as PNG (sharp edges, transparency)
                ext = "png" if label_map else "jpg"
                rel = f"{THUMBS_DIR}/{stem}_{name}_{cut}.{ext}"
                _save_picture(picture, os.path.join(qc_dir, rel))
                fq.thumbs.setdefault(name, {})[cut] = rel


class _Plane:
    """A mid-plane turned for display: rows top to bottom, columns left to right."""

    def __init__(self, values: NDArray[Any], mm: tuple[float, float]) -> None:
        self.values = values
        self.mm = mm  # (along a row, along a column) = (pixel width, pixel height)


def _orientation(summary: VolumeSummary) -> NDArray[np.float64]:
    """Per voxel axis of *summary*: (RAS axis, +1 or -1); a degenerate axis as stored."""
    ornt = io_orientation(summary.affine)
    for axis in np.flatnonzero(np.isnan(ornt[:, 0])):
        ornt[axis] = (axis, 1.0)
    return ornt


def _oriented(summary: VolumeSummary, cut: str, ornt: NDArray[np.float64]) -> _Plane:
    """Mid-plane *cut* of *summary* in world orientation (see the module's docstring), for
    *summary*'s :func:`_orientation`."""
    data = np.asarray(summary.mids[cut])
    a, b = MID_PLANES[cut]
    mm_a, mm_b = summary.mid_spacing(cut)
    (wa, sa), (wb, sb) = ornt[a], ornt[b]
    if wa > wb:  # the axis with the earlier world axis runs horizontally
        data, (sa, sb), (mm_a, mm_b) = data.T, (sb, sa), (mm_b, mm_a)
    # data is (horizontal, vertical); an image is (rows = vertical, columns = horizontal)
    image = data.T
    if sa < 0:
        image = image[:, ::-1]
    if sb > 0:  # positive end up: the first row is the largest coordinate
        image = image[::-1, :]
    return _Plane(image, (mm_a, mm_b))


def _scale(inp: VolumeSummary) -> float:
    """Millimetres per thumbnail pixel: the input's longest extent over :data:`THUMB_SIDE`."""
    extents = [n * s for n, s in zip(inp.shape, inp.spacing, strict=True)]
    longest = max(extents) if extents else 0.0
    return longest / THUMB_SIDE if longest > 0 else 1.0


def _size(plane: _Plane, mm_per_px: float) -> tuple[int, int]:
    """(width, height) of *plane* drawn at *mm_per_px*, sides within the bounds."""
    rows, cols = plane.values.shape
    width = cols * plane.mm[0] / mm_per_px
    height = rows * plane.mm[1] / mm_per_px
    fit = min(1.0, MAX_SIDE / max(width, height, 1e-9))  # a runaway field of view
    width, height = width * fit, height * fit
    return max(MIN_SIDE, round(width)), max(MIN_SIDE, round(height))


def _window(inp: VolumeSummary) -> tuple[float, float]:
    """The 1st and 99th percentiles of the input's scaled, finite mid-plane values: of at
    most :data:`WINDOW_SAMPLE` of them, evenly strided (a display window: 6x faster than all
    of them), stored, then scaled (the scaling is linear)."""
    parts = [np.asarray(m).ravel() for m in inp.mids.values()]
    values = np.concatenate(parts) if parts else np.zeros(1)
    values = values[:: max(1, values.size // WINDOW_SAMPLE)]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = sorted(float(v) * inp.slope + inp.inter for v in np.percentile(values, [1.0, 99.0]))
    if hi <= lo:  # a constant input: its value mid-grey
        lo, hi = lo - 1.0, hi + 1.0
    return lo, hi


def _grey(
    values: NDArray[Any], window: tuple[float, float] | None, size: tuple[int, int]
) -> Image.Image:
    lo, hi = window if window is not None else (0.0, 1.0)
    scaled = np.asarray(values, dtype=np.float64) - lo
    scaled *= 255.0 / (hi - lo)
    # 0 .. 255 with NaN as 0 (fmax drops a NaN): np.clip then np.nan_to_num's result, in place
    grey = np.fmin(np.fmax(scaled, 0.0, out=scaled), 255.0, out=scaled).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(grey)).resize(size, Image.Resampling.BILINEAR)


def _resized_labels(values: NDArray[Any], size: tuple[int, int]) -> NDArray[np.int64]:
    """Label values at thumbnail size (nearest neighbour: no label is invented)."""
    labels = np.rint(np.nan_to_num(np.asarray(values, dtype=np.float64))).astype(np.int64)
    if labels.size and -(2**31) <= labels.min() and labels.max() < 2**31:  # Pillow's "I" mode
        picture = Image.fromarray(labels.astype(np.int32)).resize(size, Image.Resampling.NEAREST)
        return np.asarray(picture).astype(np.int64)
    uniques, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(labels.shape).astype(np.int32)
    small = np.asarray(Image.fromarray(codes).resize(size, Image.Resampling.NEAREST))
    return uniques[small]


def _label_codes(labels: NDArray[np.int64]) -> NDArray[np.uint8]:
    """Each pixel's index in :data:`_TABLE`: 0 for the background, else its label's colour
    (:func:`label_colour`, computed on the array: no sort)."""
    return np.where(labels == 0, 0, (labels - 1) % len(PALETTE) + 1).astype(np.uint8)


#: Background black, then :data:`PALETTE`: the palette of the label pictures.
_TABLE = bytes(np.array([(0, 0, 0), *PALETTE], dtype=np.uint8).ravel())


def _palette_picture(codes: NDArray[np.uint8], *, clear: bool = False) -> Image.Image:
    """A palette picture of *codes* (one byte a pixel: a quarter of the RGBA bytes to
    compress); *clear*: index 0 transparent (outlines, drawn over an image)."""
    picture = Image.fromarray(np.ascontiguousarray(codes))
    picture.putpalette(_TABLE)
    if clear:
        picture.info["transparency"] = 0
    return picture


def _edges(labels: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Each non-zero label's boundary pixels: a 4-neighbour holds another value."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge &= labels != 0
    return edge


def _save_picture(picture: Image.Image, path: str) -> None:
    """Write *picture* to *path* (PNG, or JPEG for a ``.jpg``) through a temporary name (no
    half-written picture under *path*).

    No fsync: a thumbnail lost in a crash is drawn again by the next QC; the rename alone keeps
    a reader from seeing a partial file.
    """
    jpeg = path.endswith(".jpg")
    tmp = begin_temp(path, ".jpg" if jpeg else ".png")
    try:
        if jpeg:
            picture.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        else:
            picture.save(tmp, format="PNG", compress_level=PNG_LEVEL)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if (plain := write_error(exc, path)) is not exc:
            raise plain from exc
        raise
    finally:
        end_temp(tmp)
