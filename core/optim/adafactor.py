"""Adafactor, PyTorch's ``torch.optim.Adafactor`` (Shazeer & Stern, 2018): Adam-like steps
with a factored (row x column) second-moment estimate for matrices."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..backend.finfo import np_finfo
from ..tensor import Tensor
from ._functional import _bump, _lerp_, _step_tensor, _to_scalar, _xp
from .optimizer import Optimizer

__all__ = ["Adafactor"]


def _zeros(p: Tensor, shape) -> Tensor:
    d = p._data
    return Tensor._wrap(_xp(d).zeros(shape, dtype=d.dtype))


class Adafactor(Optimizer):
    r"""Adafactor: a memory-lean Adam variant.

    For a matrix (or a batch of them) the second moment is kept as a row and a column running
    mean of ``grad**2`` (``state["row_var"]``, ``state["col_var"]``) and rebuilt as their outer
    product; a vector keeps a full ``state["variance"]``. With ``t`` the step::

        beta2_t = 1 - t ** beta2_decay
        rho = min(lr, 1 / sqrt(t)); alpha = max(eps2, RMS(param)) * rho
        param *= 1 - lr * weight_decay
        update = grad / sqrt(max(var_estimate, eps1**2))
        param -= alpha / max(1, RMS(update) / d) * update

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): unlike other optimizers, Adafactor's learning rate caps the
            relative step size (default: 1e-2).
        beta2_decay (float): decay rate of the second-moment coefficient (default: -0.8).
        eps (Tuple[float or None, float]): eps1 (clamp of the second moment; ``None``: the
            dtype's machine epsilon) and eps2 (floor of the parameter RMS) (default:
            (None, 1e-3)).
        d (float): clipping threshold of the update's RMS (default: 1.0).
        weight_decay (float): decoupled weight decay (default: 0.0).
        foreach (bool, optional): accepted for PyTorch compatibility.
        maximize (bool): maximize the objective instead of minimizing it (default: False).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    _group_setdefaults = {"foreach": None}

    @staticmethod
    def _init(p: Tensor) -> dict:
        if p.is_complex():
            raise RuntimeError("Adafactor does not support complex parameters")
        state = {"step": _step_tensor()}
        shape = p._data.shape
        if len(shape) > 1:
            state["row_var"] = _zeros(p, shape[:-1] + (1,))
            state["col_var"] = _zeros(p, shape[:-2] + (1,) + shape[-1:])
        else:
            state["variance"] = _zeros(p, shape)
        return state

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        eps1, eps2 = group["eps"]
        for p, state, step in self._stepped(group, init=self._init):
            param = p._data
            xp = _xp(param)
            g = -p.grad._data if group["maximize"] else p.grad._data
            e1 = float(np_finfo(param.dtype).eps) if eps1 is None else eps1
            one_minus_beta2 = step ** group["beta2_decay"]
            rho = min(lr, 1 / step**0.5)
            rms = float(xp.sqrt(xp.sum(param * param))) / math.sqrt(param.size)
            alpha = max(eps2, rms) * rho
            if group["weight_decay"] != 0:
                param *= 1 - lr * group["weight_decay"]
            if g.ndim > 1:
                row_var, col_var = state["row_var"]._data, state["col_var"]._data
                _lerp_(row_var, (g * g).sum(axis=-1, keepdims=True) / g.shape[-1], one_minus_beta2)
                _lerp_(col_var, (g * g).sum(axis=-2, keepdims=True) / g.shape[-2], one_minus_beta2)
                var = xp.matmul(row_var, col_var)
                var /= xp.maximum(row_var.mean(axis=-2, keepdims=True), e1)
            else:
                variance = state["variance"]._data
                _lerp_(variance, g * g, one_minus_beta2)
                var = variance.copy()
            update = 1 / xp.sqrt(xp.maximum(var, e1 * e1))
            update *= g
            urms = float(xp.sqrt(xp.sum(update * update))) / math.sqrt(update.size)
            denom = max(1.0, urms / group["d"])
            param -= (alpha / denom) * update
            _bump(p)
