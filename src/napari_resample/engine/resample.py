"""The resampling engine's entry point: a 3D array in, a 3D array of another size out.

:func:`resample_array` checks its arguments, computes the new affine
(:mod:`napari_resample.engine.geometry`) and dispatches on the interpolation mode:

- one engine for every mode: the streamed engine (:mod:`napari_resample.engine.stream`) over the
  array's own contiguous planes in memory (:func:`resample_planes`),
  over blocks of planes read from an array-like or a file otherwise, so the result is the same
  bit for bit;
- ``"bspline"`` and ``"linear"``: one 1-D operator per axis
  (:mod:`napari_resample.engine.operators`);
- ``"nearest"``: by pure indexing (the one nearest-index rule
  :func:`napari_resample.engine.geometry.nearest_index`), exact and in the input's type; it
  holds the edge value past the last voxel;
- ``"label"``: label voting (:mod:`napari_resample.engine.vote`).

Non-finite voxels (NaN, +-Inf) in float data are handled here too, so that they do not spread:
they are replaced by their nearest finite neighbour before interpolating, and put back by
nearest neighbour afterwards.

Values are computed, clamped to the input's finite [min, max], rounded and cast by the rules of
:mod:`napari_resample.engine.clamp`, and returned in the input's data type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from napari_resample.engine.clamp import fill_nonfinite, value_range, work_dtype
from napari_resample.engine.geometry import (
    Positions,
    grid_positions,
    inside_positions,
    is_identity,
    resampled_affine,
)
from napari_resample.engine.memory import check_memory, default_budget, format_bytes, parse_bytes
from napari_resample.engine.options import (
    ANCHORS,
    INTERPOLATIONS,
    Anchor,
    Interpolation,
    check_choice,
    validate_size,
)
from napari_resample.engine.progress import (
    CancelSignal,
    ProgressCallback,
    Ticker,
    cancel_check,
)
from napari_resample.engine.threads import SLAB_ELEMENTS, engine_threads


def resample_array(
    data: ArrayLike,
    desired_volume: Sequence[int],
    *,
    affine: ArrayLike | None = None,
    interpolation: Interpolation = "bspline",
    anchor: Anchor = "origin",
    antialias: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
    out: Any = None,
    max_memory: int | str | None = None,
) -> tuple[Any, NDArray[np.float64]]:
    """Resample a 3D volume to *desired_volume* voxels, keeping its field of view.

    Parameters
    ----------
    data : (X, Y, Z) array_like
        The volume in NIfTI voxel order (i, j, k). Any integer or float type. A numpy array, or
        any array-like with ``shape``, ``dtype`` and slicing along its last axis (numpy memmap,
        zarr, h5py, dask): those are read a block of k-planes at a time.
    desired_volume : (3,) sequence of int
        Output size (X, Y, Z), in the same order as ``data.shape``.
    affine : (4, 4) array_like, voxel -> world mm, optional
        Geometry of *data*; identity when None.
    interpolation : {"bspline", "linear", "nearest", "label"}
        Cubic B-spline (default), trilinear, nearest neighbour, or label-preserving voting
        for segmentations.
    anchor : {"origin", "center"}
        ``"origin"`` keeps the centre of the first voxel in place (the specification's
        behaviour); ``"center"`` keeps the outer edges of the field of view.
    antialias : bool
        Smooth each downsampled axis with a Gaussian (sigma ``(f - 1) / 2`` input voxels for a
        factor ``f = old / new``) before sampling, so fine patterns do not alias.
        Ignored for ``"nearest"`` and ``"label"``.
    progress : callable, optional
        Called with the fraction of the work done (0 to 1) as the work proceeds: after every
        chunk of output planes, monotone, 1.0 at the end. Called from the calling thread.
    cancel : threading.Event or callable returning bool, optional
        Checked before the work and between chunks; once set (or returning True) the call stops
        within one chunk and raises :class:`ResamplingCancelled`. Set it from another thread.
    out : (X', Y', Z') array-like, optional
        Where to write the result (a numpy array, zarr, h5py dataset, memmap, ...), a chunk of
        k-planes at a time; returned as the first value. Its shape must be *desired_volume*;
        values are computed in the input's data type and assigned, so its data type must hold
        every value of the input's exactly (the same type, or a wider one by numpy's ``"safe"``
        casting: int16 into int32 or float32; not int16 into uint8, nor float64 into float32).
    max_memory : int or str, optional
        Bytes this call may allocate (``"2G"``, ``"800M"`` or an int); default: half of the
        memory available now. When the in-memory engine (the input held in memory, the output
        and :func:`estimate_memory`'s buffers) would need more, or with *out* or an array-like
        *data*, the volume is **streamed**: k-planes in, k-planes out, with a window of planes
        in memory (:mod:`napari_resample.engine.stream`); the result is the same, bit for bit.

    Returns
    -------
    out : (X', Y', Z') ndarray or *out*
        Same data type as *data* (native byte order). Values are clamped to the input's finite
        [min, max]; integer types are rounded to nearest. A same-size request returns an exact
        copy.
    new_affine : (4, 4) ndarray of float64
        ``affine`` with its voxel columns scaled by ``old_size / new_size`` (and, for
        ``anchor="center"``, its origin moved by half the spacing change).

    Raises
    ------
    ValueError
        Bad arguments (not 3D, not numeric, empty, a bad size or option, an *out* of another
        shape or of a data type that cannot hold the input's values: both types named).
    MemoryError
        Before any work, when the output and work buffers (:func:`estimate_memory`) need more
        memory than is available now, or than *max_memory* even streamed (one plane too big);
        the message gives both sizes.

    Notes
    -----
    Float data with NaN or Inf is read into memory (its non-finite voxels are filled from
    their 3D nearest finite neighbours, a rule over the whole volume) before the engine runs
    over its planes, so it must fit *max_memory*.

    Non-finite voxels (NaN, +-Inf) in float data do not spread: they are replaced by their
    nearest finite neighbour for interpolation, and each output voxel whose nearest input voxel
    was non-finite receives that voxel's value (so a volume with no finite voxel is resampled
    by nearest neighbour). In ``"label"`` mode NaN is a label like any other.

    Examples
    --------
    >>> vol = np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2)
    >>> out, aff = resample_array(vol, (2, 2, 2), affine=np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> out.shape, out.dtype, np.diag(aff).tolist()
    ((2, 2, 2), dtype('int16'), [1.0, 1.0, 2.0, 1.0])
    """
    in_ram = isinstance(data, np.ndarray) and not isinstance(data, np.memmap)
    source: Any = data if in_ram or _is_array_like(data) else np.asarray(data)
    shape = tuple(int(n) for n in source.shape)
    dtype = np.dtype(source.dtype)
    if len(shape) != 3:
        raise ValueError(f"data must be a 3D array (X, Y, Z), got shape {shape}")
    if dtype.kind not in "biuf":
        raise ValueError(f"data must hold integers or floats, got dtype {dtype}")
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("anchor", anchor, ANCHORS)
    size = validate_size(desired_volume)
    if 0 in shape:
        raise ValueError(f"data must not be empty, got shape {shape}")
    if out is not None:
        check_out(out, size, dtype)
    budget = default_budget() if max_memory is None else parse_bytes(max_memory)
    base = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    new_affine = resampled_affine(base, shape, size, anchor)
    positions = grid_positions(shape, size, anchor)
    in_memory = estimate_memory(shape, dtype, size, interpolation, antialias=antialias)
    if not (isinstance(source, np.ndarray) and type(source) is np.ndarray):
        in_memory += math.prod(shape) * dtype.itemsize  # read into memory first

    def in_memory_result() -> NDArray:
        return sample_grid(
            np.asarray(source),
            positions,
            interpolation=interpolation,
            antialias=antialias,
            progress=progress,
            cancel=cancel,
        )

    if out is None and in_memory <= budget:
        return in_memory_result(), new_affine
    from napari_resample.engine.stream import NonFiniteInput, stream_array

    target = out
    if target is None:
        check_memory(
            math.prod(size) * dtype.itemsize,
            f"the result of resampling a {shape} {dtype} volume to {size} ({interpolation})",
        )
        target = np.empty(size, dtype=dtype.newbyteorder("="))
    stream_budget = budget if out is not None else budget - math.prod(size) * dtype.itemsize
    check = cancel_check(cancel)
    try:
        stream_array(
            source,
            (shape[0], shape[1], shape[2]),
            dtype,
            positions,
            interpolation=interpolation,
            antialias=antialias,
            out=target,
            budget=stream_budget,
            progress=progress,
            check=check,
        )
    except NonFiniteInput:
        if in_memory > budget:
            raise MemoryError(
                f"the {shape} {dtype} volume holds NaN or Inf values, which are resampled in "
                f"memory only, and that needs {format_bytes(in_memory)}, over max_memory "
                f"({format_bytes(budget)})"
            ) from None
        target[...] = in_memory_result()
    return target, new_affine


def check_out(out: Any, size: tuple[int, int, int], dtype: np.dtype) -> None:
    """Refuse an *out* that cannot receive the result exactly: the wrong shape, or a data type
    that cannot hold every value of *dtype* (numpy's ``"safe"`` casting: int16 into int32 or
    float32 is exact, int16 into uint8 or float64 into float32 would wrap or round silently).

    Examples
    --------
    >>> check_out(np.zeros((2, 2, 2), np.float32), (2, 2, 2), np.dtype(np.int16))
    >>> check_out(np.zeros((2, 2, 2), np.uint8), (2, 2, 2), np.dtype(np.int16))
    Traceback (most recent call last):
    ...
    ValueError: out has dtype uint8, which cannot hold every value of the result's dtype int16 \
(values would wrap or round): give out the input's dtype or one that holds it exactly
    """
    if tuple(int(n) for n in getattr(out, "shape", ())) != size:
        raise ValueError(
            f"out must have the shape {size}, got {getattr(out, 'shape', type(out).__name__)}"
        )
    out_dtype = getattr(out, "dtype", None)
    if out_dtype is None:
        return  # an array-like that converts what it is given: its own rule
    try:
        exact = np.can_cast(dtype, np.dtype(out_dtype), casting="safe")
    except TypeError as exc:
        raise ValueError(f"out has a dtype numpy does not know: {out_dtype!r}") from exc
    if not exact:
        raise ValueError(
            f"out has dtype {np.dtype(out_dtype)}, which cannot hold every value of the result's "
            f"dtype {dtype} (values would wrap or round): give out the input's dtype or one "
            "that holds it exactly"
        )


def _is_array_like(data: object) -> bool:
    """Whether *data* can be read by slices without converting it whole (a memmap, zarr, h5py
    or dask array: anything with a shape, a dtype and slicing)."""
    return all(hasattr(data, name) for name in ("shape", "dtype", "__getitem__"))


#: Bytes per voxel of a slab in flight, beyond its work-type copies: label voting's scores and
#: weights of the 8 corners (float64), masks and indices.
_SLAB_OVERHEAD = 160


def estimate_memory(
    in_shape: Sequence[int],
    in_dtype: DTypeLike,
    out_shape: Sequence[int],
    interpolation: str,
    *,
    antialias: bool = False,
) -> int:
    """Bytes :func:`resample_array` allocates beyond its input: a generous estimate.

    The output, the largest full-size intermediate (one axis resampled, in the working type),
    the per-axis operators, and the slabs in flight on every thread. Float input with NaN or
    Inf needs a filled copy of the input on top (its size plus 13 bytes per voxel), not counted.

    Parameters
    ----------
    in_shape, out_shape : (3,) sequence of int
    in_dtype : dtype
    interpolation : {"bspline", "linear", "nearest", "label"}
    antialias : bool

    Returns
    -------
    int

    Examples
    --------
    >>> estimate_memory((512, 512, 300), "int16", (512, 512, 300), "bspline")  # a copy
    157286400
    >>> estimate_memory((256, 256, 256), "int16", (512, 512, 512), "bspline") > 2**28
    True
    """
    din, dout = tuple(int(n) for n in in_shape), tuple(int(n) for n in out_shape)
    item = np.dtype(in_dtype).itemsize
    total = math.prod(dout) * item
    if din == dout:
        return total
    changed = [a for a in range(3) if din[a] != dout[a]]
    one_axis = [math.prod(dout[b] if b == a else din[b] for b in range(3)) for a in changed]
    if interpolation == "nearest":
        return total + item * max(one_axis)
    threads = engine_threads()
    slab = max(SLAB_ELEMENTS, math.prod(dout[1:]) + math.prod(din[1:]))
    # a slab is a piece of one full-size array: a small volume's never reach SLAB_ELEMENTS
    slab = min(slab, max(math.prod(din), math.prod(dout), *one_axis))
    if interpolation == "label":
        # the streamed engine's chunks are cut to CHUNK_BYTES, its votes included; the ring
        # holds a few input planes
        from napari_resample.engine.stream_plan import CHUNK_BYTES

        votes = min(threads * slab * (9 * item + _SLAB_OVERHEAD), CHUNK_BYTES)
        return total + votes + 8 * din[0] * din[1] * item
    dtype = np.dtype(in_dtype)
    work = work_dtype(dtype).itemsize
    if len(changed) > 1:
        total += work * max(one_axis)
    if dtype.kind == "f":
        total += math.prod(din)  # the finite mask
    for a in changed:  # the operators: float64 and int32 per weight while built, twice
        width = 54 + (4 * din[a] // dout[a] + 1 if antialias and din[a] > dout[a] else 0)
        total += 2 * 12 * dout[a] * min(din[a], width)
    return total + threads * 3 * slab * work


def _resample_values(
    arr: NDArray,
    positions: Positions,
    interpolation: str,
    antialias: bool,
    progress: ProgressCallback | None,
    check: Callable[[], None] | None = None,
) -> NDArray:
    native = arr.dtype.newbyteorder("=")
    if all(is_identity(n, x) for n, x in zip(arr.shape, positions, strict=True)):
        return np.array(arr, dtype=native, copy=True)
    if interpolation in ("nearest", "label") or arr.dtype.kind != "f":
        return resample_planes(arr, positions, interpolation, antialias, progress, check)
    finite = np.isfinite(arr)
    if finite.all():
        return resample_planes(arr, positions, interpolation, antialias, progress, check)
    if not finite.any():  # nothing to interpolate: every voxel keeps its nearest's value
        return resample_planes(arr, positions, "nearest", False, progress, check)
    if check is not None:
        check()
    out = resample_planes(
        fill_nonfinite(arr, finite), positions, interpolation, antialias, progress, check
    )
    # Non-finite voxels go back where they were, by nearest neighbour, instead of spreading.
    hit = resample_planes((~finite).view(np.uint8), positions, "nearest", False).view(bool)
    out[hit] = resample_planes(arr, positions, "nearest", False)[hit]
    return out


def sample_grid(
    data: NDArray,
    positions: Positions,
    *,
    interpolation: Interpolation,
    antialias: bool = False,
    fill_value: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal | None = None,
) -> NDArray:
    """Sample a 3D array at *positions* (continuous input indices per axis): the engine behind
    :func:`resample_array`, for any axis-aligned grid (flipped, shifted, reaching outside).

    With *fill_value*, output voxels outside the input's field of view (further than half a
    voxel from every voxel centre along some axis,
    :func:`napari_resample.engine.geometry.inside_positions`) get it;
    without, the edge rules extend the volume there. Checks memory first; no other argument
    checks (callers validate).

    Examples
    --------
    >>> x = (np.array([-1.0, 0.0, 1.0]), np.array([0.0]), np.array([0.0]))
    >>> sample_grid(np.arange(2.0).reshape(2, 1, 1), x, interpolation="linear",
    ...             fill_value=-5).ravel().tolist()
    [-5.0, 0.0, 1.0]
    """
    size = tuple(x.size for x in positions)
    check_memory(
        estimate_memory(data.shape, data.dtype, size, interpolation, antialias=antialias),
        f"resampling a {data.shape} {data.dtype} volume to {size} ({interpolation})",
    )
    check = cancel_check(cancel)
    job = Ticker(1, progress, check)  # the engines tick their own steps; this is the frame
    job.before_step()
    out = _resample_values(data, positions, interpolation, antialias, progress, check)
    if fill_value is not None:
        for axis, (n, x) in enumerate(zip(data.shape, positions, strict=True)):
            outside = ~inside_positions(n, x)
            if outside.any():
                out[(slice(None),) * axis + (outside,)] = fill_value
    job.before_step()
    job.finished()
    return out


def resample_planes(
    arr: NDArray,
    positions: Positions,
    interpolation: str,
    antialias: bool,
    progress: ProgressCallback | None = None,
    check: Callable[[], None] | None = None,
) -> NDArray:
    """An in-memory (finite) *arr* sampled at *positions*: the engine's
    :func:`~napari_resample.engine.stream.stream_array` over the array's own contiguous planes
    (:func:`~napari_resample.engine.stream.stream_axes`), its value range known, so each chunk
    is finished at once. A decreasing streamed axis (a flipped grid) is run increasing and its
    output flipped back."""
    # Imported here: scipy.sparse costs 0.25 s, and napari imports the reader (which needs
    # none of the engine) on every file open.
    from napari_resample.engine.stream import stream_array, stream_axes

    native = arr.dtype.newbyteorder("=")
    axis = stream_axes(arr)[2]
    # the result in the array's layout: its streamed planes contiguous
    result = np.empty(tuple(x.size for x in positions), native, order="F" if axis == 2 else "C")
    x = positions[axis]
    flip = x.size > 1 and bool(x[1] < x[0])
    at = list(positions)
    if flip:
        at[axis] = x[::-1]
    stream_array(
        arr,
        (arr.shape[0], arr.shape[1], arr.shape[2]),
        arr.dtype,
        (at[0], at[1], at[2]),
        interpolation=interpolation,
        antialias=antialias,
        out=np.flip(result, axis) if flip else result,
        budget=None,
        progress=progress,
        check=check,
        value_range=value_range(arr) if interpolation in ("bspline", "linear") else None,
    )
    return result
