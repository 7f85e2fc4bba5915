"""ASGD, PyTorch's ``torch.optim.ASGD`` (averaged stochastic gradient descent)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor
from ._functional import (
    _bump,
    _check_lr,
    _check_nonneg,
    _grad_for_update,
    _step_tensor,
    _to_scalar,
    _zeros_state,
)
from .optimizer import Optimizer

__all__ = ["ASGD"]


def _scalar_state(value: float) -> Tensor:
    """A 0-d float32 CPU tensor, as PyTorch keeps ``eta`` and ``mu``."""
    return Tensor._wrap(np.array(value, dtype=np.float32))


class ASGD(Optimizer):
    r"""Averaged Stochastic Gradient Descent (Polyak & Juditsky, 1992).

    Per parameter, with ``g = ±grad + weight_decay * param``::

        param *= 1 - lambd * eta
        param -= eta * g
        ax += (param - ax) * mu              # the running average (ax = param while mu == 1)
        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1, t - t0)

    The average is ``optimizer.state[p]["ax"]``.

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-2).
        lambd (float): decay term (default: 1e-4).
        alpha (float): power for the eta update (default: 0.75).
        t0 (float): point at which to start averaging (default: 1e6).
        weight_decay (float): L2 penalty (default: 0).
        foreach, capturable (bool, optional): accepted for PyTorch compatibility.
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(weight_decay, "weight_decay value")
        defaults = dict(
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults)

    _group_setdefaults = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]

        def init(p, lr=lr):
            return {
                "step": _step_tensor(),
                "eta": _scalar_state(lr),
                "mu": _scalar_state(1.0),
                "ax": _zeros_state(p),
            }

        for p, state, step in self._stepped(group, init=init):
            g = _grad_for_update(p, group["weight_decay"], group["maximize"])
            param, ax = p._data, state["ax"]._data
            eta_a, mu_a = state["eta"]._data, state["mu"]._data
            eta = float(eta_a)
            param *= 1 - lambd * eta
            param -= eta * g
            if float(mu_a) != 1:
                ax += (param - ax) * float(mu_a)
            else:
                ax[...] = param
            # stored in float32, as PyTorch's 0-d state tensors
            eta_a[...] = lr / ((1 + lambd * lr * step) ** alpha)
            mu_a[...] = 1 / max(1, step - t0)
            _bump(p)
