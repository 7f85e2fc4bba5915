"""State dict leaves as DCP sees them: flattening nested state dicts into dotted keys, and
what each leaf holds locally (a whole tensor, an FSDP flat piece, a DTensor shard, or plain
data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import ember
from ember._interop import array_of

from ..fsdp._state_dict import SHARD_META, is_piece
from .metadata import ChunkStorageMetadata

__all__ = ["Leaf", "flatten", "local_item", "np_dtype"]


@dataclass
class Leaf:
    """One flattened value: ``container[key]`` holds it, ``fqn`` names it, ``path`` is the
    keys (and list indices) leading to it from the top of the state dict."""

    fqn: str
    container: Any
    key: Any
    value: Any
    path: tuple = ()


def _is_dtensor(v) -> bool:
    return hasattr(v, "to_local") and hasattr(v, "placements") and hasattr(v, "device_mesh")


def _is_tensor(v) -> bool:
    return isinstance(v, (ember.Tensor, np.ndarray)) or is_piece(v) or _is_dtensor(v)


def _holds_tensor(v) -> bool:
    if _is_tensor(v):
        return True
    if isinstance(v, dict):
        return any(_holds_tensor(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_holds_tensor(x) for x in v)
    return False


def flatten(state_dict: dict) -> list[Leaf]:
    """Leaves of ``state_dict`` in order: dicts (and lists holding tensors) are walked, keys
    joined with ``.``; everything else is one leaf. FSDP's shard metadata is not a value."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    out: list[Leaf] = []

    def rec(container, prefix, path):
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for k, v in items:
            if k == SHARD_META:
                continue
            fqn = f"{prefix}{k}"
            if is_piece(v) or not (isinstance(v, (dict, list, tuple)) and _holds_tensor(v)):
                out.append(Leaf(fqn, container, k, v, (*path, k)))
            else:
                if isinstance(v, tuple):
                    raise TypeError(f"state_dict: '{fqn}' is a tuple holding tensors; use a list")
                rec(v, fqn + ".", (*path, k))

    rec(state_dict, "", ())
    seen: set[str] = set()
    for leaf in out:
        if leaf.fqn in seen:
            raise ValueError(f"state_dict: two values flatten to the same key '{leaf.fqn}'")
        seen.add(leaf.fqn)
    return out


def host(value) -> np.ndarray:
    """The value's array on the host (a view where it already is one)."""
    if isinstance(value, ember.Tensor):
        value = array_of(value)
    if type(value) is not np.ndarray and hasattr(value, "get"):
        return value.get()  # CuPy -> host
    return np.asarray(value)


def dtensor_box(dt) -> tuple[list[int], list[int]]:
    """``(offsets, sizes)`` of this rank's local shard of DTensor ``dt`` in the global tensor."""
    from ember.distributed.tensor._api import _local_pieces

    shape = list(dt.shape)
    coord = dt.device_mesh.get_coordinate()
    steps, local = _local_pieces(shape, dt.device_mesh, dt.placements, coord)
    offsets = [0] * len(shape)
    for i, step in enumerate(steps):
        if step is not None:
            d, _, bounds = step
            offsets[d] += bounds[coord[i]][0]
    return offsets, list(local)


def _check_placements(dt) -> None:
    from ember.distributed.tensor import Partial

    if any(isinstance(p, Partial) for p in dt.placements):
        raise ValueError(
            f"cannot save a DTensor with placements {list(dt.placements)}: its pending "
            "reduction (Partial) must be redistributed to Replicate or Shard first"
        )


def local_item(value):
    """``(global shape, dtype name, chunk, local array)`` of a tensor leaf; the chunk has no
    file yet. The array is the storage itself (not a copy)."""
    if is_piece(value):
        arr = host(value["local_shard"]).reshape(-1)
        shape = [int(s) for s in value["shape"]]
        chunk = ChunkStorageMetadata(None, None, int(value["offset"]), int(arr.size))
        return shape, arr.dtype.name, chunk, arr
    if _is_dtensor(value):
        _check_placements(value)
        offsets, sizes = dtensor_box(value)
        arr = host(value.to_local())
        return (
            [int(s) for s in value.shape],
            arr.dtype.name,
            ChunkStorageMetadata(offsets, sizes),
            arr,
        )
    arr = host(value)
    return (
        list(arr.shape),
        arr.dtype.name,
        ChunkStorageMetadata([0] * arr.ndim, list(arr.shape)),
        arr,
    )


def destination(value):
    """What a load fills for a tensor leaf: ``(array to write into, global shape, request)``
    where the request is ``("flat", lo, hi)`` or ``("box", offsets, sizes)``."""
    if is_piece(value):
        t = value["local_shard"]
        n = int(np.prod(t.shape))
        lo = int(value["offset"])
        return t, [int(s) for s in value["shape"]], ("flat", lo, lo + n)
    if _is_dtensor(value):
        offsets, sizes = dtensor_box(value)
        return value.to_local(), [int(s) for s in value.shape], ("box", offsets, sizes)
    shape = [int(s) for s in value.shape]
    return value, shape, ("box", [0] * len(shape), shape)


def is_tensor_leaf(value) -> bool:
    return _is_tensor(value)


def np_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
