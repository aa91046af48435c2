"""The QC report of a run: ``qc/index.html``, one page to look at, and ``qc/qc.json`` for CI.

The page is made from the jinja2 template ``templates/report.html.j2`` (autoescaped) and holds
everything it shows: the thumbnails of :mod:`napari_resample.qc.thumbs` are embedded as base64
``data:`` URIs (each picture once, as a CSS class, however many times it is shown), the style and
the small script that sorts the table are inline, so the file opens offline, mailed or copied
alone. It shows a summary line, a table of every file (status, flags, geometry before and after;
errors first, sortable by severity or by name) and, per file, the thumbnails of the three
mid-planes before and after, a label map's outlines over its paired image, and the checks'
sentences.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import io
import json
import os
from collections.abc import Sequence
from typing import Any

import jinja2
from PIL import Image

from napari_resample.io.atomic import atomic_output, make_dirs, remove_empty_dirs
from napari_resample.qc.model import SEVERITIES, FileQC

#: The folder of the report inside a run's output folder.
QC_DIR = "qc"
#: The version of ``qc.json``'s layout.
JSON_VERSION = 1
#: Table order: the most severe first.
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(reversed(SEVERITIES))}
#: Which anatomical plane a cut is, by the axis code of the axis it cuts.
PLANE_NAMES = {"R": "sagittal", "L": "sagittal", "A": "coronal", "P": "coronal"} | {
    "S": "axial",
    "I": "axial",
}
CUTS = ("i", "j", "k")
#: The geometry columns of the table (before -> after), read from the volumes' facts.
GEOMETRY = ("shape", "spacing (mm)", "FOV (mm)", "dtype", "axcodes")
#: The columns a resampling keeps: a change is shown in bold (FOV to 0.1 mm, as shown).
KEPT = ("FOV (mm)", "dtype", "axcodes")


def write_report(
    output_dir: str | os.PathLike[str],
    files: Sequence[FileQC],
    *,
    title: str = "napari-resample quality control",
    pairing: str = "",
) -> tuple[str, str]:
    """Write ``<output_dir>/qc/index.html`` and ``<output_dir>/qc/qc.json``.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The run's output folder; its ``qc`` folder is created if missing, and holds the
        thumbnails that ``FileQC.thumbs`` names (paths relative to it).
    files : sequence of FileQC
        One per resampled pair, in any order (both outputs list errors first, then warnings,
        then the rest, each by output path).
    title : str
        The page's title.
    pairing : str
        The sentence saying how images and label maps of one case were paired (name
        convention), shown on the page and kept in ``qc.json``; empty: not shown.

    Returns
    -------
    html_path, json_path : str

    Raises
    ------
    OSError
        When a file cannot be written (nothing half-written is left: each is written under a
        temporary name and renamed; a ``qc`` folder created here and left empty is removed).
    """
    qc_dir = os.path.join(os.fspath(output_dir), QC_DIR)
    ordered = sorted(files, key=lambda f: (SEVERITY_RANK[f.status], f.output))
    counts: dict[str, int] = {
        severity: sum(f.status == severity for f in files) for severity in SEVERITIES
    }
    document = {
        "version": JSON_VERSION,
        "counts": counts,
        "pairing": pairing,
        "files": [f.to_json() for f in ordered],
    }
    json_text = json.dumps(document, indent=1, ensure_ascii=True) + "\n"
    html_text = render_page(ordered, counts, qc_dir, title=title, pairing=pairing)
    html_path, json_path = os.path.join(qc_dir, "index.html"), os.path.join(qc_dir, "qc.json")
    created: list[str] = []
    try:
        make_dirs(qc_dir, created)
        for path, text in ((json_path, json_text), (html_path, html_text)):
            with (
                atomic_output(path, os.path.splitext(path)[1]) as tmp,
                open(tmp, "w", encoding="utf-8") as fh,
            ):
                fh.write(text)
    except BaseException:
        remove_empty_dirs(created)
        raise
    return html_path, json_path


def render_page(
    files: Sequence[FileQC],
    counts: dict[str, int],
    qc_dir: str,
    *,
    title: str,
    pairing: str,
) -> str:
    """The page's HTML for *files* (in the order given), thumbnails read from *qc_dir*."""
    images = _Images(qc_dir)
    by_output = {f.output: f for f in files}
    entries = [
        _entry(n, fq, by_output.get(fq.paired_image or ""), images, qc_dir)
        for n, fq in enumerate(files)
    ]
    return load_template().render(
        title=title,
        pairing=pairing,
        counts=counts,
        total=len(files),
        files=entries,
        images=images.classes,
        columns=GEOMETRY,
    )


@functools.cache
def load_template() -> jinja2.Template:
    """The page template, read from the package (``importlib.resources``), autoescaped;
    compiled once a process (a compiled template renders from several threads)."""
    source = (
        importlib.resources.files("napari_resample.qc")
        .joinpath("templates", "report.html.j2")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)


