"""Stochastic Weight Averaging and exponential moving averages of a model's weights,
PyTorch's ``torch.optim.swa_utils``: ``AveragedModel``, ``SWALR``, ``update_bn`` and the
averaging functions."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, Literal

from ..autograd.grad_mode import no_grad
from ..nn.module import Module
from ..tensor import Tensor
from ._functional import _lerp_
from ._lr_base import LRScheduler, _format_param
from .optimizer import Optimizer

__all__ = [
    "AveragedModel",
    "update_bn",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]

PARAM_LIST = "tuple[Tensor, ...] | list[Tensor]"


def _is_float(t: Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def _count(n) -> float:
    return float(n.item()) if isinstance(n, Tensor) else float(n)


def _lerp_all(averaged, current, weight: float) -> None:
    for a, c in zip(averaged, current, strict=True):
        _lerp_(a._data, c._data, weight)  # PyTorch's lerp_ formula, in place
        a._version_counter[0] += 1


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    r"""An in-place, list-wise exponential moving average for :class:`AveragedModel`:
    ``W_ema = decay * W_ema + (1 - decay) * W_model``.

    Args:
        decay (float): decay rate in ``[0, 1]`` (default: 0.999).
    """
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )

    def ema_update(ema_param_list, current_param_list, _) -> None:
        with no_grad():
            if _is_float(ema_param_list[0]):
                _lerp_all(ema_param_list, current_param_list, 1 - decay)
            else:
                for p_ema, p_model in zip(ema_param_list, current_param_list, strict=True):
                    p_ema.copy_(p_ema * decay + p_model * (1 - decay))

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    r"""An in-place, list-wise running equal-weight average (SWA) for :class:`AveragedModel`:
    ``W_avg += (W_model - W_avg) / (n + 1)``."""

    def swa_update(averaged_param_list, current_param_list, num_averaged) -> None:
        with no_grad():
            if _is_float(averaged_param_list[0]):
                _lerp_all(averaged_param_list, current_param_list, 1 / (_count(num_averaged) + 1))
            else:
                for a, c in zip(averaged_param_list, current_param_list, strict=True):
                    a.copy_(a + (c - a) / (num_averaged + 1))

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    r"""A per-tensor exponential moving average for :class:`AveragedModel`'s ``avg_fn``.

    Args:
        decay (float): decay rate in ``[0, 1]`` (default: 0.999).
    """
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged) -> Tensor:
        with no_grad():
            return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable:
    r"""A per-tensor running equal-weight average for :class:`AveragedModel`'s ``avg_fn``."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged) -> Tensor:
        with no_grad():
            return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    r"""A copy of ``model`` whose parameters (and, with ``use_buffers``, buffers) hold a
    running average of ``model``'s: SWA by default, EMA with :func:`get_ema_multi_avg_fn`.

    The first :meth:`update_parameters` copies the model's values; later calls average.
    ``n_averaged`` (a buffer) counts the calls.

    Args:
        model (nn.Module): model to average.
        device (ember.device, optional): where the averaged copy lives.
        avg_fn (callable, optional): ``avg_fn(averaged, current, n_averaged) -> Tensor``,
            per tensor.
        multi_avg_fn (callable, optional): ``multi_avg_fn(averaged_list, current_list,
            n_averaged)``, updating in place.
        use_buffers (bool): average buffers as well; otherwise they are copied from ``model``
            (default: ``False``).
    """

    n_averaged: Tensor

    def __init__(
        self,
        model: Module,
        device=None,
        avg_fn: Callable | None = None,
        multi_avg_fn: Callable | None = None,
        use_buffers: bool = False,
    ) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        from .. import int64, tensor

        self.register_buffer("n_averaged", tensor(0, dtype=int64, device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current parameters (and buffers) into the average."""
        if self.use_buffers:
            mine = itertools.chain(self.module.parameters(), self.module.buffers())
            theirs = itertools.chain(model.parameters(), model.buffers())
        else:
            mine, theirs = self.parameters(), model.parameters()
        first = int(self.n_averaged.item()) == 0
        averaged, current = [], []
        with no_grad():
            for p_avg, p_model in zip(mine, theirs):
                p_model_ = p_model.detach().to(p_avg.device)
                averaged.append(p_avg.detach())
                current.append(p_model_)
                if first:
                    p_avg.detach().copy_(p_model_)
            if not first:
                if self.avg_fn is not None and self.multi_avg_fn is None:
                    for a, c in zip(averaged, current, strict=True):
                        a.copy_(self.avg_fn(a, c, self.n_averaged.to(a.device)))
                else:
                    fn = self.multi_avg_fn or get_swa_multi_avg_fn()
                    # one call per (device, dtype) group, as PyTorch's foreach grouping
                    groups: dict = {}
                    for a, c in zip(averaged, current, strict=True):
                        lists = groups.setdefault((str(a.device), a.dtype), ([], []))
                        lists[0].append(a)
                        lists[1].append(c)
                    for (dev, _), (a_list, c_list) in groups.items():
                        fn(a_list, c_list, self.n_averaged.to(dev))
            if not self.use_buffers:
                for b_swa, b_model in zip(self.module.buffers(), model.buffers(), strict=True):
                    b_swa.detach().copy_(b_model.detach().to(b_swa.device))
            self.n_averaged += 1


def update_bn(loader: Iterable[Any], model: Module, device=None) -> None:
    r"""Recompute the BatchNorm running statistics of ``model`` with one pass over
    ``loader`` (a cumulative average: ``momentum=None`` during the pass).

    Args:
        loader (iterable): batches; each a tensor, or a list/tuple whose first element is the
            input tensor.
        model (nn.Module): model whose BatchNorm statistics are updated.
        device (ember.device, optional): where to move each batch before the forward.
    """
    from ..nn.modules.normalization import _BatchNorm

    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    with no_grad():
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            if device is not None:
                batch = batch.to(device)
            model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    r"""Anneal each param group's learning rate to a fixed ``swa_lr`` over
    ``anneal_epochs`` epochs (cosine or linear), then hold it there.

    Args:
        optimizer (Optimizer): wrapped optimizer.
        swa_lr (float or list): the SWA learning rate, for all groups or one per group.
        anneal_epochs (int): number of epochs in the annealing phase (default: 10).
        anneal_strategy (str): ``"cos"`` or ``"linear"`` (default: ``"cos"``).
        last_epoch (int): the index of the last epoch (default: -1).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        swa_lr: float,
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t: float) -> float:
        return t

    @staticmethod
    def _cosine_anneal(t: float) -> float:
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list:
        """The learning rates of this step: each group's current ``lr`` (undoing last step's
        interpolation) moved toward its ``swa_lr``."""
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use "
                "`get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        prev_lrs = [
            self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha)
            for g in self.optimizer.param_groups
        ]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [
            g["swa_lr"] * alpha + lr * (1 - alpha)
            for g, lr in zip(self.optimizer.param_groups, prev_lrs, strict=True)
        ]

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: every attribute except the optimizer and anneal_func."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the scheduler's state (from :meth:`state_dict`)."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
