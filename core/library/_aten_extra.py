"""ATen ops with no ember function of the same name (``torch.ops.aten._to_copy``, ...).

``ember.ops.aten.<name>`` resolves a name to ember's function of that name; the ops here are
ATen's internal spellings that libraries reach for directly (PyTorch Geometric's ``Index`` and
``EdgeIndex`` register ``__torch_dispatch__`` rules for them at import), written over ember's
public functions with ATen's signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ATEN_EXTRA"]


def _to_copy(
    self,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory: bool | None = None,
    non_blocking: bool = False,
    memory_format=None,
):
    """``aten._to_copy``: ``self.to(device, dtype, copy=True)``."""
    return self.to(device=device, dtype=dtype, non_blocking=non_blocking, copy=True)


def _pin_memory(self, device=None):
    """``aten._pin_memory``: a copy in page-locked memory (``Tensor.pin_memory``)."""
    return self.pin_memory()


def index(self, indices: Sequence[Any]):
    """``aten.index.Tensor``: advanced indexing; a ``None`` entry keeps that dimension whole."""
    key = tuple(slice(None) if i is None else i for i in indices)
    return self[key]


def slice_(self, dim: int = 0, start: int | None = None, end: int | None = None, step: int = 1):
    """``aten.slice.Tensor``: ``self[..., start:end:step]`` along ``dim``, as a view."""
    if step < 1:
        raise ValueError(f"aten.slice: step must be positive, got {step}")
    dim = dim + self.dim() if dim < 0 else dim
    key = (slice(None),) * dim + (slice(start, end, step),)
    return self[key]


def alias(self):
    """``aten.alias``: a new tensor viewing the same data."""
    return self.view_as(self)


def _sparse_addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``aten._sparse_addmm``: ``beta * input + alpha * (mat1 @ mat2)``, ``mat1`` sparse."""
    import ember

    return ember.sparse.addmm(input, mat1, mat2, beta=beta, alpha=alpha)


def _convolution(
    input,
    weight,
    bias,
    stride,
    padding,
    dilation,
    transposed: bool,
    output_padding,
    groups: int,
    benchmark: bool = False,
    deterministic: bool = False,
    cudnn_enabled: bool = True,
    allow_tf32: bool = True,
):
    """``aten._convolution``: ``aten.convolution`` plus backend flags, which ember ignores
    (ptflops keys its table by it at import)."""
    import ember

    return ember.convolution(
        input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
    )


ATEN_EXTRA = {
    "_convolution": _convolution,
    "_to_copy": _to_copy,
    "_pin_memory": _pin_memory,
    "index": index,
    "slice": slice_,
    "alias": alias,
    "_sparse_addmm": _sparse_addmm,
}
