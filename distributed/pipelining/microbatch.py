"""Micro-batching: split a step's arguments into chunks along a dimension and merge outputs.

PyTorch's ``torch.distributed.pipelining.microbatch`` names: ``TensorChunkSpec``,
``split_args_kwargs_into_chunks`` and ``merge_chunks``. Unlike PyTorch (which lets the last
chunk be smaller), a batch that ``n_microbatches`` does not divide is refused: a pipeline step
averages per-micro-batch gradients, which equals the full batch's gradient only when every
micro-batch has the same size.
"""

from __future__ import annotations

from typing import Any

import ember
from ember.tensor import Tensor

__all__ = ["TensorChunkSpec", "merge_chunks", "split_args_kwargs_into_chunks"]


class TensorChunkSpec:
    """Split (or merge) a tensor along ``split_dim``."""

    def __init__(self, split_dim: int) -> None:
        self.split_dim = int(split_dim)

    def __repr__(self) -> str:
        return f"TensorChunkSpec({self.split_dim})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorChunkSpec) and other.split_dim == self.split_dim

    def __hash__(self) -> int:
        return hash(("TensorChunkSpec", self.split_dim))


def _split_one(v: Any, spec: TensorChunkSpec | None, chunks: int, name: str) -> list:
    if not isinstance(v, Tensor):
        # non-tensors (and spec None) are replicated to every micro-batch
        return [v] * chunks
    dim = 0 if spec is None else spec.split_dim
    if v.dim() == 0:
        raise ValueError(f"cannot split 0-d tensor {name} into {chunks} micro-batches")
    dim = dim % v.dim()
    size = v.shape[dim]
    if size % chunks != 0:
        raise ValueError(
            f"n_microbatches ({chunks}) must divide the batch: {name} has size {size} "
            f"along dimension {dim}"
        )
    return list(v.chunk(chunks, dim))


def split_args_kwargs_into_chunks(
    args: tuple,
    kwargs: dict | None,
    chunks: int,
    args_chunk_spec: tuple | None = None,
    kwargs_chunk_spec: dict | None = None,
) -> tuple[list[tuple], list[dict]]:
    """Split ``args`` and ``kwargs`` into ``chunks`` micro-batches (tensors along dim 0 unless a
    ``TensorChunkSpec`` says otherwise; other values are replicated)."""
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"n_microbatches must be a positive int, got {chunks!r}")
    kwargs = kwargs or {}
    if args_chunk_spec is not None and len(args_chunk_spec) != len(args):
        raise ValueError(
            f"args_chunk_spec has {len(args_chunk_spec)} entries but {len(args)} args were given"
        )
    specs = args_chunk_spec or (None,) * len(args)
    split_args = [
        _split_one(a, s, chunks, f"args[{i}]") for i, (a, s) in enumerate(zip(args, specs))
    ]
    kspecs = kwargs_chunk_spec or {}
    split_kwargs = {
        k: _split_one(v, kspecs.get(k), chunks, f"kwargs[{k!r}]") for k, v in kwargs.items()
    }
    arg_mbs = [tuple(s[i] for s in split_args) for i in range(chunks)]
    kwarg_mbs = [{k: s[i] for k, s in split_kwargs.items()} for i in range(chunks)]
    return arg_mbs, kwarg_mbs


def merge_chunks(chunks: list, chunk_spec: Any = None) -> Any:
    """Concatenate per-micro-batch outputs (tensors, or tuples/lists/dicts of them) along
    dim 0 (or ``chunk_spec``'s dimension); non-tensor values are taken from the first chunk."""
    if not chunks:
        raise ValueError("merge_chunks needs at least one chunk")
    first = chunks[0]
    if isinstance(first, Tensor):
        dim = chunk_spec.split_dim if isinstance(chunk_spec, TensorChunkSpec) else 0
        return ember.cat(list(chunks), dim)
    if isinstance(first, (tuple, list)):
        specs = chunk_spec if isinstance(chunk_spec, (tuple, list)) else [chunk_spec] * len(first)
        merged = [merge_chunks([c[i] for c in chunks], specs[i]) for i in range(len(first))]
        return type(first)(merged)
    if isinstance(first, dict):
        specs = chunk_spec if isinstance(chunk_spec, dict) else {}
        return {k: merge_chunks([c[k] for c in chunks], specs.get(k)) for k in first}
    return first
