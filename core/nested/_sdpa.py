"""``F.scaled_dot_product_attention`` on nested query/key/value: attention within each
component, no padding.

Jagged inputs of shape ``(B, *heads, j, E)`` (the ragged sequence dimension second to last, as
after ``unflatten(-1, [H, D]).transpose(1, 2)``) are grouped by (query length, key length):
each group is gathered from ``values`` into one dense ``(g, *heads, L, E)`` batch and runs the
dense attention, so no step ever computes on padding; the outputs are put back in component
order with one index. Strided inputs run per component.
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._segments import is_packed, row_index
from ._tensor import NestedTensor


def _grouped(nt: NestedTensor, groups, lens_of, whole: bool) -> list[Tensor]:
    """Each group's components as one dense (g, *heads, L, E) batch: one gather of the rows
    (ragged dimension first, where ``values`` is usually contiguous), then views."""
    p = nt._ragged_idx - 1
    v = nt._values.movedim(p, 0) if p else nt._values
    if not (whole and is_packed(nt)):
        rows = np.concatenate([row_index(nt, which) for which in groups.values()])
        v = v.index_select(0, Tensor._wrap(rows).to(v.device))
    sizes = [len(which) * lens_of(key) for key, which in groups.items()]
    parts = v.split(sizes, 0) if len(sizes) > 1 else (v,)
    return [
        part.unflatten(0, (len(which), lens_of(key))).movedim(1, p + 1)
        for part, (key, which) in zip(parts, groups.items())
    ]


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
):
    from ..nn.functional import scaled_dot_product_attention as dense_sdpa

    qkv = (query, key, value)
    if not all(isinstance(t, NestedTensor) for t in qkv):
        raise RuntimeError(
            "scaled_dot_product_attention(): query, key and value must all be nested tensors "
            "when one is"
        )
    if attn_mask is not None:
        # PyTorch 2.13 refuses any mask on nested inputs with this ValueError
        raise ValueError(
            "Masks are not yet supported! (scaled_dot_product_attention on nested tensors takes "
            "no attn_mask; each component attends only to itself; use is_causal=True for a "
            "causal mask)"
        )
    args = (None, dropout_p, is_causal, scale, enable_gqa)
    if any(t._comps is not None for t in qkv):
        if not all(t._comps is not None for t in qkv):
            raise RuntimeError("scaled_dot_product_attention(): mixed nested layouts")
        return NestedTensor._strided(
            [dense_sdpa(q, k, v, *args) for q, k, v in zip(*(t._comps for t in qkv))]
        )
    for name, t in zip(("query", "key", "value"), qkv):
        if t._ragged_idx != t.dim() - 2:
            raise RuntimeError(
                f"scaled_dot_product_attention(): the ragged dimension of {name} must be its "
                f"second to last (got shape {list(t.shape)}); transpose the heads first, e.g. "
                "x.unflatten(-1, [heads, head_dim]).transpose(1, 2)"
            )
    lq, lk, lv = (t._lengths_list() for t in qkv)
    if not (len(lq) == len(lk) == len(lv)):
        raise RuntimeError("scaled_dot_product_attention(): query, key and value batch sizes")
    if lk != lv:
        raise RuntimeError("scaled_dot_product_attention(): key and value lengths differ")
    groups: dict[tuple[int, int], list[int]] = {}
    for i, pair in enumerate(zip(lq, lk)):
        groups.setdefault(pair, []).append(i)
    whole = len(groups) == 1
    p = query._ragged_idx - 1
    qs = _grouped(query, groups, lambda key: key[0], whole)
    ks = _grouped(key, groups, lambda key: key[1], whole)
    vs = _grouped(value, groups, lambda key: key[1], whole)
    # each output (g, *heads, L, Ev) -> (g * L, *heads, Ev): rows first, in group order
    outs = [
        dense_sdpa(q, k, v, *args).movedim(p + 1, 1).flatten(0, 1) for q, k, v in zip(qs, ks, vs)
    ]
    if whole:
        out = outs[0]
    else:
        from ..ops.shape_joins import cat

        out = cat(outs, 0)
        # put each component's rows back at its packed position
        pos = np.zeros(len(lq), dtype=np.int64)
        at = 0
        for which in groups.values():
            for i in which:
                pos[i] = at
                at += lq[i]
        inv = np.concatenate([np.arange(pos[i], pos[i] + lq[i]) for i in range(len(lq))])
        out = out.index_select(0, Tensor._wrap(inv.astype(np.int64)).to(out.device))
    out = out.movedim(0, p) if p else out
    if is_packed(query):
        return query._like(out)
    offsets = np.concatenate([[0], np.cumsum(lq)]).astype(np.int64)
    return NestedTensor._jagged(out, Tensor._wrap(offsets).to(out.device), None, p + 1)
