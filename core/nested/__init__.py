"""``ember.nested``: nested (jagged) tensors, PyTorch's ``torch.nested`` (docs/nested.md).

A nested tensor is a batch of tensors whose sizes differ (variable-length sequences). Build
one with :func:`nested_tensor` / :func:`as_nested_tensor` (``layout=ember.jagged`` packs the
components along their one ragged dimension; the default ``ember.strided`` keeps a list),
:func:`nested_tensor_from_jagged` or :func:`narrow`; turn it back into a dense tensor with
:func:`to_padded_tensor` or ``nt.unbind()``. Pointwise ops, ``nn.Linear``, ``nn.LayerNorm``,
``softmax``, ``dropout``, ``sum``/``mean`` and ``F.scaled_dot_product_attention`` run on it
with autograd; other ops raise ``NotImplementedError`` naming the op.
"""

from __future__ import annotations

from ..autograd import function as _function
from . import _ops, _route
from ._construct import (
    as_nested_tensor,
    narrow,
    nested_tensor,
    nested_tensor_from_jagged,
    to_padded_tensor,
)
from ._size import NestedInt, _NestedData
from ._tensor import NestedTensor

__all__ = [
    "NestedInt",
    "NestedTensor",
    "as_nested_tensor",
    "narrow",
    "nested_tensor",
    "nested_tensor_from_jagged",
    "to_padded_tensor",
]

# ---- wiring: the route from Function.apply, __torch_function__ and the methods ----------
_function._NestedData = _NestedData
_function._nested_apply = _route.nested_apply
NestedTensor.__torch_function__ = classmethod(_ops.torch_function)
for _name, _fn in _ops.METHODS.items():
    setattr(NestedTensor, _name, _fn)
del _name, _fn
