"""The dock's texts: what was opened (or why not), the shown file's findings, and what went
wrong last, in red."""

from __future__ import annotations

from typing import Literal

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from napari_resample.plugin.browser.file_list import STATUS_COLORS

Level = Literal["info", "warning", "error"]
_LEVEL_COLORS = {"warning": STATUS_COLORS["warning"], "error": STATUS_COLORS["error"]}


def wrapped_label(tooltip: str) -> QLabel:
    """A word-wrapped, selectable label (a finding's sentence names a path worth copying)."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setToolTip(tooltip)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class Messages:
    """The listing's summary, the findings of the file shown and the status line.

    Attributes
    ----------
    summary, findings, status : QLabel
    level : {"info", "warning", "error"}
        The level of the status line's message.
    """

    def __init__(self) -> None:
        self.summary = wrapped_label("The folder opened: how many files of each status.")
        self.findings = wrapped_label("What the checks said of the file shown.")
        self.status = wrapped_label("What happened last.")
        self.level: Level = "info"

    def say(self, message: str, level: Level = "info") -> None:
        """*message* in the status line (red for an error, orange for a warning)."""
        self.status.setText(message)
        color = _LEVEL_COLORS.get(level)
        self.status.setStyleSheet(f"color: {color};" if color else "")
        self.level = level

    def report(self, message: str, level: Level) -> None:
        """*message* in the status line and as a napari notification of *level*."""
        from napari.utils.notifications import show_error, show_info, show_warning

        self.say(message, level)
        {"info": show_info, "warning": show_warning, "error": show_error}[level](message)
