"""Resample 3D NIfTI volumes to a target size, keeping field of view, orientation and header.

The public API is :func:`resampling` (file in, file out: the contract of the project's
specification), :func:`resample_to_spacing` and :func:`resample_to_reference` (the two other
kinds of target grid), :func:`resampling_dataset` (a whole folder, parallel and resumable, with
:func:`verify_dataset` and the quality-control report :func:`qc_dataset`) and
:func:`resample_array` (array + affine in, array + affine out).
Importing this package imports neither napari, Qt nor SimpleITK.
"""

from typing import TYPE_CHECKING, Any

from napari_resample.version import __version__

if TYPE_CHECKING:
    from napari_resample.api import resample_to_reference, resample_to_spacing, resampling
    from napari_resample.dataset.run import qc_dataset, resampling_dataset, verify_dataset
    from napari_resample.engine.progress import ResamplingCancelled
    from napari_resample.engine.resample import resample_array

#: Where each name of the public API lives. They are imported on first use (PEP 562), so that
#: the command line installs its Ctrl-C handling before numpy and nibabel load.
_HOMES = {
    "resampling": "napari_resample.api",
    "resample_to_spacing": "napari_resample.api",
    "resample_to_reference": "napari_resample.api",
    "resampling_dataset": "napari_resample.dataset.run",
    "verify_dataset": "napari_resample.dataset.run",
    "qc_dataset": "napari_resample.dataset.run",
    "ResamplingCancelled": "napari_resample.engine.progress",
    "resample_array": "napari_resample.engine.resample",
}

__all__ = [
    "ResamplingCancelled",
    "__version__",
    "qc_dataset",
    "resample_array",
    "resample_to_reference",
    "resample_to_spacing",
    "resampling",
    "resampling_dataset",
    "verify_dataset",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'napari_resample' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
