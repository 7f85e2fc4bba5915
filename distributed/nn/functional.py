"""Collectives that autograd differentiates (PyTorch's ``torch.distributed.nn.functional``).

Each returns new tensors (the input is not written) and has the adjoint collective as its
backward: ``all_reduce`` <-> ``all_reduce``, ``broadcast`` -> a sum on the source,
``all_gather`` <-> ``reduce_scatter``, ``all_to_all`` <-> ``all_to_all``. Gradients of the
backward itself (double backward) are not recorded.
"""

from __future__ import annotations

import ember
from ember import _interop
from ember.autograd import Function

from .. import collectives
from ..distributed_c10d import get_rank, get_world_size
from ..reduce_op import ReduceOp

__all__ = ["all_gather", "all_reduce", "all_to_all", "broadcast", "reduce_scatter"]


def _check(tensor, what: str) -> None:
    if not isinstance(tensor, ember.Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")


def broadcast(tensor, src: int, group=None):
    """``src``'s ``tensor`` on every rank; its gradient is the sum of all ranks' gradients
    (on ``src``; zero elsewhere)."""
    _check(tensor, "broadcast")
    return _Broadcast.apply(src, group, tensor)


def all_reduce(tensor, op=ReduceOp.SUM, group=None):
    """``tensor`` reduced over the group (a new tensor); the gradient is all-reduced with the
    same ``op`` (PyTorch's rule, exact for ``SUM``)."""
    _check(tensor, "all_reduce")
    return _AllReduce.apply(op, group, tensor)


def all_gather(tensor, group=None) -> tuple:
    """Every rank's ``tensor``, as a tuple in rank order."""
    _check(tensor, "all_gather")
    return _AllGather.apply(group, tensor)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None):
    """This rank's piece of the element-wise reduction of every rank's ``input_list``
    (``output`` gives the shape and is not written)."""
    _check(output, "reduce_scatter")
    return _ReduceScatter.apply(op, group, output, *input_list)


def all_to_all(output_tensor_list, input_tensor_list, group=None) -> tuple:
    """Piece ``i`` of ``input_tensor_list`` goes to rank ``i``; returns the pieces received
    (shaped as ``output_tensor_list``, which is not written)."""
    shapes = [tuple(t.shape) for t in output_tensor_list]
    return _AllToAll.apply(group, shapes, *input_tensor_list)


# ember's own Functions take and return raw arrays (the op contract); the collectives get
# tensors viewing fresh copies of them, so no input is written.
def _fresh(arr):
    return _interop.wrap(arr.copy())


def _arr(t):
    return _interop.array_of(t)


class _Broadcast(Function):
    @staticmethod
    def forward(ctx, src, group, tensor):
        ctx.src, ctx.group = src, group
        out = _fresh(tensor)
        collectives.broadcast(out, src, group=group)
        return _arr(out)

    @staticmethod
    def backward(ctx, grad):
        g = _fresh(grad)
        collectives.all_reduce(g, group=ctx.group)
        if get_rank(ctx.group) != ctx.src:
            return None, None, ctx.xp.zeros_like(grad)
        return None, None, _arr(g)


class _AllReduce(Function):
    @staticmethod
    def forward(ctx, op, group, tensor):
        ctx.op, ctx.group = op, group
        out = _fresh(tensor)
        collectives.all_reduce(out, op=op, group=group)
        return _arr(out)

    @staticmethod
    def backward(ctx, grad):
        g = _fresh(grad)
        collectives.all_reduce(g, op=ctx.op, group=ctx.group)
        return None, None, _arr(g)


class _AllGather(Function):
    @staticmethod
    def forward(ctx, group, tensor):
        ctx.group, ctx.shape, ctx.dtype = group, tensor.shape, tensor.dtype
        outs = [_fresh(tensor) for _ in range(get_world_size(group))]
        collectives.all_gather(outs, _fresh(tensor), group=group)
        return tuple(_arr(o) for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        xp = ctx.xp
        grads = [_fresh(xp.zeros(ctx.shape, ctx.dtype) if g is None else g) for g in grads]
        out = _fresh(xp.zeros(ctx.shape, ctx.dtype))
        collectives.reduce_scatter(out, grads, op=ReduceOp.SUM, group=ctx.group)
        return None, _arr(out)


class _ReduceScatter(Function):
    @staticmethod
    def forward(ctx, op, group, output, *inputs):
        ctx.group = group
        out = _fresh(output)
        collectives.reduce_scatter(out, [_fresh(t) for t in inputs], op, group)
        return _arr(out)

    @staticmethod
    def backward(ctx, grad):
        outs = [_fresh(grad) for _ in range(get_world_size(ctx.group))]
        collectives.all_gather(outs, _fresh(grad), group=ctx.group)
        return (None, None, None, *(_arr(o) for o in outs))


class _AllToAll(Function):
    @staticmethod
    def forward(ctx, group, shapes, *inputs):
        ctx.group, ctx.shapes = group, shapes
        ctx.in_shapes = [t.shape for t in inputs]
        xp, dtype = ctx.xp, inputs[0].dtype
        outs = [_fresh(xp.zeros(s, dtype)) for s in shapes]
        collectives.all_to_all(outs, [_fresh(t) for t in inputs], group=group)
        return tuple(_arr(o) for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        xp = ctx.xp
        dtype = next(g for g in grads if g is not None).dtype
        back = [_fresh(xp.zeros(s, dtype)) for s in ctx.in_shapes]
        sent = [_fresh(xp.zeros(s, dtype) if g is None else g) for g, s in zip(grads, ctx.shapes)]
        collectives.all_to_all(back, sent, group=ctx.group)
        return (None, None, *(_arr(b) for b in back))
