"""``Variable``: PyTorch's legacy autograd wrapper, now the tensor itself.

``Variable(t)`` returns a new leaf tensor sharing ``t``'s storage (``Variable(t,
requires_grad=True)`` one that requires grad), and ``isinstance(x, Variable)`` is true for
every tensor, as in PyTorch >= 0.4.
"""

from __future__ import annotations

__all__ = ["Variable"]


class _VariableMeta(type):
    def __instancecheck__(cls, other) -> bool:
        from ..tensor import Tensor

        return isinstance(other, Tensor)


class Variable(metaclass=_VariableMeta):
    r"""Deprecated: tensors carry autograd state themselves. ``Variable(data,
    requires_grad=False, volatile=False)`` returns a detached tensor sharing ``data``'s
    storage."""

    def __new__(cls, data=None, requires_grad: bool = False, volatile: bool = False):
        from ..tensor import Tensor

        if data is None:
            return Tensor()
        if not isinstance(data, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
        if volatile:
            import warnings

            warnings.warn(
                "volatile was removed and now has no effect. Use `with torch.no_grad():` instead.",
                UserWarning,
                stacklevel=2,
            )
        # a new leaf sharing data's storage, as PyTorch's Variable(data)
        out = data.detach()
        if requires_grad:
            out.requires_grad_(True)
        return out

    _execution_engine = None  # set below: PyTorch's Variable._execution_engine


class _ExecutionEngine:
    """``Variable._execution_engine``: ``queue_callback`` and ``run_backward``."""

    @staticmethod
    def queue_callback(callback) -> None:
        from .engine import queue_callback

        queue_callback(callback)


Variable._execution_engine = _ExecutionEngine()
