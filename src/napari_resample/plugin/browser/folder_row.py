"""The folder row: a run's output folder typed or chosen, then opened."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class FolderRow(QWidget):
    """A path field, "Browse..." (a folder dialog) and "Open".

    Parameters
    ----------
    on_open : callable
        ``on_open(path: str)``, called with the folder to open (Return in the field, Open, or a
        folder chosen in the dialog).
    """

    def __init__(self, on_open: Callable[[str], object]) -> None:
        super().__init__()
        self.on_open = on_open
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("output folder of a dataset run")
        self.path_edit.setToolTip(
            "The folder a dataset run wrote into: its qc/qc.json (or its manifest) is listed."
        )
        self.browse_button = QPushButton("Browse...")
        self.open_button = QPushButton("Open")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (self.path_edit, self.browse_button, self.open_button):
            layout.addWidget(part)
        layout.setStretch(0, 1)
        self.path_edit.returnPressed.connect(self._open)
        self.open_button.clicked.connect(self._open)
        self.browse_button.clicked.connect(self.browse)

    def show_path(self, path: str) -> None:
        """Show *path* in the field (without opening it)."""
        self.path_edit.setText(path)

    def _open(self, *_: object) -> None:
        self.on_open(self.path_edit.text().strip())

    def browse(self, *_: object) -> None:
        """Ask for a folder in a dialog; open it when one is chosen."""
        folder = QFileDialog.getExistingDirectory(
            self, "Open the output folder of a dataset run", self.path_edit.text()
        )
        if folder:
            self.show_path(folder)
            self.on_open(folder)
