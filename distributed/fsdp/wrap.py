"""Auto-wrap policies (PyTorch's ``torch.distributed.fsdp.wrap``) and the recursive wrapper.

A policy is called as ``policy(module=..., recurse=..., nonwrapped_numel=...)``: with
``recurse=True`` it says whether to look inside ``module`` for units, with ``recurse=False``
whether ``module`` itself (holding ``nonwrapped_numel`` parameters not yet in a unit) becomes
an FSDP unit. Wrapping goes bottom-up, so inner units form first.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable

from ember.nn import Module, ModuleDict, ModuleList, MultiheadAttention

__all__ = [
    "ModuleWrapPolicy",
    "size_based_auto_wrap_policy",
    "transformer_auto_wrap_policy",
    "lambda_auto_wrap_policy",
    "always_wrap_policy",
    "enable_wrap",
    "wrap",
]


def always_wrap_policy(module: Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """Every submodule becomes a unit."""
    return True


class ModuleWrapPolicy:
    """Make every submodule of one of ``module_classes`` a unit (e.g. each transformer layer).

    Args:
        module_classes (iterable of type): the classes to wrap.
    """

    def __init__(self, module_classes: Iterable[type]):
        classes = tuple(module_classes)
        bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, Module))]
        if bad:
            raise TypeError(f"ModuleWrapPolicy expects nn.Module subclasses, got {bad}")
        self._module_classes = classes

    def __call__(self, module: Module, recurse: bool, nonwrapped_numel: int) -> bool:
        return True if recurse else isinstance(module, self._module_classes)

    def __repr__(self) -> str:
        return f"ModuleWrapPolicy({[c.__name__ for c in self._module_classes]})"


def size_based_auto_wrap_policy(
    module: Module,
    recurse: bool,
    nonwrapped_numel: int,
    min_num_params: int = int(1e8),
    force_leaf_modules: set | None = None,
    exclude_wrap_modules: set | None = None,
) -> bool:
    """Wrap a submodule once it holds at least ``min_num_params`` parameters not yet in a unit.

    Use with ``functools.partial(size_based_auto_wrap_policy, min_num_params=...)``.
    ``force_leaf_modules`` (default ``{MultiheadAttention}``) are never looked into;
    ``exclude_wrap_modules`` (default ``{ModuleList, ModuleDict}``) never become units.
    """
    force_leaf = tuple(
        force_leaf_modules if force_leaf_modules is not None else {MultiheadAttention}
    )
    exclude = tuple(
        exclude_wrap_modules if exclude_wrap_modules is not None else {ModuleList, ModuleDict}
    )
    is_large = nonwrapped_numel >= min_num_params
    if recurse:
        return is_large and not isinstance(module, force_leaf)
    return is_large and not isinstance(module, exclude)


def transformer_auto_wrap_policy(
    module: Module, recurse: bool, nonwrapped_numel: int, transformer_layer_cls: set
) -> bool:
    """Wrap every submodule of one of ``transformer_layer_cls`` (PyTorch's name)."""
    return ModuleWrapPolicy(transformer_layer_cls)(module, recurse, nonwrapped_numel)


def lambda_auto_wrap_policy(
    module: Module, recurse: bool, nonwrapped_numel: int, lambda_fn: Callable[[Module], bool]
) -> bool:
    """Wrap every submodule for which ``lambda_fn(module)`` is true."""
    return True if recurse else bool(lambda_fn(module))


def _numel(module: Module, ignored: set[int]) -> int:
    return sum(p.numel() for p in module.parameters() if id(p) not in ignored)


def _recursive_wrap(
    module: Module,
    policy: Callable,
    wrap: Callable[[Module], Module],
    ignored_modules: set[int],
    ignored_params: set[int],
    only_wrap_children: bool = False,
) -> tuple[Module, int]:
    """Wrap ``module``'s subtree bottom-up; return (module or its wrapper, numel wrapped)."""
    numel = _numel(module, ignored_params)
    if not policy(module=module, recurse=True, nonwrapped_numel=numel):
        return module, 0
    wrapped_numel = 0
    for name, child in list(module.named_children()):
        if id(child) in ignored_modules or getattr(child, "_ember_fsdp_unit", False):
            continue
        new_child, n = _recursive_wrap(child, policy, wrap, ignored_modules, ignored_params)
        if new_child is not child:
            setattr(module, name, new_child)
        wrapped_numel += n
    remainder = numel - wrapped_numel
    if not only_wrap_children and policy(module=module, recurse=False, nonwrapped_numel=remainder):
        return wrap(module), numel
    return module, wrapped_numel


def _as_policy(policy) -> Callable:
    """Accept a policy object/function, or a set of module classes (a ModuleWrapPolicy)."""
    if isinstance(policy, (set, frozenset, list, tuple)):
        return ModuleWrapPolicy(policy)
    if isinstance(policy, functools.partial) or callable(policy):
        return policy
    raise TypeError(
        f"auto_wrap_policy must be callable or a set of module classes, got {type(policy).__name__}"
    )


# ---- manual wrapping: enable_wrap / wrap ------------------------------------------------------
_WRAP_CONTEXT: list[tuple[Callable, dict]] = []


@contextlib.contextmanager
def enable_wrap(*, wrapper_cls: Callable, **wrapper_kwargs):
    """Within the block, :func:`wrap` wraps modules with ``wrapper_cls(module, **kwargs)``
    (e.g. ``enable_wrap(wrapper_cls=FSDP, mixed_precision=...)``). Blocks do not nest."""
    if _WRAP_CONTEXT:
        raise NotImplementedError("enable_wrap: the context is already active; it cannot nest")
    if wrapper_cls is None:
        raise ValueError("enable_wrap: expected a wrapper_cls, got None")
    _WRAP_CONTEXT.append((wrapper_cls, dict(wrapper_kwargs)))
    try:
        yield
    finally:
        _WRAP_CONTEXT.pop()


def wrap(module: Module, **wrap_overrides):
    """``module`` wrapped with :func:`enable_wrap`'s ``wrapper_cls`` and keyword arguments
    (``wrap_overrides`` win), or ``module`` itself outside an ``enable_wrap`` block."""
    if not _WRAP_CONTEXT:
        return module
    wrapper_cls, kwargs = _WRAP_CONTEXT[-1]
    return wrapper_cls(module, **{**kwargs, **wrap_overrides})
