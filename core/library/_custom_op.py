"""The operator registry and the objects a user calls: ``OpOverload`` (``ember.ops.ns.op.default``),
``OpOverloadPacket`` (``ember.ops.ns.op``) and ``CustomOpDef`` (what ``@custom_op`` returns).

ember has no C++ dispatcher, so one Python function does its job per call (``_OpDef.call``):

1. a Proxy among the arguments (an ``ember.fx`` / ``ember.export`` / ``ember.compile`` trace)
   records the overload as ONE ``call_function`` node and stops;
2. the arguments are bound to the schema (a bad call names the op and the argument);
3. a batched tensor (inside ``ember.func.vmap``) runs the op once per sample and stacks;
4. autograd: when a tensor argument requires grad, the kernel runs inside an autograd
   ``Function`` whose backward is the registered one (or raises, naming the op, when none is);
5. the kernel is picked by the first tensor's device type: the fake kernel on ``meta``, a
   ``register_kernel`` kernel for that device, else the default (the decorated function).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _interop
from ..autograd import grad_mode
from ..backend.meta import MetaArray
from ..tensor import Tensor
from ._schema import FunctionSchema

__all__ = ["OpOverload", "OpOverloadPacket", "CustomOpDef", "get_op", "OPS"]

# "ns::name" -> _OpDef
OPS: dict[str, _OpDef] = {}
_VMAP = "ember.func._vmap_tensor"


def get_op(qualname: str) -> _OpDef:
    op = OPS.get(qualname)
    if op is None:
        raise RuntimeError(
            f"operator {qualname!r} is not defined: define it first with "
            "ember.library.custom_op, ember.library.define or Library(ns, 'DEF').define"
        )
    return op


def _tensors_in(values) -> list:
    out = []
    for v in values:
        if isinstance(v, Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(e for e in v if isinstance(e, Tensor))
    return out


def _find_proxy(args: tuple, kwargs: dict):
    if "ember.fx.proxy" not in sys.modules:  # nothing is tracing: no proxy can exist
        return None
    from ember.fx.proxy import Proxy

    for v in (*args, *kwargs.values()):
        if isinstance(v, Proxy):
            return v
        if isinstance(v, (list, tuple)):
            for e in v:
                if isinstance(e, Proxy):
                    return e
    return None


class _OpDef:
    """Everything registered for one operator."""

    def __init__(self, schema: FunctionSchema, default_kernel: Callable | None = None) -> None:
        self.schema = schema
        self.qualname = schema.name
        self.ns, self.name = schema.name.split("::")
        self.kernels: dict[str | None, Callable] = {}
        if default_kernel is not None:
            self.kernels[None] = default_kernel
        self.fake: Callable | None = None
        self.backward: Callable | None = None
        self.setup_context: Callable | None = None
        self.torch_dispatch: dict[type, Callable] = {}
        self.composite: Callable | None = None  # Library.impl(..., "CompositeImplicitAutograd")
        self.vmap_rule: Callable | None = None  # register_vmap: (info, in_dims, *args)
        self._signature = schema.signature()
        self._n_args = len(schema.arguments)
        self._has_kwonly = any(a.kwarg_only for a in schema.arguments)
        self._tensor_slots = [i for i, a in enumerate(schema.arguments) if a.type == "Tensor"]
        self._writes = [i for i, a in enumerate(schema.arguments) if a.is_write]
        self._autograd_cls: type | None = None
        self.inputs_stack: list[tuple] = []  # the caller's inputs while the Function runs
        self.overload = OpOverload(self)
        self.packet = OpOverloadPacket(self)
        if schema.mutated_args:  # keep its calls in traced graphs even when nothing reads them
            from ember.fx.node import has_side_effect

            has_side_effect(self.overload)

    # ---- the call -----------------------------------------------------------------------
    def bind(self, args: tuple, kwargs: dict) -> list:
        if not kwargs and len(args) == self._n_args:  # the common call: all positional
            return list(args)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.qualname}: {e} (schema: {self.schema})") from None
        bound.apply_defaults()
        return [bound.arguments[a.name] for a in self.schema.arguments]

    def call(self, args: tuple, kwargs: dict) -> Any:
        proxy = _find_proxy(args, kwargs)
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", self.overload, args, kwargs)
        values = self.bind(args, kwargs)
        self._check_types(values)
        tensors = _tensors_in(values)
        if self.torch_dispatch:
            for t in tensors:
                rule = self.torch_dispatch.get(type(t))
                if rule is not None:
                    return rule(type(t), self.overload, (type(t),), tuple(values), {})
        if tensors and _VMAP in sys.modules:
            from ember.func._vmap_tensor import is_batched

            if any(is_batched(t) for t in tensors):
                from ._vmap_fallback import loop_over_batch

                return loop_over_batch(self, values)
        if self.composite is not None:  # made of ember ops: autograd sees through it
            return self.run(self.composite, values)
        if grad_mode.is_grad_enabled() and any(t.requires_grad for t in tensors):
            if self.schema.mutated_args:
                names = [
                    a.name
                    for a, v in zip(self.schema.arguments, values, strict=True)
                    if a.is_write and getattr(v, "requires_grad", False)
                ]
                if names:
                    raise RuntimeError(
                        f"{self.qualname}: the mutated argument(s) {names} require grad; "
                        "autograd does not support custom ops that mutate such inputs"
                    )
            if any(
                isinstance(v, (list, tuple)) and any(getattr(e, "requires_grad", False) for e in v)
                for v in values
            ):
                raise NotImplementedError(
                    f"{self.qualname}: autograd through a Tensor[] argument of a custom op is "
                    "not supported; pass the tensors as separate Tensor arguments"
                )
            pos, kw = self.split(values)
            fn = self._autograd_function()
            # setup_context sees these tensors, as in torch (attributes such as ``ctx.x = x``
            # then stay connected to the graph for double backward); the Function's own
            # forward gets detached wrappers of the same arrays
            self.inputs_stack.append(tuple(pos))
            try:
                return fn.apply(*pos, kw)
            finally:
                self.inputs_stack.pop()
        with grad_mode.no_grad():
            return self.redispatch(values, tensors)

    def split(self, values: list) -> tuple[list, dict]:
        """Positional values and the keyword-only ones (by name), as the kernel takes them."""
        if not self._has_kwonly:
            return values, {}
        pos, kw = [], {}
        for a, v in zip(self.schema.arguments, values, strict=True):
            if a.kwarg_only:
                kw[a.name] = v
            else:
                pos.append(v)
        return pos, kw

    def run(self, fn: Callable, values: list) -> Any:
        pos, kw = self.split(values)
        return fn(*pos, **kw)

    def _check_types(self, values: list) -> None:
        for i in self._tensor_slots:
            if not isinstance(values[i], Tensor):
                a, v = self.schema.arguments[i], values[i]
                raise TypeError(
                    f"{self.qualname}: argument {a.name!r} must be a Tensor, got "
                    f"{type(v).__name__} (schema: {self.schema})"
                )

    def redispatch(self, values: list, tensors: list | None = None) -> Any:
        """Run the kernel for the tensors' device type (below autograd)."""
        dispatch = sys.modules.get("ember._dispatch")  # loaded once a mode or subclass exists
        if dispatch is not None and getattr(dispatch._TLS, "stack", None):
            pos, kw = self.split(values)  # a dispatch mode sees the op (docs/torch_dispatch.md)
            return dispatch.call_mode(self.overload, tuple(pos), kw)
        if tensors is None:
            tensors = _tensors_in(values)
        if not tensors:
            dev = "cpu"
        else:
            data = tensors[0]._data
            dev = (
                "cpu"
                if type(data) is np.ndarray
                else "meta"
                if type(data) is MetaArray
                else tensors[0].device.type
            )
        if dev == "meta":
            if self.fake is None:
                if not self.schema.returns:  # an op returning nothing needs no fake kernel
                    return None
                raise RuntimeError(
                    f"{self.qualname}: there is no fake (meta) implementation; it was called "
                    f"on meta tensors (or traced with fake tensors). Register one with "
                    f"@ember.library.register_fake('{self.qualname}') or @op.register_fake"
                )
            return self.run(self.fake, values)
        kernel = self.kernels.get(dev) or self.kernels.get(None)
        if kernel is None:
            have = sorted(k or "default" for k in self.kernels) or ["none"]
            raise NotImplementedError(
                f"{self.qualname}: no kernel registered for device type {dev!r} (registered: "
                f"{', '.join(have)}); use register_kernel('{self.qualname}', '{dev}')"
            )
        out = self.run(kernel, values)
        for i in self._writes:  # the kernel may have written through .numpy()
            if values[i] is not None:
                _interop.bump_version(values[i])
        if not self.schema.returns and out is not None:
            raise RuntimeError(
                f"{self.qualname}: the schema returns nothing (-> ()) but the kernel returned "
                f"{type(out).__name__}"
            )
        return out

    def _autograd_function(self) -> type:
        cls = self._autograd_cls
        if cls is None:
            from ._autograd import make_autograd_function

            cls = self._autograd_cls = make_autograd_function(self)
        return cls

    def set_autograd(self, backward: Callable, setup_context: Callable | None) -> None:
        if not callable(backward):
            raise TypeError(f"register_autograd: backward must be callable, got {backward!r}")
        if setup_context is not None and not callable(setup_context):
            raise TypeError("register_autograd: setup_context must be callable or None")
        self.backward, self.setup_context = backward, setup_context
        self._autograd_cls = None


