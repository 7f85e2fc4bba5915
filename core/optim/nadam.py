"""NAdam, PyTorch's ``torch.optim.NAdam`` (Adam with Nesterov momentum)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor
from ._functional import (
    _addcdiv_,
    _addcmul_,
    _bump,
    _check_betas,
    _check_lr,
    _check_nonneg,
    _grad_with_decay,
    _lerp_,
    _step_tensor,
    _to_scalar,
    _xp,
    _zeros_state,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["NAdam"]


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum and a momentum-decay schedule.

    Per parameter, with ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))`` and
    ``mu_product`` the running product of the ``mu_t``::

        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v / (1 - beta2**t)) + eps
        param -= lr * (1 - mu_t) / (1 - mu_product) * g / denom
        param -= lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / denom

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 2e-3).
        betas (Tuple[float, float]): coefficients of the running averages (default:
            (0.9, 0.999)).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        momentum_decay (float): momentum decay (default: 4e-3).
        decoupled_weight_decay (bool): AdamW-style decoupled weight decay (default: False).
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
        momentum_decay: float = 4e-3,
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
        _check_nonneg(momentum_decay, "momentum_decay value")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
    }

    def __setstate__(self, state):
        super().__setstate__(state)
        for s in self.state.values():
            if (
                isinstance(s, dict)
                and "mu_product" in s
                and not isinstance(s["mu_product"], Tensor)
            ):
                s["mu_product"] = _step_tensor(float(s["mu_product"]))

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        beta1, beta2 = group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        momentum_decay = group["momentum_decay"]
        decoupled = group["decoupled_weight_decay"]
        for p, state, step in self._stepped(group, init=_new_state):
            bias_correction2 = 1 - beta2**step
            g = _grad_with_decay(p, lr, weight_decay, decoupled, group["maximize"])
            mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
            mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
            # mu_product is a float32 scalar tensor, as in PyTorch: keep its rounding.
            mu_product_t = state["mu_product"]._data
            mu_product_t *= np.float32(mu)
            mu_product = float(mu_product_t)
            mu_product_next = mu_product * mu_next
            parallel_apply(
                functools.partial(
                    _nadam_update,
                    beta1=beta1,
                    beta2=beta2,
                    eps=eps,
                    bias_correction2=bias_correction2,
                    grad_step=-lr * (1.0 - mu) / (1.0 - mu_product),
                    avg_step=(-lr * mu_next) / (1.0 - mu_product_next),
                ),
                p._data,
                g,
                state["exp_avg"]._data,
                state["exp_avg_sq"]._data,
            )
            _bump(p)


def _new_state(p: Tensor) -> dict:
    """NAdam's state for a parameter's first step (PyTorch's keys, in its order)."""
    return {
        "step": _step_tensor(),
        "mu_product": _step_tensor(1.0),
        "exp_avg": _zeros_state(p),
        "exp_avg_sq": _zeros_state(p),
    }


def _nadam_update(
    param, g, exp_avg, exp_avg_sq, *, beta1, beta2, eps, bias_correction2, grad_step, avg_step
) -> None:
    """NAdam's elementwise update on arrays (in place; also on slices: ``parallel_apply``)."""
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    _addcmul_(exp_avg_sq, g, g, 1 - beta2)
    denom = exp_avg_sq / bias_correction2
    _xp(denom).sqrt(denom, out=denom)
    denom += eps
    _addcdiv_(param, g, denom, grad_step)
    _addcdiv_(param, exp_avg, denom, avg_step)
