"""Functional losses (``ember.nn.functional``): reductions ``"none" | "mean" | "sum"``.

Cross-entropy and NLL are single fused Functions on (rows, classes) views; K-dimensional inputs
(N, C, d1, ...) are moved to that layout first.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ... import ops
from ...amp._state import autocast_op
from ...backend.meta import MetaArray
from ...ops import loss_ops
from ...tensor import Tensor
from ._linear import pairwise_distance

__all__ = [
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "triplet_margin_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
]


def legacy_get_string(size_average, reduce, emit_warning: bool = True) -> str:
    """The ``reduction`` string for PyTorch's deprecated ``size_average`` / ``reduce``."""
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        ret = "mean"
    elif reduce:
        ret = "sum"
    else:
        ret = "none"
    if emit_warning:
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{ret}' instead.",
            stacklevel=3,
        )
    return ret


def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_size(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )


# ---- class-index losses -------------------------------------------------------------------
def _rows_and_target(input: Tensor, target: Tensor):
    """Input as (rows, C) and target as (rows,), plus the shape of a 'none' result."""
    nd = input.dim()
    if nd == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    if nd == 1:
        if target.dim() != 0:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        return input.reshape(1, -1), target._data.reshape(1), ()
    n = input.shape[0]
    if target.dim() == 0 or target.shape[0] != n:
        tn = target.shape[0] if target.dim() else 0
        raise ValueError(f"Expected input batch_size ({n}) to match target batch_size ({tn}).")
    expected = (n,) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        if nd == 2:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target.shape)}")
    if nd == 2:
        return input, target._data, (n,)
    rows = ops.movedim(input, 1, -1).reshape(-1, input.shape[1])
    return rows, target._data.reshape(-1), expected


def _check_indices(t: np.ndarray, c: int, ignore_index: int) -> None:
    if t.dtype.kind not in "iu":
        raise RuntimeError(
            f"expected scalar type Long but found {_SCALAR.get(t.dtype.name, t.dtype.name)}"
        )
    if t.size == 0 or type(t) is MetaArray:  # meta targets have no values to check
        return
    bad = (t < 0) | (t >= c)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bool(bad.any()):
        raise IndexError(f"Target {int(t[bad].reshape(-1)[0])} is out of bounds.")


_SCALAR = {
    "float32": "Float",
    "float64": "Double",
    "float16": "Half",
    "int32": "Int",
    "bool": "Bool",
}


def _check_weight(weight: Tensor | None, c: int):
    if weight is None:
        return None
    if weight.dim() != 1 or weight.shape[0] != c:
        raise RuntimeError(
            f"weight tensor should be defined either for all {c} classes or no "
            f"classes but got weight tensor of shape: {list(weight.shape)}"
        )
    return weight._data


