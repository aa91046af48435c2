"""The command line: ``napari-resample INPUT OUTPUT_DIR --size X Y Z`` (``python -m`` too).

INPUT is one volume (a NIfTI, NRRD or MetaImage file, or a folder holding DICOM files: a series)
or a folder of volumes, which is a dataset run (:func:`napari_resample.resampling_dataset`:
parallel, resumable, with a manifest). Outputs are always NIfTI. ``--sample`` replaces INPUT
with the built-in phantom and its label map, written to OUTPUT_DIR first.

Every error line is ``napari-resample: error: <sentence>`` on standard error
(:func:`print_error`). An option that does nothing in a call (``--fill-value`` without
``--like``, a dataset option with one volume, anything but ``--quiet`` with ``--verify``) is
refused as bad usage (exit code 2), as a mistyped one is.
"""

from napari_resample.cli.parser import build_parser, print_error
from napari_resample.cli.run import main

__all__ = ["build_parser", "main", "print_error"]
