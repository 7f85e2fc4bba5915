"""``Proxy``: the stand-in value that records every operation on it as a graph node."""

from __future__ import annotations

import dis
import inspect
import operator
from typing import Any

from .node import Node

__all__ = ["Proxy", "Attribute", "ParameterProxy", "TraceError", "GraphAppendingTracer"]


_NO_META = object()  # ``Tracer.concrete_meta``'s "no value": record the query as a node


class TraceError(ValueError):
    """Raised when a traced program depends on the values of its inputs."""


class GraphAppendingTracer:
    """The minimal tracer a bare ``Proxy(node)`` uses: appends nodes to the node's graph."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.root = None

    def create_proxy(
        self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None
    ):
        from .tracer import _create_arg_basic

        node = self.graph.create_node(
            kind,
            target,
            _create_arg_basic(self, args),
            _create_arg_basic(self, kwargs),
            name,
            type_expr,
        )
        return proxy_factory_fn(node) if proxy_factory_fn else Proxy(node, self)

    def create_arg(self, a):
        from .tracer import _create_arg_basic

        return _create_arg_basic(self, a)

    def iter(self, obj):
        raise TraceError("Proxy object cannot be iterated")

    def to_bool(self, obj):
        raise TraceError("symbolically traced variables cannot be used as inputs to control flow")

    def keys(self, obj):
        return Attribute(obj, "keys")()


class Proxy:
    """Stands for the value of ``node`` while tracing; operations on it append nodes.

    Python control flow that needs a proxy's *value* (``if x.sum() > 0``, ``for row in x``,
    ``len(x)``) cannot be recorded and raises :class:`TraceError`.
    """

    def __init__(self, node: Node, tracer=None) -> None:
        if tracer is None:
            tracer = GraphAppendingTracer(node.graph)
        self.tracer = tracer
        self.node = node

    def __repr__(self) -> str:
        return f"Proxy({self.node.name})"

    def __hash__(self) -> int:
        return id(self)

    def __getattr__(self, k: str) -> Attribute:
        if k.startswith("__") and k.endswith("__"):  # copy/pickle probes: not graph attributes
            raise AttributeError(k)
        return Attribute(self, k)

    def __call__(self, *args, **kwargs) -> Proxy:
        return self.tracer.create_proxy("call_method", "__call__", (self,) + args, kwargs)

    def __iter__(self):
        frame = inspect.currentframe().f_back
        # ``a, b = proxy`` unpacks a known count: allow it, as torch.fx does
        for inst in dis.get_instructions(frame.f_code):
            if inst.offset == frame.f_lasti:
                if inst.opname == "UNPACK_SEQUENCE":
                    return (self[i] for i in range(inst.argval))
                break
        return self.tracer.iter(self)

    def __bool__(self) -> bool:
        return self.tracer.to_bool(self)

    # Size queries: a tracer with ``concrete_meta`` (ember.compile's, when it specializes on
    # sizes as torch.compile does by default) answers them with the traced example's values;
    # otherwise they are recorded as graph nodes, as torch.fx does.
    def _concrete(self, what: str, *args: Any) -> Any:
        hook = getattr(self.tracer, "concrete_meta", None)
        return _NO_META if hook is None else hook(self, what, args)

    @property
    def shape(self) -> Any:
        v = self._concrete("shape")
        return Attribute(self, "shape") if v is _NO_META else v

    @property
    def ndim(self) -> Any:
        v = self._concrete("ndim")
        return Attribute(self, "ndim") if v is _NO_META else v

    @property
    def dtype(self) -> Any:
        v = self._concrete("dtype")
        return Attribute(self, "dtype") if v is _NO_META else v

    @property
    def device(self) -> Any:
        v = self._concrete("device")
        return Attribute(self, "device") if v is _NO_META else v

    def size(self, *args: Any, **kwargs: Any) -> Any:
        v = _NO_META if kwargs else self._concrete("size", *args)
        if v is _NO_META:
            return self.tracer.create_proxy("call_method", "size", (self,) + args, kwargs)
        return v

    def dim(self) -> Any:
        v = self._concrete("dim")
        if v is _NO_META:
            return self.tracer.create_proxy("call_method", "dim", (self,), {})
        return v

    def numel(self) -> Any:
        v = self._concrete("numel")
        if v is _NO_META:
            return self.tracer.create_proxy("call_method", "numel", (self,), {})
        return v

    def nelement(self) -> Any:
        v = self._concrete("numel")
        if v is _NO_META:
            return self.tracer.create_proxy("call_method", "nelement", (self,), {})
        return v

    def __len__(self) -> int:
        v = self._concrete("len")
        if v is not _NO_META:
            return v
        raise RuntimeError(
            "'len' is not supported in symbolic tracing by default. If you want "
            "this call to be recorded, please call ember.fx.wrap('len') at "
            "module scope"
        )

    def __index__(self) -> int:
        raise TraceError(
            f"{self} cannot be used as an index or size during symbolic tracing: "
            "its value is not known"
        )

    def __int__(self) -> int:
        raise TraceError(
            f"int({self}) needs the traced value, which symbolic tracing does not have"
        )

    def __float__(self) -> float:
        raise TraceError(
            f"float({self}) needs the traced value, which symbolic tracing does not have"
        )

    def keys(self):
        return self.tracer.keys(self)

    def numpy(self, *args, **kwargs):
        raise TraceError(
            f"{self}.numpy() leaves ember's tensors, so symbolic tracing cannot "
            "record what follows; keep the computation in ember ops"
        )

    def tolist(self):
        raise TraceError(
            f"{self}.tolist() needs the traced value, which symbolic tracing does not have"
        )

    def __setitem__(self, key, value) -> None:
        # in-place writes are recorded (and kept by dead-code elimination: see node.py)
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __reduce__(self):
        raise TraceError(f"{self} cannot be pickled or copied during symbolic tracing")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        # ``torch.broadcast_tensors(proxy, ...)`` outside a symbolic trace (e3nn builds its
        # tensor-product graphs by hand from ``Proxy(graph.placeholder(...))``): the ember
        # function's dispatch hands the call here and it is recorded, as torch.fx's Proxy does
        kwargs = kwargs or {}
        from ._patch import _find_proxy

        proxy = _find_proxy(args, kwargs)
        name = getattr(func, "__name__", None)
        from ..tensor import Tensor

        if name is not None and getattr(Tensor, name, None) is func:
            return proxy.tracer.create_proxy("call_method", name, args, kwargs)
        return proxy.tracer.create_proxy("call_function", func, args, kwargs)


def _binary(op):
    def impl(self, other):
        return self.tracer.create_proxy("call_function", op, (self, other), {})

    return impl


def _reflected(op):
    def impl(self, other):
        return self.tracer.create_proxy("call_function", op, (other, self), {})

    return impl


def _unary(op):
    def impl(self):
        return self.tracer.create_proxy("call_function", op, (self,), {})

    return impl


for _name in (
    "add",
    "sub",
    "mul",
    "floordiv",
    "truediv",
    "mod",
    "pow",
    "lshift",
    "rshift",
    "and_",
    "or_",
    "xor",
    "matmul",
):
    _dunder = _name.rstrip("_")
    setattr(Proxy, f"__{_dunder}__", _binary(getattr(operator, _name)))
    setattr(Proxy, f"__r{_dunder}__", _reflected(getattr(operator, _name)))
for _name in ("eq", "ne", "lt", "gt", "le", "ge", "getitem"):
    setattr(Proxy, f"__{_name}__", _binary(getattr(operator, _name)))
for _name in ("neg", "pos", "invert", "abs"):
    setattr(Proxy, f"__{_name}__", _unary(getattr(operator, _name)))


class Attribute(Proxy):
    """``proxy.attr``: becomes a ``call_method`` if called, else a ``getattr`` node on use."""

    def __init__(self, root: Proxy, attr: str) -> None:
        self.root = root
        self.attr = attr
        self.tracer = root.tracer
        self._node = None

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = self.tracer.create_proxy(
                "call_function", getattr, (self.root, self.attr), {}
            ).node
        return self._node

    def __call__(self, *args, **kwargs) -> Proxy:
        return self.tracer.create_proxy("call_method", self.attr, (self.root,) + args, kwargs)


class ParameterProxy(Proxy):
    """A parameter's proxy whose shape is a constant (``Tracer(param_shapes_constant=True)``)."""

    def __init__(self, tracer, node: Node, name: str, param) -> None:
        super().__init__(node, tracer)
        self.param = param
        self.name = name

    def __repr__(self) -> str:
        return f"ParameterProxy({self.name})"

    @property
    def shape(self):
        return self.param.shape

    def size(self, dim: int | None = None):
        return self.param.size() if dim is None else self.param.size(dim)

    def dim(self) -> int:
        return self.param.dim()

    @property
    def ndim(self) -> int:
        return self.param.ndim

    def numel(self) -> int:
        return self.param.numel()

    def nelement(self) -> int:
        return self.param.numel()


def _is_proxy(a: Any) -> bool:
    return isinstance(a, Proxy)
