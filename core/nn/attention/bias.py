"""``ember.nn.attention.bias``: causal attention biases for ``F.scaled_dot_product_attention``.

``causal_upper_left(L, S)`` is the mask ``is_causal=True`` applies (query ``i`` sees keys
``0..i``); ``causal_lower_right(L, S)`` aligns the diagonal to the bottom-right corner (query
``i`` sees keys ``0..i + S - L``), the usual mask when a few new queries attend to a longer
key/value cache. Pass either as ``attn_mask``. In PyTorch ``CausalBias`` is a tensor subclass;
here it is a small object that ``F.scaled_dot_product_attention`` recognises.
"""

from __future__ import annotations

import warnings
from enum import IntEnum

__all__ = ["causal_upper_left", "causal_lower_right", "CausalVariant", "CausalBias"]


class CausalVariant(IntEnum):
    """Where the causal diagonal is anchored when ``seq_len_q != seq_len_kv``."""

    UPPER_LEFT = 1
    LOWER_RIGHT = 2


class CausalBias:
    """A causal (triangular) attention bias of shape ``(seq_len_q, seq_len_kv)``.

    Args:
        variant: :class:`CausalVariant` ``UPPER_LEFT`` or ``LOWER_RIGHT``.
        seq_len_q: the query sequence length.
        seq_len_kv: the key/value sequence length.
    """

    def __init__(self, variant: CausalVariant, seq_len_q: int, seq_len_kv: int) -> None:
        if not isinstance(variant, CausalVariant):
            raise AssertionError(f"variant must be a CausalVariant, got {type(variant).__name__}")
        self.variant = variant
        self.seq_len_q = int(seq_len_q)
        self.seq_len_kv = int(seq_len_kv)
        if seq_len_q > seq_len_kv and variant == CausalVariant.LOWER_RIGHT:
            warnings.warn(
                "Lower right causal bias will produce NaNs in the output when "
                "seq_len_q > seq_len_kv!",
                stacklevel=2,
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.seq_len_q, self.seq_len_kv)

    @property
    def dtype(self):
        import ember

        return ember.bool

    def _materialize(self, device=None):
        """The bias as a bool tensor (True = may attend) on ``device``."""
        import ember

        ones = ember.ones(self.seq_len_q, self.seq_len_kv, dtype=ember.bool, device=device)
        if self.variant == CausalVariant.UPPER_LEFT:
            return ember.tril(ones)
        return ember.tril(ones, diagonal=self.seq_len_kv - self.seq_len_q)

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
