"""``torch._functorch.make_functional``: functorch's functional modules (``functorch``'s
``make_functional``, ``make_functional_with_buffers``, ``combine_state_for_ensemble``).

PyTorch deprecates them for ``torch.func.functional_call``; each ``FunctionalModule`` here runs
a private copy of the module through :func:`ember.func.functional_call` with the parameters
(and buffers) it is called with.
"""

from __future__ import annotations

import copy
from typing import Any

from ..func import functional_call, stack_module_state
from ..nn.modules.module import Module

__all__ = [
    "FunctionalModule",
    "FunctionalModuleWithBuffers",
    "combine_state_for_ensemble",
    "make_functional",
    "make_functional_with_buffers",
]


def _check_module(model: Any, what: str) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{what}: expected an nn.Module, got {type(model).__name__}")


class FunctionalModule(Module):
    r"""A module called as ``fmodel(params, *args, **kwargs)``: ``params`` (a tuple in the order
    of ``param_names``) replace the parameters of the stateless module for that call."""

    def __init__(self, stateless_model: Module, param_names: tuple[str, ...]) -> None:
        super().__init__()
        self.stateless_model = stateless_model
        self.param_names = tuple(param_names)

    @staticmethod
    def _create_from(model: Module, disable_autograd_tracking: bool = False):
        _check_module(model, "make_functional")
        if any(True for _ in model.buffers()):
            raise RuntimeError(
                "make_functional(module): module has buffers; use make_functional_with_buffers"
            )
        clone = copy.deepcopy(model)
        named = list(clone.named_parameters())
        params = tuple(p.detach() if disable_autograd_tracking else p for _, p in named)
        return FunctionalModule(clone, tuple(n for n, _ in named)), params

    def forward(self, params: Any, *args: Any, **kwargs: Any) -> Any:
        if len(params) != len(self.param_names):
            raise ValueError(
                f"FunctionalModule: expected {len(self.param_names)} parameters, got {len(params)}"
            )
        return functional_call(
            self.stateless_model, dict(zip(self.param_names, params)), args, kwargs
        )


class FunctionalModuleWithBuffers(Module):
    r"""A module called as ``fmodel(params, buffers, *args, **kwargs)``."""

    def __init__(
        self,
        stateless_model: Module,
        param_names: tuple[str, ...],
        buffer_names: tuple[str, ...],
    ) -> None:
        super().__init__()
        self.stateless_model = stateless_model
        self.param_names = tuple(param_names)
        self.buffer_names = tuple(buffer_names)

    @staticmethod
    def _create_from(model: Module, disable_autograd_tracking: bool = False):
        _check_module(model, "make_functional_with_buffers")
        clone = copy.deepcopy(model)
        named_p = list(clone.named_parameters())
        named_b = list(clone.named_buffers())
        params = tuple(p.detach() if disable_autograd_tracking else p for _, p in named_p)
        fmodel = FunctionalModuleWithBuffers(
            clone, tuple(n for n, _ in named_p), tuple(n for n, _ in named_b)
        )
        return fmodel, params, tuple(b for _, b in named_b)

    def forward(self, params: Any, buffers: Any, *args: Any, **kwargs: Any) -> Any:
        if len(params) != len(self.param_names) or len(buffers) != len(self.buffer_names):
            raise ValueError(
                f"FunctionalModuleWithBuffers: expected {len(self.param_names)} parameters and "
                f"{len(self.buffer_names)} buffers, got {len(params)} and {len(buffers)}"
            )
        state = dict(zip(self.param_names, params))
        state.update(zip(self.buffer_names, buffers))
        return functional_call(self.stateless_model, state, args, kwargs)


def make_functional(model: Module, disable_autograd_tracking: bool = False):
    r"""``(fmodel, params)``: ``fmodel(params, *args)`` runs ``model`` with ``params``."""
    return FunctionalModule._create_from(model, disable_autograd_tracking)


def make_functional_with_buffers(model: Module, disable_autograd_tracking: bool = False):
    r"""``(fmodel, params, buffers)``: ``fmodel(params, buffers, *args)`` runs ``model``."""
    return FunctionalModuleWithBuffers._create_from(model, disable_autograd_tracking)


def combine_state_for_ensemble(models: Any):
    r"""``(fmodel, params, buffers)`` of same-shaped ``models``, their states stacked along a
    new leading dim (for ``vmap(fmodel)(params, buffers, x)``)."""
    models = list(models)
    if not models:
        raise RuntimeError("combine_state_for_ensemble: Expected at least one model, got 0.")
    if any(type(m) is not type(models[0]) for m in models):
        raise RuntimeError(
            "combine_state_for_ensemble: Expected all models to be of the same class."
        )
    if any(m.training != models[0].training for m in models):
        raise RuntimeError(
            "combine_state_for_ensemble: Expected all models to have the same training/eval mode."
        )
    params, buffers = stack_module_state(models)
    fmodel, _, _ = make_functional_with_buffers(models[0])
    return (
        fmodel,
        tuple(params[n] for n in fmodel.param_names),
        tuple(buffers[n] for n in fmodel.buffer_names),
    )
