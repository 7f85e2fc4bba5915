"""Rprop, PyTorch's ``torch.optim.Rprop`` (resilient backpropagation)."""

from __future__ import annotations

from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import _bump, _check_lr, _real_view, _step_tensor, _to_scalar, _xp, _zeros_state
from .optimizer import Optimizer

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""The resilient backpropagation algorithm (Riedmiller & Braun, 1993).

    Each element keeps its own step size: multiplied by ``etaplus`` while the gradient keeps
    its sign, by ``etaminus`` when it flips (and that step is skipped), clamped to
    ``step_sizes``; the parameter moves by ``-sign(grad) * step_size``.

    Args:
        params (iterable): tensors or param-group dicts to optimize.
        lr (float or Tensor): initial step size (default: 1e-2).
        etas (Tuple[float, float]): (etaminus, etaplus) (default: (0.5, 1.2)).
        step_sizes (Tuple[float, float]): minimal and maximal step sizes (default:
            (1e-6, 50)).
        capturable, foreach (bool, optional): accepted for PyTorch compatibility.
        maximize (bool): maximize the objective instead of minimizing it (default: False).
        differentiable (bool): must be False.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
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
        etaminus, etaplus = group["etas"]
        lo, hi = group["step_sizes"]
        lr = _to_scalar(group["lr"])

        def init(p, lr=lr):
            size = _zeros_state(p)
            # a complex step size is lr in both parts: they step as two reals (torch's)
            size._data[...] = complex(lr, lr) if p.is_complex() else lr
            return {"step": _step_tensor(), "prev": _zeros_state(p), "step_size": size}

        for p, state, _ in self._stepped(group, init=init):
            g = p.grad._data
            if group["maximize"]:
                g = -g
            xp = _xp(g)
            prev, size = state["prev"]._data, state["step_size"]._data
            # a complex parameter steps as pairs of reals (torch's view_as_real)
            g, prev, size = _real_view(g), _real_view(prev), _real_view(size)
            param = _real_view(p._data)
            sign = xp.sign(g * prev)
            factor = xp.where(sign > 0, etaplus, xp.where(sign < 0, etaminus, 1))
            factor = factor.astype(size.dtype)
            size *= factor
            xp.clip(size, lo, hi, out=size)
            # after a sign change the step is skipped and the gradient forgotten
            g = xp.where(factor == size.dtype.type(etaminus), 0, g).astype(g.dtype)
            param -= xp.sign(g) * size
            prev[...] = g
            _bump(p)
