"""The "QC browser" dock widget: look at every file of a dataset run, errors first.

Open a run's output folder (typed, chosen with "Browse...", or :meth:`QCBrowser.open_folder`):
its QC report ``qc/qc.json`` is listed, or, for a run without quality control, its manifest
``resampling_manifest.jsonl`` (files "not checked" or "failed"). A click on a file, "Next" /
"Previous", or the keys PageDown / PageUp (in the viewer and in the dock) show that file's input
and output as the plugin's reader opens them (true world geometry; Labels layers for a file the
run resampled as a label map), side by side in napari's grid or overlaid ("overlay"), with the
checks' sentences under the list. The previous file's layers are removed before the next is
read, in a worker thread (:mod:`.file_view`).

The parts: the folder row (:mod:`.folder_row`), the list (:mod:`.file_list`), the row of
buttons (:mod:`.view_row`), the texts (:mod:`.messages`); what is listed is the Qt-free
:mod:`.model`'s, what is read :mod:`.load`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_resample.plugin.browser.file_list import FileList
from napari_resample.plugin.browser.file_view import FileView
from napari_resample.plugin.browser.folder_row import FolderRow
from napari_resample.plugin.browser.load import Loaded
from napari_resample.plugin.browser.messages import Messages
from napari_resample.plugin.browser.model import Cursor, Entry, Listing, read_listing
from napari_resample.plugin.browser.view_row import ViewRow
from napari_resample.plugin.widget.status import reported
from napari_resample.plugin.widget.watch import watch_closing

if TYPE_CHECKING:
    import napari

#: The keys that show the next and the previous file.
NEXT_KEY, PREVIOUS_KEY = "PageDown", "PageUp"


class QCBrowser(QWidget):
    """Browse the files of a dataset run with their QC findings, errors first.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer

    Attributes
    ----------
    listing : Listing or None
        What the folder opened holds (None before one opened).
    place : Cursor
        The file shown.
    view : FileView
        Its layers in the viewer.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.listing: Listing | None = None
        self.place = Cursor(0)
        self.status_line = Messages()  # the name `reported` reports failures to
        self.folder_row = FolderRow(self.open_folder)
        self.file_list = FileList(self.show_file)
        self.view_row = ViewRow(self.step, self.set_overlay)
        self.view = FileView(napari_viewer, self._on_loaded, self._on_read_error)
        layout = QVBoxLayout(self)
        texts = self.status_line
        for part in (texts.summary, self.folder_row, self.file_list, self.view_row):
            layout.addWidget(part)
        layout.addWidget(texts.findings)
        layout.addWidget(texts.status)
        layout.setStretch(2, 1)
        self.view_row.show_position(None, 0)
        self._bind_keys()
        watch_closing(self, self.detach)

    def _bind_keys(self) -> None:
        """PageDown / PageUp in the viewer's canvas (napari's key bindings); in the dock they
        reach :meth:`keyPressEvent` (the list passes them on instead of scrolling a page)."""
        self.viewer.bind_key(NEXT_KEY, self._next_key, overwrite=True)
        self.viewer.bind_key(PREVIOUS_KEY, self._previous_key, overwrite=True)

    def keyPressEvent(self, event: Any) -> None:
        """PageDown / PageUp pressed in the dock: the next / previous file."""
        step = {Qt.Key.Key_PageDown: +1, Qt.Key.Key_PageUp: -1}.get(event.key())
        if step is None:
            super().keyPressEvent(event)
        else:
            self.step(step)

    def _next_key(self, _viewer: Any = None) -> None:
        self.step(+1)

    def _previous_key(self, _viewer: Any = None) -> None:
        self.step(-1)

    def detach(self) -> None:
        """The dock goes: its keys leave the viewer, a read going on is dropped."""
        from napari.utils.key_bindings import KeyBinding

        self.view.detach()
        for key, bound in ((NEXT_KEY, self._next_key), (PREVIOUS_KEY, self._previous_key)):
            if self.viewer.keymap.get(KeyBinding.from_str(key)) == bound:  # not another's
                self.viewer.bind_key(key, None)

    # ------------------------------------------------------------------ folder

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The files listed, errors first (none before a folder opened)."""
        return self.listing.entries if self.listing is not None else ()

    @property
    def current(self) -> Entry | None:
        """The file shown (or being read)."""
        index = self.place.index
        return None if index is None else self.entries[index]

    @reported("Opening the folder")
    def open_folder(self, path: str) -> Listing | None:
        """List the files of the run whose output folder is *path*; show the first.

        Returns the listing, or None when the folder cannot be opened (the reason in red, the
        list emptied).
        """
        self.folder_row.show_path(str(path))
        self.view.clear()
        self.listing, self.place = None, Cursor(0)
        self.file_list.fill(())
        self.status_line.findings.setText("")
        self.status_line.summary.setText("")
        try:
            if not str(path):
                raise FileNotFoundError("no folder given: type or choose a run's output folder")
            listing = read_listing(path)
        except (OSError, ValueError) as exc:
            self.view_row.show_position(None, 0)
            self.status_line.report(f"Cannot open the folder: {exc}", "error")
            return None
        self.listing, self.place = listing, Cursor(len(listing.entries))
        self.file_list.fill(listing.entries)
        self.status_line.summary.setText(listing.summary)
        self.status_line.say(f"Opened {listing.folder}.")
        if listing.entries:
            self.show_file(0)
        else:
            self.view_row.show_position(None, 0)
        return listing

    # ------------------------------------------------------------------ files

    @reported("Showing the file")
    def show_file(self, index: int) -> Entry | None:
        """Show file *index* of the list (errors first); None when out of range."""
        if self.listing is None or self.place.go(index) is None:
            return None
        entry = self.entries[index]
        self.file_list.select(index)
        self.view_row.show_position(index, len(self.entries))
        self.status_line.findings.setText(entry.sentences)
        self.status_line.say(f"Reading {entry.name}...")
        self.view.request(entry, self.listing.folder)
        return entry

    @reported("Moving in the list")
    def step(self, step: int) -> Entry | None:
        """Show the file *step* rows on (+1 next, -1 previous); None past either end."""
        if self.listing is None:
            return None
        index = self.place.move(step)
        return None if index is None else self.show_file(index)

    def next_file(self) -> Entry | None:
        """Show the next file of the list."""
        return self.step(+1)

    def previous_file(self) -> Entry | None:
        """Show the previous file of the list."""
        return self.step(-1)

    @reported("Arranging the layers")
    def set_overlay(self, overlay: bool) -> None:
        """Overlaid (True) or side by side in napari's grid (False)."""
        if self.view_row.overlay_box.isChecked() != overlay:
            self.view_row.overlay_box.setChecked(overlay)  # calls back here once
            return
        self.view.arrange(overlay)

    @property
    def loading(self) -> bool:
        """True while a file is read."""
        return self.view.loading

    @reported("Showing the file read")
    def _on_loaded(self, loaded: Loaded) -> None:
        if loaded.problems:
            self.status_line.report(" ".join(loaded.problems), "error")
        else:
            self.status_line.say(f"Showing {loaded.entry.name}.")

    def _on_read_error(self, exc: Exception) -> None:
        self.status_line.report(f"Reading the file failed: {exc}", "error")
