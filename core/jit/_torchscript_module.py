"""The ``nn.Module`` base class of modules loaded from a PyTorch TorchScript archive, and how
``data.pkl``'s pickled ``__torch__`` objects become instances of it."""

from __future__ import annotations

from typing import Any

from ember.nn import Module, Parameter

__all__ = ["TorchScriptModule", "build_object", "new_object"]

# torch.nn.Module's own bookkeeping that TorchScript pickles with every module
_SKIPPED = {"_is_full_backward_hook"}


class TorchScriptModule(Module):
    """A module loaded by ``ember.jit.load`` from a PyTorch TorchScript archive
    (``torch.jit.save`` of ``torch.jit.script``/``torch.jit.trace``).

    One Python class per ``__torch__`` class of the archive derives from this one; its
    methods are the archive's TorchScript code, run on ember's operators (autograd works
    through them). Parameters, buffers and submodules are registered as in the original
    module, so ``state_dict``, ``parameters``, ``named_modules``, ``train``/``eval`` and
    ``.to`` work as on any ember Module. ``code`` is the class's TorchScript source.
    """

    _ts_source = ""
    original_name = "Module"
    __parameters__: list[str] = []
    __buffers__: list[str] = []

    @property
    def code(self) -> str:
        """The TorchScript source of this module's class, as stored in the archive."""
        return type(self)._ts_source

    def _get_name(self) -> str:
        return "RecursiveScriptModule"

    def extra_repr(self) -> str:
        return f"original_name={self.original_name}"

    def save(self, f: Any, _extra_files: dict | None = None) -> None:
        raise NotImplementedError(
            "a module loaded from a PyTorch TorchScript archive cannot be saved by "
            "ember.jit.save; save its state_dict() with ember.save instead"
        )


def _build_module(mod: TorchScriptModule, state: dict) -> None:
    cls = type(mod)
    params, buffers = set(cls.__parameters__), set(cls.__buffers__)
    for key, value in state.items():
        if not isinstance(key, str) or key in _SKIPPED:
            continue
        if key == "training":
            mod.training = bool(value)
        elif key in params:
            if value is not None and not isinstance(value, Parameter):
                value = Parameter(value, requires_grad=value.requires_grad)
            mod.register_parameter(key, value)
        elif key in buffers:
            mod.register_buffer(key, value)
        elif isinstance(value, Module):
            mod.add_module(key, value)
        else:
            mod.__dict__[key] = value  # a TorchScript attribute (int, list, Tensor, ...)


def build_object(obj: Any, state: Any) -> None:
    """BUILD of a pickled ``__torch__`` object: a module's attributes, or a TorchScript
    class's ``__setstate__`` (compiled from the archive) / attribute dict."""
    setstate = getattr(type(obj), "__setstate__", None)
    if isinstance(obj, TorchScriptModule) and isinstance(state, dict):
        _build_module(obj, state)
        return
    if setstate is not None and getattr(setstate, "__code__", None) is not None:
        setstate(obj, state)  # the archive's own __setstate__ (TorchScript code)
        return
    if isinstance(state, dict):
        obj.__dict__.update(state)
    else:
        raise RuntimeError(f"bad pickled state for {type(obj).__name__}: {type(state)}")


def new_object(cls: type) -> Any:
    """An empty instance of an archive's class (modules get Module's bookkeeping)."""
    obj = cls.__new__(cls)
    if isinstance(obj, TorchScriptModule):
        Module.__init__(obj)
    return obj
