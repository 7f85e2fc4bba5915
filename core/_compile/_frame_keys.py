"""The cache keys of ``ember.compile`` (``_frame.py``): how each call's arguments are keyed
(tensors by shape, dtype, device and requires_grad; scalars by value; modules by identity and
training flags), and the symbolic form of a key under dynamic shapes."""

from __future__ import annotations

from typing import Any

from ._static import _DIM_MARKS

_SCALARS = (bool, int, float, str, type(None))


def _on_cuda(values: list) -> bool:
    from ember import Tensor

    return any(isinstance(v, Tensor) and v.device.type == "cuda" for v in values)


def _arg_key(v: Any, dynamic: bool) -> Any:
    from ember import Tensor
    from ember.nn import Module

    if isinstance(v, Tensor):
        marks = _DIM_MARKS.get(id(v))
        if marks is not None and not dynamic:
            shape = tuple(None if i in marks[1] else n for i, n in enumerate(v.shape))
        else:
            # symbolic: the rank, and sizes 0 and 1 exactly (torch's 0/1 specialization)
            shape = _sym_shape(v.shape) if dynamic else tuple(v.shape)
        return (
            "T",
            shape,
            v.dtype,
            str(v.device),
            v.requires_grad,
        )
    if type(v) in _SCALARS:
        return ("C", type(v), v)
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_arg_key(e, dynamic) for e in v))
    if type(v) is dict:  # (a graph break's live locals): by content, as tuples are
        return (dict, tuple((k, _arg_key(e, dynamic)) for k, e in v.items()))
    if isinstance(v, Module):
        return ("M", id(v), tuple(m.training for m in v.modules()))
    return ("O", id(v))


def _loosen(a: Any) -> Any:
    if isinstance(a, tuple) and a and a[0] == "T":
        return ("T", _sym_shape(a[1]), *a[2:])
    if isinstance(a, tuple) and len(a) == 2 and a[0] in (tuple, list):
        return (a[0], tuple(_loosen(e) for e in a[1]))
    return a


def _sym_shape(shape: tuple) -> tuple:
    # a nested tensor's ragged size (a NestedInt) is symbolic like any size above 1
    return tuple(n if type(n) is int and n < 2 else None for n in shape)
