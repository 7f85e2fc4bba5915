"""Adadelta, PyTorch's ``torch.optim.Adadelta``."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import (
    _addcmul_,
    _bump,
    _check_lr,
    _check_nonneg,
    _grad_for_update,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012).

    Per parameter, with ``g = ±grad + weight_decay * param``::

        v = rho * v + (1 - rho) * g * g
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        param -= lr * delta

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): coefficient that scales delta before it is applied (default: 1.0).
        rho (float): coefficient of the running averages (default: 0.9).
        eps (float): term added to the denominator for numerical stability (default: 1e-6).
        weight_decay (float): L2 penalty (default: 0).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        foreach, capturable (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_nonneg(eps, "epsilon value")
        _check_nonneg(weight_decay, "weight_decay value")
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        rho, eps = group["rho"], group["eps"]
        for p, state, _ in self._stepped(group, ("square_avg", "acc_delta")):
            g = _grad_for_update(p, group["weight_decay"], group["maximize"])
            parallel_apply(
                functools.partial(_adadelta_update, rho=rho, eps=eps, lr=lr),
                p._data,
                g,
                state["square_avg"]._data,
                state["acc_delta"]._data,
            )
            _bump(p)


def _adadelta_update(param, g, square_avg, acc_delta, *, rho, eps, lr) -> None:
    """Adadelta's elementwise update on arrays (in place; also on slices: ``parallel_apply``)."""
    xp = _xp(square_avg)
    square_avg *= rho
    _addcmul_(square_avg, g, g, 1 - rho)
    std = square_avg + eps
    xp.sqrt(std, out=std)
    delta = acc_delta + eps
    xp.sqrt(delta, out=delta)
    delta /= std
    delta *= g
    acc_delta *= rho
    _addcmul_(acc_delta, delta, delta, 1 - rho)
    param -= delta * lr
