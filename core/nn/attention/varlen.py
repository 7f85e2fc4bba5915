"""``ember.nn.attention.varlen`` (torch.nn.attention.varlen): attention over packed
variable-length sequences (the variable length attention tutorial).

``query`` is ``(T_q, H, D)``: the documents of a batch laid end to end, their boundaries
given by ``cu_seq_q = [0, len_0, len_0 + len_1, ...]`` (and ``cu_seq_k`` for key / value).
Each document attends only within itself. PyTorch runs a CUDA flash kernel (its CPU build
refuses the op); here each document is a small dense attention, differentiable, on any device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ...tensor import Tensor

__all__ = ["AuxRequest", "varlen_attn"]


class AuxRequest(NamedTuple):
    """Which auxiliary outputs :func:`varlen_attn` returns: ``lse`` (the log-sum-exp of each
    query's scores, ``(T_q, H)``)."""

    lse: bool = False


def _bounds(cu: Tensor, name: str) -> list[int]:
    if not isinstance(cu, Tensor) or cu.dim() != 1 or cu.numel() < 1:
        raise ValueError(f"varlen_attn: {name} must be a 1-D tensor of cumulative lengths")
    if cu.is_floating_point():
        raise ValueError(f"varlen_attn: {name} must hold integers, got {cu.dtype}")
    b = [int(v) for v in cu.tolist()]
    if b[0] != 0 or any(y < x for x, y in zip(b, b[1:])):
        raise ValueError(f"varlen_attn: {name} must start at 0 and never decrease, got {b}")
    return b


def _window_mask(lq: int, lk: int, window: tuple[int, int], device):
    """True where query i may attend key j: ``i - left <= j - (lk - lq) <= i + right``
    (bottom-right aligned as flash attention; -1 is unbounded)."""
    import ember

    left, right = window
    if left < 0 and right < 0:
        return None
    i = ember.arange(lq, device=device).unsqueeze(1) + (lk - lq)
    j = ember.arange(lk, device=device).unsqueeze(0)
    ok = ember.ones(lq, lk, dtype=ember.bool, device=device)
    if right >= 0:
        ok = ok & (j <= i + right)
    if left >= 0:
        ok = ok & (j >= i - left)
    return ok


def varlen_attn(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    cu_seq_q: Tensor,
    cu_seq_k: Tensor | None,
    max_q: int,
    max_k: int,
    *,
    return_aux: AuxRequest | None = None,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
    is_causal: bool = False,
    **unsupported,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of packed documents: ``query`` ``(T_q, H_q, D)``, ``key`` / ``value``
    ``(T_k, H_kv, D)`` / ``(T_k, H_kv, D_v)``; ``cu_seq_q`` / ``cu_seq_k`` the ``(N + 1,)``
    cumulative document lengths (``cu_seq_k=None``: the same as ``cu_seq_q``). ``max_q`` /
    ``max_k`` are accepted as PyTorch's (the lengths come from the boundaries).

    ``window_size=(left, right)`` limits each query to keys within that distance (``-1``:
    unbounded; ``(-1, 0)`` is causal). ``is_causal=True`` (the tutorial's earlier form) is the
    same as ``window_size=(-1, 0)``. With ``enable_gqa``, ``H_q`` may be a multiple of
    ``H_kv``. Returns ``(T_q, H_q, D_v)``, and the ``(T_q, H_q)`` float32 log-sum-exp when
    ``return_aux=AuxRequest(lse=True)``. A query with no key in its window gets zeros.
    """
    import ember

    for name, v in unsupported.items():
        if v is not None:
            raise NotImplementedError(f"varlen_attn: {name} is not supported in ember")
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        raise ValueError(
            "varlen_attn: query, key and value must be 3-D (total tokens, heads, head dim), got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    hq, hk = query.size(1), key.size(1)
    if not enable_gqa and hq != hk:
        raise ValueError(
            "Expect query and key/value to have the same number of heads but got "
            f"Hq={hq} and Hkv={hk}. Try setting enable_gqa=True for GQA."
        )
    if enable_gqa and hq % hk != 0:
        raise ValueError(
            "Expect number of query heads to be a multiple of kv heads for GQA but got "
            f"Hq={hq} and Hkv={hk}."
        )
    if is_causal:
        window_size = (-1, 0)
    bq = _bounds(cu_seq_q, "cu_seq_q")
    bk = bq if cu_seq_k is None else _bounds(cu_seq_k, "cu_seq_k")
    if len(bq) != len(bk):
        raise ValueError("varlen_attn: cu_seq_q and cu_seq_k must describe as many documents")
    if bq[-1] > query.size(0) or bk[-1] > key.size(0):
        raise ValueError("varlen_attn: the cumulative lengths run past the packed tokens")
    sc = 1.0 / math.sqrt(query.size(-1)) if scale is None else float(scale)
    if enable_gqa and hq != hk:
        key = key.repeat_interleave(hq // hk, dim=1)
        value = value.repeat_interleave(hq // hk, dim=1)
    outs, lses = [], []
    for (q0, q1), (k0, k1) in zip(zip(bq, bq[1:]), zip(bk, bk[1:])):
        q = query[q0:q1].transpose(0, 1).float()  # (H, Lq, D): scores in float32
        k = key[k0:k1].transpose(0, 1).float()
        v = value[k0:k1].transpose(0, 1).float()
        s = ember.matmul(q, k.transpose(-2, -1)) * sc
        mask = _window_mask(q1 - q0, k1 - k0, tuple(window_size), query.device)
        if mask is not None:
            s = s.masked_fill(~mask, -math.inf)
        lse = ember.logsumexp(s, -1) if k1 > k0 else s.new_full((hq, q1 - q0), -math.inf)
        safe = ember.where(ember.isinf(lse), ember.zeros_like(lse), lse)
        p = ember.exp(s - safe.unsqueeze(-1))
        outs.append(ember.matmul(p, v).transpose(0, 1).to(query.dtype))
        lses.append(lse.transpose(0, 1))
    if bq[-1] < query.size(0):  # tokens after the last document: no attention, zeros
        outs.append(query.new_zeros(query.size(0) - bq[-1], hq, value.size(-1)))
        lses.append(query.new_full((query.size(0) - bq[-1], hq), -math.inf).float())
    out = ember.cat(outs, 0) if outs else query.new_zeros(0, hq, value.size(-1))
    if return_aux is not None and return_aux.lse:
        return out, ember.cat(lses, 0) if lses else query.new_zeros(0, hq).float()
    return out
