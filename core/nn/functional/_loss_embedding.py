"""Embedding and ranking losses of ``ember.nn.functional``: cosine-embedding, margin-ranking,
triplet-margin, hinge-embedding and soft-margin.

Compositions of differentiable ops (gradients follow). ``_loss`` re-exports every name, so
``F.<name>`` and ``ember.nn.functional._loss.<name>`` are these functions.
"""

from __future__ import annotations

from ... import ops
from ...amp._state import autocast_op
from ...tensor import Tensor
from ._linear import pairwise_distance
from ._loss_reduction import _reduce, _reduction


def _cos_rows(x1: Tensor, x2: Tensor) -> Tensor:
    # PyTorch's cosine_embedding_loss: EPSILON 1e-12 added to each squared norm
    d = x1.dim() - 1
    prod = (x1 * x2).sum(d)
    m1 = (x1 * x1).sum(d) + 1e-12
    m2 = (x2 * x2).sum(d) + 1e-12
    return prod / ops.sqrt(m1 * m2)


@autocast_op("cosine_embedding_loss")
def cosine_embedding_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`1 - \cos(x_1, x_2)` for :math:`y = 1`, :math:`\max(0, \cos - \text{margin})`
    for :math:`y = -1`."""
    reduction = _reduction(size_average, reduce, reduction)
    if input1.dim() not in (1, 2) or input1.shape != input2.shape:
        raise RuntimeError(
            f"cosine_embedding_loss: expected 1D or 2D inputs of equal shapes, "
            f"got {list(input1.shape)} and {list(input2.shape)}"
        )
    cos = _cos_rows(input1, input2)
    zero = cos * 0
    pos = ops.where(target == 1, 1 - cos, zero)
    neg = ops.where(target == -1, (cos - margin).clamp_min(0), zero)
    return _reduce(pos + neg, reduction)


@autocast_op("margin_ranking_loss")
def margin_ranking_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`\max(0, -y (x_1 - x_2) + \text{margin})`."""
    reduction = _reduction(size_average, reduce, reduction)
    if not (input1.dim() == input2.dim() == target.dim()):
        raise RuntimeError(
            f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {input1.shape}, input2: {input2.shape}, target: {target.shape} "
        )
    loss = (-target * (input1 - input2) + margin).clamp_min(0)
    return _reduce(loss, reduction)


@autocast_op("triplet_margin_loss")
def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`\max(d(a, p) - d(a, n) + \text{margin}, 0)` with :math:`L_p` distances."""
    reduction = _reduction(size_average, reduce, reduction)
    if not (anchor.dim() == positive.dim() == negative.dim()):
        raise RuntimeError(
            f"The anchor, positive, and negative tensors are expected to have the same number of "
            f"dimensions, but got: anchor {anchor.dim()}D, positive {positive.dim()}D, and "
            f"negative {negative.dim()}D inputs"
        )
    d_ap = pairwise_distance(anchor, positive, p, eps)
    d_an = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_an = ops.minimum(d_an, pairwise_distance(positive, negative, p, eps))
    return _reduce((d_ap - d_an + margin).clamp_min(0), reduction)


@autocast_op("hinge_embedding_loss")
def hinge_embedding_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 1.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`x` for :math:`y = 1`, :math:`\max(0, \text{margin} - x)` for :math:`y = -1`."""
    reduction = _reduction(size_average, reduce, reduction)
    zero = input * 0
    out = ops.where(target != 1, (margin - input).clamp_min(0), zero) + ops.where(
        target != -1, input, zero
    )
    return _reduce(out, reduction)


@autocast_op("soft_margin_loss")
def soft_margin_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    r""":math:`\log(1 + e^{-y x})`."""
    reduction = _reduction(size_average, reduce, reduction)
    from ._activation import softplus

    return _reduce(softplus(-target * input), reduction)
