"""Recording-mode tracing: run the model on real example inputs and record every op.

ember.fx's ``Tracer`` runs ``forward`` on value-less Proxies, so Python control flow on values
raises. Export and ``ember.jit.trace`` need what torch's tracers see: the ops *actually
executed* on the example inputs, along the branches actually taken. ``RecordingTracer`` is an
fx ``Tracer`` whose proxies also carry the real value of the node they stand for (computed as
each node is recorded), so ``if x.dim() == 3``, ``for h in hs`` and ``len(x)`` take their real
path, while tensor math and shape arithmetic (``x.view(x.size(0), -1)``) stay in the graph.

Every module is traced through (no ``call_module`` nodes): the graph holds only
``call_function`` / ``call_method`` / ``get_attr`` nodes, which the JSON form can save whole.

Where the program turns a value into Python (``bool(tensor)``, ``int(x.sum())``, ``.item()``
feeding a branch, ``.numpy()``, or a size of a dynamic dimension used as ``range(n)``), the
graph can no longer follow the data: ``mode="jit"`` warns (``TracerWarning``, as torch.jit.trace
does) and bakes the value in; ``mode="export"`` raises :class:`ExportError` naming the line.
"""

from __future__ import annotations

import inspect
import os
import types
import warnings
from typing import Any

from ember.fx import Tracer
from ember.fx.node import Node, map_aggregate, map_arg
from ember.fx.proxy import Attribute, Proxy

from ._call_shims import _named_forward, _refuse_quantized

__all__ = ["RecordingTracer", "ExportError", "TracerWarning", "user_line"]

_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# attributes that are static facts of a tensor: returned as real values, never recorded
_STATIC_ATTRS = frozenset(
    {
        "dtype",
        "device",
        "ndim",
        "is_cuda",
        "requires_grad",
        "layout",
        "is_leaf",
        "is_sparse",
        "is_quantized",
        "grad_fn",
        "training",
    }
)
_SHAPE_METHODS = frozenset({"size", "dim", "numel", "nelement", "ndimension"})
_DATA_METHODS = frozenset({"item", "tolist"})


class TracerWarning(Warning):
    """A traced program may not generalize to other inputs (torch.jit.TracerWarning)."""


class ExportError(RuntimeError):
    """ember.export cannot capture the program faithfully (data-dependent control flow...)."""


def _ember_line() -> str:
    """Where inside ember (outside the tracers) a traced value was used as a real one."""
    frame = inspect.currentframe()
    here = (os.path.join(_EMBER_DIR, "export"), os.path.join(_EMBER_DIR, "fx"))
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(_EMBER_DIR):
        return ""
    return (
        f" [the value reached ember internals at {frame.f_code.co_filename}:"
        f"{frame.f_lineno}, which the tracer could not record: please report this]"
    )


def user_line() -> str:
    """`` (at file:line: source)`` for the innermost frame outside ember, for messages."""
    from ember.fx.tracer import _user_line

    return _user_line(_EMBER_DIR)


def fetch_attr(root: Any, target: str) -> Any:
    """``root.<target>`` read from the modules' own dicts (Module.__getattr__ is patched while
    tracing, and would record instead of answer)."""
    obj = root
    for atom in target.split("."):
        for table in ("_parameters", "_buffers", "_modules"):
            d = obj.__dict__.get(table, {})
            if atom in d:
                obj = d[atom]
                break
        else:
            obj = object.__getattribute__(obj, atom)
    return obj


_VISITED = "_ember_export_visited"


def _wrap_ember_module(patcher, m) -> None:
    """Record ember's internal helpers used by ember.nn module ``m`` as call_function leaves:
    functions in its forward's globals, ``ember.ops``'s functions, autograd Functions
    (``LSTMLayer.apply``) and functions kept as class attributes (``Conv2d._fn``)."""
    if not (type(m).__module__ or "").startswith("ember."):
        return
    visited = patcher.__dict__.setdefault(_VISITED, set())
    for name, value in list(vars(m).items()):  # functions kept per instance (activation=F.relu)
        if _is_ember_function(value):
            patcher.set_item(vars(m), name, _named_wrapper(value))
    for cls in type(m).__mro__:
        if id(cls) in visited or not (cls.__module__ or "").startswith("ember.nn.modules"):
            continue
        visited.add(id(cls))
        for name, value in list(vars(cls).items()):
            # module-level functions kept on the class (not the class's own methods)
            fn = value.__func__ if isinstance(value, staticmethod) else value
            if _is_ember_function(fn) and "." not in fn.__qualname__:
                new = _named_wrapper(fn)
                patcher.set_attr(cls, name, staticmethod(new) if fn is not value else new)
        fwd = vars(cls).get("forward")
        for fn in [fwd] + [v for v in vars(cls).values() if isinstance(v, types.FunctionType)]:
            g = getattr(fn, "__globals__", None)
            if g is not None and id(g) not in visited:
                visited.add(id(g))
                _wrap_globals(patcher, g)


