"""Watching the voxels of a file's run as they pass: :class:`Observers`.

A front door that wants to know more of a run than its result (quality control summarises the
input and the output) hands :func:`napari_resample.pipeline.run.resample_file` an
:class:`Observers`: the input's stored voxels and the output's are shown to them block by block,
in k order, as the streamed engine reads and writes them (or whole, on the in-memory path), so
watching costs no second read of either file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from napari_resample.engine.stream import Block


class BlockObserver(Protocol):
    """Sees one volume's stored voxels: :meth:`begin` (again when a run starts over), then
    :meth:`add` for every block of whole k-planes ``(I, J, n)`` in k order, and
    :meth:`value_range` when :meth:`begin` said the run would give it (the engine computes the
    range anyway: an observer need not do it twice)."""

    def begin(
        self,
        shape: tuple[int, ...],
        affine: Any,
        dtype: np.dtype,
        label_map: bool,
        *,
        range_given: bool = False,
    ) -> None: ...

    def add(self, k0: int, block: np.ndarray) -> None: ...

    def value_range(self, lo: float, hi: float) -> None:
        """The volume's exact finite [min, max], as the engine found it (after every block;
        promised by ``begin(..., range_given=True)``)."""


@dataclass(frozen=True)
class Observers:
    """The observers of a run's input and output."""

    input: BlockObserver
    output: BlockObserver


def labels_counted(mode: str, dtype: np.dtype) -> bool:
    """Whether a run in *mode* on stored type *dtype* makes a label map whose labels an
    observer counts: label voting, or nearest neighbour on integers."""
    return mode == "label" or (mode == "nearest" and np.dtype(dtype).kind in "iub")


def observed(blocks: Iterator[Block], observer: BlockObserver) -> Iterator[Block]:
    """The blocks of *blocks*, each shown to *observer* as it passes."""
    for k0, block in blocks:
        observer.add(k0, block)
        yield k0, block
