"""Adamax, PyTorch's ``torch.optim.Adamax`` (Adam with the infinity norm)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import (
    _addcdiv_,
    _bump,
    _check_betas,
    _check_lr,
    _check_nonneg,
    _grad_for_update,
    _lerp_,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2014).

    Per parameter, with ``g = ±grad + weight_decay * param``::

        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        param -= lr / (1 - beta1**t) * m / u

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 2e-3).
        betas (Tuple[float, float]): coefficients of the running averages (default:
            (0.9, 0.999)).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        weight_decay (float): L2 penalty (default: 0).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        foreach, capturable (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(eps, "epsilon value")
        betas = _check_betas(betas)
        _check_nonneg(weight_decay, "weight_decay value")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
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
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        for p, state, step in self._stepped(group, ("exp_avg", "exp_inf")):
            g = _grad_for_update(p, group["weight_decay"], group["maximize"])
            clr = lr / (1 - beta1**step)
            parallel_apply(
                functools.partial(_adamax_update, beta1=beta1, beta2=beta2, eps=eps, clr=clr),
                p._data,
                g,
                state["exp_avg"]._data,
                state["exp_inf"]._data,
            )
            _bump(p)


def _adamax_update(param, g, exp_avg, exp_inf, *, beta1, beta2, eps, clr) -> None:
    """Adamax's elementwise update on arrays (in place; also on slices: ``parallel_apply``)."""
    xp = _xp(exp_avg)
    _lerp_(exp_avg, g, 1 - beta1)
    exp_inf *= beta2
    norm = xp.abs(g)
    norm += eps
    xp.maximum(exp_inf, norm, out=exp_inf)
    _addcdiv_(param, exp_avg, exp_inf, -clr)
