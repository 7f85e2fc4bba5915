"""Functional losses (``ember.nn.functional``): reductions ``"none" | "mean" | "sum"``.

Cross-entropy and NLL are single fused Functions on (rows, classes) views; K-dimensional inputs
(N, C, d1, ...) are moved to that layout first. This file holds the class-index, regression and
binary cross-entropy losses; the embedding / ranking losses (``_loss_embedding.py``), the
divergence and likelihood losses (``_loss_likelihood.py``) and the reduction helpers
(``_loss_reduction.py``) are re-exported here, and ``__all__`` lists them all.
"""

from __future__ import annotations

import numpy as np

from ... import ops
from ...amp._state import autocast_op
from ...backend.meta import MetaArray
from ...ops import loss_ce_compiled, loss_ops
from ...tensor import Tensor

# The other loss families and the shared reduction helpers, re-exported under their old path.
from ._loss_embedding import (
    _cos_rows,  # noqa: F401
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
    soft_margin_loss,
    triplet_margin_loss,
)
from ._loss_likelihood import gaussian_nll_loss, kl_div, poisson_nll_loss
from ._loss_reduction import _check_size, _reduce, _reduction, legacy_get_string  # noqa: F401

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


# ---- class-index losses -------------------------------------------------------------------
def _rows_and_target(input: Tensor, target: Tensor):
    """Input as (rows, C) and target as (rows,), plus the shape of a 'none' result."""
    xs, ts = input._data.shape, target._data.shape
    if len(xs) == 2 and ts == xs[:1]:  # the common case, on the raw shapes (~3 us less)
        return input, target._data, ts
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


def _check_indices(t: np.ndarray, c: int, ignore_index: int, bounds: bool = True) -> None:
    """The target's dtype, and (``bounds``) that each index is a class or ``ignore_index``."""
    if t.dtype.kind not in "iu":
        raise RuntimeError(
            f"expected scalar type Long but found {_SCALAR.get(t.dtype.name, t.dtype.name)}"
        )
    if not bounds or t.size == 0 or type(t) is MetaArray:  # meta targets have no values
        return
    if t.min() >= 0 and t.max() < c:  # the common case in two reductions
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
    for name, pos, arg in (("input", 1, input), ("target", 2, target)):
        if not isinstance(arg, Tensor):
            # e.g. a model's (logits, aux) tuple in training mode: name it, as torch does
            raise TypeError(
                f"cross_entropy_loss(): argument '{name}' (position {pos}) must be Tensor, "
                f"not {type(arg).__name__}"
            )
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    xs = input._data.shape  # (the raw shapes: each Tensor.shape builds a Size)
    probs = target._data.dtype.kind in "fV" and target._data.shape == xs
    c = xs[1] if len(xs) >= 2 else xs[0] if xs else 0
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
        # the compiled kernels check the targets as they read them (loss_ce_compiled): two
        # reductions less, ~5 us of a 512 x 50 call
        xd = x._data
        compiled = type(xd) is np.ndarray and (
            loss_ce_compiled.ce_compiled(np, xd, t, w, label_smoothing) is not None
        )
        _check_indices(t, c, ignore_index, bounds=not compiled)
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
