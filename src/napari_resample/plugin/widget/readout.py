"""The read-out panel: shows a :class:`napari_resample.plugin.widget.model.ReadOut`.

Three word-wrapped labels across the dock's full width: the summary (the chosen layer now, the
result, the memory a run needs), the target's refusal (red) or low-overlap warning (orange), and
the memory refusal (red). A warning row shows only when it says something.
"""

from __future__ import annotations

from magicgui.widgets import Label, Widget

from napari_resample.plugin.widget.model import ReadOut
from napari_resample.plugin.widget.status import full_width, never_widen

#: Colours of the read-out's refusals (Run disabled) and warnings.
RED, ORANGE = "color: red", "color: #e08000"


class ReadOutPanel:
    """The labels of the read-out.

    Attributes
    ----------
    summary, target_warning, memory_warning : magicgui.widgets.Label
    shown : ReadOut
        What the labels show now.
    """

    def __init__(self) -> None:
        self.summary = Label(name="summary", label="")
        self.summary.tooltip = "The chosen layer now, the result, and the memory a run needs."
        self.target_warning = Label(name="target_warning", label="")
        self.target_warning.tooltip = (
            "Why the target cannot be run (red), or how little of the matched layer the "
            "source covers (orange)."
        )
        self.memory_warning = Label(name="memory_warning", label="")
        self.memory_warning.tooltip = "Shown when a run would need more memory than is free now."
        self.shown = ReadOut(())

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The panel's widgets, in their order in the dock."""
        return (self.summary, self.target_warning, self.memory_warning)

    def fit_to_dock(self) -> None:
        """Wrap the labels to the dock's full width (once they are in it)."""
        for label in self.widgets:
            never_widen(label)  # type: ignore[arg-type]
            full_width(label)
        self.memory_warning.native.setStyleSheet(RED)
        self.clear()

    def clear(self) -> None:
        """Nothing refused, nothing warned (before a new read-out is computed)."""
        self.shown = ReadOut(())
        self._say(self.target_warning, "")
        self._say(self.memory_warning, "")

    @staticmethod
    def _say(label: Label, text: str) -> None:
        """*text* in *label*, its row shown only when there is something to say."""
        label.value = text
        label.visible = bool(text)

    def show(self, read_out: ReadOut) -> None:
        """Show *read_out*."""
        self.shown = read_out
        self.summary.value = read_out.text
        self._say(self.memory_warning, read_out.memory_warning)
        if read_out.refusal is not None:
            self.target_warning.native.setStyleSheet(RED)
            self._say(self.target_warning, read_out.refusal)
        elif read_out.warning is not None:
            self.target_warning.native.setStyleSheet(ORANGE)
            self._say(self.target_warning, read_out.warning)
        else:
            self._say(self.target_warning, "")