class OpOverload:
    """``ember.ops.<ns>.<name>.default``: the callable operator (a graph node's target)."""

    def __init__(self, op: _OpDef) -> None:
        self._op = op
        self._overloadname = "default"
        self.__name__ = op.name  # graph nodes are named after it, as torch's (``crop``)
        self.__qualname__ = f"{op.name}.default"

    @property
    def _schema(self) -> FunctionSchema:
        return self._op.schema

    @property
    def _fx_target_name(self) -> str:  # fx: the code/JSON name, resolvable through ember.ops
        return f"ember.ops.{self._op.ns}.{self._op.name}.default"

    def name(self) -> str:
        return f"{self._op.qualname}"

    @property
    def namespace(self) -> str:
        return self._op.ns

    def __call__(self, *args, **kwargs):
        return self._op.call(args, kwargs)

    def __repr__(self) -> str:
        return f"{self._op.ns}.{self._op.name}.default"

    __str__ = __repr__

    def redispatch(self, *args, **kwargs):
        """The kernel below autograd (for tests and torch_dispatch rules)."""
        return self._op.redispatch(self._op.bind(args, kwargs))


class OpOverloadPacket:
    """``ember.ops.<ns>.<name>``: callable, with ``.default`` and ``.overloads()``."""

    def __init__(self, op: _OpDef) -> None:
        self._op = op
        self.__name__ = op.name
        self.__qualname__ = op.name

    @property
    def default(self) -> OpOverload:
        return self._op.overload

    @property
    def _fx_target_name(self) -> str:  # a packet as a node's target (a tracer may record it)
        return f"ember.ops.{self._op.ns}.{self._op.name}"

    def overloads(self) -> list[str]:
        return ["default"]

    @property
    def _schemas(self) -> dict[str, FunctionSchema]:
        return {"": self._op.schema}

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"operator {self._op.qualname!r} has no overload {name!r} (it has: default)"
        )

    def __call__(self, *args, **kwargs):
        return self._op.call(args, kwargs)

    def __repr__(self) -> str:
        return f"<OpOverloadPacket(op='{self._op.ns}.{self._op.name}')>"


