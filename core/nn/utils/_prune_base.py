"""The pruning machinery of :mod:`ember.nn.utils.prune`: the base class (re-parametrization,
the forward pre-hook, ``remove``) and :class:`PruningContainer`, which chains methods on one
tensor. The methods themselves and the functional API are in ``prune.py``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import ember

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from ..module import Module

__all__ = ["BasePruningMethod", "PruningContainer"]


class BasePruningMethod(ABC):
    """Base class of pruning methods: a subclass says which entries to zero
    (:meth:`compute_mask`) and how its mask combines with earlier ones (``PRUNING_TYPE``:
    ``"unstructured"``, ``"structured"`` (needs ``dim``) or ``"global"``)."""

    _tensor_name: str | None = None
    PRUNING_TYPE: str = "unstructured"

    def __call__(self, module: Module, inputs) -> None:
        """The forward pre-hook: recompute ``module.<name>`` from its original and mask."""
        setattr(module, self._tensor_name, self.apply_mask(module))

    @abstractmethod
    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        """The mask for ``t`` (the importance scores), on top of ``default_mask`` (ones for a
        tensor not pruned before; its zeros stay zeros)."""

    def apply_mask(self, module: Module) -> Tensor:
        """``module.<name>_orig * module.<name>_mask``: the pruned tensor."""
        if self._tensor_name is None:
            raise RuntimeError(f"{type(self).__name__}: the module has to be pruned first")
        mask = getattr(module, self._tensor_name + "_mask")
        orig = getattr(module, self._tensor_name + "_orig")
        return mask.to(dtype=orig.dtype) * orig

    @classmethod
    def apply(cls, module: Module, name: str, *args, importance_scores=None, **kwargs):
        """Prune ``module.<name>`` with a new ``cls(*args, **kwargs)``: re-parametrize it (or
        chain onto an earlier pruning of it) and register the forward pre-hook.

        Args:
            module (nn.Module): the module holding the parameter.
            name (str): the parameter's name in ``module``.
            importance_scores (Tensor, optional): scores of the parameter's shape that decide
                what is pruned instead of the parameter's own values.

        Returns:
            the method now registered for ``name`` (a :class:`PruningContainer` when chained).
        """
        if not isinstance(getattr(module, name, None), Tensor):
            raise AttributeError(f"prune: {type(module).__name__} has no tensor named {name!r}")
        method, replaced = _chained(cls, module, name, *args, **kwargs)
        orig = getattr(module, name)
        if importance_scores is None:
            importance_scores = orig
        elif tuple(importance_scores.shape) != tuple(orig.shape):
            raise ValueError(
                f"prune: importance_scores of shape {tuple(importance_scores.shape)} for "
                f"parameter {name!r} of shape {tuple(orig.shape)}"
            )
        first = not isinstance(method, PruningContainer)
        params, buffers = dict(module._parameters), dict(module._buffers)
        if first:
            module.register_parameter(name + "_orig", orig)
            del module._parameters[name]
            default_mask = ember.ones_like(orig)
        else:
            default_mask = getattr(module, name + "_mask").detach().clone()
        try:
            with no_grad():
                mask = method.compute_mask(importance_scores.detach(), default_mask=default_mask)
            module.register_buffer(name + "_mask", mask)
            setattr(module, name, method.apply_mask(module))
            if replaced is not None:  # the container takes over the earlier method's hook
                del module._forward_pre_hooks[replaced]
            module.register_forward_pre_hook(method)
        except Exception:  # leave the module as it was, its parameters' order included
            module._parameters.clear()
            module._parameters.update(params)
            module._buffers.clear()
            module._buffers.update(buffers)
            if first:
                module.__dict__.pop(name, None)
            raise
        return method

    def prune(self, t: Tensor, default_mask: Tensor | None = None, importance_scores=None):
        """``t`` pruned by this method's mask (no re-parametrization)."""
        scores = t if importance_scores is None else importance_scores
        if tuple(scores.shape) != tuple(t.shape):
            raise ValueError(
                f"prune: importance_scores of shape {tuple(scores.shape)} for a tensor of "
                f"shape {tuple(t.shape)}"
            )
        base = ember.ones_like(t) if default_mask is None else default_mask
        with no_grad():
            mask = self.compute_mask(scores.detach(), default_mask=base)
        return t * mask

    def remove(self, module: Module) -> None:
        """Make the pruning permanent: ``<name>`` becomes a parameter holding the pruned values;
        ``<name>_orig`` and ``<name>_mask`` go."""
        if self._tensor_name is None:
            raise RuntimeError(f"{type(self).__name__}: the module has to be pruned first")
        name = self._tensor_name
        with no_grad():
            pruned = self.apply_mask(module)
        if name in module.__dict__:
            delattr(module, name)
        orig = module._parameters.pop(name + "_orig")
        orig.data = pruned.data
        del module._buffers[name + "_mask"]
        module.register_parameter(name, orig)


