"""Divergence and likelihood losses of ``ember.nn.functional``: ``kl_div``,
``poisson_nll_loss`` and ``gaussian_nll_loss``.

Compositions of differentiable ops (gradients follow). ``_loss`` re-exports every name, so
``F.<name>`` and ``ember.nn.functional._loss.<name>`` are these functions.
"""

from __future__ import annotations

import math
import warnings

from ... import ops
from ...amp._state import autocast_op
from ...tensor import Tensor
from ._loss_reduction import _reduce, _reduction, legacy_get_string


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
