"""``loss_parallel()``: cross-entropy on logits sharded along the class (vocabulary) dim,
without gathering them (PyTorch's ``torch.distributed.tensor.parallel.loss_parallel``).

Each rank holds ``logits[:, lo:hi]``. The log-sum-exp is assembled from an all-reduce of the
row maxima (MAX) and of the local sums of ``exp(x - max)`` (SUM); the target logit comes from
the one rank whose slice holds it (an all-reduce SUM of zeros elsewhere). Backward needs no
communication: the gradient of the local logits is ``softmax - one_hot`` on the local slice.
"""

from __future__ import annotations

import contextlib

from ember._interop import array_of, functional_override

from ....autograd import Function
from ...reduce_op import ReduceOp
from .. import _funcol
from .._api import DTensor, _chunk_bounds
from ..placement_types import Replicate

__all__ = ["loss_parallel"]


def _all_reduce(arr, op, group):
    import ember

    t = ember.as_tensor(arr).contiguous().clone()
    _funcol.all_reduce(t, op=op, group=group)
    return array_of(t)


class _VocabParallelCrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, target, group, lo, hi, reduction, ignore_index):
        xp = ctx.xp
        n = logits.shape[0]
        rows = xp.arange(n)
        mx = _all_reduce(logits.max(axis=1), ReduceOp.MAX, group)
        z = logits - mx[:, None]
        e = xp.exp(z)
        total = _all_reduce(e.sum(axis=1), ReduceOp.SUM, group)
        mine = (target >= lo) & (target < hi)
        picked = xp.where(mine, z[rows, xp.where(mine, target - lo, 0)], 0.0)
        picked = _all_reduce(picked, ReduceOp.SUM, group)
        valid = target != ignore_index
        loss = xp.where(valid, xp.log(total) - picked, 0.0)
        count = int(valid.sum())
        ctx.saved = (e / total[:, None], target, mine, valid, lo)
        ctx.reduction, ctx.count = reduction, count
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        return loss.sum() / count if count else xp.asarray(float("nan"), dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        soft, target, mine, valid, lo = ctx.saved
        xp = ctx.xp
        g = soft.copy()
        rows = xp.arange(g.shape[0])[mine]
        g[rows, target[mine] - lo] -= 1.0
        if ctx.reduction == "none":
            scale = grad
        elif ctx.reduction == "sum":
            scale = xp.broadcast_to(grad, target.shape)
        else:
            scale = xp.broadcast_to(grad / max(ctx.count, 1), target.shape)
        g *= (scale * valid)[:, None]
        return g, None, None, None, None, None, None


def _parallel_cross_entropy(
    input: DTensor,
    target,
    weight=None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
):
    if weight is not None or label_smoothing:
        raise NotImplementedError(
            "loss_parallel: cross_entropy with weight or label_smoothing is not supported"
        )
    if size_average is not None or reduce is not None:
        raise NotImplementedError("loss_parallel: use reduction=, not size_average/reduce")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    mesh = input.device_mesh
    if input.ndim != 2 or mesh.ndim != 1 or not input.placements[0].is_shard(1):
        raise ValueError(
            "loss_parallel: expected 2-d logits [N, C] sharded on the class dim (Shard(1)) "
            f"over a 1-d mesh, got a {input.ndim}-d DTensor with placements {input.placements}"
            " (flatten [B, S, V] logits with .view(-1, V) first)"
        )
    if isinstance(target, DTensor):
        target = target.full_tensor()
    if tuple(target.shape) != (input.shape[0],):
        raise ValueError(
            f"loss_parallel: target of shape {tuple(target.shape)} does not match "
            f"{input.shape[0]} rows of logits"
        )
    lo, hi = _chunk_bounds(input.shape[1], mesh.size(0))[mesh.get_coordinate()[0]]
    loss = _VocabParallelCrossEntropy.apply(
        input.to_local(), array_of(target), mesh.get_group(0), lo, hi, reduction, ignore_index
    )
    return DTensor(loss, mesh, (Replicate(),), tuple(loss.shape))


@contextlib.contextmanager
def loss_parallel():
    """Within the block, ``nn.functional.cross_entropy`` (and ``nn.CrossEntropyLoss``)
    accept 2-d logits that are a DTensor sharded on the class dim and return the loss as a
    replicated DTensor; call ``backward()`` on it (inside or after the block).

    Example::

        >>> with loss_parallel():
        ...     loss = F.cross_entropy(logits_dt, target)   # logits_dt: Shard(1)
        ...     loss.backward()
    """

    def cross_entropy(plain, input, target, *args, **kwargs):
        if isinstance(input, DTensor):
            return _parallel_cross_entropy(input, target, *args, **kwargs)
        return plain(input, target, *args, **kwargs)

    with functional_override("cross_entropy", cross_entropy):  # core's contract (architecture.md)
        yield
