"""Pieces the architectures share: activations, GPT-2's Conv1D, masks, attention."""

from __future__ import annotations

import math

import ember
import ember.nn.functional as F
from ember import Tensor, nn

__all__ = [
    "ACT2FN",
    "Conv1D",
    "additive_mask",
    "attention",
    "get_activation",
    "make_attention_mask",
]


def _gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


ACT2FN = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": ember.tanh,
    "sigmoid": ember.sigmoid,
}


def get_activation(name: str):
    try:
        return ACT2FN[name]
    except KeyError:
        raise ValueError(
            f"unsupported activation {name!r}; ember.models knows {sorted(ACT2FN)}"
        ) from None


class Conv1D(nn.Module):
    r"""GPT-2's linear layer with the weight stored transposed: ``(in_features, out_features)``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(ember.empty(nx, nf))
        self.bias = nn.Parameter(ember.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return ember.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.nf
        )

    def extra_repr(self) -> str:
        return f"nf={self.nf}, nx={self.weight.shape[0]}"


def make_attention_mask(
    attention_mask: Tensor | None,
    q_len: int,
    past_len: int,
    dtype,
    causal: bool,
    device=None,
    sliding_window: int | None = None,
) -> Tensor | None:
    r"""Additive mask ``(batch|1, 1, q_len, past_len + q_len)``: 0 where allowed, dtype's min.

    ``attention_mask`` is the (batch, past_len + q_len) 1/0 padding mask. Query ``i`` sits at
    position ``past_len + i``, so the causal part is aligned bottom-right. ``None`` when nothing
    is masked. The dtype's minimum (not -inf) keeps fully padded rows finite, as transformers.
    ``sliding_window`` (Mistral) also hides keys ``sliding_window`` or more positions back.
    """
    kv_len = past_len + q_len
    allowed = None
    if causal and q_len > 1:
        allowed = ember.ones(q_len, kv_len, dtype=ember.bool, device=device).tril(
            diagonal=past_len
        )[None, None]
    if sliding_window is not None and kv_len > sliding_window:
        window = ember.ones(q_len, kv_len, dtype=ember.bool, device=device).triu(
            diagonal=past_len - sliding_window + 1
        )[None, None]
        allowed = window if allowed is None else allowed & window
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[-1] != kv_len:
            raise ValueError(
                f"attention_mask must be (batch, {kv_len}) = past + current "
                f"tokens, got {tuple(attention_mask.shape)}"
            )
        if not bool((attention_mask != 0).all()):
            pad = (attention_mask != 0)[:, None, None, :]
            allowed = pad if allowed is None else allowed & pad
    if allowed is None:
        return None
    return additive_mask(allowed, dtype)


def additive_mask(allowed: Tensor, dtype) -> Tensor:
    r"""0 where ``allowed``, else the dtype's minimum, on ``allowed``'s device."""
    zero = ember.zeros((), dtype=dtype, device=allowed.device)
    low = ember.full((), ember.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return ember.where(allowed, zero, low)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout_p: float,
    scale: float | None = None,
) -> Tensor:
    r"""Scaled dot-product attention over (batch, heads, seq, head_dim); k/v may have fewer
    heads (grouped-query attention), repeated to q's head count."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
