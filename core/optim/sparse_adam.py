"""SparseAdam, PyTorch's ``torch.optim.SparseAdam``: lazy Adam for sparse gradients.

ember's tensors are dense, and so is every gradient it computes (``nn.Embedding(...,
sparse=True)`` included). PyTorch's SparseAdam refuses dense gradients with a
``RuntimeError`` suggesting Adam; ember behaves the same, so a program that relies on it
fails here exactly where it would fail under PyTorch with dense gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import _check_betas, _check_lr, _check_nonneg
from .optimizer import Optimizer

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    r"""Adam for sparse gradients: only the moments and parameter entries present in the
    gradient are updated ("lazy" Adam).

    Args:
        params (iterable): dense tensors or param-group dicts to optimize.
        lr (float or Tensor): learning rate (default: 1e-3).
        betas (Tuple[float, float]): coefficients of the running averages (default:
            (0.9, 0.999)).
        eps (float): term added to the denominator for numerical stability (default: 1e-8).
        maximize (bool): maximize the objective instead of minimizing it (default: False).

    .. note:: ember has no sparse gradients; :meth:`step` raises, as PyTorch's does for a
       dense gradient.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg(eps, "epsilon value")
        betas = _check_betas(betas)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, maximize=maximize))
        complex_params = [
            [i, j]
            for i, group in enumerate(self.param_groups)
            for j, p in enumerate(group["params"])
            if p.is_complex()
        ]
        if complex_params:
            raise ValueError(
                f"Complex params at indices {complex_params}: SparseAdam does "
                "not support complex parameters"
            )

    def _step_group(self, group: dict) -> None:
        for p in group["params"]:
            if p.grad is not None and not getattr(p.grad, "is_sparse", False):
                raise RuntimeError(
                    "SparseAdam does not support dense gradients, please consider Adam instead"
                )
