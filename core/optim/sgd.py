"""Stochastic gradient descent (optionally with momentum), PyTorch's ``torch.optim.SGD``."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import (
    _bump,
    _check_lr,
    _check_nonneg,
    _grad_for_update,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    Per parameter, with ``g = ±grad + weight_decay * param``::

        buf = g                                         (first step)
        buf = momentum * buf + (1 - dampening) * g      (later steps)
        g = g + momentum * buf  if nesterov  else  buf
        param -= lr * g

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-3).
        momentum (float): momentum factor (default: 0).
        dampening (float): dampening for momentum (default: 0).
        weight_decay (float): L2 penalty (default: 0).
        nesterov (bool): use Nesterov momentum (default: False).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        foreach, fused (bool, optional): accepted for PyTorch compatibility; ember always runs
            one in-place update per parameter.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(momentum, "momentum value")
        _check_nonneg(weight_decay, "weight_decay value")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": False,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        momentum = group["momentum"]
        dampening = group["dampening"]
        nesterov = group["nesterov"]
        weight_decay = group["weight_decay"]
        maximize = group["maximize"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = _grad_for_update(p, weight_decay, maximize)
            arrays, fresh = [p._data, g], False
            if momentum != 0:
                state = self.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = Tensor._wrap(_xp(g).empty_like(g))
                    fresh = True
                arrays.append(state["momentum_buffer"]._data)
            parallel_apply(
                functools.partial(
                    _sgd_update,
                    lr=lr,
                    momentum=momentum,
                    dampening=dampening,
                    nesterov=nesterov,
                    fresh=fresh,
                ),
                *arrays,
            )
            _bump(p)


def _sgd_update(param, g, buf=None, *, lr, momentum, dampening, nesterov, fresh) -> None:
    """SGD's elementwise update on arrays (in place); also runs on slices (``parallel_apply``).
    ``fresh``: ``buf`` is new, and takes the gradient as it is."""
    if buf is not None:
        if fresh:
            buf[...] = g
        else:
            buf *= momentum
            if dampening == 0:
                buf += g
            else:
                buf += g * (1 - dampening)
        g = g + buf * momentum if nesterov else buf
    param -= g * lr
