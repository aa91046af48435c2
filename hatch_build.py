"""Hatch build hook: the package carries the top-level npe2 manifest ``napari.yaml``.

napari finds a plugin's manifest through the entry point ``napari_resample:napari.yaml``, that
is as a file inside the package directory. The manifest lives at the repository's top level
(where the napari plugin template and the hub look for it), and a symlink into the package would
reach Windows checkouts as a text file holding a path. So the build puts a copy there:

- a wheel gets ``napari_resample/napari.yaml`` through ``force_include``;
- an editable install resolves the package from ``src/``, so the copy is written to
  ``src/napari_resample/napari.yaml`` (ignored by git; reinstall after editing the manifest,
  tests/test_packaging.py checks that the two agree).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MANIFEST = "napari.yaml"
PACKAGE = "napari_resample"


class ManifestHook(BuildHookInterface):
    """Put the top-level ``napari.yaml`` into the package of every wheel, editable or not."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist carries napari.yaml at its top level (tool.hatch...sdist)
        source = Path(self.root) / MANIFEST
        if not source.is_file():
            raise FileNotFoundError(
                f"the npe2 manifest must sit at the repository's top level, {source} is missing"
            )
        if version == "editable":
            shutil.copyfile(source, Path(self.root) / "src" / PACKAGE / MANIFEST)
        else:
            build_data["force_include"][str(source)] = f"{PACKAGE}/{MANIFEST}"