@autocast_op("cross_entropy_loss")
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Cross-entropy between logits ``input`` (C), (N, C) or (N, C, d1, ...) and ``target``:
    class indices (with ``ignore_index``) or class probabilities of the input's shape.

    log_softmax and the negative log-likelihood run as ONE Function with the analytic gradient
    :math:`\text{softmax}(x) \sum_c q_c - q` (``q`` the weighted, smoothed target).
    """
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    probs = target._data.dtype.kind in "fV" and target.shape == input.shape
    c = input.shape[1] if input.dim() >= 2 else input.shape[0] if input.dim() else 0
    w = _check_weight(weight, c)
    if probs:
        if input.dim() == 1:
            x, t, out_shape = input.reshape(1, -1), target.reshape(1, -1), ()
        elif input.dim() == 2:
            x, t, out_shape = input, target, (input.shape[0],)
        else:
            x = ops.movedim(input, 1, -1).reshape(-1, c)
            t = ops.movedim(target, 1, -1).reshape(-1, c)
            out_shape = (input.shape[0],) + tuple(input.shape[2:])
        out = loss_ops.CrossEntropyProbs.apply(x, t, w, reduction, float(label_smoothing))
    else:
        x, t, out_shape = _rows_and_target(input, target)
        _check_indices(t, c, ignore_index)
        out = loss_ops.CrossEntropyIndices.apply(
            x, t, w, ignore_index, reduction, float(label_smoothing)
        )
    if reduction == "none":
        out = out.reshape(out_shape)
    return out


@autocast_op("nll_loss")
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r"""Negative log-likelihood of log-probabilities ``input`` at the ``target`` classes."""
    reduction = _reduction(size_average, reduce, reduction)
    c = input.shape[1] if input.dim() >= 2 else input.shape[0] if input.dim() else 0
    w = _check_weight(weight, c)
    x, t, out_shape = _rows_and_target(input, target)
    _check_indices(t, c, ignore_index)
    out = loss_ops.NllIndices.apply(x, t, w, ignore_index, reduction)
    if reduction == "none":
        out = out.reshape(out_shape)
    return out


# ---- regression losses ----------------------------------------------------------------------
@autocast_op("mse_loss")
def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    r""":math:`(x - y)^2`, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_size(input, target)
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_op("l1_loss")
def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    r""":math:`|x - y|`, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_size(input, target)
    loss = ops.abs(input - target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_op("smooth_l1_loss")
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    r""":math:`0.5 d^2 / \beta` where :math:`|d| < \beta`, else :math:`|d| - 0.5 \beta`."""
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _check_size(input, target)
    d = input - target
    ad = ops.abs(d)
    if beta == 0:
        return _reduce(ad, reduction)
    loss = ops.where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta)
    return _reduce(loss, reduction)


@autocast_op("huber_loss")
def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    r""":math:`0.5 d^2` where :math:`|d| < \delta`, else :math:`\delta (|d| - 0.5 \delta)`."""
    reduction = _reduction(None, None, reduction)
    _check_size(input, target)
    d = input - target
    ad = ops.abs(d)
    loss = ops.where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---- binary cross-entropy -------------------------------------------------------------------
@autocast_op("binary_cross_entropy")
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`-w (y \log x + (1 - y) \log(1 - x))` on probabilities (logs clamped at -100)."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.shape}) that is different to the input "
            f"size ({input.shape}) is deprecated. Please ensure they have the same "
            "size."
        )
    x = input._data
    if x.size and bool(((x < 0) | (x > 1)).any()):
        raise RuntimeError("all elements of input should be between 0 and 1")
    loss = loss_ops.BinaryCrossEntropy.apply(input, target, weight)
    return _reduce(loss, reduction)


@autocast_op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    r"""Sigmoid + binary cross-entropy in one stable Function; ``pos_weight`` scales the
    positive term (broadcast over the last dim)."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    loss = loss_ops.BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight)
    return _reduce(loss, reduction)


# ---- divergences and embedding losses --------------------------------------------------------
@autocast_op("kl_div")
def kl_div(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    r"""KL divergence with ``input`` as log-probabilities: :math:`y (\log y - x)`."""
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce)
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the "
            "support size.'batchmean' divides only by the batch size, and aligns with "
            "the KL div math definition.'mean' will be changed to behave the same as "
            "'batchmean' in the next major release.",
            stacklevel=2,
        )
    if reduction not in ("none", "mean", "sum", "batchmean"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if log_target:
        loss = ops.exp(target) * (target - input)
    else:
        pos = target > 0
        safe = ops.where(pos, target, target * 0 + 1)
        loss = ops.where(pos, target * ops.log(safe), target * 0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.dim() else 1)
    return _reduce(loss, reduction)


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


@autocast_op("poisson_nll_loss")
def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    size_average=None,
    eps: float = 1e-8,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`e^x - y x` (log input) or :math:`x - y \log(x + \epsilon)`; ``full`` adds
    Stirling's term for :math:`y > 1`."""
    reduction = _reduction(size_average, reduce, reduction)
    if log_input:
        loss = ops.exp(input) - target * input
    else:
        loss = input - target * ops.log(input + eps)
    if full:
        safe = ops.where(target > 1, target, target * 0 + 2)
        stirling = safe * ops.log(safe) - safe + 0.5 * ops.log(2 * math.pi * safe)
        loss = loss + ops.where(target > 1, stirling, stirling * 0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    r""":math:`\frac12 (\log \max(\sigma^2, \epsilon) + (x - y)^2 / \max(\sigma^2,
    \epsilon))`."""
    reduction = _reduction(None, None, reduction)
    if not isinstance(var, Tensor):
        from ...creation import full as _full

        var = _full(input.shape, float(var), dtype=input.dtype)
    elif var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = var.unsqueeze(-1)
        elif not (input.shape[:-1] == var.shape[:-1] and var.shape[-1:] == (1,)):
            raise ValueError("var is of incorrect size")
    if bool((var._data < 0).any()):
        raise ValueError("var has negative entry/entries")
    from ...autograd.grad_mode import no_grad

    with no_grad():
        clamped = var.clamp(min=eps)
    # clamp without gradient effect at the floor, as PyTorch does (clamp_ under no_grad)
    v = var + (clamped - var).detach()
    d = input - target
    loss = 0.5 * (ops.log(v) + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)
