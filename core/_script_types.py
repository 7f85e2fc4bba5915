"""TorchScript's scalar types (``torch.FloatType``, ``torch.IntType``, ...), for code that names
them.

ember has no TorchScript type system (``ember.jit`` scripts by running Python); libraries name
these classes in dtype checks (torchrl's ``PrioritizedSampler``: ``dtype in (torch.float,
torch.FloatType, torch.float32)``) or ask for their singleton (``FloatType.get()``, whose
``str`` is the TorchScript name, ``"float"``). Each class here is that: a type whose ``get()``
returns its one instance.
"""

from __future__ import annotations

__all__ = [
    "BoolType",
    "ComplexType",
    "FloatType",
    "IntType",
    "NoneType",
    "NumberType",
    "StringType",
]


class _ScriptType:
    _annotation = ""
    _instance: _ScriptType | None = None

    @classmethod
    def get(cls) -> _ScriptType:
        """The type's one instance (torch: ``FloatType.get()``)."""
        if cls.__dict__.get("_instance") is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def annotation_str(self) -> str:
        return self._annotation

    def __str__(self) -> str:
        return self._annotation

    def __repr__(self) -> str:
        return self._annotation


def _make(name: str, annotation: str) -> type:
    return type(name, (_ScriptType,), {"_annotation": annotation, "__module__": "ember"})


BoolType = _make("BoolType", "bool")
ComplexType = _make("ComplexType", "complex")
FloatType = _make("FloatType", "float")
IntType = _make("IntType", "int")
NoneType = _make("NoneType", "NoneType")
NumberType = _make("NumberType", "Scalar")
StringType = _make("StringType", "str")
