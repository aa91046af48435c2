"""What the browser shows of one file, read in a worker thread: no Qt, no viewer.

The input and the output of an :class:`~napari_resample.plugin.browser.model.Entry` are read
as the plugin's reader reads them (:func:`napari_resample.plugin.reader.layer_data_from_volume`:
the same axis order, scale, translate, rotate and shear, so the same world coordinates), as
Labels layers when the run resampled a label map. A file that cannot be read is a sentence in
:attr:`Loaded.problems`; the other is still shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from napari_resample.io.formats import load_volume
from napari_resample.plugin.browser.model import Entry
from napari_resample.plugin.reader import LayerData, layer_data_from_volume

#: The roles of the layers of one file, in the order they are added (the output on top).
ROLES: tuple[str, ...] = ("input", "output")


@dataclass
class Loaded:
    """The layers of one file, ready to add on the main thread.

    Attributes
    ----------
    entry : Entry
    layers : list of LayerData
        ``(data, kwargs, layer_type)``, input first.
    problems : list of str
        One sentence per file that could not be read.
    """

    entry: Entry
    layers: list[LayerData] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of the layers' voxels."""
        return sum(int(getattr(data, "nbytes", 0)) for data, _, _ in self.layers)


def resolve(path: str, folder: str) -> str:
    """*path* as the manifest spells it, found: absolute, relative to the working folder, or
    else relative to the run's output *folder*."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(folder, path)


def layer_name(entry: Entry, role: str) -> str:
    """The layer's name: ``"<role>: <file name>"`` (input and output often share a name)."""
    path = entry.input if role == "input" else entry.output
    return f"{role}: {os.path.basename(os.path.normpath(path or ''))}"


def load_entry(entry: Entry, folder: str) -> Loaded:
    """Read the input and the output of *entry* as napari LayerData (in the calling thread).

    Parameters
    ----------
    entry : Entry
    folder : str
        The run's output folder (relative paths are looked up from it too).
    """
    loaded = Loaded(entry)
    for role in ROLES:
        path = entry.input if role == "input" else entry.output
        if path is None:
            loaded.problems.append(f"The run wrote no output for {entry.input!r}.")
            continue
        found = resolve(path, folder)
        try:
            series = entry.series if role == "input" else None
            volume = load_volume(found, series=series)
            kind = "labels" if entry.is_label_map and volume.data.dtype.kind in "iub" else "image"
            loaded.layers.append(
                layer_data_from_volume(volume, name=layer_name(entry, role), layer_type=kind)
            )
        except Exception as exc:  # any reader's failure: shown, the list keeps working
            loaded.problems.append(f"Cannot read the {role} {found!r}: {exc}")
    return loaded
