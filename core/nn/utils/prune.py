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
from abc import ABC, abstractmethod
from collections.abc import Iterable

import ember

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from ..module import Module

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


def _dim(t: Tensor, dim: int) -> int:
    if not -t.ndim <= dim < t.ndim:
        raise IndexError(f"Invalid index {dim} for tensor of size {tuple(t.shape)}")
    return dim % t.ndim


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
