"""Conversion tables: function/method name -> handler, module class -> handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

FUNCTIONS: dict[str, Callable] = {}  # short name ("relu", "add", "getitem") -> handler
METHODS: dict[str, Callable] = {}  # Tensor method names that differ from the functions
MODULES: dict[type, Callable] = {}  # module class -> handler(ctx, module, *args, **kwargs)
_loaded = False


def fn(*names: str, method_only: bool = False):
    """Register a handler ``h(ctx, *args, **kwargs)`` under function/method names."""

    def deco(h):
        for n in names:
            (METHODS if method_only else FUNCTIONS)[n] = h
        return h

    return deco


def module(*classes: type):
    def deco(h):
        for c in classes:
            MODULES[c] = h
        return h

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        # importing the handler modules registers their conversions
        from . import (  # noqa: F401  # noqa: F401
            _modules,
            _ops_activation,
            _ops_attention,
            _ops_basic,
            _ops_control,
            _ops_nn,
            _ops_quant,
            _ops_shape,
            _ops_vision,
        )


def _short(target: Any) -> str:
    from ember.fx._names import target_name

    return target_name(target).rsplit(".", 1)[-1]


def _custom(short: str):
    from . import _custom_symbolics

    for key, (sym, _) in _custom_symbolics.items():
        if key.split("::", 1)[1] == short:
            return _symbolic_adapter(sym)
    return None


def find_function(target: Any) -> tuple[Callable | None, str]:
    _load()
    short = _short(target)
    from ember.fx._names import target_name

    return _custom(short) or FUNCTIONS.get(short), target_name(target)


def find_method(name: str) -> tuple[Callable | None, str]:
    _load()
    return _custom(name) or METHODS.get(name) or FUNCTIONS.get(name), f"Tensor.{name}"


def find_module(mod: Any) -> Callable | None:
    _load()
    for cls in type(mod).__mro__:
        h = MODULES.get(cls)
        if h is not None:
            # a subclass that overrides forward is traced through instead
            return (
                h if getattr(type(mod), "forward", None) is getattr(cls, "forward", None) else None
            )
    return None


class _GraphContext:
    """The ``g`` a custom symbolic receives: ``g.op("Relu", x, alpha_f=0.1)``."""

    _SUFFIX = ("_i", "_f", "_s", "_t", "_is", "_fs", "_ss")

    def __init__(self, ctx) -> None:
        self._ctx = ctx
        self.opset = ctx.opset

    def op(self, op_type: str, *inputs: Any, outputs: int = 1, **attrs: Any):
        domain = ""
        if "::" in op_type:
            domain, op_type = op_type.split("::", 1)
            domain = "" if domain == "onnx" else domain
        clean = {}
        for k, v in attrs.items():
            for suf in self._SUFFIX:
                if k.endswith(suf):
                    k = k[: -len(suf)]
                    break
            clean[k] = v
        return self._ctx.op(op_type, list(inputs), n_out=outputs, domain=domain, **clean)

    def constant(self, value: Any) -> str:
        return self._ctx.const(np.asarray(value))


def _symbolic_adapter(sym: Callable) -> Callable:
    def handler(ctx, *args, **kwargs):
        from ember import Tensor

        from ._context import Sym

        def conv(v):
            if isinstance(v, Sym):
                return v.name
            if isinstance(v, Tensor):
                return ctx.name_of(v)
            if isinstance(v, (list, tuple)):
                return type(v)(conv(e) for e in v)
            return v

        return sym(_GraphContext(ctx), *conv(args), **{k: conv(v) for k, v in kwargs.items()})

    return handler
