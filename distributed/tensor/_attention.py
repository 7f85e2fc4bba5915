"""Sharding propagation for attention on DTensors: ``scaled_dot_product_attention`` and
``masked_fill``.

Attention mixes positions along the sequence dimensions and the head dimension ``E`` but
treats every batch and head index on its own, so a ``Shard`` of a leading dimension (the heads
``[B, H, L, E]`` Shard(1) that a colwise q/k/v projection and ``view(b, t, n_heads, d)
.transpose(1, 2)`` give) stays sharded: each rank runs ember's attention on its heads, with no
communication. The sequence and embedding dimensions are gathered first, as is a ``Partial``.
"""

from __future__ import annotations

from ._api import DTensor
from ._dispatch import _as_dtensor, _check_same_mesh, _moved, _wrap
from ._pointwise import binary
from .placement_types import Replicate, Shard

__all__ = ["masked_fill", "scaled_dot_product_attention"]

R = Replicate()


def _batch_shard(operands, i: int):
    """The leading tensor dim (counted from the right: ``-1`` is the last) that mesh dim ``i``
    shards in one of ``operands`` and that is a batch/head dim of all of them, or ``None``."""
    for x in operands:
        p = x.placements[i]
        if isinstance(p, Shard) and p.dim < x.ndim - 2:
            neg = p.dim - x.ndim
            if all(-y.ndim <= neg for y in operands):
                return neg
    return None


def _check_qkv(query: DTensor, key: DTensor, value: DTensor, enable_gqa: bool) -> None:
    q, k, v = query._shape, key._shape, value._shape
    if not (query.ndim == key.ndim == value.ndim) or query.ndim < 2:
        raise RuntimeError(
            f"scaled_dot_product_attention: query, key and value must have the same number of "
            f"dimensions (at least 2), got shapes {q}, {k} and {v}"
        )
    if q[-1] != k[-1] or k[-2] != v[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: query {q} and key {k} must share the last dim and "
            f"key {k} and value {v} the sequence dim"
        )
    if not enable_gqa and not (q[:-2] == k[:-2] == v[:-2]):
        raise RuntimeError(
            f"scaled_dot_product_attention: the batch dims of query {q}, key {k} and value "
            f"{v} must match (enable_gqa=True lets key/value have fewer heads)"
        )


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> DTensor:
    """``F.scaled_dot_product_attention`` on DTensors ``[..., L, E]``: a shard of a batch or
    head dim (the same one on query, key and value) is kept, everything else is gathered.
    ``attn_mask`` (bool: True may attend, or float: added) is a DTensor broadcastable to
    ``[..., L, S]``; it is sliced or gathered to match. ``dropout_p`` draws each rank's mask
    on its own heads (as PyTorch's DTensor does: the random streams differ from one process's).
    """
    import ember.nn.functional as F

    what = "scaled_dot_product_attention"
    if not any(isinstance(t, DTensor) for t in (query, key, value)):
        raise TypeError(f"{what}: expected DTensor query/key/value (use nn.functional for tensors)")
    mesh = _check_same_mesh((query, key, value, attn_mask), what)
    query, key, value = (_as_dtensor(t, mesh, what) for t in (query, key, value))
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, DTensor):
            raise TypeError(f"{what}: {name} must be a DTensor, got {type(t).__name__}")
    _check_qkv(query, key, value, enable_gqa)
    qkv = (query, key, value)
    n = query.ndim
    out, targets = [], {id(t): [] for t in qkv}
    for i in range(mesh.ndim):
        d = _batch_shard(qkv, i)
        k_ranks = mesh.size(i)
        # every operand splits that dim into equal pieces (GQA: fewer key/value heads, each
        # rank's query heads then use exactly its own key/value heads)
        if d is not None and any(t._shape[d] % k_ranks for t in qkv):
            d = None
        place = R if d is None else Shard(n + d)
        out.append(place)
        for t in qkv:
            targets[id(t)].append(place)
    query, key, value = (_moved(t, targets[id(t)]) for t in qkv)
    mask_local = None
    if attn_mask is not None:
        mask = _as_dtensor(attn_mask, mesh, what)
        if not isinstance(mask, DTensor):
            raise TypeError(f"{what}: attn_mask must be a DTensor, got {type(mask).__name__}")
        want = []
        for p in out:  # the mask's own dim under a head/batch shard, unless it broadcasts
            md = p.dim - n + mask.ndim if isinstance(p, Shard) else -1
            want.append(Shard(md) if md >= 0 and mask._shape[md] != 1 else R)
        mask_local = _moved(mask, want)._local_tensor
    local = F.scaled_dot_product_attention(
        query._local_tensor, key._local_tensor, value._local_tensor, mask_local, dropout_p,
        is_causal, scale, enable_gqa,
    )  # fmt: skip
    return _wrap(local, mesh, out, (*query._shape[:-1], value._shape[-1]))


def masked_fill(x: DTensor, mask, value) -> DTensor:
    """``x.masked_fill(mask, value)`` with a DTensor (or 0-d) bool ``mask`` broadcastable to
    ``x``: shards of ``x`` stay, the mask is sliced to match (a ``Partial`` ``x`` is reduced
    first: filling is not linear)."""
    mesh = _check_same_mesh((x, mask), "DTensor.masked_fill")
    m = _as_dtensor(mask, mesh, "DTensor.masked_fill")
    if not isinstance(m, DTensor):
        raise TypeError(f"DTensor.masked_fill: mask must be a DTensor, got {type(m).__name__}")
    shape, mshape = x._shape, m._shape
    ok = len(mshape) <= len(shape) and all(
        b in (1, a) for a, b in zip(shape[len(shape) - len(mshape) :], mshape)
    )
    if not ok:
        raise RuntimeError(
            f"DTensor.masked_fill: the mask of shape {mshape} does not broadcast to the "
            f"tensor's shape {shape}"
        )
    if isinstance(value, DTensor):
        value = value.full_tensor().item()
    return binary(x, m, "masked_fill", lambda t, b: t.masked_fill(b, value))
