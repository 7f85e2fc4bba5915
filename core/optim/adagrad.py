"""Adagrad, PyTorch's ``torch.optim.Adagrad``."""

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
    _step_tensor,
    _to_scalar,
    _xp,
    parallel_apply,
)
from .optimizer import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011).

    Per parameter, with ``g = ±grad + weight_decay * param`` and ``t`` the step count::

        clr = lr / (1 + (t - 1) * lr_decay)
        sum += g * g
        param -= clr * g / (sqrt(sum) + eps)

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-2).
        lr_decay (float): learning rate decay (default: 0).
        weight_decay (float): L2 penalty (default: 0).
        initial_accumulator_value (float): initial value of ``sum`` (default: 0).
        eps (float): term added to the denominator for numerical stability (default: 1e-10).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        foreach, fused (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(lr_decay, "lr_decay value")
        _check_nonneg(weight_decay, "weight_decay value")
        _check_nonneg(initial_accumulator_value, "initial_accumulator_value value")
        _check_nonneg(eps, "epsilon value")
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        # Like PyTorch, state is created eagerly (so share_memory() works before a step).
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._new_state(p, initial_accumulator_value))

    @staticmethod
    def _new_state(p: Tensor, initial_accumulator_value: float) -> dict:
        d = p._data
        return {
            "step": _step_tensor(),
            "sum": Tensor._wrap(_xp(d).full_like(d, initial_accumulator_value)),
        }

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "fused": None,
    }

    def share_memory(self) -> None:
        """PyTorch API; NumPy state has no shared-memory mode, so this is a no-op."""

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        lr_decay, eps = group["lr_decay"], group["eps"]
        # state was made at construction; ``init`` is for a group added later, and takes
        # the default initial_accumulator_value, as PyTorch does
        init = functools.partial(
            self._new_state, initial_accumulator_value=self.defaults["initial_accumulator_value"]
        )
        for p, state, step in self._stepped(group, init=init):
            g = _grad_for_update(p, group["weight_decay"], group["maximize"])
            clr = lr / (1 + (step - 1) * lr_decay)
            parallel_apply(
                functools.partial(_adagrad_update, eps=eps, clr=clr), p._data, g, state["sum"]._data
            )
            _bump(p)


def _adagrad_update(param, g, state_sum, *, eps, clr) -> None:
    """Adagrad's elementwise update on arrays (in place; also on slices: ``parallel_apply``)."""
    _addcmul_(state_sum, g, g)
    std = _xp(state_sum).sqrt(state_sum)
    std += eps
    _addcdiv_(param, g, std, -clr)
