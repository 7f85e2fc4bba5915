"""``torch._C``: the few names of PyTorch's extension module that Python programs reach for.

Only the ``__torch_function__`` switches (``core/overrides.py``) live here: ember has no C++
extension, and everything else of ``torch._C`` is internal to PyTorch.
"""

from __future__ import annotations

import enum as _enum
import sys as _sys
import types as _types

from .overrides import (
    DisableTorchFunction,
    DisableTorchFunctionSubclass,
    _disabled_torch_function_impl,
)

__all__ = ["DisableTorchFunction", "DisableTorchFunctionSubclass"]

# a class body may say ``__torch_function__ = torch._C._disabled_torch_function_impl``
_disabled_torch_function_impl = classmethod(_disabled_torch_function_impl)

#: torch._C._TensorMeta, the metaclass of PyTorch's tensor classes; ember.Tensor is a plain
#: Python class, so its metaclass is ``type`` (``type(ember.Tensor) is ember._C._TensorMeta``).
_TensorMeta = type


def _log_api_usage_once(event: str) -> None:
    r"""``torch._C._log_api_usage_once``: PyTorch's usage-logging hook, a no-op in open builds.

    Libraries (torchmetrics, Lightning) call it with an event name; ember logs nothing either.
    """
    if not isinstance(event, str):
        raise TypeError(f"_log_api_usage_once(): event must be a str, got {type(event).__name__}")


def _log_api_usage_metadata(event: str, metadata_map: dict) -> None:
    r"""``torch._C._log_api_usage_metadata``: like :func:`_log_api_usage_once`, a no-op."""
    if not isinstance(event, str):
        raise TypeError(
            f"_log_api_usage_metadata(): event must be a str, got {type(event).__name__}"
        )


def _are_functorch_transforms_active() -> bool:
    r"""``torch._C._are_functorch_transforms_active``: whether a ``torch.func`` transform is
    running. ember's transforms (``ember.func``) run on ordinary tensors, with no functorch
    interpreter stack to consult, so this answers ``False``."""
    return False


def _is_torch_function_mode_enabled() -> bool:
    r"""``torch._C._is_torch_function_mode_enabled``: whether a ``TorchFunctionMode`` is on
    this thread's mode stack (libraries take a slower, mode-aware path then)."""
    from . import _function_mode

    return _function_mode.active() and bool(_function_mode._stack())


def _is_alias_of(tensor, other) -> bool:
    r"""``torch._C._is_alias_of``: whether ``tensor`` and ``other`` view the same memory block
    (the same storage)."""
    from .storage import _block
    from .tensor import Tensor

    if not isinstance(tensor, Tensor) or not isinstance(other, Tensor):
        raise TypeError("_is_alias_of(): expected two tensors")
    ptr, size = _block(tensor._data)
    return ptr != 0 and (ptr, size) == _block(other._data)


def _nn_parse_to(*args, **kwargs) -> tuple:
    r"""``torch._C._nn._parse_to``: the ``(device, dtype, non_blocking, memory_format)`` that
    ``Tensor.to``/``Module.to`` read from their arguments (Lightning's ``DeviceDtypeModuleMixin``
    calls it to track a module's device and dtype)."""
    from .tensor import _parse_to

    non_blocking = bool(kwargs.get("non_blocking", False))
    memory_format = kwargs.get("memory_format")
    device, dtype, _ = _parse_to(args, dict(kwargs))
    return device, dtype, non_blocking, memory_format


def _get_tracing_state():
    r"""``torch._C._get_tracing_state``: the active ``torch.jit.trace`` state, or ``None``.

    Libraries (Pyro's ``ignore_jit_warnings``) only test it for truth; while
    ``ember.jit.trace`` runs this answers a truthy marker object, otherwise ``None``.
    """
    from .jit._decorators import is_tracing
    from .jit._trace_graph import tracing_state

    # ``jit._get_trace_graph``'s state takes module scopes (fvcore's push_scope hooks)
    return tracing_state() or (_TRACING_STATE if is_tracing() else None)


_TRACING_STATE = _types.SimpleNamespace(name="ember.jit.trace")


def _is_tracing() -> bool:
    """``torch._C._is_tracing()`` (asteroid's ``script_if_tracing`` guards): True while
    ``ember.jit.trace`` runs."""
    from .jit._decorators import is_tracing

    return is_tracing()


