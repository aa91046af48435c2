"""Resample 3D NIfTI volumes to a target size, keeping field of view, orientation and header.

The public API is :func:`resampling` (file in, file out: the contract of the project's
specification), :func:`resample_to_spacing` and :func:`resample_to_reference` (the two other
kinds of target grid), :func:`resampling_dataset` (a whole folder, parallel and resumable, with
:func:`verify_dataset`) and :func:`resample_array` (array + affine in, array + affine out).
Importing this package imports neither napari, Qt nor SimpleITK.
"""

from napari_resample.api import resample_to_reference, resample_to_spacing, resampling
from napari_resample.dataset.run import resampling_dataset, verify_dataset
from napari_resample.engine.progress import ResamplingCancelled
from napari_resample.engine.resample import resample_array
from napari_resample.version import __version__

__all__ = [
    "ResamplingCancelled",
    "__version__",
    "resample_array",
    "resample_to_reference",
    "resample_to_spacing",
    "resampling",
    "resampling_dataset",
    "verify_dataset",
]
