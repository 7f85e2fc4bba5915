"""The private helpers of ``torch.optim.optimizer`` that third-party optimizers import (timm's
NAdamW, Adan, Lion and the rest subclass ``Optimizer`` with them): the ``ParamsT`` alias, the
``differentiable`` grad-mode decorator, the fused/foreach default, the capturable devices and
the CUDA-graph capture check."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ..autograd.grad_mode import set_grad_enabled
from ..tensor import Tensor

__all__ = [
    "ParamsT",
    "_default_to_fused_or_foreach",
    "_get_capturable_supported_devices",
    "_params_t",
    "_use_grad_for_differentiable",
    "cuda_graph_capture_health_check",
]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]
_params_t = ParamsT  # the older spelling


def _use_grad_for_differentiable(func: Callable) -> Callable:
    """Run a ``step`` with autograd on only when the optimizer was built with
    ``differentiable=True`` (otherwise the update records no graph)."""

    @functools.wraps(func)
    def _use_grad(self, *args, **kwargs):
        with set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            return func(self, *args, **kwargs)

    return _use_grad


def _default_to_fused_or_foreach(
    params: list[Tensor], differentiable: bool, use_fused: bool = False
) -> tuple[bool, bool]:
    """``(fused, foreach)`` defaults: both False in ember, whose optimizers update the arrays
    in place (torch picks the multi-tensor path only for CUDA tensors)."""
    return False, False


def _get_capturable_supported_devices(supports_xla: bool = True) -> list[str]:
    """The device types on which ``capturable=True`` state may live."""
    return ["cuda", "xla"] if supports_xla else ["cuda"]


def cuda_graph_capture_health_check(optimizer) -> None:
    """Refuse a step inside CUDA-graph capture unless every group is ``capturable`` (torch's
    ``Optimizer._cuda_graph_capture_health_check``); nothing to check without CUDA."""
    from .. import cuda

    if not cuda.is_available() or not cuda.is_current_stream_capturing():
        return
    if not all(group.get("capturable", False) for group in optimizer.param_groups):
        raise RuntimeError(
            "Attempting CUDA graph capture of step() for an instance of "
            f"{type(optimizer).__name__} but param_groups' capturable is False."
        )
