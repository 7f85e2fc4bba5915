"""Optimizer step hooks: the global registries, the per-optimizer ``RemovableHandle``, and the
wrapper that runs pre/post hooks around every subclass's ``step`` (``Optimizer``'s
``__init_subclass__`` applies it)."""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable

from .._hook_handle import RemovableHandle

_global_step_pre_hooks: OrderedDict = OrderedDict()
_global_step_post_hooks: OrderedDict = OrderedDict()


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run before every optimizer's ``step``."""
    handle = RemovableHandle(_global_step_pre_hooks)
    _global_step_pre_hooks[handle.id] = hook
    return handle


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run after every optimizer's ``step``."""
    handle = RemovableHandle(_global_step_post_hooks)
    _global_step_post_hooks[handle.id] = hook
    return handle


def _hook_step(step: Callable) -> Callable:
    """Wrap a subclass's ``step`` with the step hooks (run once even when steps nest)."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if self.__dict__.get("_in_step", False):  # super().step() from an overriding step
            return step(self, *args, **kwargs)
        self._opt_called = True  # lets a scheduler warn when it is stepped first
        own_pre = getattr(self, "_optimizer_step_pre_hooks", None)
        if own_pre is None:
            # a wrapper class that skips Optimizer.__init__ (accelerate's AcceleratedOptimizer):
            # torch never hooks its step (the optimizer it wraps runs the hooks, once)
            return step(self, *args, **kwargs)
        for hook in itertools.chain(_global_step_pre_hooks.values(), own_pre.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(
                        f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                        f"{result}."
                    )
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        for hook in itertools.chain(
            self._optimizer_step_post_hooks.values(), _global_step_post_hooks.values()
        ):
            hook(self, args, kwargs)
        return out

    wrapper._ember_hooked = True
    return wrapper
