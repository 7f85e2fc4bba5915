"""A few of ``torch._prims_common``'s shape helpers that libraries import by that path
(torchao's NF4 tensor and uint4 layout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["infer_size", "make_contiguous_strides_for", "suggest_memory_format"]


def make_contiguous_strides_for(shape: Sequence[int], row_major: bool = True) -> tuple[int, ...]:
    """The strides of a contiguous tensor of ``shape`` (a size-0 or size-1 dim counts as 1);
    with ``row_major=False``, the strides of a column-major matrix batch."""
    if not shape:
        return ()
    strides = []
    multiplier = 1
    for size in reversed(shape):
        strides.append(multiplier)
        multiplier *= max(int(size), 1)
    result = tuple(reversed(strides))
    if row_major:
        return result
    if len(shape) < 2:
        return result
    # the last two dims swapped: column-major matrices, batches still row-major
    return result[:-2] + (1, max(int(shape[-2]), 1))


def _strides_like_channels_last(shape: Sequence[int], strides: Sequence[int]) -> bool:
    # torch's reading of strides (c10's is_channels_last_strides_*): walking C, W, (D,) H, N,
    # each stride must reach at least the extent covered so far; ambiguous cases (N111 with
    # equal strides) stay NCHW
    order = (1, 3, 2, 0) if len(shape) == 4 else (1, 4, 3, 2, 0)
    if strides[1] == 0:
        return False
    covered = 0
    for d in order:
        if shape[d] == 0 or strides[d] < covered:
            return False
        if d == 0 and covered == strides[1]:
            return False
        covered = strides[d] * (shape[d] if shape[d] > 1 else 1)
    return True


def suggest_memory_format(x: Any):
    """``ember.channels_last`` (``channels_last_3d``) where ``x``'s strides read as NHWC
    (NDHWC), otherwise ``ember.contiguous_format``; from the strides, as torch's."""
    import ember

    if x.ndim in (4, 5) and _strides_like_channels_last(x.shape, x.stride()):
        return ember.channels_last if x.ndim == 4 else ember.channels_last_3d
    return ember.contiguous_format


def infer_size(shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """``shape`` with its one ``-1`` resolved so that it holds ``numel`` elements."""
    dims = [int(s) for s in shape]
    unknown = [i for i, s in enumerate(dims) if s == -1]
    if len(unknown) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = 1
    for s in dims:
        if s != -1:
            if s < 0:
                raise RuntimeError(f"invalid shape dimension {s}")
            known *= s
    if unknown:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(dims)}' is invalid for input of size {numel}")
        dims[unknown[0]] = numel // known
    elif known != numel:
        raise RuntimeError(f"shape '{list(dims)}' is invalid for input of size {numel}")
    return tuple(dims)
