"""``torch._C``: the few names of PyTorch's extension module that Python programs reach for.

Only the ``__torch_function__`` switches (``core/overrides.py``) live here: ember has no C++
extension, and everything else of ``torch._C`` is internal to PyTorch.
"""

from __future__ import annotations

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

    return _TRACING_STATE if is_tracing() else None


_TRACING_STATE = _types.SimpleNamespace(name="ember.jit.trace")

#: torch._C._nn: of ATen's nn bindings, the argument parser of ``.to()``
_nn = _types.ModuleType("ember._C._nn")
_nn._parse_to = _nn_parse_to


def __getattr__(name: str):
    if name == "PyTorchFileReader":  # torch._C.PyTorchFileReader (core/_pytorch_file.py)
        from ._pytorch_file import PyTorchFileReader

        return PyTorchFileReader
    raise AttributeError(f"module 'ember._C' has no attribute {name!r}")