_JIT_FLAGS = {"executor": True, "mode": True}


def _jit_set_profiling_executor(flag: bool) -> bool:
    """``torch._C._jit_set_profiling_executor`` (speechbrain turns it off at import): ember's
    jit has no profiling executor; the flag is kept and its old value returned, as torch's."""
    old, _JIT_FLAGS["executor"] = _JIT_FLAGS["executor"], bool(flag)
    return old


def _jit_set_profiling_mode(flag: bool) -> bool:
    """``torch._C._jit_set_profiling_mode``: kept as :func:`_jit_set_profiling_executor`."""
    old, _JIT_FLAGS["mode"] = _JIT_FLAGS["mode"], bool(flag)
    return old


#: torch._C._nn: of ATen's nn bindings, the argument parser of ``.to()``
_nn = _types.ModuleType("ember._C._nn")
_nn._parse_to = _nn_parse_to


#: torch._C.Tag: the operator tags ``Library.define(..., tags=[...])`` accepts (ember records
#: none of them; torchao tags its ops with ``needs_fixed_stride_order`` at import)
Tag = _enum.Enum(
    "Tag",
    "core cudagraph_unsafe data_dependent_output dynamic_output_shape flexible_layout generated "
    "inplace inplace_view maybe_aliasing_or_mutating needs_contiguous_strides needs_exact_strides "
    "needs_fixed_stride_order nondeterministic_bitwise nondeterministic_seeded out out_variant "
    "pointwise pt2_compliant_tag reduction view_copy".split(),
    start=0,
)


class _ExperimentalConfig:
    """``torch._C._profiler._ExperimentalConfig``: the profiler's experimental options (stack
    verbosity, performance events). ember's profiler takes it as ``experimental_config=`` and
    reads none of them; they are kept as attributes."""

    def __init__(self, **options) -> None:
        self.__dict__.update(options)


#: torch._C._profiler (torchtune's profiler setup imports ``_ExperimentalConfig`` from it)
_profiler = _types.ModuleType("ember._C._profiler")
_profiler._ExperimentalConfig = _ExperimentalConfig
_sys.modules.setdefault("ember._C._profiler", _profiler)


def _functorch_getattr(name: str):
    # torch._C._functorch: the batched-tensor primitives of vmap, served lazily by
    # core/_functorch/vmap.py (importing ember.func here would slow ``import ember``)
    if name in _FUNCTORCH_NAMES:
        from ._functorch import vmap as _vmap

        return getattr(_vmap, name)
    raise AttributeError(f"module 'ember._C._functorch' has no attribute {name!r}")


_FUNCTORCH_NAMES = ("_add_batch_dim", "_remove_batch_dim", "is_batchedtensor", "get_unwrapped")
#: torch._C._functorch (``from torch._C._functorch import is_batchedtensor`` works: registered
#: in sys.modules)
_functorch = _types.ModuleType("ember._C._functorch")
_functorch.__getattr__ = _functorch_getattr
_sys.modules.setdefault("ember._C._functorch", _functorch)


def _distributed_rpc_getattr(name: str):
    # torch._C._distributed_rpc: the RPC bindings (torchrl's collectors test
    # ``isinstance(self, torch._C._distributed_rpc.PyRRef)`` on every call); served from
    # ember.distributed.rpc on first use, a lazy re-export since core never imports distributed
    # at import time
    import importlib

    rpc = importlib.import_module("ember.distributed.rpc")
    try:
        return getattr(rpc, name)
    except AttributeError:
        raise AttributeError(
            f"module 'ember._C._distributed_rpc' has no attribute {name!r}"
        ) from None


_distributed_rpc = _types.ModuleType("ember._C._distributed_rpc")
_distributed_rpc.__getattr__ = _distributed_rpc_getattr
_sys.modules.setdefault("ember._C._distributed_rpc", _distributed_rpc)


def __getattr__(name: str):
    if name == "PyTorchFileReader":  # torch._C.PyTorchFileReader (core/_pytorch_file.py)
        from ._pytorch_file import PyTorchFileReader

        return PyTorchFileReader
    if name in ("Graph", "Node", "Value"):  # torch._C.Graph: jit._get_trace_graph's objects
        from .jit import _trace_graph

        return getattr(_trace_graph, name)
    raise AttributeError(f"module 'ember._C' has no attribute {name!r}")
