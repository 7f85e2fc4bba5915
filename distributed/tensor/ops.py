"""Functional operators on DTensors: the ``nn.functional`` forms PyTorch dispatches to DTensor
by itself. ember's ``nn.functional`` runs on plain tensors, so DTensor code calls these (the
operators and methods, ``a @ b``, ``x.sum(0)``, ``x.view(...)``, work directly).

>>> y = ops.linear(x, w, b)       # x Replicate, w Shard(0), b Shard(0) -> y Shard(-1)
>>> o = ops.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, L, E] Shard(1) kept
"""

from __future__ import annotations

from . import _methods  # noqa: F401  (binds DTensor's operator methods)
from ._api import DTensor
from ._attention import scaled_dot_product_attention
from ._nn_ops import embedding, layer_norm, linear, matmul, rms_norm
from ._pointwise import softmax as _softmax

__all__ = [
    "embedding",
    "layer_norm",
    "linear",
    "log_softmax",
    "matmul",
    "rms_norm",
    "scaled_dot_product_attention",
    "softmax",
]


def softmax(input: DTensor, dim: int) -> DTensor:
    """``F.softmax`` on a DTensor (a shard of ``dim`` is gathered first)."""
    return _softmax(input, dim, lambda t, d: t.softmax(d))


def log_softmax(input: DTensor, dim: int) -> DTensor:
    """``F.log_softmax`` on a DTensor (a shard of ``dim`` is gathered first)."""
    return _softmax(input, dim, lambda t, d: t.log_softmax(d))
