"""``ember.nn.attention.bias``: causal attention biases for ``F.scaled_dot_product_attention``.

``causal_upper_left(L, S)`` is the mask ``is_causal=True`` applies (query ``i`` sees keys
``0..i``); ``causal_lower_right(L, S)`` aligns the diagonal to the bottom-right corner (query
``i`` sees keys ``0..i + S - L``), the usual mask when a few new queries attend to a longer
key/value cache. Pass either as ``attn_mask``. As in PyTorch, ``CausalBias`` is a tensor
subclass (``issubclass(type(bias), Tensor)``; it holds the ``(L, S)`` bool mask it stands for,
which other ops see) that ``F.scaled_dot_product_attention`` recognises and runs as
``is_causal=True`` where the two agree.
"""

from __future__ import annotations

import warnings
from enum import IntEnum

from ...tensor import Tensor

__all__ = ["causal_upper_left", "causal_lower_right", "CausalVariant", "CausalBias"]


class CausalVariant(IntEnum):
    """Where the causal diagonal is anchored when ``seq_len_q != seq_len_kv``."""

    UPPER_LEFT = 1
    LOWER_RIGHT = 2


class CausalBias(Tensor):
    """A causal (triangular) attention bias of shape ``(seq_len_q, seq_len_kv)``: a bool
    tensor (True = may attend) that ``F.scaled_dot_product_attention`` runs on its fast path.

    Args:
        variant: :class:`CausalVariant` ``UPPER_LEFT`` or ``LOWER_RIGHT``.
        seq_len_q: the query sequence length.
        seq_len_kv: the key/value sequence length.
    """

    def __new__(cls, variant: CausalVariant, seq_len_q: int, seq_len_kv: int):
        from ..parameter import _init_alias

        if not isinstance(variant, CausalVariant):
            raise AssertionError(f"variant must be a CausalVariant, got {type(variant).__name__}")
        t = object.__new__(cls)
        _init_alias(t, _mask(variant, int(seq_len_q), int(seq_len_kv)), False)
        return t

    def __init__(self, variant: CausalVariant, seq_len_q: int, seq_len_kv: int) -> None:
        # the tensor slots were filled in __new__ (Tensor.__init__ must not reset them)
        self.variant = variant
        self.seq_len_q = int(seq_len_q)
        self.seq_len_kv = int(seq_len_kv)
        if seq_len_q > seq_len_kv and variant == CausalVariant.LOWER_RIGHT:
            warnings.warn(
                "Lower right causal bias will produce NaNs in the output when "
                "seq_len_q > seq_len_kv!",
                stacklevel=2,
            )

    def _materialize(self, device=None):
        """The bias as a plain bool tensor (True = may attend) on ``device``."""
        return _mask(self.variant, self.seq_len_q, self.seq_len_kv, device)

    def _scaled_dot_product_attention(
        self, query, key, value, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ):
        """``F.scaled_dot_product_attention(query, key, value, attn_mask=self, ...)``."""
        from ...ops.attention import scaled_dot_product_attention as sdpa

        if is_causal:
            raise ValueError("CausalBias should not be used with causal=True")
        if self.seq_len_q == self.seq_len_kv or self.variant == CausalVariant.UPPER_LEFT:
            return sdpa(query, key, value, None, dropout_p, True, scale, enable_gqa)
        mask = self._materialize(query.device)
        return sdpa(query, key, value, mask, dropout_p, False, scale, enable_gqa)

    def __repr__(self) -> str:
        return repr(self._materialize())

    def __reduce_ex__(self, protocol):
        return (type(self), (self.variant, self.seq_len_q, self.seq_len_kv))

    def __deepcopy__(self, memo):
        return type(self)(self.variant, self.seq_len_q, self.seq_len_kv)


def _mask(variant: CausalVariant, seq_len_q: int, seq_len_kv: int, device=None):
    import ember

    ones = ember.ones(seq_len_q, seq_len_kv, dtype=ember.bool, device=device)
    if variant == CausalVariant.UPPER_LEFT:
        return ember.tril(ones)
    return ember.tril(ones, diagonal=seq_len_kv - seq_len_q)


def _size(size, name: str) -> tuple[int, int]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if len(size) != 2:
        raise AssertionError(f"{name} only supports 2D tensors")
    return int(size[0]), int(size[1])


def causal_upper_left(*size) -> CausalBias:
    """An upper-left causal bias: query ``i`` attends to keys ``0..i``.

    Args:
        size: ``(seq_len_q, seq_len_kv)``, as two ints or one tuple.
    """
    q, kv = _size(size, "causal_upper_left")
    return CausalBias(CausalVariant.UPPER_LEFT, q, kv)


def causal_lower_right(*size) -> CausalBias:
    """A lower-right causal bias: query ``i`` attends to keys ``0..i + seq_len_kv - seq_len_q``.

    Args:
        size: ``(seq_len_q, seq_len_kv)``, as two ints or one tuple.
    """
    q, kv = _size(size, "causal_lower_right")
    return CausalBias(CausalVariant.LOWER_RIGHT, q, kv)
