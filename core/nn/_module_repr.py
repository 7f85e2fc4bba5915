"""Module's ``repr`` (``extra_repr``, ``_get_name``) as a mixin, and torch's ``typename``.

``_typename`` and ``_addindent`` are re-exported from ``module.py`` (containers import them).
"""

from __future__ import annotations

from ..tensor import Tensor

_TENSOR_TYPES = {
    "float32": "Float",
    "float64": "Double",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def _typename(obj) -> str:
    """PyTorch's ``torch.typename``: ``ember.FloatTensor`` for tensors, else the class path."""
    if isinstance(obj, Tensor):
        return f"ember.{_TENSOR_TYPES[obj.dtype.name]}Tensor"
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"


def _addindent(s: str, num_spaces: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    first = lines.pop(0)
    return first + "\n" + "\n".join(num_spaces * " " + line for line in lines)


class _ReprMixin:
    """PyTorch's nested module repr: ``Name(extra_repr, (child): ChildRepr...)``."""

    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        r"""The module-specific part of ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({key}): " + _addindent(repr(module), 2) for key, module in self._modules.items()
        ]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"
