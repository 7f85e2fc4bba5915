"""``Tracer`` and ``symbolic_trace``: run ``forward`` on Proxies and record a Graph."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from . import _fused, _patch
from ._trace_helpers import (  # noqa: F401  (re-exported: proxy, export and compile import them)
    _BASE_TYPES,
    _REFLECTABLE,
    _create_arg_basic,
    _tensor_method_wrapper,
    _unpack_varargs,
    _user_line,
)
from .graph import Graph
from .node import Node
from .proxy import ParameterProxy, Proxy, TraceError

__all__ = ["PH", "Tracer", "symbolic_trace"]


class _PH:
    """``concrete_args={"x": PH}`` keeps ``x`` a (symbolic) placeholder."""

    def __repr__(self) -> str:
        return "PH"


#: Pass as a value of ``concrete_args`` to keep that argument a symbolic placeholder.
PH = _PH()


class Tracer:
    """Turns a Module or function into a :class:`Graph` by running it on Proxies.

    Subclass it and override ``is_leaf_module`` (which modules become ``call_module`` nodes),
    ``create_proxy``/``create_node``/``create_arg`` or ``call_module`` to customise tracing.
    """

    proxy_buffer_attributes: bool = False  # as torch.fx: buffers become get_attr when used

    def __init__(
        self,
        autowrap_modules: tuple = (math,),
        autowrap_functions: tuple = (),
        param_shapes_constant: bool = False,
    ) -> None:
        self._autowrap_ids = _patch.autowrap_ids(tuple(autowrap_modules), tuple(autowrap_functions))
        self._autowrap_ids |= _fused.fused_leaf_ids()  # MultiheadAttention's ``_mha``
        self._autowrap_extra = tuple(autowrap_functions)
        self._autowrap_modules = tuple(autowrap_modules)
        self.param_shapes_constant = param_shapes_constant
        self.record_stack_traces = False  # True: node.meta["stack_trace"] = the user's line
        self.graph: Graph | None = None
        self.root = None
        self.submodule_paths: dict[int, str] | None = None
        self.tensor_attrs: dict[int, str] = {}
        self._param_names: dict[int, str] = {}
        self._patcher: _patch.Patcher | None = None
        # the modules being traced through: node.meta["nn_module_stack"] names a node's origin
        self.module_stack: dict[str, tuple[str, str]] = {}

    # ---- node and proxy creation -----------------------------------------------------------
    def create_node(
        self,
        kind: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        name: str | None = None,
        type_expr: Any = None,
    ) -> Node:
        node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        if self.module_stack:
            node.meta["nn_module_stack"] = dict(self.module_stack)
        if self.record_stack_traces and kind not in ("placeholder", "output"):
            node.meta["stack_trace"] = _user_line().strip(" ()")
        return node

    def proxy(self, node: Node) -> Proxy:
        return Proxy(node, self)

    def create_proxy(
        self,
        kind: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        name: str | None = None,
        type_expr: Any = None,
        proxy_factory_fn: Callable[[Node], Proxy] | None = None,
    ) -> Proxy:
        args_ = self.create_arg(args)
        kwargs_ = self.create_arg(kwargs)
        node = self.create_node(kind, target, args_, kwargs_, name, type_expr)
        return proxy_factory_fn(node) if proxy_factory_fn is not None else self.proxy(node)

    def create_arg(self, a: Any) -> Any:
        """Map a Python value to a node argument; tensors of the root become get_attr nodes."""
        from ember import Tensor
        from ember.nn import Module, Parameter

        if isinstance(a, Parameter):
            name = self._param_names.get(id(a))
            if name is None:
                raise NameError("parameter is not a member of this module")
            return self.create_node("get_attr", name, (), {})
        if isinstance(a, Tensor):
            name = self.tensor_attrs.get(id(a))
            if name is None:  # a tensor made inside forward: keep it as a root attribute
                i = 0
                while hasattr(self.root, f"_tensor_constant{i}"):
                    i += 1
                name = f"_tensor_constant{i}"
                setattr(self.root, name, a)
                self.tensor_attrs[id(a)] = name
            return self.create_node("get_attr", name, (), {})
        if isinstance(a, Module):
            # a submodule passed as a value (the branch graphs of a scripted cond/while_loop
            # traced through): read it by path, as torch.fx does for installed submodules
            path = None
            if self.submodule_paths is not None:
                path = self.submodule_paths.get(id(a))
            if path is None:
                path = next((n for n, m in self.root.named_modules() if m is a), None)
            if path:
                return self.create_node("get_attr", path, (), {})
            raise TraceError(
                f"a Module ({type(a).__name__}) cannot be a graph argument; call it instead"
            )
        return _create_arg_basic(self, a)

    # ---- modules and attributes ----------------------------------------------------------
    def is_leaf_module(self, m, module_qualified_name: str) -> bool:
        """ember.nn's own modules (except Sequential) are leaves: recorded, not traced into."""
        from ember.nn import Sequential

        return (type(m).__module__ or "").startswith("ember.nn") and not isinstance(m, Sequential)

    def path_of_module(self, mod) -> str:
        path = self.submodule_paths.get(id(mod)) if self.submodule_paths is not None else None
        if path is None:
            for name, m in self.root.named_modules():
                if m is mod:
                    return name
            raise NameError("module is not installed as a submodule")
        return path

    def call_module(self, m, forward: Callable, args: tuple, kwargs: dict) -> Any:
        """Leaf modules become ``call_module`` nodes; the others are traced through."""
        qualname = self.path_of_module(m)
        if not self.is_leaf_module(m, qualname):
            fwd = getattr(type(m), "forward", None)
            if self._patcher is not None:
                if hasattr(fwd, "__globals__"):
                    self._patcher.autowrap_globals(fwd.__globals__, self._autowrap_ids)
                self._wrap_function_slots(m)
            key = qualname or "<root>"
            had = key in self.module_stack
            self.module_stack[key] = (qualname, f"{type(m).__module__}.{type(m).__qualname__}")
            try:
                return forward(*args, **kwargs)
            finally:
                if not had:
                    self.module_stack.pop(key, None)
        return self.create_proxy("call_module", qualname, args, kwargs)

    def _wrap_function_slots(self, m) -> None:
        """Wrap the functions ``m`` keeps as attributes for the rest of the trace.

        ``ReLU._fn = staticmethod(F.relu)`` and ``TransformerEncoderLayer.activation = F.relu``
        hold the function object itself, which the namespace and globals patches never reach:
        traced through, such a module would run F.relu's body on a Proxy.
        """
        patcher, ids = self._patcher, self._autowrap_ids
        for klass in type(m).__mro__:
            if klass is object or not patcher.first_visit(klass):
                continue
            for name, raw in list(vars(klass).items()):
                if isinstance(raw, staticmethod) and id(raw.__func__) in ids:
                    patcher.set_attr(
                        klass, name, staticmethod(_patch.tracing_wrapper(raw.__func__))
                    )
        if patcher.first_visit(m):
            inst = vars(m)
            for name, value in list(inst.items()):
                if not name.startswith("__") and callable(value) and id(value) in ids:
                    patcher.set_item(inst, name, _patch.tracing_wrapper(value))

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        """Parameters (and buffers) read in ``forward`` become get_attr proxies."""
        from ember import Tensor
        from ember.nn import Parameter

        if isinstance(attr_val, Parameter) or (
            self.proxy_buffer_attributes and isinstance(attr_val, Tensor)
        ):
            name = (
                self._param_names.get(id(attr_val))
                if isinstance(attr_val, Parameter)
                else self.tensor_attrs.get(id(attr_val))
            )
            if name is not None:
                if name not in parameter_proxy_cache:
                    factory = None
                    if self.param_shapes_constant and isinstance(attr_val, Parameter):

                        def factory(node, n=name, p=attr_val):
                            return ParameterProxy(self, node, n, p)

                    parameter_proxy_cache[name] = self.create_proxy(
                        "get_attr", name, (), {}, proxy_factory_fn=factory
                    )
                return parameter_proxy_cache[name]
        return attr_val

    # ---- control flow hooks (override to customise) --------------------------------------
    def iter(self, obj: Proxy):
        raise TraceError(
            "Proxy object cannot be iterated. This can be attempted when the Proxy "
            "is used in a loop or as a *args or **kwargs function argument. See "
            "docs/fx.md for what control flow can be traced" + _user_line()
        )

    def to_bool(self, obj: Proxy) -> bool:
        raise TraceError(
            "symbolically traced variables cannot be used as inputs to control flow" + _user_line()
        )

    def keys(self, obj: Proxy):
        return self.create_proxy("call_method", "keys", (obj,), {})

    # ---- trace ---------------------------------------------------------------------------
    def trace(self, root, concrete_args: dict[str, Any] | None = None) -> Graph:
        """Trace ``root`` (a Module or a function) and return the recorded Graph."""
        from ember.nn import Module

        if isinstance(root, Module):
            self.root = root
            fn = type(root).forward
            if fn is Module.forward:
                raise RuntimeError(
                    f'Module [{type(root).__name__}] is missing the required "forward" function'
                )
        elif callable(root):
            self.root = Module()
            fn = root
        else:
            raise TypeError(
                f"symbolic_trace: expected a Module or a function, got {type(root).__name__}"
            )
        self.graph = Graph(tracer_cls=type(self))
        self._index_root()
        concrete_args = dict(concrete_args or {})
        args = self._placeholders(fn, isinstance(root, Module), concrete_args)
        cache: dict[str, Proxy] = {}
        with _patch.Patcher() as patcher:
            self._patcher = patcher
            try:
                self._patch_all(patcher, cache, fn)
                if isinstance(root, Module):
                    self._wrap_function_slots(root)
                    args = [root, *args]
                result = _unpack_varargs(fn)(*args)
                self.create_node("output", "output", (self.create_arg(result),), {})
            finally:
                self._patcher = None
        self.submodule_paths = None
        return self.graph

    def _index_root(self) -> None:
        from ember import Tensor

        root = self.root
        self.submodule_paths = {id(m): n for n, m in root.named_modules()}
        self._param_names = {id(p): n for n, p in root.named_parameters()}
        attrs: dict[int, str] = {}
        for mname, m in root.named_modules():
            for k, v in m.__dict__.items():  # plain tensor attributes (torch's tensor_attrs)
                if isinstance(v, Tensor):
                    attrs.setdefault(id(v), f"{mname}.{k}" if mname else k)
        for n, b in root.named_buffers():
            attrs.setdefault(id(b), n)
        self.tensor_attrs = attrs

    def _placeholders(self, fn: Callable, is_method: bool, concrete_args: dict) -> list:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1 if is_method else 0 :]
        unknown = set(concrete_args) - {p.name for p in params}
        if unknown:
            raise TypeError(
                f"concrete_args names {sorted(unknown)} are not parameters of "
                f"{getattr(fn, '__qualname__', fn)}"
            )
        args = []
        for p in params:
            if p.kind == p.KEYWORD_ONLY:
                raise TraceError(
                    f"keyword-only argument {p.name!r} is not supported by "
                    "symbolic_trace; give it a default in concrete_args"
                )
            target = (
                "*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else ""
            ) + p.name
            if p.name in concrete_args and concrete_args[p.name] is not PH:
                # the value is baked into the trace; the input stays in the signature
                self.create_node("placeholder", p.name, (concrete_args[p.name],), {})
                args.append(concrete_args[p.name])
                continue
            if target.startswith("**"):
                raise TraceError(f"**{p.name} is not supported by symbolic_trace")
            default = () if p.default is inspect.Parameter.empty else (p.default,)
            node = self.create_node("placeholder", target, default, {})
            args.append(self.proxy(node))
        return args

    def _patch_all(self, patcher: _patch.Patcher, cache: dict, fn: Callable) -> None:
        from ember import Tensor
        from ember._tensor_methods import METHODS
        from ember.nn import Module

        tracer = self
        orig_call = Module.__call__
        orig_getattr = Module.__getattr__

        def module_call_wrapper(mod, *args, **kwargs):
            def forward(*a, **k):
                return orig_call(mod, *a, **k)

            return tracer.call_module(mod, forward, args, kwargs)

        def module_getattr_wrapper(mod, attr):
            return tracer.getattr(attr, orig_getattr(mod, attr), cache)

        patcher.set_attr(Module, "__call__", module_call_wrapper)
        patcher.set_attr(Module, "__getattr__", module_getattr_wrapper)
        _patch.patch_namespaces(patcher)
        _patch.patch_wrapped(patcher)
        for extra in self._autowrap_extra:  # functions named by autowrap_functions
            mod = inspect.getmodule(extra)
            if mod is not None and getattr(mod, extra.__name__, None) is extra:
                patcher.set_attr(mod, extra.__name__, _patch.tracing_wrapper(extra))
        patcher.autowrap_globals(getattr(fn, "__globals__", {}), self._autowrap_ids)
        for mod in self._autowrap_modules:  # ``math.sqrt(x.size(-1))`` looks sqrt up in math
            patcher.autowrap_globals(vars(mod), self._autowrap_ids)
        for name in METHODS:  # real tensors meeting proxies: ``self.scale * x``, ``w.mm(x)``
            # (properties such as is_quantized stay: a wrapper would make them truthy methods)
            if (
                name in Tensor.__dict__
                and name != "__setitem__"
                and callable(Tensor.__dict__[name])
            ):
                patcher.set_attr(Tensor, name, _tensor_method_wrapper(name, Tensor.__dict__[name]))


def symbolic_trace(root, concrete_args: dict[str, Any] | None = None):
    """Trace a Module or function into a :class:`GraphModule` (torch.fx.symbolic_trace)."""
    from ember.nn import Module

    from .graph_module import GraphModule

    tracer = Tracer()
    graph = tracer.trace(root, concrete_args)
    name = type(root).__name__ if isinstance(root, Module) else root.__name__
    return GraphModule(tracer.root, graph, name)
