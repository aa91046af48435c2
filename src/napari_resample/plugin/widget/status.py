"""The status line every part reports to, and what the parts share about Qt slots and labels.

Every slot of the widget's parts is wrapped by :func:`reported`: an exception becomes a napari
notification and the status line, naming what failed, instead of reaching Qt (where it would
abort a viewer run without napari's hook).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from magicgui.widgets import Label, Widget

from napari_resample.plugin.widget.model import elide_middle

Level = Literal["info", "warning", "error"]


class StatusLine:
    """The widget's last line: what happened last, also sent to napari's notifications.

    Attributes
    ----------
    label : magicgui.widgets.Label
        The line itself (its middle elided when long; the full text is its tooltip).
    """

    def __init__(self) -> None:
        self.label = Label(name="status", label="")
        self.label.tooltip = "What happened last."
        self.level: Level = "info"

    def say(self, message: str, level: Level = "info") -> None:
        """*message* in the status line only (a step under way, not worth a notification)."""
        self.label.value = elide_middle(message)
        self.label.tooltip = message or "What happened last."
        self.level = level

    def report(self, message: str, level: Level) -> None:
        """*message* in the status line and as a napari notification of *level*."""
        from napari.utils.notifications import show_error, show_info, show_warning

        self.say(message, level)
        {"info": show_info, "warning": show_warning, "error": show_error}[level](message)

    def forget_problem(self) -> None:
        """The inputs changed: an error or warning about the previous ones no longer holds
        (what was done, an info, stays)."""
        if self.level != "info":
            self.say("")


def reported(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Qt slot of a part that has a :class:`StatusLine` as ``self.status_line``:
    an exception becomes the notification ``"<what> failed: <exception>"``."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def slot(self: Any, *args: Any) -> Any:
            try:
                return method(self, *args)
            except Exception as exc:
                self.status_line.report(f"{what} failed: {exc}", "error")
                return None

        return slot

    return decorate


def fit_height(native: Any) -> None:
    """A word-wrapped QLabel's minimum height: what its text takes at its current width."""
    native.setMinimumHeight(max(0, native.heightForWidth(max(native.width(), 1))))


def never_widen(label: Label) -> None:
    """Make *label* wrap its lines and never ask the dock for more width, but as much height as
    its wrapped lines take (napari's dock, a scroll area, does not ask labels their height for a
    width: the label sets its own minimum on each resize and on each new text)."""
    from qtpy.QtCore import QEvent, QObject
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    policy = native.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    native.setSizePolicy(policy)

    class FitHeight(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Resize:
                fit_height(obj)
            return False

    native.installEventFilter(FitHeight(native))  # parented: lives as long as the label
    label.changed.connect(lambda *_: fit_height(native))


def narrow_choices(combo: Widget, characters: int = 16) -> None:
    """Make a combo box ask the dock for the width of *characters* characters, not of its
    longest choice: a long layer name would widen the dock past napari's window (and the
    screen), clipping the read-out beside it. The chosen name shows elided; its tooltip and
    the list show it whole."""
    from qtpy.QtWidgets import QComboBox

    native = combo.native
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(characters)


def full_width(widget: Widget) -> None:
    """Give *widget* its row's full width: hide the name label its container put beside it
    (a read-out line or a progress bar needs no name, and the label column would narrow it)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QLabel, QWidget

    row = widget.native.parentWidget()
    direct = Qt.FindChildOption.FindDirectChildrenOnly
    # a labelled row holds two widgets, the name and *widget*; anything else is not such a row
    if row is None or len(row.findChildren(QWidget, options=direct)) != 2:
        return
    for label in row.findChildren(QLabel, options=direct):
        if label is not widget.native:
            label.hide()


def ask_overwrite(path: Path) -> bool:
    """The default confirmation before a file is replaced: a Qt question box."""
    from qtpy.QtWidgets import QMessageBox

    buttons = QMessageBox.StandardButton  # the scoped enum: Qt6 has no QMessageBox.Yes
    answer = QMessageBox.question(
        None,
        "Overwrite?",
        f"{path} already exists. Overwrite it?",
        buttons.Yes | buttons.No,
        buttons.No,
    )
    return answer == buttons.Yes
