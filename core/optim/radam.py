"""RAdam, PyTorch's ``torch.optim.RAdam`` (rectified Adam)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import (
    _addcmul_,
    _bump,
    _check_betas,
    _check_lr,
    _check_nonneg,
    _grad_with_decay,
    _lerp_,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["RAdam"]


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2019): Adam whose adaptive term is switched on, and rectified, once
    the variance of the adaptive learning rate is tractable (``rho_t > 5``).

    Per parameter::

        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        rho_inf = 2 / (1 - beta2) - 1;   rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        param -= lr * m_hat * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r_t     (rho_t > 5)
        param -= lr * m_hat                                                  (otherwise)

    with ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-3).
        betas (Tuple[float, float]): coefficients of the running averages (default:
            (0.9, 0.999)).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        decoupled_weight_decay (bool): AdamW-style decoupled weight decay (default: False).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        foreach, capturable (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
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
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            decoupled_weight_decay=decoupled_weight_decay,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "capturable": False,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        beta1, beta2 = group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        rho_inf = 2 / (1 - beta2) - 1
        for p, state, step in self._stepped(group, ("exp_avg", "exp_avg_sq")):
            param = p._data
            g = _grad_with_decay(p, lr, weight_decay, decoupled, group["maximize"])
            bias_correction2 = 1 - beta2**step
            rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
            rect = None  # the variance is not tractable yet: plain momentum steps
            if rho_t > 5.0:
                rect = (
                    (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                ) ** 0.5
            parallel_apply(
                functools.partial(
                    _radam_update,
                    beta1=beta1,
                    beta2=beta2,
                    eps=eps,
                    lr=lr,
                    bias_correction1=1 - beta1**step,
                    bias_correction2=bias_correction2,
                    rect=rect,
                ),
                param,
                g,
                state["exp_avg"]._data,
                state["exp_avg_sq"]._data,
            )
            _bump(p)


def _radam_update(
    param,
    g,
    exp_avg,
    exp_avg_sq,
    *,
    beta1,
    beta2,
    eps,
    lr,
    bias_correction1,
    bias_correction2,
    rect,
) -> None:
    """RAdam's elementwise update on arrays (in place; also on slices: ``parallel_apply``);
    ``rect`` is None while the variance is not tractable."""
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    _addcmul_(exp_avg_sq, g, g, 1 - beta2)
    update = exp_avg / bias_correction1
    update *= lr
    if rect is not None:
        xp = _xp(param)
        adaptive = xp.sqrt(exp_avg_sq)
        adaptive += eps
        xp.divide(bias_correction2**0.5, adaptive, out=adaptive)
        update *= adaptive
        update *= rect
    param -= update
