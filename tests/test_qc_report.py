"""The QC report: thumbnails at true aspect ratio in world orientation with the input's window,
label outlines, one self-contained page (checked in a real headless Chromium) and qc.json.

The volumes are real small files resampled here with the library; the findings are made up
(the checks are tested in tests/test_qc_checks.py): this tests what the report shows of them.
"""

from __future__ import annotations

import errno
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from napari_resample.api import resampling
from napari_resample.qc import report as report_module
from napari_resample.qc.model import FileQC, Finding
from napari_resample.qc.report import load_template, write_report
from napari_resample.qc.summary import VolumeSummary, summarize_file
from napari_resample.qc.thumbs import PALETTE, THUMB_SIDE, render_thumbs

#: Spacing of the test image (mm): thick slices, so a wrong aspect ratio shows.
SPACING = (1.0, 1.25, 3.0)
SHAPE = (40, 48, 20)
#: A message with HTML's special characters: the page must show it escaped, never as markup.
TRICKY = "label 4 lost: 3 < 5 & <b>kept</b>"


def blob_volume(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A smooth float32 volume with a bright off-centre blob (values 0 .. 1000)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    centre = rng.uniform(-0.3, 0.3, 3)
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return (1000 * np.exp(-3 * r2) + 100 * (grids[0] + 1)).astype(np.float32)


def label_volume(shape: tuple[int, int, int]) -> np.ndarray:
    """Two nested balls (labels 1 and 2) and a small one (label 3), uint8."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(g**2 for g in grids))
    labels = np.where(r < 0.8, 1, 0) + np.where(r < 0.4, 1, 0)
    small = np.sqrt((grids[0] - 0.6) ** 2 + grids[1] ** 2 + grids[2] ** 2) < 0.25
    return np.where(small & (r >= 0.8), 3, labels).astype(np.uint8)


def save(data: np.ndarray, path: Path, spacing=SPACING) -> Path:
    img = nib.Nifti1Image(data, np.diag([*spacing, 1.0]))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, path)
    return path


def qc_of(inp: Path, out: Path, label_map: bool, findings: list[Finding], qc_dir: str) -> FileQC:
    before = summarize_file(inp, label_map=label_map)
    after = summarize_file(out, label_map=label_map)
    fq = FileQC(
        str(inp),
        str(out),
        "label" if label_map else "bspline",
        findings,
        before=before.facts(),
        after=after.facts(),
    )
    render_thumbs(fq, before, after, qc_dir, out.name.split(".")[0])
    return fq


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> dict:
    """Three resampled files (an image, its label map, another image) and their report."""
    root = tmp_path_factory.mktemp("qc_report")
    src, dst = root / "in", root / "out"
    src.mkdir()
    t1 = save(blob_volume(SHAPE, 0), src / "case1_t1.nii.gz")
    seg = save(label_volume(SHAPE), src / "case1_seg.nii.gz")
    t2 = save(blob_volume(SHAPE, 1), src / "case2_t1.nii.gz")
    for path in (t1, seg, t2):
        resampling(path, dst, (32, 32, 24))
    out = {p: dst / p.name.replace(".nii.gz", "_resampled.nii.gz") for p in (t1, seg, t2)}
    qc_dir = str(dst / "qc")
    files = [
        qc_of(t1, out[t1], False, [Finding("fov", "ok", "field of view kept")], qc_dir),
        qc_of(seg, out[seg], True, [Finding("label_volumes", "warning", TRICKY)], qc_dir),
        qc_of(
            t2,
            out[t2],
            False,
            [
                Finding("not_constant", "error", "case2 output is all zero"),
                Finding("fov", "ok", "case2 field of view kept"),
            ],
            qc_dir,
        ),
    ]
    files[1].paired_image = str(out[t1])
    html_path, json_path = write_report(dst, files, title="Test run", pairing="by case prefix")
    return {"dst": dst, "files": files, "html": html_path, "json": json_path, "out": out}


def test_report_paths_and_counts(reported) -> None:
    assert reported["html"] == os.path.join(reported["dst"], "qc", "index.html")
    assert reported["json"] == os.path.join(reported["dst"], "qc", "qc.json")
    document = json.loads(Path(reported["json"]).read_text())
    assert document["version"] == 1
    assert document["counts"] == {"ok": 1, "warning": 1, "error": 1}
    assert document["pairing"] == "by case prefix"
    assert not [n for n in os.listdir(reported["dst"] / "qc") if n.startswith(".")]  # no temp left


def test_json_round_trips_and_lists_errors_first(reported) -> None:
    document = json.loads(Path(reported["json"]).read_text())
    assert [f["status"] for f in document["files"]] == ["error", "warning", "ok"]
    by_output = {f.output: f for f in reported["files"]}
    for entry in document["files"]:
        back = FileQC.from_json(entry)
        assert back == by_output[entry["output"]]
        assert back.to_json() == entry
    label = FileQC.from_json(document["files"][1])
    assert set(label.thumbs) == {"input", "output", "outline_input", "outline_output"}
    assert set(label.thumbs["outline_output"]) == {"i", "j", "k"}


def test_page_is_self_contained(reported) -> None:
    page = Path(reported["html"]).read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    # every picture shown embedded once: 3 cuts x (input, output) of the 2 images as JPEG, and
    # 6 outlines as PNG (the paired label map is drawn as outlines over its image, its own fill
    # pictures not shown)
    assert page.count("data:image/jpeg;base64,") == 3 * 2 * 2
    assert page.count("data:image/png;base64,") == 6


def test_page_shows_every_file_and_finding_escaped(reported) -> None:
    page = Path(reported["html"]).read_text(encoding="utf-8")
    assert page.count('<section class="file') == 3
    for fq in reported["files"]:
        assert html.escape(os.path.relpath(fq.output, reported["dst"])) in page
        for finding in fq.findings:
            assert html.escape(finding.message, quote=False) in page
    assert TRICKY not in page  # escaped, not markup
    assert "Pairing: by case prefix" in page
    assert "3 files:" in page and "1 error<" in page and "1 warning<" in page


def test_table_sorted_by_severity_with_flags(reported) -> None:
    page = Path(reported["html"]).read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-rank="(\d)" data-name="([^"]+)">(.*?)</tr>', page, re.S)
    assert [(rank, name) for rank, name, _ in rows] == [
        ("0", "case2_t1_resampled.nii.gz"),
        ("1", "case1_seg_resampled.nii.gz"),
        ("2", "case1_t1_resampled.nii.gz"),
    ]
    flags = [re.findall(r'class="flag (\w+)">(\w+)<', cells) for _, _, cells in rows]
    assert flags == [[("error", "not_constant")], [("warning", "label_volumes")], []]
    # the geometry columns: before -> after (32 x 32 x 24 from 40 x 48 x 20, FOV kept)
    assert "40×48×20<br>&rarr; 32×32×24" in rows[0][2]
    assert '<td class="geo">40.0×60.0×60.0<br>&rarr; 40.0×60.0×60.0' in rows[0][2]
    # the sections follow the same order, and the page can re-sort (its inline script)
    ids = re.findall(r'<section class="file (\w+)"', page)
    assert ids == ["error", "warning", "ok"]
    assert 'data-sort="rank"' in page and 'data-sort="name"' in page


def test_label_map_outlines_over_its_paired_image(reported) -> None:
    page = Path(reported["html"]).read_text(encoding="utf-8")
    files = reported["files"]
    section = page.split('<section class="file warning"')[1].split("</section>")[0]
    assert "outlines drawn over the paired image case1_t1_resampled.nii.gz" in section
    assert section.count('<div class="outline img') == 6
    # the thumbnails under the outlines are the image's: same CSS classes as in its section
    image_section = page.split('<section class="file ok"')[1].split("</section>")[0]
    classes = re.compile(r'<div class="thumb (img\d+)"')
    assert classes.findall(section) == classes.findall(image_section)
    assert files[0].thumbs["input"]["k"] != files[1].thumbs["input"]["k"]


def test_thumbnails_have_the_true_aspect_ratio(reported) -> None:
    """In a volume of 1 x 1.25 x 3 mm voxels, each thumbnail's width / height is its plane's
    extent in mm (RAS: i horizontal in the k cut, j horizontal in the i cut, i in the j cut),
    and the output (field of view kept) draws at the same size as the input."""
    qc_dir = reported["dst"] / "qc"
    fov = [n * s for n, s in zip(SHAPE, SPACING, strict=True)]  # 40, 60, 60 mm
    expected = {"i": (fov[1], fov[2]), "j": (fov[0], fov[2]), "k": (fov[0], fov[1])}
    scale = max(fov) / THUMB_SIDE
    for role in ("input", "output"):
        for cut, (w_mm, h_mm) in expected.items():
            with Image.open(qc_dir / reported["files"][0].thumbs[role][cut]) as im:
                width, height = im.size
            assert abs(width - w_mm / scale) <= 1 and abs(height - h_mm / scale) <= 1, (role, cut)


def test_label_outlines_are_transparent_but_at_boundaries(reported) -> None:
    qc_dir = reported["dst"] / "qc"
    seg = reported["files"][1]
    with Image.open(qc_dir / seg.thumbs["outline_output"]["k"]) as im:
        outline = np.asarray(im.convert("RGBA"))
    with Image.open(qc_dir / seg.thumbs["output"]["k"]) as im:
        plain = np.asarray(im.convert("RGB"))
    assert outline.shape[:2] == plain.shape[:2]
    alpha = outline[..., 3]
    assert 0.01 < (alpha > 0).mean() < 0.3  # lines, not areas
    centre = alpha[alpha.shape[0] // 2 - 2 : alpha.shape[0] // 2 + 2, alpha.shape[1] // 2]
    assert not centre.any()  # the inside of label 2 is clear
    colours = {tuple(c) for c in outline[alpha > 0][:, :3]}
    assert colours <= {PALETTE[0], PALETTE[1], PALETTE[2]} and {PALETTE[0], PALETTE[1]} <= colours
    # the plain label thumbnail is coloured by label value: background black, label 2 inside
    assert tuple(plain[plain.shape[0] // 2, plain.shape[1] // 2]) == PALETTE[1]
    assert tuple(plain[0, 0]) == (0, 0, 0)


def summary_of(data: np.ndarray, affine: np.ndarray, slope=1.0, inter=0.0) -> VolumeSummary:
    """The summary of an in-memory volume: its three mid-planes at full resolution."""
    i, j, k = (n // 2 for n in data.shape)
    return VolumeSummary(
        "mem",
        (data.shape[0], data.shape[1], data.shape[2]),
        data.dtype.name,
        slope=slope,
        inter=inter,
        affine=affine,
        mids={"i": data[i], "j": data[:, j], "k": data[:, :, k]},
        steps={"i": (1, 1), "j": (1, 1), "k": (1, 1)},
    )


def pixels(fq: FileQC, qc_dir: Path, role: str, cut: str) -> np.ndarray:
    with Image.open(qc_dir / fq.thumbs[role][cut]) as im:
        return np.asarray(im.convert("L")).astype(int)


def test_thumbnails_in_world_orientation_whatever_the_voxel_order(tmp_path) -> None:
    """One volume stored RAS, LPS (i and j reversed) and with permuted axes (S, R, A), each
    affine to match, draws the same pictures of each anatomical plane: right on the right,
    anterior and superior up."""
    data = np.zeros((30, 20, 10), dtype=np.float32)
    data[25:29, 15:19, :] = 1000.0  # right and anterior, every slice: axial, top right
    data[14:16, 2:5, 7:10] = 1000.0  # posterior and superior: sagittal, top left
    data[2:5, 9:11, 7:10] = 1000.0  # left and superior: coronal, top left
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    lps = ras.copy()
    lps[:2, :2] *= -1
    lps[:2, 3] = [29.0, 19.0]
    sra = ras.copy()
    sra[:, :3] = ras[:, [2, 0, 1]]  # voxel axes 0, 1, 2 run S, R, A
    stored = {"sagittal": "i", "coronal": "j", "axial": "k"}
    copies = {
        "ras": (data, ras, stored),
        "lps": (data[::-1, ::-1, :].copy(), lps, stored),
        "sra": (
            data.transpose(2, 0, 1).copy(),
            sra,
            {"sagittal": "j", "coronal": "k", "axial": "i"},
        ),
    }
    pictures = {}
    for stem, (volume, affine, cuts) in copies.items():
        summary = summary_of(volume, affine)
        fq = FileQC("in", "out", None)
        render_thumbs(fq, summary, summary, str(tmp_path), stem)
        pictures[stem] = {plane: pixels(fq, tmp_path, "input", c) for plane, c in cuts.items()}
    for stem in ("lps", "sra"):
        for plane, picture in pictures[stem].items():
            np.testing.assert_array_equal(picture, pictures["ras"][plane], err_msg=stem + plane)
    for plane, (top, right) in {"axial": (True, True), "sagittal": (True, False)}.items():
        picture = pictures["ras"][plane]
        h, w = picture.shape
        rows = slice(0, h // 2) if top else slice(h // 2, h)
        cols = slice(w // 2, w) if right else slice(0, w // 2)
        assert picture[rows, cols].max() == 255 and picture.max() == picture[rows, cols].max()
        other = picture.copy()
        other[rows, cols] = 0
        assert other.max() == 0, plane  # nothing bright outside the expected quarter
    coronal = pictures["ras"]["coronal"]
    h, w = coronal.shape
    assert coronal[: h // 2, : w // 2].max() == 255 and coronal[h // 2 :].max() == 0


def test_output_drawn_with_the_inputs_window(tmp_path) -> None:
    """An output holding the same values stored with a scaling draws the same grey levels; one
    with values doubled draws brighter (no window of its own to hide it)."""
    rng = np.random.default_rng(3)
    data = rng.uniform(0, 1000, (24, 24, 12)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    inp = summary_of(data, affine)
    same = summary_of(((data - 10.0) / 0.5).astype(np.float64), affine, slope=0.5, inter=10.0)
    doubled = summary_of(data * 2, affine)
    fq = FileQC("in", "out", None)
    render_thumbs(fq, inp, same, str(tmp_path), "same")
    np.testing.assert_allclose(
        pixels(fq, tmp_path, "output", "k"), pixels(fq, tmp_path, "input", "k"), atol=1
    )
    fq2 = FileQC("in", "out", None)
    render_thumbs(fq2, inp, doubled, str(tmp_path), "doubled")
    before, after = pixels(fq2, tmp_path, "input", "k"), pixels(fq2, tmp_path, "output", "k")
    assert after.mean() > before.mean() + 40  # brighter: no window of its own


def test_template_is_package_data() -> None:
    """Found through importlib.resources (as installed), and listed in the wheel hatch builds."""
    assert "<!DOCTYPE html>" in load_template().render(
        title="t", pairing="", counts={"ok": 0, "warning": 0, "error": 0}, total=0, files=[],
        images=[], columns=[],
    )  # fmt: skip
    wheel = pytest.importorskip("hatchling.builders.wheel")
    root = Path(__file__).resolve().parents[1]
    names = {f.distribution_path for f in wheel.WheelBuilder(str(root)).recurse_included_files()}
    assert "napari_resample/qc/templates/report.html.j2" in names


def test_failed_write_leaves_nothing_half_written(reported, tmp_path, monkeypatch) -> None:
    """A write that fails (a full disk on renaming the page) raises the one-sentence error and
    leaves no temporary file; a qc folder it created and left empty is removed."""
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("index.html"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)  # the rename of atomic_output
    files = [FileQC("a.nii.gz", str(tmp_path / "a_out.nii.gz"), None)]
    with pytest.raises(OSError, match=r"no space left to write .*index\.html"):
        write_report(tmp_path, files)
    assert sorted(os.listdir(tmp_path / "qc")) == ["qc.json"]  # complete, no temp, no page
    monkeypatch.setattr(report_module, "render_page", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(tmp_path / "fresh", files)
    assert not (tmp_path / "fresh").exists()


def chromium() -> str:
    path = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if path is None:
        pytest.skip("no chromium on PATH (bash .ci/run installs Debian's chromium)")
    return path


def test_page_in_headless_chromium(reported, tmp_path) -> None:
    """A real browser draws the page: the thumbnails' grey levels and the label outlines'
    colours are in its screenshot."""
    shot = tmp_path / "shot.png"
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=1280,2000", Path(reported["html"]).as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    assert len({tuple(c) for c in rgb[::7]}) > 200  # not blank: pictures, not just text
    grey = rgb[(rgb[:, 0] == rgb[:, 1]) & (rgb[:, 1] == rgb[:, 2])][:, 0]
    assert len(np.unique(grey)) > 100  # the grey thumbnails' levels
    for colour in (PALETTE[0], PALETTE[1]):  # the label outlines over the image
        close = np.abs(rgb - np.array(colour)).max(axis=1) <= 8
        assert close.sum() > 30, colour


def test_readme_screenshot_script(tmp_path) -> None:
    """docs/make_qc_screenshot.py still runs: its seeded faults are on the page, drawn."""
    chromium()
    script = Path(__file__).resolve().parents[1] / "docs" / "make_qc_screenshot.py"
    spec = importlib.util.spec_from_file_location("make_qc_screenshot", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.make_run(tmp_path / "run")
    files = json.loads((page.parent / "qc.json").read_text())["files"]
    statuses = {os.path.basename(f["output"]): f["status"] for f in files}
    assert statuses["case01_resampled.nii.gz"] == "error"  # all zero
    assert statuses["case02_resampled.nii.gz"] == "error"  # wrapped integers
    assert statuses["case03_seg_resampled.nii.gz"] == "warning"  # ventricles lost
    assert statuses["case03_resampled.nii.gz"] == "ok"
    assert statuses["case01_seg_resampled.nii.gz"] == "ok"  # paired with its image, one grid
    shot = module.make_screenshot(tmp_path / "qc.png")
    with Image.open(shot) as im:
        assert im.size == module.WINDOW
        assert len(im.convert("RGB").getcolors(1 << 16) or []) > 50
    assert shot.stat().st_size < 300_000


def test_missing_thumbnail_says_so(tmp_path) -> None:
    """A thumbnail gone from disk (or not a PNG) leaves a note on the page, not a broken one."""
    (tmp_path / "qc" / "thumbs").mkdir(parents=True)
    (tmp_path / "qc" / "thumbs" / "x_output_k.png").write_bytes(b"not a png")
    fq = FileQC("a.nii.gz", str(tmp_path / "a_out.nii.gz"), None, [Finding("fov", "ok", "kept")])
    fq.thumbs = {"input": {"k": "thumbs/gone.png"}, "output": {"k": "thumbs/x_output_k.png"}}
    html_path, _ = write_report(tmp_path, [fq])
    page = Path(html_path).read_text(encoding="utf-8")
    assert "no picture before" in page and "no picture after" in page
    assert "data:image/png" not in page and "data:image/jpeg" not in page
