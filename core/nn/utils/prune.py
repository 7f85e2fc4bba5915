"""``ember.nn.utils.prune``: pruning a parameter by a mask, PyTorch's API and layout.

Pruning ``module.<name>`` re-parametrizes it: the parameter moves to ``<name>_orig``, a buffer
``<name>_mask`` (0 for pruned entries, same dtype as the parameter) is registered, and the
attribute ``<name>`` becomes ``<name>_orig * <name>_mask``, recomputed by a forward pre-hook (the
pruning method object itself) before every forward, so gradients reach ``<name>_orig`` with the
pruned entries' gradients zero. ``state_dict()`` holds ``<name>_orig`` and ``<name>_mask``, as
in PyTorch. Pruning the same parameter again chains the methods in a :class:`PruningContainer`:
the new method only looks at what is still unpruned. :func:`remove` makes the pruning
permanent.

Masks are computed without autograd: which entries go is decided by the values (``|w|``,
channel norms) or at random (``ember.rand``, so ``ember.manual_seed`` makes it reproducible).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import ember

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from ..module import Module
from ._prune_base import BasePruningMethod, PruningContainer, _dim

__all__ = [
    "BasePruningMethod",
    "PruningContainer",
    "Identity",
    "RandomUnstructured",
    "L1Unstructured",
    "RandomStructured",
    "LnStructured",
    "CustomFromMask",
    "identity",
    "random_unstructured",
    "l1_unstructured",
    "random_structured",
    "ln_structured",
    "global_unstructured",
    "custom_from_mask",
    "remove",
    "is_pruned",
]


class Identity(BasePruningMethod):
    """Prunes nothing: the re-parametrization with a mask of ones."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        return default_mask

    @classmethod
    def apply(cls, module: Module, name: str):
        return super().apply(module, name)


class _AmountMethod(BasePruningMethod):
    """A method pruning ``amount`` entries or channels: an int (how many) or a float in
    [0, 1] (which fraction, rounded)."""

    def __init__(self, amount) -> None:
        _check_amount(amount)
        self.amount = amount

    def _count(self, size: int) -> int:
        n = self.amount if isinstance(self.amount, numbers.Integral) else round(self.amount * size)
        if n > size:
            raise ValueError(
                f"amount={self.amount} should be smaller than the number of parameters to "
                f"prune={size}"
            )
        return int(n)


class RandomUnstructured(_AmountMethod):
    """Prune ``amount`` entries chosen uniformly at random.

    Args:
        amount (int or float): how many entries, or which fraction of them.
    """

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        n = self._count(t.numel())
        mask = default_mask.clone()
        if n:
            mask.view(-1)[ember.topk(ember.rand_like(t).view(-1), n).indices] = 0
        return mask

    @classmethod
    def apply(cls, module: Module, name: str, amount):
        return super().apply(module, name, amount=amount)


