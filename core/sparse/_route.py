"""The route ``Function.apply`` takes when a dense op reaches a sparse tensor
(core/autograd/function.py): the op's sparse rule where one exists (ember.mm, ember.sum,
ember.add's promotion, ...), else ``NotImplementedError`` naming the op and the layout."""

from __future__ import annotations

import re

import numpy as np

from ..autograd._user_function import Opaque, is_user_function
from ..ops.convert import Cast
from ..ops.elementwise_binary import Add, Mul
from ..ops.indexing_getitem import GetItem
from ..ops.linalg import Matmul, Mv
from ..ops.reduction_sum import Sum
from ..ops.shape_joins import Stack
from ..ops.shape_views import Reshape
from ._compressed import SparseCompressedTensor
from ._coo import SparseTensor, _unsupported
from ._ops import add, matmul, mul
from ._ops import sum as _sparse_sum
from ._select import route_getitem, route_reshape, route_stack


def _refuse(op: str):
    def method(self, *args, **kwargs):
        raise _unsupported(f"the operation {op!r}")

    method.__name__ = op
    return method


def _route_sum(args, kwargs):
    x, dims = args[0], (args[1] if len(args) > 1 else None)
    keepdim = bool(args[2]) if len(args) > 2 else False
    return _sparse_sum(x, dims, keepdim)


def _binary(rule):
    return lambda args, kwargs: rule(args[0], args[1])


def _route_cast(args, kwargs):
    # dtype promotion inside a binary op (ember.add(dense_f32, sparse_i64)): cast the values
    from ..backend.dtype import from_numpy_dtype

    x, dt = args[0], args[1] if len(args) > 1 else kwargs.get("dtype")
    if not isinstance(x, SparseTensor) or not isinstance(dt, np.dtype):
        raise _unsupported("the operation 'cast'")
    return x.to(from_numpy_dtype(dt))


# keyed by the op classes themselves (not their names), so a renamed op keeps its rule
_ROUTES = {
    Matmul: _binary(matmul),
    Mv: _binary(matmul),
    Sum: _route_sum,
    Add: _binary(add),
    Mul: _binary(mul),
    Cast: _route_cast,
    GetItem: route_getitem,  # an integer: select (SparseEncoder.decode)
    Stack: route_stack,  # sparse rows back into a batch (SparseEncoder.encode)
    Reshape: route_reshape,  # unsqueeze only
}


def sparse_apply(cls, args, kwargs):
    """Where ``Function.apply`` sends an op that reached a sparse tensor: its sparse rule, or
    ``NotImplementedError`` naming the op and the layout. A user's ``autograd.Function`` gets
    its sparse arguments as they are, as in PyTorch (linear_operator's DSMM multiplies a sparse
    matrix in its forward); they take no gradient through it."""
    if is_user_function(cls):
        sparse = (SparseTensor, SparseCompressedTensor)
        return cls.apply(*(Opaque(a) if isinstance(a, sparse) else a for a in args), **kwargs)
    if any(isinstance(a, SparseCompressedTensor) for a in args):
        from ._compressed_ops import compressed_apply

        return compressed_apply(cls, args, kwargs)
    route = _ROUTES.get(cls)
    if route is not None:
        return route(args, kwargs)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()  # MaxPool2d -> max_pool2d
    raise NotImplementedError(
        f"ember: the operation {name!r} is not implemented for tensors with layout "
        "ember.sparse_coo (sparse tensors support coalesce, to_dense, sparse.mm/mm/matmul/@, "
        "sum, +, -, * and / by a scalar, t/transpose, integer indexing/select/iteration, "
        "stack, unsqueeze); call .to_dense() first"
    )
