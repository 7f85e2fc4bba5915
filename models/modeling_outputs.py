"""Model outputs shaped like transformers' ``ModelOutput``: attribute, key and index access."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = [
    "BaseModelOutputWithPast",
    "BaseModelOutputWithPooling",
    "CausalLMOutputWithPast",
    "ModelOutput",
    "SequenceClassifierOutput",
]


class ModelOutput(OrderedDict):
    r"""An ordered dict whose fields are also attributes (``out.logits`` == ``out["logits"]``).

    As in transformers, fields left ``None`` are not stored (so ``to_tuple()`` and integer
    indexing skip them) but still read as ``None`` through attribute access.
    """

    _fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError(f"{type(self).__name__} takes keyword arguments only")
        unknown = [k for k in kwargs if k not in self._fields]
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected field(s) {unknown}; "
                f"fields are {list(self._fields)}"
            )
        super().__init__((k, kwargs[k]) for k in self._fields if kwargs.get(k) is not None)

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in type(self)._fields:
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        self[name] = value

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        r"""The fields that are not ``None``, in declaration order."""
        return tuple(self.values())

    def __reduce__(self):
        return (_rebuild, (type(self), dict(self)))


def _rebuild(cls, fields):
    return cls(**fields)


class BaseModelOutputWithPast(ModelOutput):
    r"""``last_hidden_state`` (batch, seq, hidden) and the KV cache ``past_key_values``."""

    _fields = ("last_hidden_state", "past_key_values", "hidden_states", "attentions")


class BaseModelOutputWithPooling(ModelOutput):
    r"""Encoder output: ``last_hidden_state`` and ``pooler_output`` (batch, hidden)."""

    _fields = ("last_hidden_state", "pooler_output", "hidden_states", "attentions")


class CausalLMOutputWithPast(ModelOutput):
    r"""``logits`` (batch, seq, vocab), ``loss`` when labels were given, ``past_key_values``."""

    _fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions")


class SequenceClassifierOutput(ModelOutput):
    r"""``logits`` (batch, num_labels) and ``loss`` when labels were given."""

    _fields = ("loss", "logits", "hidden_states", "attentions")