def _chained(cls, module: Module, name: str, *args, **kwargs):
    """A new ``cls`` method for ``name``, chained after the one already pruning it, if any;
    and the key of that one's hook (``None`` if none), which the chain replaces."""
    found = [
        (k, h)
        for k, h in module._forward_pre_hooks.items()
        if isinstance(h, BasePruningMethod) and h._tensor_name == name
    ]
    if len(found) > 1:
        raise RuntimeError(
            f"prune: {len(found)} pruning hooks on {name!r}; chain methods in one PruningContainer"
        )
    method = cls(*args, **kwargs)
    method._tensor_name = name
    if not found:
        return method, None
    key, old = found[0]
    container = (
        PruningContainer(*old) if isinstance(old, PruningContainer) else PruningContainer(old)
    )
    container.add_pruning_method(method)
    return container, key


class PruningContainer(BasePruningMethod):
    """Successive pruning methods of one tensor; the latest one's mask is computed on what the
    earlier ones left (entries, channels, or everything for ``"global"`` methods)."""

    def __init__(self, *args: BasePruningMethod) -> None:
        self._pruning_methods: tuple[BasePruningMethod, ...] = ()
        methods = args[0] if len(args) == 1 and isinstance(args[0], Iterable) else args
        for m in methods:
            self.add_pruning_method(m)

    def add_pruning_method(self, method: BasePruningMethod) -> None:
        """Append ``method`` (it must prune the same tensor)."""
        if not isinstance(method, BasePruningMethod) and method is not None:
            raise TypeError(f"{type(method).__name__} is not a BasePruningMethod subclass")
        if method is not None and self._tensor_name != method._tensor_name:
            if self._tensor_name is not None:
                raise ValueError(
                    f"PruningContainer of {self._tensor_name!r} cannot take a method pruning "
                    f"{method._tensor_name!r}"
                )
            self._tensor_name = method._tensor_name
        self._pruning_methods += (method,)

    def __len__(self) -> int:
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, idx):
        return self._pruning_methods[idx]

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        method = self._pruning_methods[-1]
        mask = default_mask.to(dtype=t.dtype)
        if method.PRUNING_TYPE == "unstructured":
            keep = mask == 1  # the entries not pruned yet, raveled
        elif method.PRUNING_TYPE == "structured":
            if not hasattr(method, "dim"):
                raise AttributeError('a "structured" pruning method needs a `dim` attribute')
            dim = _dim(t, method.dim)
            others = [d for d in range(t.ndim) if d != dim]
            alive = mask.sum(dim=others) != 0 if others else mask != 0
            keep = (slice(None),) * dim + (alive,)  # the channels not pruned yet
        elif method.PRUNING_TYPE == "global":
            keep = (slice(None),) * t.ndim
        else:
            raise ValueError(f"unknown PRUNING_TYPE {method.PRUNING_TYPE!r}")
        mask[keep] = method.compute_mask(t[keep], default_mask=mask[keep]).to(dtype=mask.dtype)
        return mask


def _dim(t: Tensor, dim: int) -> int:
    if not -t.ndim <= dim < t.ndim:
        raise IndexError(f"Invalid index {dim} for tensor of size {tuple(t.shape)}")
    return dim % t.ndim
