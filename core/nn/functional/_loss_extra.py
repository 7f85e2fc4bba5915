"""Margin losses of ``torch.nn.functional``: multi-class and multi-label hinge losses, the
multi-label logistic loss and the triplet loss with a custom distance.

Compositions of differentiable ops (gradients follow); integer targets are read on the host to
build masks, as they carry no gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ... import ops
from ...backend.device import get_array_module
from ...tensor import Tensor
from ._activation import logsigmoid
from ._linear import pairwise_distance
from ._loss import _reduce, _reduction

__all__ = [
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "triplet_margin_with_distance_loss",
]


def _as_rows(input: Tensor, target: Tensor, name: str):
    """(N, C) input and (N, ...) target views, plus whether the input was a single vector."""
    if input.dim() not in (1, 2) or input.numel() == 0 and input.dim() != 2:
        raise RuntimeError(
            f"{name}: Expected non-empty vector or matrix with optional 0-dim "
            f"batch size, but got: {list(input.shape)}"
        )
    if input.dim() == 1:
        return input.unsqueeze(0), target.reshape((1,) + tuple(target.shape)), True
    return input, target, False


def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-class hinge loss: :math:`\frac{1}{C} \sum_{i \ne y} w_y
    \max(0, \text{margin} - x_y + x_i)^p` per sample (``p`` 1 or 2)."""
    reduction = _reduction(size_average, reduce, reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    if weight is not None and weight.dim() != 1:
        raise ValueError("weight must be one-dimensional")
    x, t, single = _as_rows(input, target, "multi_margin_loss")
    n, c = x.shape
    t = t.reshape(-1)
    if t.shape[0] != n:
        raise RuntimeError(f"inconsistent target size, expected {n} but got {list(target.shape)}")
    td = t._data
    if td.size and (int(td.min()) < 0 or int(td.max()) >= c):
        raise RuntimeError("target out of range")
    xy = ops.gather(x, 1, t.reshape(n, 1))
    z = (x - xy + margin).clamp_min(0)
    if p == 2:
        z = z * z
    if weight is not None:
        # PyTorch: not differentiable with respect to the class weights
        z = z * ops.index_select(weight.detach(), 0, t).reshape(n, 1)
    xp = get_array_module(td)
    not_y = xp.ones((n, c), dtype=bool)
    not_y[xp.arange(n), td.astype(np.int64)] = False
    loss = ops.where(Tensor._wrap(not_y), z, z * 0).sum(1) / c
    if single and reduction == "none":
        loss = loss.reshape(())
    return _reduce(loss, reduction)


def multilabel_margin_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    r"""Multi-label hinge loss: :math:`\sum_{j \in y} \sum_{i \notin y}
    \frac{\max(0, 1 - (x_j - x_i))}{C}`; each target row lists class indices and ends at the
    first ``-1``."""
    reduction = _reduction(size_average, reduce, reduction)
    x, t, single = _as_rows(input, target, "multilabel_margin_loss")
    n, c = x.shape
    if tuple(t.shape) != (n, c):
        raise RuntimeError(
            f"inconsistent target size: {list(target.shape)} for input of size: {list(input.shape)}"
        )
    td = t._data
    if td.size and (int(td.min()) < -1 or int(td.max()) >= c):
        raise RuntimeError("target out of range")
    host = np.asarray(td.get() if hasattr(td, "get") else td).astype(np.int64)
    # count[k, j]: times class j is listed before row k's first -1; is_target: listed at all
    count = np.zeros((n, c), dtype=np.float64)
    for k in range(n):
        for j in host[k]:
            if j < 0:
                break
            count[k, j] += 1
    is_target = count > 0
    xp = get_array_module(td)
    dt = x._data.dtype
    cnt = Tensor._wrap(xp.asarray(count.astype(dt)))
    other = Tensor._wrap(xp.asarray((~is_target).astype(dt)))
    # hinge[k, j, i] = max(0, 1 - (x_kj - x_ki)), weighted by count_kj * [i not a target]
    hinge = (1 - (x.unsqueeze(2) - x.unsqueeze(1))).clamp_min(0)
    loss = (hinge * cnt.unsqueeze(2) * other.unsqueeze(1)).sum((1, 2)) / c
    if single and reduction == "none":
        loss = loss.reshape(())
    return _reduce(loss, reduction)


def multilabel_soft_margin_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-label one-versus-all logistic loss, averaged over the C classes:
    :math:`-\frac{1}{C} \sum_i w_i (y_i \log\sigma(x_i) + (1 - y_i) \log\sigma(-x_i))`."""
    reduction = _reduction(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    class_dim = input.dim() - 1
    loss = loss.sum(class_dim) / input.shape[class_dim]
    return _reduce(loss, reduction)


def triplet_margin_with_distance_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    distance_function: Callable[[Tensor, Tensor], Tensor] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`\max(d(a, p) - d(a, n) + \text{margin}, 0)` with any distance function
    (``pairwise_distance`` by default); ``swap`` uses :math:`\min(d(a, n), d(p, n))`."""
    if margin <= 0:
        raise ValueError(
            f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, "
            f"got {margin} instead"
        )
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    a, p, n = anchor.dim(), positive.dim(), negative.dim()
    if not a == p == n:
        raise RuntimeError(
            f"The anchor, positive, and negative tensors are expected to have the same number of "
            f"dimensions, but got: anchor {a}D, positive {p}D, and negative {n}D inputs"
        )
    dist = distance_function if distance_function is not None else pairwise_distance
    d_pos = dist(anchor, positive)
    d_neg = dist(anchor, negative)
    if swap:
        d_neg = ops.minimum(d_neg, dist(positive, negative))
    return _reduce((margin + d_pos - d_neg).clamp_min(0), reduction)
