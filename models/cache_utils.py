"""``DynamicCache``: the key/value cache of decoder attention (transformers' name and API)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import ember
from ember import Tensor

__all__ = ["DynamicCache"]


class DynamicCache:
    r"""Per-layer keys and values of the tokens seen so far, grown as decoding goes on.

    Each layer holds ``(batch, num_key_value_heads, seq, head_dim)`` tensors. Indexing gives a
    layer's ``(key, value)``; ``to_legacy_cache()`` gives the tuple-of-tuples format and
    ``from_legacy_cache`` accepts it.
    """

    def __init__(self) -> None:
        self.key_cache: list[Tensor] = []
        self.value_cache: list[Tensor] = []

    def update(
        self, key_states: Tensor, value_states: Tensor, layer_idx: int
    ) -> tuple[Tensor, Tensor]:
        r"""Append this step's keys/values for ``layer_idx``; return the layer's full ones."""
        if layer_idx < len(self.key_cache):
            self.key_cache[layer_idx] = ember.cat([self.key_cache[layer_idx], key_states], -2)
            self.value_cache[layer_idx] = ember.cat([self.value_cache[layer_idx], value_states], -2)
        elif layer_idx == len(self.key_cache):
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        else:
            raise IndexError(
                f"cache has {len(self.key_cache)} layers; cannot add layer "
                f"{layer_idx} before the ones in between"
            )
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        r"""Number of cached positions (0 for an empty cache)."""
        if layer_idx >= len(self.key_cache):
            return 0
        return self.key_cache[layer_idx].shape[-2]

    def __len__(self) -> int:
        return len(self.key_cache)

    def __getitem__(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(zip(self.key_cache, self.value_cache))

    def to_legacy_cache(self) -> tuple[tuple[Tensor, Tensor], ...]:
        return tuple(zip(self.key_cache, self.value_cache))

    @classmethod
    def from_legacy_cache(cls, past: Sequence[Sequence[Tensor]] | None) -> DynamicCache:
        cache = cls()
        for i, layer in enumerate(past or ()):
            if len(layer) != 2:
                raise ValueError(
                    f"past_key_values[{i}] must be a (key, value) pair, got {len(layer)} tensors"
                )
            cache.update(layer[0], layer[1], i)
        return cache

    def __repr__(self) -> str:
        return f"DynamicCache(layers={len(self)}, seq_length={self.get_seq_length()})"


def as_cache(past_key_values, use_cache: bool) -> DynamicCache | None:
    r"""The cache a forward should extend: the given one, a converted tuple, or a new one."""
    if past_key_values is None:
        return DynamicCache() if use_cache else None
    if isinstance(past_key_values, DynamicCache):
        return past_key_values
    if isinstance(past_key_values, (tuple, list)):
        return DynamicCache.from_legacy_cache(past_key_values)
    raise TypeError(
        "past_key_values must be a DynamicCache or a tuple of (key, value) pairs, "
        f"got {type(past_key_values).__name__}"
    )
