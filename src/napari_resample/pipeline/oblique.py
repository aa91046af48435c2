"""Oblique grids: SimpleITK's ``ResampleImageFilter`` on the input's voxel grid.

When a reference grid is oblique to the input's voxel grid (no axis-aligned, separable form),
SimpleITK samples the input on its voxel grid (unit spacing, identity direction:
:func:`napari_resample.io.itk.image_from_array`) with the composed voxel map as an
``AffineTransform``, so no LPS/RAS conversion is involved at all. The rules are the separable
engine's: B-spline with mirror boundaries, values clamped to the input's range and rounded for
integer types, the fill outside the input's field of view, non-finite voxels put back by nearest
neighbour, label voting per label (``sitkLabelLinear``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_resample.engine.clamp import Finisher, fill_nonfinite, value_range, work_dtype
from napari_resample.engine.options import Interpolation
from napari_resample.engine.progress import CancelSignal, ProgressCallback, cancel_check


def sample_oblique(
    data: NDArray,
    mapping: NDArray[np.float64],
    shape: tuple[int, int, int],
    mode: Interpolation,
    fill: float | int,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    name: str = "the input",
) -> NDArray:
    """*data* sampled at ``mapping @ v`` for every voxel ``v`` of *shape*, by SimpleITK, in the
    input's type (native byte order: a big-endian input is converted first, SimpleITK takes
    native types only). It reports progress 0 and 1 only, and is cancelled before or after its
    one call.

    Raises
    ------
    ValueError
        What SimpleITK refuses in the data (a type it does not take), naming *name* (the file)
        and its type, in our words, SimpleITK's reason last.
    RuntimeError
        Any other failure of SimpleITK (its own exceptions), worded the same way.
    """
    check = cancel_check(cancel)
    if check is not None:
        check()
    if progress is not None:
        progress(0.0)
    try:
        out = _itk_sample(data, mapping, shape, mode, fill)
    except (RuntimeError, TypeError, ValueError, OverflowError) as exc:
        kind = RuntimeError if isinstance(exc, RuntimeError) else ValueError
        raise kind(
            f"SimpleITK could not resample {name} ({'x'.join(map(str, data.shape))} "
            f"{data.dtype}, {mode}) onto the oblique grid: {itk_reason(exc)}"
        ) from exc
    if check is not None:
        check()
    if progress is not None:
        progress(1.0)
    return out


def _itk_sample(
    data: NDArray,
    mapping: NDArray[np.float64],
    shape: tuple[int, int, int],
    mode: Interpolation,
    fill: float | int,
) -> NDArray:
    """*data* sampled at ``mapping @ v`` for every voxel ``v`` of *shape*, by SimpleITK."""
    native = data.dtype.newbyteorder("=")
    data = data.astype(native, copy=False)  # ">i2" and ">f4" are not SimpleITK types
    if mode == "label":
        labels, index = np.unique(data, return_inverse=True)
        index_type = np.uint16 if labels.size < 65535 else np.uint32
        voted = _itk_run(
            index.reshape(data.shape).astype(index_type), mapping, shape, mode, labels.size
        )
        return np.append(labels, np.asarray(fill, dtype=native))[voted]
    if mode == "nearest":
        values = data.view(np.uint8) if data.dtype == np.bool_ else data.astype(native, copy=False)
        return _itk_run(values, mapping, shape, mode, fill).astype(native, copy=False)
    work = work_dtype(data.dtype)
    source = data
    nonfinite = None
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            nonfinite = ~finite
            source = fill_nonfinite(data, finite) if finite.any() else np.zeros_like(data)
    lo, hi = value_range(source)
    # NaN marks the outside (it survives clamping and rounding); the fill goes in last.
    # Stored integers go in as they are (no float copy); ITK interpolates in double and
    # writes the working type.
    values = source.view(np.uint8) if source.dtype == np.bool_ else source
    sampled = _itk_run(values, mapping, shape, mode, np.nan, out_type=work)
    outside = np.isnan(sampled)
    out = np.empty(shape, dtype=native)
    Finisher(lo, hi, native)(np.where(outside, lo, sampled), out)
    out[outside] = fill
    if nonfinite is not None:  # non-finite voxels go back by nearest neighbour, as in the engine
        hit = _itk_run(nonfinite.view(np.uint8), mapping, shape, "nearest", 0).astype(bool)
        out[hit] = _itk_run(data.astype(native, copy=False), mapping, shape, "nearest", 0)[hit]
    return out


def _itk_run(
    values: NDArray,
    mapping: NDArray[np.float64],
    shape: tuple[int, int, int],
    mode: str,
    default: float,
    out_type: np.dtype | None = None,
) -> NDArray:
    """One ``ResampleImageFilter`` call on the voxel grids (unit spacing, identity direction),
    its output in *out_type* (float32 or float64; default: the input's type)."""
    import SimpleITK as sitk

    from napari_resample.io.itk import array_from_image, image_from_array

    image = image_from_array(values)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(mapping[:3, :3].ravel().tolist())
    transform.SetTranslation(mapping[:3, 3].tolist())
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape])
    resampler.SetTransform(transform)
    resampler.SetInterpolator(_ITK_INTERPOLATORS[mode]())
    resampler.SetDefaultPixelValue(float(default))
    if out_type is None:
        resampler.SetOutputPixelType(image.GetPixelID())
    else:
        kind = sitk.sitkFloat32 if np.dtype(out_type) == np.float32 else sitk.sitkFloat64
        resampler.SetOutputPixelType(kind)
    out, _ = array_from_image(resampler.Execute(image))
    return out


def itk_reason(exc: BaseException) -> str:
    """SimpleITK's reason in one line: its text after ``sitk::ERROR:`` (without the source
    file and line of its build), or the exception's first line.

    Examples
    --------
    >>> itk_reason(RuntimeError("Exception thrown in SimpleITK X: /b/sitk.hxx:158:\\n"
    ...                         "sitk::ERROR: Pixel type: 64-bit integer is not supported"))
    'Pixel type: 64-bit integer is not supported'
    """
    text = str(exc)
    if "ERROR:" in text:
        text = text.rsplit("ERROR:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _sitk(name: str) -> Any:
    def get() -> Any:
        import SimpleITK as sitk

        return getattr(sitk, name)

    return get


#: SimpleITK's interpolator for each mode (``sitkBSpline`` is cubic, mirror boundaries;
#: ``sitkLabelLinear`` votes per label with linear weights, as our ``"label"``).
_ITK_INTERPOLATORS = {
    "linear": _sitk("sitkLinear"),
    "bspline": _sitk("sitkBSpline"),
    "nearest": _sitk("sitkNearestNeighbor"),
    "label": _sitk("sitkLabelLinear"),
}