def _wrap_globals(patcher, g: dict) -> None:
    from ember.autograd import Function

    for name, value in list(g.items()):
        if name.startswith("__"):
            continue
        if _is_ember_function(value):
            patcher.set_item(g, name, _named_wrapper(value))
        elif isinstance(value, type) and issubclass(value, Function) and value is not Function:
            patcher.set_item(g, name, _FunctionShim(value))
        elif isinstance(value, types.ModuleType) and value.__name__ == "ember.ops":
            for fname in dir(value):
                fn = getattr(value, fname)
                if not fname.startswith("_") and _is_ember_function(fn):
                    patcher.set_attr(value, fname, _named_wrapper(fn))


def _is_ember_function(value) -> bool:
    from ember.fx import _patch

    return (
        isinstance(value, types.FunctionType)
        and id(value) not in _patch._originals
        and (value.__module__ or "").startswith("ember.")
        and not value.__module__.startswith(("ember.fx", "ember.export", "ember.jit"))
    )


def _named_wrapper(fn, name: str | None = None):
    from ember.fx import _names, _patch

    if name is not None:
        _names.register_name(fn, name)
    return _patch.tracing_wrapper(fn)


class _FunctionShim:
    """Stands for an autograd Function class while tracing: ``.apply`` records a node."""

    def __init__(self, cls) -> None:
        self._cls = cls
        apply = cls.apply  # one bound method kept alive, so its recorded name stays valid
        self.apply = _named_wrapper(apply, f"{cls.__module__}.{cls.__qualname__}.apply")

    def __getattr__(self, k):
        return getattr(self._cls, k)


class _ValueMixin:
    """Python protocols of a recording proxy answered from the real value it stands for."""

    @property
    def value(self) -> Any:
        return self.tracer.value_of(self.node)

    def __getattr__(self, k: str) -> Any:
        if k.startswith("__") and k.endswith("__"):
            raise AttributeError(k)
        if k in _STATIC_ATTRS:
            return getattr(self.value, k)
        return RecordingAttribute(self, k)

    def __bool__(self) -> bool:
        return bool(self.tracer.concretize(self, "a Python boolean"))

    def __index__(self) -> int:
        return self.tracer.concretize(self, "a Python index").__index__()

    def __int__(self) -> int:
        return int(self.tracer.concretize(self, "a Python integer"))

    def __float__(self) -> float:
        return float(self.tracer.concretize(self, "a Python float"))

    def __len__(self) -> int:
        return len(self.tracer.concretize(self, "a Python length", shape_only=True))

    def __iter__(self):
        v = self.value
        from ember import Tensor

        if isinstance(v, (tuple, list, Tensor)):
            return iter([self[i] for i in range(len(v))])
        return iter(self.tracer.concretize(self, "a Python iterable"))

    def numpy(self, *args, **kwargs):
        return self.tracer.concretize(self, "a NumPy array").numpy(*args, **kwargs)

    # ember.fx's Proxy answers these as properties (plain ``Attribute``s, for ember.compile's
    # size specialization), which would bypass ``__getattr__`` above: route them back
    shape = property(lambda self: _ValueMixin.__getattr__(self, "shape"))
    ndim = property(lambda self: _ValueMixin.__getattr__(self, "ndim"))
    dtype = property(lambda self: _ValueMixin.__getattr__(self, "dtype"))
    device = property(lambda self: _ValueMixin.__getattr__(self, "device"))

    def tolist(self):
        return self.tracer.concretize(self, "a Python list").tolist()


class RecordingProxy(_ValueMixin, Proxy):
    def __repr__(self) -> str:
        return f"RecordingProxy({self.node.name})"


class RecordingAttribute(_ValueMixin, Attribute):
    pass


