"""Make ``docs/images/qc-browser.png``: napari with the "QC browser" dock on a small dataset run
with seeded faults, showing a flagged file's input and output side by side.

Run under a display (``xvfb-run -a python docs/make_browser_screenshot.py [OUT.png]``); the test
suite calls :func:`make_screenshot` too and checks that the picture is not blank.

The dataset is the built-in head phantom, three cases of CT and label map, resampled with the
library to 128 x 128 x 64; then faults are seeded as a broken tool would leave them: case 2's
CT output all zero, case 3's label map without its ventricles (label 3); the finished run is
checked (``qc/qc.json``, as ``napari-resample qc OUTPUT_DIR`` writes it) and the browser lists
its findings, errors first (``faulty_run.py`` makes the run). The picture shows the first label
map of the list: input and output as Labels layers, side by side.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("images") / "qc-browser.png"
#: The picture stays small (< 300 KB): a palette of this many colours.
COLOURS = 160


def make_run(folder: Path) -> Path:
    """The run of :mod:`faulty_run` with two faults (case 2's CT all zero, case 3's label map
    without its ventricles), checked; return the output folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # faulty_run, beside this script
    from faulty_run import FAULTS, faulty_run

    return faulty_run(
        folder,
        {
            "case02_resampled.nii.gz": FAULTS["all_zero"],
            "case03_seg_resampled.nii.gz": FAULTS["lost_label"],
        },
    )


def make_screenshot(path: str | Path = DEFAULT_PATH, viewer=None, timeout: float = 120.0) -> Path:
    """Open the browser on the run, show its first label map (errors first) and save a window
    screenshot (a palette PNG) at *path*.

    Parameters
    ----------
    path : str or Path
    viewer : napari.Viewer, optional
        A shown viewer to use (tests pass their own); a new one is made and closed otherwise.
    timeout : float
        Seconds to wait for the browser to read a file before giving up.
    """
    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication, QWidget

    own = viewer is None
    if own:
        viewer = napari.Viewer(show=True)
    path = Path(path)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = make_run(Path(tmp))
            viewer.window.resize(1500, 900)
            _, browser = viewer.window.add_plugin_dock_widget("napari-resample", "QC browser")
            if browser.open_folder(str(out)) is None:
                raise RuntimeError(
                    f"the browser refused the run: {browser.status_line.status.text()}"
                )
            # a neutral folder in the picture, not one of the machine that made it
            browser.folder_row.show_path("~/resampled")
            browser.show_file(next(n for n, e in enumerate(browser.entries) if e.is_label_map))
            deadline = time.monotonic() + timeout
            while browser.loading:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the browser did not read a file within {timeout} s")
                QApplication.processEvents()
                time.sleep(0.01)
            # Coronal slice through the centre, superior up: the 3 mm slices of the input
            # beside the output's.
            viewer.dims.order = (1, 0, 2)
            viewer.scene.camera.orientation2d = ("up", "right")
            viewer.reset_view()
            for toast in viewer.window._qt_window.findChildren(QWidget):
                if type(toast).__name__ == "NapariQtNotification":  # toasts hide the canvas
                    toast.hide()
            QApplication.processEvents()
            raw = Path(tmp) / "raw.png"
            viewer.screenshot(str(raw), canvas_only=False)
            with Image.open(raw) as im:
                small = im.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
            path.parent.mkdir(parents=True, exist_ok=True)
            small.save(path, optimize=True)
        return path
    finally:
        if own:
            viewer.close()


if __name__ == "__main__":
    shot = make_screenshot(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)
    print(f"{shot}: {shot.stat().st_size // 1024} KiB")
