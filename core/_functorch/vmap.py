"""``torch._functorch.vmap``: the stages of a ``vmap`` call, as PyTorch splits them.

``ember.func.vmap`` looks each stage up on this module at every call, so a library that
replaces one (tensordict puts its own ``_process_batched_inputs``, ``_create_batched_inputs``
and ``_unwrap_batched`` here to keep a ``TensorDict`` whole) changes how vmap batches:

- ``_process_batched_inputs(in_dims, args, func)`` -> ``(batch_size, flat_in_dims, flat_args,
  args_spec)``;
- ``_create_batched_inputs(flat_in_dims, flat_args, vmap_level, args_spec)`` -> the inputs;
- ``_unwrap_batched(batched_outputs, out_dims, vmap_level, batch_size, func)`` -> the outputs.
"""

from __future__ import annotations

from typing import Any

from ..func._vmap import (
    _add_batch_dim,
    _create_batched_inputs,
    _get_name,
    _process_batched_inputs,
    _unbatch,
    _unwrap_batched,
)
from ..tensor import Tensor
from ..utils._pytree import _broadcast_to_and_flatten, tree_flatten, tree_unflatten

__all__ = ["vmap"]

from ..func import vmap  # noqa: E402  (torch._functorch.vmap.vmap)


def _remove_batch_dim(tensor: Tensor, vmap_level: int, batch_size: int, out_dim: int) -> Tensor:
    r"""``tensor`` (batched at ``vmap_level``) as a tensor with that batch dim, of size
    ``batch_size``, at ``out_dim``; an unbatched ``tensor`` is expanded along a new dim."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"_remove_batch_dim: expected a Tensor, got {type(tensor).__name__}")
    return _unbatch(tensor, out_dim, vmap_level, batch_size, "_remove_batch_dim")


def _maybe_remove_batch_dim(
    name: str, batched_output: Any, vmap_level: int, batch_size: int, out_dim: Any
) -> Any:
    r"""One output of the function ``name`` with the batch dim of ``vmap_level`` at
    ``out_dim`` (``None``: only for an output that does not depend on the mapped inputs)."""
    return _unbatch(batched_output, out_dim, vmap_level, batch_size, name)


def is_batchedtensor(tensor: Any) -> bool:
    r"""Whether ``tensor`` is batched by a running ``vmap`` (``torch._C._functorch``)."""
    from ..func._vmap_tensor import levels_of

    return bool(levels_of(tensor))


def get_unwrapped(tensor: Tensor) -> Tensor:
    r"""The physical tensor under a batched one: every vmap level's dim in front."""
    from ..func._vmap_tensor import levels_of, unwrapped

    if not levels_of(tensor):
        raise RuntimeError("get_unwrapped: expected a batched tensor (made inside vmap)")
    with unwrapped(tensor):
        return tensor.view_as(tensor)


__all__ += [
    "_add_batch_dim",
    "_broadcast_to_and_flatten",
    "_create_batched_inputs",
    "_get_name",
    "_maybe_remove_batch_dim",
    "_process_batched_inputs",
    "_remove_batch_dim",
    "_unwrap_batched",
    "Tensor",
    "tree_flatten",
    "tree_unflatten",
]
