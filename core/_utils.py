"""A few of ``torch._utils``'s helpers that libraries import by that path (fastai's fp16 utils
flatten parameter lists into one buffer with them)."""

from __future__ import annotations

from collections.abc import Sequence

from .tensor import Tensor

__all__ = ["_flatten_dense_tensors", "_unflatten_dense_tensors"]


def _flatten_dense_tensors(tensors: Sequence[Tensor]) -> Tensor:
    """One 1-D tensor holding every tensor of ``tensors`` flattened, in order (a copy)."""
    from . import cat

    tensors = list(tensors)
    if not tensors:
        raise ValueError("_flatten_dense_tensors: expected a non-empty sequence of tensors")
    if len(tensors) == 1:
        return tensors[0].contiguous().view(-1)
    return cat([t.contiguous().view(-1) for t in tensors])


def _unflatten_dense_tensors(flat: Tensor, tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Views of ``flat`` shaped like each tensor of ``tensors`` (the inverse of
    :func:`_flatten_dense_tensors`)."""
    total = sum(t.numel() for t in tensors)
    if flat.numel() != total:
        raise ValueError(
            f"_unflatten_dense_tensors: flat has {flat.numel()} elements, the tensors need {total}"
        )
    outputs = []
    offset = 0
    for t in tensors:
        n = t.numel()
        outputs.append(flat.narrow(0, offset, n).view_as(t))
        offset += n
    return tuple(outputs)
