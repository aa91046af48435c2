"""The examples in the core's docstrings run and print what they say."""

import doctest
import importlib

import pytest

CORE = [
    "_geometry",
    "_options",
    "_resample",
    "_operators",
    "_separable",
    "_vote",
    "_io",
    "_api",
    "_phantom",
]


@pytest.mark.parametrize("name", CORE)
def test_docstring_examples(name):
    module = importlib.import_module(f"napari_resample.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no example"
