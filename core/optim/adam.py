"""Adam and AdamW, PyTorch's ``torch.optim.Adam`` / ``torch.optim.AdamW``."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from ..backend import cuda_fused
from ..tensor import Tensor
from . import _adam_kernel
from ._functional import (
    _addcdiv_,
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

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2014), with the AMSGrad variant and decoupled weight decay.

    Per parameter, with ``g = ±grad + weight_decay * param`` (L2 penalty) or, when
    ``decoupled_weight_decay``, ``param *= 1 - lr * weight_decay`` first::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                            (amsgrad)
        param -= lr / (1 - beta1**t) * m / (sqrt(v or v_max) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``step`` (0-d float32 tensor), ``exp_avg``, ``exp_avg_sq`` and, with
    amsgrad, ``max_exp_avg_sq``.

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-3).
        betas (Tuple[float, float]): coefficients of the running averages of the gradient and
            its square (default: (0.9, 0.999)).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        amsgrad (bool): use the AMSGrad variant (default: False).
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        decoupled_weight_decay (bool): AdamW's decoupled weight decay (default: False).
        foreach, capturable, fused (bool, optional): accepted for PyTorch compatibility.
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
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
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    # defaults for options that an older pickled optimizer lacks (see Optimizer.__setstate__)
    _group_setdefaults = {
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "fused": None,
    }

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        beta1, beta2 = (_to_scalar(b) for b in group["betas"])
        eps = group["eps"]
        weight_decay = group["weight_decay"]
        amsgrad = group["amsgrad"]
        decoupled = group["decoupled_weight_decay"]
        buffers = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
        for p, state, step in self._stepped(group, buffers):
            param = p._data
            g = _grad_with_decay(p, lr, weight_decay, decoupled, group["maximize"])
            arrays = [param, g, state["exp_avg"]._data, state["exp_avg_sq"]._data]
            if amsgrad:
                arrays.append(state["max_exp_avg_sq"]._data)
            # on a GPU one fused kernel, on the CPU NumPy passes over cache-sized pieces
            # (meta parameters are ndarrays too: NumPy's rule, whose writes go nowhere)
            rule = _adam_update if isinstance(param, np.ndarray) else cuda_fused.adam_
            fused = not amsgrad and _adam_kernel.applies(*arrays)  # one compiled pass
            update = functools.partial(
                _adam_kernel.adam_ if fused else rule,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                step_size=lr / (1 - beta1**step),
                bias_correction2_sqrt=(1 - beta2**step) ** 0.5,
            )
            if fused:
                update(*arrays)
            else:
                parallel_apply(update, *arrays)
            _bump(p)


def _adam_update(
    param,
    g,
    exp_avg,
    exp_avg_sq,
    max_sq=None,
    *,
    beta1,
    beta2,
    eps,
    step_size,
    bias_correction2_sqrt,
) -> None:
    """Adam's elementwise update on arrays (in place); also runs on slices in parallel."""
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    _addcmul_(exp_avg_sq, g, g, 1 - beta2)
    xp = _xp(param)
    if max_sq is not None:
        xp.maximum(max_sq, exp_avg_sq, out=max_sq)
        denom = xp.sqrt(max_sq)
    else:
        denom = xp.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    _addcdiv_(param, exp_avg, denom, -step_size)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay
    (``param *= 1 - lr * weight_decay`` before the Adam update).

    Args are those of :class:`Adam`, with ``weight_decay`` defaulting to 1e-2.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        # AdamW always decouples, whatever a loaded state says.
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
