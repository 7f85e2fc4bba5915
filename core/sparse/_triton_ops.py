"""``ember.sparse._triton_ops`` (torch.sparse._triton_ops): the names of torch's Triton
block-sparse kernels, importable so that libraries importing them at module level (torchao's
``bsr_triton_ops``) load. ember has no Triton (``ember.utils._triton.has_triton()`` is
``False``), so calling one raises; libraries check ``has_triton()`` before they do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "broadcast_batch_dims",
    "launch_kernel",
    "prepare_inputs",
    "ptr_stride_extractor",
    "tile_to_blocksize",
]


def _no_triton(name: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"torch.sparse._triton_ops.{name} needs Triton, which ember does not have "
            "(ember.utils._triton.has_triton() is False)"
        )

    fn.__name__ = fn.__qualname__ = name
    return fn


broadcast_batch_dims = _no_triton("broadcast_batch_dims")
launch_kernel = _no_triton("launch_kernel")
prepare_inputs = _no_triton("prepare_inputs")
ptr_stride_extractor = _no_triton("ptr_stride_extractor")
tile_to_blocksize = _no_triton("tile_to_blocksize")