class CustomOpDef:
    """What :func:`ember.library.custom_op` returns: call it like the function it wraps."""

    def __init__(self, op: _OpDef, fn: Callable) -> None:
        self._op = op
        self._init_fn = fn
        self.__name__ = fn.__name__
        self.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__  # shows the user's module in reprs

    @property
    def _qualname(self) -> str:
        return self._op.qualname

    @property
    def _opoverload(self) -> OpOverload:
        return self._op.overload

    @property
    def _schema(self) -> FunctionSchema:
        return self._op.schema

    def __call__(self, *args, **kwargs):
        return self._op.call(args, kwargs)

    def __repr__(self) -> str:
        return f"<CustomOpDef({self._op.qualname})>"

    def register_fake(self, fn: Callable) -> Callable:
        """Register the shape/dtype rule (it runs on meta tensors); returns ``fn``."""
        if not callable(fn):
            raise TypeError(f"register_fake expects a function, got {fn!r}")
        self._op.fake = fn
        return fn

    def register_kernel(self, device_types: str | tuple, fn: Callable | None = None):
        """Register a kernel for ``device_types`` (``"cpu"``, ``"cuda"``); decorator or call."""
        types = _device_types(device_types)

        def register(f: Callable) -> Callable:
            for t in types:
                self._op.kernels[t] = f
            return f

        return register(fn) if fn is not None else register

    def register_autograd(
        self, backward: Callable, /, *, setup_context: Callable | None = None
    ) -> None:
        """``backward(ctx, *grads)`` returns one gradient per input; ``setup_context(ctx,
        inputs, output)`` saves what it needs on ``ctx``."""
        self._op.set_autograd(backward, setup_context)

    def register_vmap(self, fn: Callable | None = None):
        """``fn(info, in_dims, *args) -> (output, out_dims)`` batches the op under vmap."""

        def register(f: Callable) -> Callable:
            if not callable(f):
                raise TypeError(f"register_vmap expects a function, got {f!r}")
            self._op.vmap_rule = f
            return f

        return register(fn) if fn is not None else register

    def register_torch_dispatch(self, torch_dispatch_class: type, fn: Callable | None = None):
        """Run ``fn(cls, op, types, args, kwargs)`` when a tensor of that subclass is an input."""

        def register(f: Callable) -> Callable:
            self._op.torch_dispatch[torch_dispatch_class] = f
            return f

        return register(fn) if fn is not None else register


def _device_types(device_types) -> list[str | None]:
    if device_types is None:
        return [None]
    if isinstance(device_types, str):
        device_types = (device_types,)
    out = []
    for t in device_types:
        if t not in ("cpu", "cuda", "meta", "mps", "xpu"):
            raise ValueError(f"unknown device type {t!r}: expected 'cpu' or 'cuda'")
        out.append(t)
    return out