class L1Unstructured(_AmountMethod):
    """Prune the ``amount`` entries of smallest absolute value.

    Args:
        amount (int or float): how many entries, or which fraction of them.
    """

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        n = self._count(t.numel())
        mask = default_mask.clone()
        if n:
            mask.view(-1)[ember.topk(t.abs().view(-1), n, largest=False).indices] = 0
        return mask

    @classmethod
    def apply(cls, module: Module, name: str, amount, importance_scores=None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


class RandomStructured(_AmountMethod):
    """Prune ``amount`` whole channels along ``dim``, chosen at random.

    Args:
        amount (int or float): how many channels, or which fraction of them.
        dim (int, optional): the channel dimension. Default: ``-1``.
    """

    PRUNING_TYPE = "structured"

    def __init__(self, amount, dim: int = -1) -> None:
        super().__init__(amount)
        self.dim = dim

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        dim = _structured_dim(t, self.dim)
        n = self._count(t.shape[dim])
        if not n:
            return default_mask
        prob = ember.rand(t.shape[dim])
        threshold = ember.kthvalue(prob, n).values
        return _channel_mask(t, dim, prob > threshold) * default_mask.to(dtype=t.dtype)

    @classmethod
    def apply(cls, module: Module, name: str, amount, dim: int = -1):
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(_AmountMethod):
    """Prune the ``amount`` channels along ``dim`` of smallest L``n`` norm.

    Args:
        amount (int or float): how many channels, or which fraction of them.
        n (int, float, inf, -inf, 'fro'): the norm's order, as ``p`` of :func:`ember.norm`.
        dim (int, optional): the channel dimension. Default: ``-1``.
    """

    PRUNING_TYPE = "structured"

    def __init__(self, amount, n, dim: int = -1) -> None:
        super().__init__(amount)
        self.n = n
        self.dim = dim

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        dim = _structured_dim(t, self.dim)
        size = t.shape[dim]
        n = self._count(size)
        if not n:
            return default_mask
        others = [d for d in range(t.ndim) if d != dim]
        norm = ember.norm(t, p=self.n, dim=others)
        kept = ember.zeros(size, dtype=ember.bool, device=t.device)
        kept[ember.topk(norm, size - n, largest=True).indices] = True
        return _channel_mask(t, dim, kept) * default_mask.to(dtype=t.dtype)

    @classmethod
    def apply(cls, module: Module, name: str, amount, n, dim, importance_scores=None):
        return super().apply(
            module, name, amount=amount, n=n, dim=dim, importance_scores=importance_scores
        )


class CustomFromMask(BasePruningMethod):
    """Prune where a given mask is 0.

    Args:
        mask (Tensor): of the parameter's shape.
    """

    PRUNING_TYPE = "global"

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        if tuple(default_mask.shape) != tuple(self.mask.shape):
            raise ValueError(
                f"custom_from_mask: a mask of shape {tuple(self.mask.shape)} for a parameter of "
                f"shape {tuple(default_mask.shape)}"
            )
        return default_mask * self.mask.to(dtype=default_mask.dtype)

    @classmethod
    def apply(cls, module: Module, name: str, mask: Tensor):
        return super().apply(module, name, mask=mask)


def identity(module: Module, name: str) -> Module:
    """Re-parametrize ``module.<name>`` with a mask of ones (prunes nothing)."""
    Identity.apply(module, name)
    return module


def random_unstructured(module: Module, name: str, amount) -> Module:
    """Prune ``amount`` random entries of ``module.<name>`` (see :class:`RandomUnstructured`)."""
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module: Module, name: str, amount, importance_scores=None) -> Module:
    """Prune the ``amount`` smallest-magnitude entries of ``module.<name>`` (see
    :class:`L1Unstructured`)."""
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module: Module, name: str, amount, dim: int) -> Module:
    """Prune ``amount`` random channels of ``module.<name>`` along ``dim``."""
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module: Module, name: str, amount, n, dim: int, importance_scores=None):
    """Prune the ``amount`` channels of ``module.<name>`` along ``dim`` with the smallest
    L``n`` norm (see :class:`LnStructured`)."""
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs) -> None:
    """Prune several parameters together, as one vector: e.g. the 20 % smallest weights of the
    whole model rather than 20 % of each layer.

    Args:
        parameters (iterable of (module, name)): the parameters to prune.
        pruning_method: an ``"unstructured"`` method class (e.g. :class:`L1Unstructured`).
        importance_scores (dict, optional): ``{(module, name): scores}`` replacing the values.
        kwargs: the method's arguments (``amount=...``).
    """
    if not isinstance(parameters, Iterable):
        raise TypeError("global_unstructured(): parameters is not an Iterable")
    parameters = list(parameters)
    scores = importance_scores if importance_scores is not None else {}
    if not isinstance(scores, dict):
        raise TypeError("global_unstructured(): importance_scores must be of type dict")
    method = pruning_method(**kwargs)
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError(
            'global_unstructured(): only "unstructured" pruning methods apply; '
            f"{pruning_method.__name__} is {method.PRUNING_TYPE!r}"
        )
    flat = [scores.get((m, n), getattr(m, n)).detach().reshape(-1) for m, n in parameters]
    masks = [
        getattr(m, n + "_mask", None)
        if getattr(m, n + "_mask", None) is not None
        else ember.ones_like(getattr(m, n))
        for m, n in parameters
    ]
    method._tensor_name = "temp"
    container = PruningContainer(method)
    with no_grad():
        final = container.compute_mask(ember.cat(flat), ember.cat([k.reshape(-1) for k in masks]))
    at = 0
    for module, name in parameters:
        size = getattr(module, name).numel()
        custom_from_mask(module, name, final[at : at + size].view_as(getattr(module, name)))
        at += size


def custom_from_mask(module: Module, name: str, mask: Tensor) -> Module:
    """Prune ``module.<name>`` where ``mask`` is 0."""
    CustomFromMask.apply(module, name, mask)
    return module


def remove(module: Module, name: str) -> Module:
    """Make the pruning of ``module.<name>`` permanent and drop its re-parametrization."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[key]
            return module
    raise ValueError(
        f"Parameter '{name}' of module {type(module).__name__} has to be pruned before pruning "
        "can be removed"
    )


def is_pruned(module: Module) -> bool:
    """Whether ``module`` or any of its submodules has a pruned parameter."""
    return any(
        isinstance(hook, BasePruningMethod)
        for sub in module.modules()
        for hook in sub._forward_pre_hooks.values()
    )


def _check_amount(amount) -> None:
    if not isinstance(amount, numbers.Real):
        raise TypeError(f"Invalid type for amount: {amount!r}. Must be int or float.")
    integral = isinstance(amount, numbers.Integral)
    if (integral and amount < 0) or (not integral and not 0.0 <= float(amount) <= 1.0):
        raise ValueError(
            f"amount={amount} should either be a float in the range [0, 1] or a non-negative "
            "integer"
        )


def _structured_dim(t: Tensor, dim: int) -> int:
    if t.ndim <= 1:
        raise ValueError(
            "Structured pruning can only be applied to multidimensional tensors. Found tensor "
            f"of shape {tuple(t.shape)} with {t.ndim} dims"
        )
    return _dim(t, dim)


def _channel_mask(t: Tensor, dim: int, kept: Tensor) -> Tensor:
    """Ones on the ``kept`` channels of ``dim``, zeros elsewhere, of ``t``'s shape and dtype."""
    shape = [1] * t.ndim
    shape[dim] = t.shape[dim]
    return kept.to(dtype=t.dtype).reshape(shape).expand(t.shape).clone()
