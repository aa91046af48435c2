"""Previous / next, where the file shown is in the list, and side by side or overlaid."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QWidget


class ViewRow(QWidget):
    """The row under the list.

    Parameters
    ----------
    on_step : callable
        ``on_step(step: int)``: -1 for "Previous", +1 for "Next".
    on_overlay : callable
        ``on_overlay(overlaid: bool)``: the "overlay" box changed.
    """

    def __init__(
        self, on_step: Callable[[int], object], on_overlay: Callable[[bool], object]
    ) -> None:
        super().__init__()
        self.previous_button = QPushButton("Previous")
        self.previous_button.setToolTip("The previous file of the list (PageUp).")
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip("The next file of the list (PageDown).")
        self.position = QLabel("")
        self.overlay_box = QCheckBox("overlay")
        self.overlay_box.setToolTip(
            "Input and output overlaid (the output half transparent; a label map's output as "
            "outlines) instead of side by side."
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (self.previous_button, self.next_button, self.position):
            layout.addWidget(part)
        layout.addStretch(1)
        layout.addWidget(self.overlay_box)
        self.previous_button.clicked.connect(lambda *_: on_step(-1))
        self.next_button.clicked.connect(lambda *_: on_step(+1))
        self.overlay_box.toggled.connect(lambda checked: on_overlay(bool(checked)))

    def show_position(self, index: int | None, count: int) -> None:
        """ "3 / 10" (nothing shown yet: "- / 10"); the buttons enabled where they lead."""
        shown = "-" if index is None else str(index + 1)
        self.position.setText(f"{shown} / {count}" if count else "")
        self.previous_button.setEnabled(count > 0 and index != 0)
        self.next_button.setEnabled(count > 0 and index != count - 1)