#: The image formats a thumbnail may be in, by their first bytes: PNG, JPEG.
_IMAGE_KINDS = {b"\x89PN": "png", b"\xff\xd8\xff": "jpeg"}


class _Images:
    """The thumbnails the page shows (PNG or JPEG), each read and encoded once: path -> CSS
    class and size."""

    def __init__(self, qc_dir: str) -> None:
        self.qc_dir = qc_dir
        self.classes: list[dict[str, str]] = []  # {"name": css class, "uri": data URI}
        self._seen: dict[str, tuple[str, int, int] | None] = {}

    def get(self, rel: str | None) -> tuple[str, int, int] | None:
        """(CSS class, width, height) of the picture at *rel* (relative to the qc folder); None
        when there is none or it cannot be read (the page says so instead of breaking)."""
        if not rel:
            return None
        if rel not in self._seen:
            self._seen[rel] = self._read(rel)
        return self._seen[rel]

    def _read(self, rel: str) -> tuple[str, int, int] | None:
        try:
            with open(os.path.join(self.qc_dir, rel), "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        kind = _IMAGE_KINDS.get(data[:3])
        if kind is None:
            return None
        try:  # the header alone: Pillow does not decode the pixels for .size
            with Image.open(io.BytesIO(data)) as picture:
                width, height = picture.size
        except (OSError, ValueError):
            return None
        name = f"img{len(self.classes)}"
        uri = f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
        self.classes.append({"name": name, "uri": uri})
        return name, width, height


def _entry(
    n: int, fq: FileQC, image: FileQC | None, images: _Images, qc_dir: str
) -> dict[str, Any]:
    """What the template shows of *fq* (*image*: the paired image's FileQC, if any)."""
    output_dir = os.path.dirname(qc_dir)
    return {
        "id": f"file{n}",
        "name": _shown_path(fq.output, output_dir),
        "input": fq.input,
        "output": fq.output,
        "status": fq.status,
        "rank": SEVERITY_RANK[fq.status],
        "interpolation": fq.interpolation or "",
        "flags": [f for f in fq.findings if f.severity != "ok"],
        "findings": sorted(fq.findings, key=lambda f: SEVERITY_RANK[f.severity]),
        "geometry": _geometry(fq.before, fq.after),
        "paired": _shown_path(image.output, output_dir) if image is not None else "",
        "cuts": _cuts(fq, image, images),
    }


def _cuts(fq: FileQC, image: FileQC | None, images: _Images) -> list[dict[str, Any]]:
    """Per cut, the thumbnails before and after (None: no picture); for a label map with a
    paired image that has thumbnails: the image's, with the label map's outlines over them."""
    overlay = image is not None and bool(image.thumbs.get("input") or image.thumbs.get("output"))
    source = image if overlay and image is not None else fq
    cuts = []
    for cut in CUTS:
        cells = {}
        for role, when in (("input", "before"), ("output", "after")):
            picture = images.get(source.thumbs.get(role, {}).get(cut))
            outline = (
                images.get(fq.thumbs.get(f"outline_{role}", {}).get(cut)) if overlay else None
            )
            cells[when] = (
                None
                if picture is None
                else {
                    "cls": picture[0],
                    "width": picture[1],
                    "height": picture[2],
                    "overlay": outline[0] if outline is not None else "",
                }
            )
        cuts.append({"name": _plane_name(fq.before or fq.after, cut), **cells})
    return cuts


def _geometry(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for title in GEOMETRY:
        b, a = _fact(before, title), _fact(after, title)
        rows.append({"title": title, "before": b, "after": a, "changed": title in KEPT and b != a})
    return rows


def _fact(facts: dict[str, Any], title: str) -> str:
    """One geometry fact of a volume's facts, as the table shows it ("–": unknown)."""
    try:
        if title == "shape":
            return "×".join(str(int(n)) for n in facts["shape"])
        if title == "spacing (mm)":
            return "×".join(_number(s) for s in facts["spacing"])
        if title == "FOV (mm)":
            fov = (n * s for n, s in zip(facts["shape"], facts["spacing"], strict=True))
            return "×".join(f"{v:.1f}" for v in fov)
        return str(facts["dtype" if title == "dtype" else "axcodes"])
    except (KeyError, TypeError, ValueError):
        return "–"


def _number(value: float) -> str:
    """*value* with at most 3 decimals, trailing zeros dropped (``0.5``, ``1.143``, ``256``)."""
    return f"{float(value):.3f}".rstrip("0").rstrip(".")


def _plane_name(facts: dict[str, Any], cut: str) -> str:
    """``"k (axial)"``: the cut and, from the axis codes, the anatomical plane it is."""
    codes = str(facts.get("axcodes") or "")
    axis = CUTS.index(cut)
    name = PLANE_NAMES.get(codes[axis]) if len(codes) == 3 else None
    return f"{cut} ({name})" if name else cut


def _shown_path(path: str, output_dir: str) -> str:
    """*path* relative to the run's output folder when inside it, else as given."""
    try:
        rel = os.path.relpath(path, output_dir)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel
