"""``ember.autograd``: backward, grad, Function, grad modes, gradcheck."""

from __future__ import annotations

import sys as _sys
import threading as _threading
import warnings as _warnings

import numpy as _np

from ..backend.device import get_array_module
from . import function as _function_mod
from .engine import run_backward
from .function import Function
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import gradcheck, gradgradcheck

# Tensor.backward calls backward() below through this module object (function.py's _autograd).
_function_mod._autograd = _sys.modules[__name__]


def _make_grads(tensors, grads):
    Tensor = _function_mod.Tensor
    out = []
    for t, g in zip(tensors, grads):
        if g is None:
            d = t._data
            if d.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if type(d) is _np.ndarray:  # (np.ones is Python around empty + copyto)
                g = _np.empty(d.shape, dtype=d.dtype)
                g.fill(1)
                g = Tensor._wrap(g)
                out.append(g)
                continue
            xp = get_array_module(d)
            if xp is _np:
                g = Tensor._wrap(_np.ones(t._data.shape, dtype=t._data.dtype))
            else:
                with t._data.device:  # CuPy allocates on the current device, not the output's
                    g = Tensor._wrap(xp.ones(t._data.shape, dtype=t._data.dtype))
        elif not isinstance(g, Tensor):
            from ..creation import tensor

            g = tensor(g, dtype=t.dtype, device=t.device)
        elif g._data.shape != t._data.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[0] has a shape of {g.shape} and output[0] has "
                f"a shape of {t.shape}."
            )
        out.append(g)
    return out


