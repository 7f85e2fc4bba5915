"""The hook half of ``nn.Module``: forward pre-hooks, forward hooks, full backward hooks and
the call path that runs them (kept out of the hot path when no hook is registered)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable

from ..autograd import grad_mode
from ..tensor import Tensor
from ._hooks import BackwardHook, RemovableHandle

# Hooks that run for every module (``nn.modules.module.register_module_forward_hook``).
_global_forward_pre_hooks: dict[int, Callable] = OrderedDict()
_global_forward_hooks: dict[int, Callable] = OrderedDict()
_global_forward_hooks_always_called: dict[int, bool] = OrderedDict()


def _register_hook(hooks: OrderedDict, hook, prepend: bool, extra=None) -> RemovableHandle:
    handle = RemovableHandle(hooks, extra_dict=extra)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def register_module_forward_pre_hook(hook) -> RemovableHandle:
    r"""Register a forward pre-hook common to all modules: ``hook(module, args)``."""
    return _register_hook(_global_forward_pre_hooks, hook, False)


def register_module_forward_hook(hook, *, always_call: bool = False) -> RemovableHandle:
    r"""Register a forward hook common to all modules: ``hook(module, args, output)``."""
    handle = _register_hook(_global_forward_hooks, hook, False, _global_forward_hooks_always_called)
    if always_call:
        _global_forward_hooks_always_called[handle.id] = True
    return handle


class _HookMixin:
    """Hook registration and ``__call__`` for ``Module``."""

    # ---- hooks -------------------------------------------------------------------------
    def register_forward_pre_hook(
        self, hook, *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        r"""``hook(module, args)`` (or ``hook(module, args, kwargs)``) before ``forward``;
        it may return new args (or ``(args, kwargs)``)."""
        handle = _register_hook(
            self._forward_pre_hooks, hook, prepend, self._forward_pre_hooks_with_kwargs
        )
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[handle.id] = True
        return handle

    def register_forward_hook(
        self, hook, *, prepend: bool = False, with_kwargs: bool = False, always_call: bool = False
    ) -> RemovableHandle:
        r"""``hook(module, args, output)`` (or ``hook(module, args, kwargs, output)``) after
        ``forward``; it may return a new output."""
        handle = _register_hook(
            self._forward_hooks,
            hook,
            prepend,
            [self._forward_hooks_with_kwargs, self._forward_hooks_always_called],
        )
        if with_kwargs:
            self._forward_hooks_with_kwargs[handle.id] = True
        if always_call:
            self._forward_hooks_always_called[handle.id] = True
        return handle

    def register_full_backward_pre_hook(self, hook, prepend: bool = False) -> RemovableHandle:
        r"""``hook(module, grad_output)`` when the gradients w.r.t. the outputs are known; it
        may return new ``grad_output``."""
        return _register_hook(self._backward_pre_hooks, hook, prepend)

    def register_full_backward_hook(self, hook, prepend: bool = False) -> RemovableHandle:
        r"""``hook(module, grad_input, grad_output)`` when the gradients w.r.t. the module's
        tensor inputs are computed; it may return new ``grad_input``."""
        return _register_hook(self._backward_hooks, hook, prepend)

    def register_backward_hook(self, hook) -> RemovableHandle:
        r"""Deprecated in PyTorch; registered here as a full backward hook."""
        warnings.warn(
            "register_backward_hook is deprecated; use register_full_backward_hook",
            FutureWarning,
            stacklevel=2,
        )
        return self.register_full_backward_hook(hook)

    def _call_impl(self, *args, **kwargs):
        if not (
            self._forward_pre_hooks
            or self._forward_hooks
            or self._backward_hooks
            or self._backward_pre_hooks
            or _global_forward_pre_hooks
            or _global_forward_hooks
        ):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    __call__ = _call_impl

    def _call_with_hooks(self, args, kwargs):
        for hook_id, hook in (*_global_forward_pre_hooks.items(), *self._forward_pre_hooks.items()):
            if hook_id in self._forward_pre_hooks_with_kwargs:
                res = hook(self, args, kwargs)
                if res is not None:
                    if isinstance(res, tuple) and len(res) == 2:
                        args, kwargs = res
                    else:
                        raise RuntimeError(
                            "forward pre-hook must return None or a tuple of "
                            f"(new_args, new_kwargs), but got {res}."
                        )
            else:
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        bw_hook = None
        if (self._backward_hooks or self._backward_pre_hooks) and grad_mode._state.enabled:
            bw_hook = BackwardHook(
                self, list(self._backward_hooks.values()), list(self._backward_pre_hooks.values())
            )
            args = bw_hook.setup_input_hook(args)
        called = set()
        try:
            result = self.forward(*args, **kwargs)
            for hook_id, hook in (*_global_forward_hooks.items(), *self._forward_hooks.items()):
                called.add(hook_id)
                if hook_id in self._forward_hooks_with_kwargs:
                    res = hook(self, args, kwargs, result)
                else:
                    res = hook(self, args, result)
                if res is not None:
                    result = res
        except Exception:
            # Hooks registered with always_call=True still run, then the error propagates.
            for hook_id, hook in (*_global_forward_hooks.items(), *self._forward_hooks.items()):
                always = (
                    hook_id in self._forward_hooks_always_called
                    or hook_id in _global_forward_hooks_always_called
                )
                if always and hook_id not in called:
                    try:
                        if hook_id in self._forward_hooks_with_kwargs:
                            hook(self, args, kwargs, None)
                        else:
                            hook(self, args, None)
                    except Exception as exc:
                        warnings.warn(
                            "forward hook with ``always_call=True`` raised an "
                            f"exception that was silenced: {exc!r}",
                            stacklevel=2,
                        )
            raise
        if bw_hook is not None:
            if not isinstance(result, (Tensor, tuple)):
                warnings.warn(
                    "For backward hooks to be called, module output should be a Tensor "
                    f"or a tuple of Tensors but received {type(result)}",
                    stacklevel=2,
                )
            result = bw_hook.setup_output_hook(result)
        return result
