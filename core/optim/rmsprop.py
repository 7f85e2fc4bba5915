"""RMSprop, PyTorch's ``torch.optim.RMSprop`` (centered and momentum variants)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import (
    _addcdiv_,
    _addcmul_,
    _bump,
    _check_lr,
    _check_nonneg,
    _grad_for_update,
    _lerp_,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture notes), optionally centered and with momentum.

    Per parameter, with ``g = ±grad + weight_decay * param``::

        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v - m * m) + eps,  m = alpha * m + (1 - alpha) * g     (centered)
        avg = sqrt(v) + eps                                                (otherwise)
        buf = momentum * buf + g / avg;  param -= lr * buf                 (momentum > 0)
        param -= lr * g / avg                                              (otherwise)

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-2).
        alpha (float): smoothing constant (default: 0.99).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        weight_decay (float): L2 penalty (default: 0).
        momentum (float): momentum factor (default: 0).
        centered (bool): normalize by an estimate of the gradient's variance (default: False).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        capturable, foreach (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(eps, "epsilon value")
        _check_nonneg(momentum, "momentum value")
        _check_nonneg(weight_decay, "weight_decay value")
        _check_nonneg(alpha, "alpha value")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "momentum": 0,
        "centered": False,
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        centered = group["centered"]
        buffers = (
            ("square_avg",)
            + (("momentum_buffer",) if momentum > 0 else ())
            + (("grad_avg",) if centered else ())
        )
        for p, state, _ in self._stepped(group, buffers):
            g = _grad_for_update(p, group["weight_decay"], group["maximize"])
            arrays = [p._data, g, state["square_avg"]._data]
            if centered:
                arrays.append(state["grad_avg"]._data)
            if momentum > 0:
                arrays.append(state["momentum_buffer"]._data)
            parallel_apply(
                functools.partial(
                    _rmsprop_update,
                    alpha=alpha,
                    eps=eps,
                    lr=lr,
                    momentum=momentum,
                    centered=centered,
                ),
                *arrays,
            )
            _bump(p)


def _rmsprop_update(param, g, square_avg, *extra, alpha, eps, lr, momentum, centered) -> None:
    """RMSprop's elementwise update on arrays (in place; also on slices: ``parallel_apply``).
    ``extra``: ``grad_avg`` when centered, then the momentum buffer when momentum > 0."""
    square_avg *= alpha
    _addcmul_(square_avg, g, g, 1 - alpha)
    xp = _xp(square_avg)
    if centered:
        grad_avg = extra[0]
        _lerp_(grad_avg, g, 1 - alpha)
        avg = grad_avg * grad_avg
        xp.subtract(square_avg, avg, out=avg)
        xp.sqrt(avg, out=avg)
    else:
        avg = xp.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        buf = extra[-1]
        buf *= momentum
        _addcdiv_(buf, g, avg)
        param -= buf * lr
    else:
        _addcdiv_(param, g, avg, -lr)
