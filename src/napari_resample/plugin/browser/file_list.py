"""The list of a run's files: status, name and flags, one line each, errors first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from napari_resample.plugin.browser.model import FAILED, Entry

#: Text colours of the statuses (readable on napari's dark and light themes).
STATUS_COLORS = {"error": "#e05252", FAILED: "#e05252", "warning": "#e0a030", "ok": "#4caf50"}


class FileList(QListWidget):
    """The files of a :class:`~napari_resample.plugin.browser.model.Listing`.

    Parameters
    ----------
    on_select : callable
        ``on_select(index: int)``, called when the user makes another row current (a click,
        the arrow keys); not when :meth:`select` does.
    """

    def __init__(self, on_select: Callable[[int], object]) -> None:
        super().__init__()
        self.on_select = on_select
        self._quiet = False
        self.setToolTip("Errors first. Click a file, or PageDown / PageUp, to show it.")
        self.currentRowChanged.connect(self._changed)

    def fill(self, entries: Sequence[Entry]) -> None:
        """Show *entries* (no row current)."""
        self._quiet = True
        try:
            self.clear()
            for entry in entries:
                item = QListWidgetItem(entry.text)
                item.setToolTip(f"{entry.input}\n-> {entry.output}\n\n{entry.sentences}")
                color = STATUS_COLORS.get(entry.status)
                if color is not None:
                    item.setForeground(QColor(color))
                self.addItem(item)
        finally:
            self._quiet = False

    def select(self, index: int) -> None:
        """Make row *index* current and visible, without calling ``on_select``."""
        self._quiet = True
        try:
            self.setCurrentRow(index)
            self.scrollToItem(self.item(index))
        finally:
            self._quiet = False

    def keyPressEvent(self, event: Any) -> None:
        """PageDown / PageUp go to the dock (the next / previous file), not a page down."""
        if event.key() in (Qt.Key.Key_PageDown, Qt.Key.Key_PageUp):
            event.ignore()
        else:
            super().keyPressEvent(event)

    def _changed(self, row: int) -> None:
        if not self._quiet and row >= 0:
            self.on_select(row)
