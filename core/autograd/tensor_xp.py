"""A numpy-like namespace over ember's differentiable ops.

With ``create_graph=True`` the engine sets ``ctx.xp`` to this module and passes tensors, so each
op's ordinary backward formula builds a graph that can be differentiated again. It offers the
numpy functions that backward formulas use, with numpy's names and signatures.
"""

from __future__ import annotations

from .. import ops as _ops
from ..tensor import Tensor


def _t(x, like=None):
    if isinstance(x, Tensor):
        return x
    from ..creation import tensor

    dev = like.device if isinstance(like, Tensor) else None
    return tensor(x, device=dev)


def sum(x, axis=None, keepdims=False):
    return _ops.sum(x, dim=axis, keepdim=keepdims)


def reshape(x, shape):
    return _ops.reshape(x, tuple(shape))


def broadcast_to(x, shape):
    return _ops.expand(x, tuple(shape))


def swapaxes(x, a, b):
    return _ops.transpose(x, a, b)


def transpose(x, axes):
    return _ops.permute(x, tuple(axes))


def expand_dims(x, axis):
    return _ops.unsqueeze(x, axis)


def where(cond, a, b):
    like = a if isinstance(a, Tensor) else b
    cond = _t(cond, like)
    if cond.dtype.name != "bool":
        cond = cond != 0
    return _ops.where(
        cond,
        _t(a, like) if not isinstance(a, Tensor) else a,
        _t(b, like) if not isinstance(b, Tensor) else b,
    )


def maximum(a, b):
    return _ops.maximum(a, b)


def minimum(a, b):
    return _ops.minimum(a, b)


def exp(x):
    return _ops.exp(x)


def log(x):
    return _ops.log(x)


def log1p(x):
    return _ops.log1p(x)


def sqrt(x):
    return _ops.sqrt(x)


def sign(x):
    return _ops.sign(x)


def abs(x):
    return _ops.abs(x)


def sin(x):
    return _ops.sin(x)


def cos(x):
    return _ops.cos(x)


def tanh(x):
    return _ops.tanh(x)


def cumsum(x, axis):
    return _ops.cumsum(x, axis)


def cumprod(x, axis):
    return _ops.cumprod(x, axis)


def flip(x, axis):
    return _ops.flip(x, axis if isinstance(axis, (tuple, list)) else (axis,))


def roll(x, shift, axis=None):
    return _ops.roll(x, shift, axis)


def take(x, indices, axis):
    if not isinstance(indices, Tensor):
        indices = Tensor._wrap(indices)
    return _ops.index_select(x, axis, indices)


def concatenate(xs, axis=0):
    return _ops.cat(list(xs), axis)


def einsum(eq, *ops, **_):
    return _ops.einsum(eq, *ops)


def astype(x, dtype):
    from ..backend.dtype import from_numpy_dtype

    return x.to(from_numpy_dtype(dtype))


def zeros(shape, dtype=None):
    from ..backend.dtype import from_numpy_dtype
    from ..creation import zeros as _zeros

    return _zeros(shape, dtype=None if dtype is None else from_numpy_dtype(dtype))


def zeros_like(x):
    return x * 0


def ones_like(x):
    return x * 0 + 1


def matmul(a, b):
    return _ops.matmul(a, b)