def _as_list(x):
    if x is None:
        return None
    Tensor = _function_mod.Tensor
    return [x] if isinstance(x, Tensor) else list(x)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of graph leaves."""
    tensors = _as_list(tensors)
    grads = _as_list(grad_tensors) or [None] * len(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    grads = _make_grads(tensors, grads)
    if inputs is not None:
        inputs = _as_list(inputs)
        res = run_backward(
            tensors, grads, retain_graph, create_graph, inputs=inputs, allow_unused=True
        )
        for t, g in zip(inputs, res):
            if g is not None:
                t.grad = g if t.grad is None else t.grad + g
        return
    run_backward(tensors, grads, retain_graph, create_graph)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    only_inputs=True,
    allow_unused=None,
    is_grads_batched=False,
    materialize_grads=False,
):
    """Return the gradients of ``outputs`` w.r.t. ``inputs`` without touching ``.grad``.

    ``only_inputs`` is PyTorch's deprecated flag (ignored; gradient-penalty code still passes
    it). ``is_grads_batched=True`` treats dim 0 of each ``grad_outputs`` as a batch of vectors
    and returns the vector-Jacobian products stacked along a new dim 0.
    """
    if not only_inputs:
        _warnings.warn(
            "only_inputs argument is deprecated and is ignored now (defaults to True). To "
            "accumulate gradient for other parts of the graph, please use "
            "torch.autograd.backward.",
            FutureWarning,
            stacklevel=2,
        )
    if is_grads_batched:
        return _batched_grad(
            outputs,
            inputs,
            grad_outputs,
            retain_graph,
            create_graph,
            allow_unused,
            materialize_grads,
        )
    if _function_mod._vmap_guard[0] is not None:  # inside ember.func.vmap: batched tensors
        from ..func._vmap_tensor import grad_in_vmap

        res = grad_in_vmap(
            _as_list(outputs),
            _as_list(inputs),
            _as_list(grad_outputs),
            dict(
                retain_graph=retain_graph,
                create_graph=create_graph,
                allow_unused=allow_unused,
                materialize_grads=materialize_grads,
            ),
        )
        if res is not None:
            return res
    outputs = _as_list(outputs)
    inputs_l = _as_list(inputs)
    grads = _as_list(grad_outputs) or [None] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    if not inputs_l:  # checked first, as torch does
        raise RuntimeError("`inputs` argument to `grad()` cannot be empty.")
    for t in inputs_l:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _make_grads(outputs, grads)
    res = run_backward(
        outputs,
        grads,
        retain_graph,
        create_graph,
        inputs=inputs_l,
        allow_unused=bool(allow_unused) or materialize_grads,
    )
    if materialize_grads:
        from ..creation import zeros_like

        res = tuple(zeros_like(t) if g is None else g for t, g in zip(inputs_l, res))
    if any(type(t).__name__ == "MaskedTensor" for t in inputs_l):
        from ..masked._core import _wrap  # a MaskedTensor's gradient is masked like it

        res = tuple(
            _wrap(g, t._masked_mask) if g is not None and hasattr(t, "_masked_mask") else g
            for t, g in zip(inputs_l, res)
        )
    return res


def _batched_grad(
    outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused, materialize_grads
):
    # one backward per row of the batched grad_outputs (PyTorch vmaps this; same results)
    from ..ops import stack

    gos = _as_list(grad_outputs)
    if not gos or any(g is None for g in gos):
        raise RuntimeError("is_grads_batched=True needs a grad_outputs tensor for every output")
    n = gos[0].shape[0]
    if any(g.dim() == 0 or g.shape[0] != n for g in gos):
        raise RuntimeError(
            "is_grads_batched=True: every grad_outputs tensor needs the same batch size in dim 0"
        )
    keep = create_graph if retain_graph is None else retain_graph
    kwargs = dict(
        create_graph=create_graph, allow_unused=allow_unused, materialize_grads=materialize_grads
    )
    rows = [
        grad(outputs, inputs, [g[i] for g in gos], True if i < n - 1 else keep, **kwargs)
        for i in range(n)
    ]
    return tuple(None if r[0] is None else stack(list(r)) for r in zip(*rows))


from . import (  # noqa: E402  (functional uses grad, defined above)
    anomaly_mode,
    forward_ad,
    functional,
    graph,
    variable,
)


def __getattr__(name):
    # ember.autograd.profiler loads ember.profiler's hooks: only on first use
    if name == "profiler":
        import importlib

        return importlib.import_module("ember.autograd.profiler")
    raise AttributeError(f"module 'ember.autograd' has no attribute {name!r}")


from .anomaly_mode import detect_anomaly, set_detect_anomaly  # noqa: E402
from .variable import Variable  # noqa: E402

_multithreading_enabled = [True]


class set_multithreading_enabled:
    """Context manager (or plain call) setting whether backward may use several threads
    (PyTorch's ``torch.autograd.set_multithreading_enabled``). ember's engine runs each
    backward on the calling thread, so the flag is recorded and changes nothing else.

    Args:
        mode (bool): enable (``True``) or disable (``False``) multithreaded backward.
    """

    def __init__(self, mode: bool) -> None:
        self.prev = _multithreading_enabled[0]
        _multithreading_enabled[0] = bool(mode)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *args) -> None:
        _multithreading_enabled[0] = self.prev

    def clone(self) -> set_multithreading_enabled:
        return self.__class__(_multithreading_enabled[0])


class enforce_grad_layout_policy:
    """Context manager (or plain call) for PyTorch's gradient layout contract (accumulated
    gradients take their parameter's strides). ember's gradients are always dense,
    C-contiguous arrays of the parameter's shape, so the contract always holds and relaxing
    it changes nothing; the setting is recorded, thread-locally as in PyTorch.

    Args:
        enable (bool): enforce the contract (``True``, default) or relax it.
    """

    def __init__(self, enable: bool = True) -> None:
        self.prev = getattr(_layout_policy, "enabled", True)
        _layout_policy.enabled = bool(enable)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *args) -> None:
        _layout_policy.enabled = self.prev


_layout_policy = _threading.local()


def is_multithreading_enabled() -> bool:
    """The flag set by :class:`set_multithreading_enabled` (default ``True``)."""
    return _multithreading_enabled[0]


__all__ = [
    "Function",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "inference_mode",
    "is_grad_enabled",
    "gradcheck",
    "gradgradcheck",
    "functional",
    "Variable",
    "detect_anomaly",
    "set_detect_anomaly",
    "set_multithreading_enabled",
    "enforce_grad_layout_policy",
    "forward_ad",
    "graph",
    "variable",
    "anomaly_mode",
]