class RecordingTracer(Tracer):
    """Traces a Module/function on real inputs; see the module docstring.

    ``mode`` is ``"jit"`` (warn and bake values that leave the graph) or ``"export"``
    (raise :class:`ExportError`). ``dynamic`` maps placeholder names to the dims that must
    not be baked into the program (``{"x": {0: "batch"}}``).
    """

    proxy_buffer_attributes = True  # buffers stay inputs of the graph, not folded constants

    def __init__(self, mode: str = "jit", dynamic: dict[str, dict[int, str]] | None = None) -> None:
        from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        # packing is recorded as one node each (values flow between them: _packed_rnn.py)
        super().__init__(autowrap_functions=(pack_padded_sequence, pad_packed_sequence))
        if mode not in ("jit", "export"):
            raise ValueError(f"RecordingTracer: mode must be 'jit' or 'export', got {mode!r}")
        self.mode = mode
        self.dynamic = dynamic or {}
        self.values: dict[Node, Any] = {}
        self._taint: dict[Node, Any] = {}  # shape values -> dynamic dims they come from
        self._data_dep: set[Node] = set()  # Python values computed from tensor data
        self.constant_names: list[str] = []
        self.warned = False

    # ---- values --------------------------------------------------------------------------
    def value_of(self, node: Node) -> Any:
        return self.values[node]

    def is_leaf_module(self, m, module_qualified_name: str) -> bool:
        return False

    def call_module(self, m, forward, args, kwargs):
        _refuse_quantized(self, m)
        # ember.nn's own forwards call ember helpers outside the public namespaces
        # (``ops.transpose``, ``_mha``): record those as call_function leaves too; their
        # qualified names resolve inside ember, so the JSON form keeps them.
        if self._patcher is not None:
            _wrap_ember_module(self._patcher, m)
        from ._packed_rnn import record_packed_rnn

        packed = record_packed_rnn(self, m, args, kwargs)  # a recurrent layer on packed input
        if packed is not None:
            return packed
        return super().call_module(m, forward, args, kwargs)

    def proxy(self, node: Node) -> Proxy:
        return RecordingProxy(node, self)

    def path_of_module(self, mod) -> str:
        try:
            return super().path_of_module(mod)
        except NameError:  # a module the forward closes over instead of registering
            return f"<external {type(mod).__name__}>"

    def create_arg(self, a: Any) -> Any:
        from ember.nn import Parameter

        if isinstance(a, Parameter) and id(a) not in self._param_names:
            # the weights of a module outside the root are constants of the program (as in
            # torch's non-strict export), kept under _tensor_constantN
            name = self.tensor_attrs.get(id(a))
            if name is None:
                i = 0
                while hasattr(self.root, f"_tensor_constant{i}"):
                    i += 1
                name = f"_tensor_constant{i}"
                setattr(self.root, name, a.detach())
                self.tensor_attrs[id(a)] = name
            return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if (
            kind == "get_attr"
            and target.startswith("_tensor_constant")
            and target not in self.constant_names
        ):
            self.constant_names.append(target)
        if kind in ("call_function", "call_method", "get_attr"):
            self.values[node] = self._run(node)
            self._track(node)
        return node

    def _run(self, node: Node) -> Any:
        args = map_arg(node.args, self.values.__getitem__)
        kwargs = map_arg(node.kwargs, self.values.__getitem__)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, node.target)(*rest, **kwargs)
        return fetch_attr(self.root, node.target)

    # ---- where values leave the graph ----------------------------------------------------
    def _track(self, node: Node) -> None:
        """Record which dynamic input dims a shape value depends on, and data dependence."""
        import operator

        from ember import Tensor

        ins = node.all_input_nodes
        if any(n in self._data_dep for n in ins) or (
            node.op == "call_method" and node.target in _DATA_METHODS
        ):
            self._data_dep.add(node)
        src = node.args[0] if node.args else None
        dims = (
            self.dynamic.get(src.target, {})
            if isinstance(src, Node) and src.op == "placeholder"
            else {}
        )
        is_shape = (node.op == "call_method" and node.target in ("size",)) or (
            node.op == "call_function" and node.target is getattr and node.args[1] == "shape"
        )
        if is_shape and dims:
            idx = node.args[1] if node.op == "call_method" and len(node.args) > 1 else None
            if idx is None:
                ndim = self.values[src].ndim
                self._taint[node] = tuple(
                    frozenset({(src.target, dims[i])}) if i in dims else frozenset()
                    for i in range(ndim)
                )
            else:
                i = idx % self.values[src].ndim
                self._taint[node] = frozenset({(src.target, dims[i])}) if i in dims else frozenset()
        elif (
            node.op == "call_function"
            and node.target is operator.getitem
            and isinstance(self._taint.get(src), tuple)
            and isinstance(node.args[1], int)
        ):
            self._taint[node] = self._taint[src][node.args[1]]
        elif not isinstance(self.values[node], Tensor):
            found: set = set()
            for n in ins:
                t = self._taint.get(n)
                for part in t if isinstance(t, tuple) else (t,):
                    found |= part or set()
            if found:
                self._taint[node] = frozenset(found)

    def concretize(self, proxy: Proxy, what: str, shape_only: bool = False) -> Any:
        """The real value of ``proxy`` where Python needs it, with the warning/error due."""
        from ember import Tensor

        node = proxy.node
        value = self.values[node]
        if isinstance(value, Tensor) and not shape_only or node in self._data_dep:
            kind = "tensor" if isinstance(value, Tensor) else "value computed from tensor data"
            if self.mode == "export":
                raise ExportError(
                    f"Converting a {kind} to {what} makes the program depend on the data of "
                    "its inputs (data-dependent control flow or value), which ember.export "
                    f"cannot capture{user_line()}{_ember_line()}. Keep the computation in "
                    "tensor ops "
                    "(ember.where, masking) or pass the value as an input."
                )
            self.warned = True
            warnings.warn(
                f"Converting a {kind} to {what} might cause the trace to be incorrect. We "
                "can't record the data flow of Python values, so this value will be treated "
                "as a constant in the future. This means that the trace might not generalize "
                f"to other inputs!{user_line()}",
                TracerWarning,
                stacklevel=3,
            )
            return value
        taint = self._taint.get(node)
        parts = set()
        for part in taint if isinstance(taint, tuple) else (taint,):
            parts |= part or set()
        if parts:
            names = ", ".join(sorted(f"{d!r} (input {i!r})" for i, d in parts))
            msg = (
                f"the size of dynamic dimension {names} is turned into {what}, so the "
                f"program is specialized to its example value{user_line()}"
            )
            if self.mode == "export":
                raise ExportError(
                    f"Constraints violated: {msg}. Mark the dimension static "
                    "(no Dim) or keep the size computation in tensor ops."
                )
            warnings.warn(msg, TracerWarning, stacklevel=3)
        return value

    # ---- trace on example inputs ---------------------------------------------------------
    def trace_with_inputs(self, root, args: tuple, kwargs: dict | None = None):
        """Trace ``root`` on ``args``/``kwargs``; returns ``(graph, output value)``."""
        from ember import Tensor
        from ember.nn import Module

        fn = type(root).forward if isinstance(root, Module) else root
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1 if isinstance(root, Module) else 0 :]
        try:
            bound = inspect.Signature(params).bind(*args, **(kwargs or {}))
        except TypeError as e:
            raise TypeError(
                f"example inputs do not match the signature of "
                f"{getattr(fn, '__qualname__', fn)}: {e}"
            ) from None
        given = set(bound.arguments)
        bound.apply_defaults()
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            if not isinstance(root, Module):
                raise TypeError(
                    "tracing a function with *args/**kwargs is not supported; wrap it in a "
                    "Module or give it named parameters"
                )
            root, bound = _named_forward(root, params, bound, given)

        def has_tensor(v):
            found = []
            map_aggregate(v, lambda a: found.append(a) if isinstance(a, Tensor) else a)
            return bool(found)

        concrete = {k: v for k, v in bound.arguments.items() if not has_tensor(v)}
        self._example = bound.arguments
        graph = self.trace(root, concrete)
        out = next(n for n in graph.nodes if n.op == "output")
        result = map_arg(out.args[0], self.values.__getitem__)
        return graph, result

    def _patch_all(self, patcher, cache, fn) -> None:
        super()._patch_all(patcher, cache, fn)
        _wrap_ember_module(patcher, self.root)

    def _placeholders(self, fn, is_method, concrete_args):
        args = super()._placeholders(fn, is_method, concrete_args)
        for a in args:
            if isinstance(a, Proxy):
                self.values[a.node] = self._example[a.node.target]
        return args

    def iter(self, obj: Proxy):
        return _ValueMixin.__iter__(obj)

    def to_bool(self, obj: Proxy) -> bool:
        return bool(self.concretize(obj, "a Python boolean"))

    def keys(self, obj: Proxy):
        return self.concretize(obj, "a Python dict").keys()
