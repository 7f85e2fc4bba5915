"""PyTorch's ``layout=`` and ``pin_memory=`` keywords on the factory functions.

``torch.empty(n, dtype=torch.long, pin_memory=True)`` (karpathy/autoresearch's data loader) and
``torch.zeros(..., layout=torch.strided)`` are common in real programs. The factories in
``creation``, ``creation_ranges`` and ``creation_random`` take both keywords and call
:func:`apply` only when one is given, so the plain call pays nothing.
"""

from __future__ import annotations

from .backend import _cupy
from .tensor import Tensor

_NO_PINNED = (
    "pin_memory=True requires a CUDA or other accelerator backend; no pinned memory "
    "allocator is available on this system."
)


def apply(t: Tensor, layout, pin_memory, name: str) -> Tensor:
    """``t`` in the requested ``layout`` (strided or sparse COO), pinned if ``pin_memory``."""
    from ._torch_misc import layout as layout_type
    from ._torch_misc import strided
    from .sparse._coo import sparse_coo

    if layout is not None and layout is not strided:
        if not isinstance(layout, layout_type):
            raise TypeError(
                f"{name}(): argument 'layout' must be torch.layout, not {type(layout).__name__}"
            )
        if layout is not sparse_coo:
            raise NotImplementedError(
                f"{name}(): layout={layout} is not supported; ember's factories make "
                "torch.strided or torch.sparse_coo tensors"
            )
        if name not in ("zeros", "empty"):  # torch makes only empty (nnz = 0) sparse tensors
            raise RuntimeError(f"{name}(...) is not implemented for sparse layout")
        t = t.new_zeros(t.shape).to_sparse()
    if pin_memory:
        # PyTorch's CPU-only build refuses in these words; with CuPy the copy is page-locked
        if _cupy.cupy is None:
            raise RuntimeError(_NO_PINNED)
        t = t.pin_memory()  # pragma: no cover - GPU
    return t
