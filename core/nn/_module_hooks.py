"""The hook half of ``nn.Module``: forward pre-hooks, forward hooks, full backward hooks and
the call path that runs them (kept out of the hot path when no hook is registered)."""

from __future__ import annotations

import functools
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


# Registration hooks for every module: ``hook(module, name, value)`` may return a replacement
# for the parameter/buffer/submodule being registered (PyTorch's global registration hooks).
_global_parameter_registration_hooks: dict[int, Callable] = OrderedDict()
_global_buffer_registration_hooks: dict[int, Callable] = OrderedDict()
_global_module_registration_hooks: dict[int, Callable] = OrderedDict()


def _run_registration_hooks(hooks: OrderedDict, module, name: str, value):
    for hook in hooks.values():
        output = hook(module, name, value)
        if output is not None:
            value = output
    return value


def register_module_parameter_registration_hook(hook) -> RemovableHandle:
    r"""``hook(module, name, param)`` on every ``register_parameter``; may return a new one."""
    return _register_hook(_global_parameter_registration_hooks, hook, False)


def register_module_buffer_registration_hook(hook) -> RemovableHandle:
    r"""``hook(module, name, buffer)`` on every ``register_buffer``; may return a new one."""
    return _register_hook(_global_buffer_registration_hooks, hook, False)


def register_module_module_registration_hook(hook) -> RemovableHandle:
    r"""``hook(module, name, submodule)`` on every ``add_module``; may return a new one."""
    return _register_hook(_global_module_registration_hooks, hook, False)


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
        _set_backward_hook_kind(self, True)
        return _register_hook(self._backward_hooks, hook, prepend)

    def register_backward_hook(self, hook) -> RemovableHandle:
        r"""``hook(module, grad_input, grad_output)`` on the autograd node that made the
        module's output (deprecated in PyTorch, kept with its meaning): ``grad_input`` are
        that node's input gradients, e.g. ``(input, weight, bias)`` for a convolution, and
        ``grad_output`` its output gradients; it may return new ``grad_input``. Use
        :meth:`register_full_backward_hook` for the gradients w.r.t. the module's inputs."""
        _set_backward_hook_kind(self, False)
        return _register_hook(self._backward_hooks, hook, False)

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
        # register_backward_hook's hooks (not "full") go on the output's grad_fn after forward
        legacy = self.__dict__.get("_is_full_backward_hook") is False and self._backward_hooks
        full = [] if legacy else list(self._backward_hooks.values())
        if (full or self._backward_pre_hooks) and grad_mode._state.enabled:
            bw_hook = BackwardHook(self, full, list(self._backward_pre_hooks.values()))
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
        if legacy and grad_mode._state.enabled:
            _attach_non_full_hooks(self, args, result)
        return result


def _set_backward_hook_kind(module, full: bool) -> None:
    kind = module.__dict__.get("_is_full_backward_hook")
    if kind is not None and kind is not full:
        raise RuntimeError(
            "Cannot use both regular backward hooks and full backward hooks on a single "
            "Module. Please use only one of them."
        )
    object.__setattr__(module, "_is_full_backward_hook", full)


def _attach_non_full_hooks(module, args, result) -> None:
    """PyTorch's non-full module backward hooks: registered on the grad_fn of the first
    tensor of the output, with PyTorch's deprecation warnings where that node is not the
    whole module."""
    var = result
    while not isinstance(var, Tensor):
        if isinstance(var, dict):
            var = next(v for v in var.values() if isinstance(v, Tensor))
        else:
            var = var[0]
    grad_fn = var.grad_fn
    if grad_fn is None:
        return
    for hook in module._backward_hooks.values():
        grad_fn.register_hook(functools.partial(hook, module))
    outs = (result,) if isinstance(result, Tensor) else result
    if not (isinstance(outs, tuple) and all(isinstance(r, Tensor) for r in outs)):
        why = "does not return a single Tensor or a tuple of Tensors"
    elif not all(isinstance(a, Tensor) for a in args):
        why = "does not take as input a single Tensor or a tuple of Tensors"
    else:
        out_fns = {r.grad_fn for r in outs if r.grad_fn is not None}
        in_fns = {a.grad_fn for a in args if a.grad_fn is not None}
        nexts = {f for f, _ in grad_fn.next_functions if f is not None}
        if len(out_fns) > 1:
            why = "outputs are generated by different autograd Nodes"
        elif in_fns != nexts:  # a parameter's AccumulateGrad counts as another node
            why = "the forward contains multiple autograd Nodes"
        else:
            return
    prefix = (
        f"Using non-full backward hooks on a Module that {why}"
        if why.startswith("does")
        else f"Using a non-full backward hook when {why}"
    )
    missing = {
        "outputs are generated by different autograd Nodes": "some grad_output",
        "does not return a single Tensor or a tuple of Tensors": "some of the grad_output",
        "does not take as input a single Tensor or a tuple of Tensors": "some of the grad_input",
    }.get(why, "some grad_input")
    warnings.warn(
        f"{prefix} is deprecated and will be removed in future versions. This hook will be "
        f"missing {missing}. Please use register_full_backward_hook to get the documented "
        "behavior.",
        FutureWarning,
        stacklevel=3,
    )
