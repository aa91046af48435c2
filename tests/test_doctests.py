"""Every docstring example in the package runs and prints what it says.

The modules are discovered (``pkgutil.walk_packages``), not listed, so a new module's examples
run without anyone remembering to add it here. A module without examples passes; a module whose
source holds ``>>>`` must have doctest find and run them.
"""

import doctest
import importlib
import os
import pkgutil
from pathlib import Path

import pytest

import napari_resample

#: Not imported: ``python -m napari_resample`` runs the command line when imported.
SCRIPTS = {"napari_resample.__main__"}
#: Need Qt, hence a display (the suite runs under pytest-xvfb, which provides one).
NEEDS_DISPLAY = {"napari_resample.plugin.widget.dock"}


def _modules() -> list[str]:
    names = [napari_resample.__name__]
    for info in pkgutil.walk_packages(napari_resample.__path__, f"{napari_resample.__name__}."):
        names.append(info.name)
    return sorted(set(names) - SCRIPTS)


MODULES = _modules()


def _has_examples(module) -> bool:
    """Whether *module*'s source holds an example line not marked ``+SKIP``."""
    path = getattr(module, "__file__", None)
    if path is None:
        return False
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return any(line.lstrip().startswith(">>>") and "+SKIP" not in line for line in lines)


def test_discovery_finds_the_modules_with_examples():
    # Guards the discovery itself: these modules hold examples today.
    expected = {
        "engine.geometry",
        "engine.options",
        "io.names",
        "engine.labels",
        "engine.resample",
        "engine.operators",
        "engine.vote",
        "io.nifti",
        "io.phantom",
        "plugin.layout",
    }
    assert {f"napari_resample.{name}" for name in expected} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in NEEDS_DISPLAY and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        pytest.skip(f"{name} imports Qt, which needs a display: run under pytest-xvfb or Xvfb")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if _has_examples(module):
        assert result.attempted > 0, f"{name} has examples but none ran"
