"""PyTorch's ``grad_fn._saved_self`` / ``_saved_other`` / ``_saved_result`` attributes.

PyTorch names a node's saved tensors after the op's arguments; scripts and the saved-tensors
hooks tutorial read them to see what the graph keeps. ember's nodes know, for each saved array,
whether it was an input (and which tensor) or an output, so the common names map onto that:
``_saved_self`` / ``_saved_other`` are the saved first / second tensor inputs, ``_saved_result``
the saved output. A saved input comes back as the input tensor itself (``_saved_self is a``), an
output as a new tensor on the same data; where a saved-tensor pack hook was active, each access
runs the unpack hook, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ROLES", "saved_by_role"]

ROLES = frozenset({"self", "other", "result"})


def _input_position(node, ref) -> int | None:
    fn = ref.grad_fn
    for j, e in enumerate(node._edges or ()):
        if e is None:
            continue
        if e[0] is ref or (fn is not None and e[0] is fn and e[1] == ref._output_nr):
            return j
    return None


def _float64():
    from ..backend.dtype import float64

    return float64


def saved_by_role(node, role: str) -> Any:
    from .function import _FREED_MSG, _SAVED_INPUT, _SAVED_OUTPUT

    name = f"_saved_{role}"
    if node._saved is None:
        raise RuntimeError(_FREED_MSG)
    info = node.__dict__.get("_saved_info") or type(node).__dict__.get("_saved_info") or ()
    if role == "result":
        picks = [i for i, (kind, ref) in enumerate(info) if kind == _SAVED_OUTPUT and ref == 0]
    else:
        inputs = [(i, ref) for i, (kind, ref) in enumerate(info) if kind == _SAVED_INPUT]
        want = 0 if role == "self" else 1
        picks = [i for i, ref in inputs if _input_position(node, ref) == want]
        if not picks and len(inputs) > want:
            picks = [inputs[want][0]]
        if not picks and len(info) > want and info[want][0] not in (_SAVED_INPUT, _SAVED_OUTPUT):
            # not a saved input: what the op kept in that slot (``x * 2.0``: self is not
            # needed, None; other is the scalar, which PyTorch shows as a float64 tensor)
            value = node._saved[want]
            if isinstance(value, (bool, int, float, complex)):
                from ..creation import tensor

                return tensor(value, dtype=_float64())
            if hasattr(value, "__array_namespace__"):
                from ..tensor import Tensor

                return Tensor._wrap(value)
            return value
    if not picks:
        raise AttributeError(f"'{node.name()}' object has no attribute '{name}'")
    i = picks[0]
    kind, ref = info[i]
    if kind == _SAVED_INPUT and not node._packed:
        return ref
    from ..tensor import Tensor

    packed = node._saved[i]
    if kind == _SAVED_INPUT and type(packed).__name__ == "_Packed":
        from . import grad_mode

        with grad_mode.no_grad():
            out = packed.unpack(packed.obj)  # the unpack hook's tensor, as PyTorch returns it
        return out if isinstance(out, Tensor) else Tensor._wrap(out)
    return node._saved_as_tensor(i)
