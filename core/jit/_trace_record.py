"""The dispatch mode behind ``ember.jit._get_trace_graph`` (``_trace_graph.py``): one node per
op, named and argued as torch's tracer records it.

ember reports its ops to a mode under ``ember.ops.aten`` names (docs/torch_dispatch.md); a few
of them are coarser or differently spelled than the ATen op torch's tracer records, and
analysis tools key their formulas on torch's spelling and argument positions (fvcore's
``conv_flop_jit`` reads ``transposed`` from input 6 of ``aten::_convolution``), so those are
translated here. Functions that torch runs as one op and ember composes (``interpolate``,
``instance_norm``) reach it through ``_ember_one_op``, a user's ``autograd.Function`` through
``_ember_python_op``: each is one node, its parts unrecorded. The recorder asks for ember's
fused ops undecomposed (``_ember_decompose``): torch's tracer records ``aten::linear``, not
``t`` and ``addmm``.
"""

from __future__ import annotations

from typing import Any

from ember.utils._python_dispatch import TorchDispatchMode

from ._trace_graph import Graph, Node, TracingState, Value


def _nd(x) -> int:
    return max(len(x.shape) - 2, 1)


def _convolution(args, kwargs):
    # torch records the backend flags too: benchmark, deterministic, cudnn_enabled, allow_tf32
    return "aten::_convolution", [*args, False, False, True, True]


def _batch_norm(args, kwargs):
    return "aten::batch_norm", [*args, True]  # + cudnn_enabled


def _layer_norm(args, kwargs):
    x, weight, bias, nd, eps = args
    return "aten::layer_norm", [x, list(x.shape[len(x.shape) - nd :]), weight, bias, eps, True]


def _group_norm(args, kwargs):
    x, weight, bias, groups, eps = args
    return "aten::group_norm", [x, groups, weight, bias, eps, True]


def _max_pool(args, kwargs):
    return f"aten::max_pool{_nd(args[0])}d", [args[0]]


def _avg_pool(args, kwargs):
    return f"aten::avg_pool{_nd(args[0])}d", [args[0]]


def _adaptive_avg_pool(args, kwargs):
    x, size = args[0], args[1]
    return f"aten::adaptive_avg_pool{_nd(x)}d", [x, list(size)]


def _adaptive_max_pool(args, kwargs):
    x, size = args[0], args[1]
    return f"aten::adaptive_max_pool{_nd(x)}d", [x, list(size)]


def _binary(name: str):
    def spell(args, kwargs):
        return f"aten::{name}", [*args[:2], 1] if name in ("add", "sub") else list(args[:2])

    return spell


def _einsum(args, kwargs):
    return "aten::einsum", [args[0], list(args[1:]), None]  # equation, operands, path


def _attention(args, kwargs):
    return "aten::scaled_dot_product_attention", list(args[:3])


def _softmax(name: str):
    def spell(args, kwargs):
        return f"aten::{name}", list(args)

    return spell


_KINDS = {
    "convolution": _convolution,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "adaptive_avg_pool": _adaptive_avg_pool,
    "adaptive_max_pool": _adaptive_max_pool,
    "add": _binary("add"),
    "sub": _binary("sub"),
    "mul": _binary("mul"),
    "div": _binary("div"),
    "einsum": _einsum,
    "scaled_dot_product_attention": _attention,
    "multi_head_attention_core": _attention,
    "_softmax": _softmax("softmax"),
    "_log_softmax": _softmax("log_softmax"),
}


def torch_kind(func, args: tuple, kwargs: dict) -> tuple[str, list]:
    """The kind torch's tracer gives this op, and its input list in torch's order."""
    name = getattr(func, "_name", None) or str(func).split(".")[1]
    spell = _KINDS.get(name)
    if spell is not None:
        return spell(args, kwargs)
    namespace = getattr(func, "namespace", "aten")  # a custom op: mylib::twice
    return f"{namespace}::{name}", [*args, *kwargs.values()]


class Recorder(TorchDispatchMode):
    """Records each op into ``graph`` under the scope ``state`` holds when it runs."""

    _ember_decompose = False

    def __init__(self, graph: Graph, state: TracingState, names: dict) -> None:
        super().__init__()
        self.graph, self.state, self._names = graph, state, names
        self._values: dict[int, Value] = {}
        self._keep: list = []  # the tensors behind the values (their ids stay unique)
        self._count = 0
        self._inside = 0  # > 0 while one recorded op runs its parts (not recorded)

    def _name(self, prefix: str = "") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def graph_input(self, t, name: str) -> Value:
        v = Value(None, name, tensor=t)
        self.graph._inputs.append(v)
        self._values[id(t)] = v
        self._keep.append(t)
        return v

    def value_of(self, t) -> Value:
        v = self._values.get(id(t))
        if v is None:  # a parameter, buffer or tensor made outside any op: a graph input
            v = self.graph_input(t, self._names.get(id(t), self._name("tensor.")))
        return v

    def _constant(self, c: Any) -> Value:
        node = Node("prim::Constant", self.state.current_scope(), [])
        v = Value(node, self._name(), const=c)
        node._outputs.append(v)
        self.graph._nodes.append(node)
        return v

    def _input(self, a: Any) -> Value:
        from ember import Tensor

        if isinstance(a, Tensor):
            return self.value_of(a)
        if isinstance(a, (list, tuple)):
            if all(not isinstance(e, (list, tuple, Tensor)) for e in a):
                items = [self._constant(e) for e in a]
            else:
                items = [self._input(e) for e in a]
            node = Node("prim::ListConstruct", self.state.current_scope(), items)
            v = Value(node, self._name(), const=list(a))
            node._outputs.append(v)
            self.graph._nodes.append(node)
            return v
        return self._constant(a)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self._inside:
            self._record(*torch_kind(func, args, kwargs), out)
        return out

    def _ember_one_op(self, kind: str, inputs: list, run):
        """A composite ember function torch runs as one op (``_dispatch_decomp.as_one_op``)."""
        out = self._run_inside(run)
        if not self._inside:
            self._record(kind, inputs, out)
        return out

    def _ember_python_op(self, cls, run, args: tuple, kwargs: dict):
        """A user's ``autograd.Function``: one ``prim::PythonOp`` of its tensor arguments (its
        other arguments are the node's scalar attributes in torch)."""
        from ember import Tensor

        out = self._run_inside(run)
        if not self._inside:
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
            self._record("prim::PythonOp", tensors, out)._pyname = cls.__name__
        return out

    def _run_inside(self, run):
        self._inside += 1
        try:
            return run()
        finally:
            self._inside -= 1

    def _record(self, kind: str, inputs: list, out) -> Node:
        from ember import Tensor

        node = Node(kind, self.state.current_scope(), [self._input(a) for a in inputs])
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, Tensor):
                v = Value(node, self._name(), tensor=o)
                self._values[id(o)] = v
                self._keep.append(o)
            else:
                v = Value(node, self._name(), const=o)
            node._outputs.append(v)
        self.graph._nodes.append(node)
        return node
