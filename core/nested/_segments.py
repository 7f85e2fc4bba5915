"""Row bookkeeping of jagged tensors: the components' rows of ``values`` (dropping the gaps of
a non-contiguous view) and per-component sums, both differentiable."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._tensor import NestedTensor


def row_index(nt: NestedTensor, which=None) -> np.ndarray:
    """The rows of ``values`` (along the ragged dimension) of components ``which`` (default
    all), in order."""
    starts, lens = nt._starts_list(), nt._lengths_list()
    which = range(len(lens)) if which is None else which
    parts = [np.arange(starts[i], starts[i] + lens[i], dtype=np.int64) for i in which]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def is_packed(nt: NestedTensor) -> bool:
    """Whether the components fill ``values`` from its first row to its last, without gaps."""
    if nt._lengths is not None:
        return False
    off = nt._offsets.cpu()._data
    return int(off[0]) == 0 and int(off[-1]) == int(nt._values.shape[nt._ragged_idx - 1])


def packed_values(nt: NestedTensor) -> Tensor:
    """``values`` with the ragged dimension first and only the components' rows."""
    r = nt._ragged_idx - 1
    v = nt._values.movedim(r, 0) if r else nt._values
    if is_packed(nt):
        return v
    return v[Tensor._wrap(row_index(nt)).to(v.device)]


def segment_sum(nt: NestedTensor, v: Tensor) -> Tensor:
    """Per-component sums of the packed rows ``v`` (``packed_values`` layout): (B, ...)."""
    lens = nt._lengths_list()
    seg = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    out = v.new_zeros((len(lens), *v.shape[1:]))
    return out.index_add(0, Tensor._wrap(seg).to(v.device), v)
