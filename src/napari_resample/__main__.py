"""``python -m napari_resample``: the command line."""

import sys

from napari_resample.cli import main

sys.exit(main())
