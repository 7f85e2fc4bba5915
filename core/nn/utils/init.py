"""``skip_init``: build a module without running its parameter initialization."""

from __future__ import annotations

import inspect

from ..module import Module

__all__ = ["skip_init"]


def skip_init(module_cls, *args, **kwargs) -> Module:
    r"""Instantiate ``module_cls(*args, **kwargs)`` with its parameters and buffers left
    uninitialized, as if made with :func:`ember.empty`.

    The module must accept a ``device`` argument. As in PyTorch, the module is built on the
    ``meta`` device (its initialization costs nothing there) and then given empty storage on
    ``device`` (default: CPU) with ``Module.to_empty``; the contents are
    unspecified.

    Args:
        module_cls: class object; should be a subclass of :class:`ember.nn.Module`.
        args: args to pass to the module's constructor.
        kwargs: kwargs to pass to the module's constructor.

    Returns:
        Instantiated module with uninitialized parameters / buffers.
    """
    if not (isinstance(module_cls, type) and issubclass(module_cls, Module)):
        raise RuntimeError(f"Expected a Module; got {module_cls}")
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    final_device = kwargs.pop("device", "cpu")
    kwargs["device"] = "meta"
    return module_cls(*args, **kwargs).to_empty(device=final_device)
