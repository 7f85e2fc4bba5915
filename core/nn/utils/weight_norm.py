"""Weight normalization (Salimans & Kingma, 2016, https://arxiv.org/abs/1602.07868):
``w = g * v / ||v||``, PyTorch's ``torch.nn.utils.weight_norm`` (the older hook-based form).

The norm helpers here are shared with ``parametrizations.weight_norm``. ``dim=-1`` (or
``None``) means one norm over the whole tensor, as PyTorch's ``norm_except_dim``.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

from ...tensor import Tensor
from ..module import Module
from ..parameter import Parameter, UninitializedParameter
from ._reparam_hooks import _check_unhooked, _remove_hook

__all__ = ["WeightNorm", "weight_norm", "remove_weight_norm"]


def _norm_except_dim(v: Tensor, pow: float = 2, dim: int = 0) -> Tensor:
    """The ``pow``-norm of ``v`` over every dimension but ``dim``, kept broadcastable to ``v``
    (PyTorch's ``torch.norm_except_dim``); ``dim == -1``: the norm of the whole tensor."""
    from ...linalg import vector_norm

    if dim == -1:
        return vector_norm(v, pow)
    dim = dim + v.ndim if dim < 0 else dim
    dims = tuple(d for d in range(v.ndim) if d != dim)
    return vector_norm(v, pow, dim=dims, keepdim=True)


def _weight_norm(v: Tensor, g: Tensor, dim: int = 0) -> Tensor:
    """``v * (g / ||v||)`` with the norm taken over every dimension but ``dim``."""
    return v * (g / _norm_except_dim(v, 2, dim))


class WeightNorm:
    """The forward pre-hook that recomputes ``module.<name>`` from ``<name>_g`` and
    ``<name>_v`` before each forward."""

    name: str
    dim: int

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Any:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return _weight_norm(v, g, self.dim)

    @staticmethod
    def apply(module: Module, name: str, dim: int | None) -> WeightNorm:
        warnings.warn(
            "`torch.nn.utils.weight_norm` is deprecated in favor of "
            "`torch.nn.utils.parametrizations.weight_norm`.",
            FutureWarning,
            stacklevel=3,
        )
        _check_unhooked(module, WeightNorm, name, "weight_norm")
        fn = WeightNorm(name, dim)
        weight = getattr(module, name)
        if isinstance(weight, UninitializedParameter):
            raise ValueError(
                "The module passed to `WeightNorm` can't have uninitialized parameters. Make "
                "sure to run the dummy forward before applying weight normalization"
            )
        del module._parameters[name]
        module.register_parameter(
            name + "_g", Parameter(_norm_except_dim(weight, 2, fn.dim).detach())
        )
        module.register_parameter(name + "_v", Parameter(weight.detach()))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs: Any) -> None:
        setattr(module, self.name, self.compute_weight(module))


T_module = TypeVar("T_module", bound=Module)


def weight_norm(module: T_module, name: str = "weight", dim: int | None = 0) -> T_module:
    r"""Apply weight normalization to a parameter in the given module (deprecated form).

    .. math:: \mathbf{w} = g \dfrac{\mathbf{v}}{\|\mathbf{v}\|}

    Replaces ``module.<name>`` by two parameters, ``<name>_g`` (magnitude) and ``<name>_v``
    (direction), and recomputes the weight in a forward pre-hook. Prefer
    :func:`ember.nn.utils.parametrizations.weight_norm`.

    Args:
        module (Module): containing module.
        name (str, optional): name of weight parameter.
        dim (int, optional): dimension over which to compute the norm (``None``: the whole
            tensor).

    Returns:
        The original module with the weight norm hook.
    """
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: T_module, name: str = "weight") -> T_module:
    r"""Remove the weight normalization reparameterization from a module.

    Args:
        module (Module): containing module.
        name (str, optional): name of weight parameter.
    """
    _remove_hook(module, WeightNorm, name, "weight_norm")
    return module
