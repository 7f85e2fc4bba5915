"""``torch.jit._get_trace_graph``: the ops one run executes, as TorchScript's graph objects.

Model-analysis tools read torch's traced graph node by node: fvcore's ``FlopCountAnalysis`` /
``ActivationCountAnalysis`` take each node's ``kind()`` (``"aten::linear"``), ``scopeName()``
(the module scopes their forward hooks push with ``_get_tracing_state().push_scope``), the
``inputs()`` / ``outputs()`` values, their ``type().sizes()`` and the constants'
``toIValue()``. ember has no TorchScript IR; this module records the same information by
running the function once under a dispatch mode (docs/torch_dispatch.md) and names each op as
torch's tracer does: the ops it records at the level above autograd (``aten::linear``,
``aten::_convolution``, ``aten::batch_norm``, ``aten::layer_norm``, ``aten::matmul``,
``aten::einsum``, ...) with torch's argument lists; the functions torch runs as one op and
ember composes (``interpolate``, ``instance_norm``) as that one op (``aten::upsample_*``,
``aten::instance_norm``), and a user's ``autograd.Function`` as one ``prim::PythonOp``. Ops
that are not ember ``Function``\\ s (factories, comparisons, size arithmetic) do not appear,
as they do not reach a mode.
"""

from __future__ import annotations

from typing import Any

from ._tensor_type import TensorType

__all__ = ["Graph", "Node", "Value", "get_trace_graph", "tracing_state"]


class _PlainType:
    """The type of a non-tensor value (``int``, ``float``, ``int[]``, ``NoneType``...)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def kind(self) -> str:
        base = {"int": "Int", "float": "Float", "bool": "Bool", "str": "String"}
        if self._name.endswith("[]"):
            return "ListType"
        return base.get(self._name, self._name.replace("Type", "")) + "Type"

    def sizes(self) -> None:
        return None

    def __str__(self) -> str:
        return self._name

    __repr__ = __str__


def _type_name(v: Any) -> str:
    if v is None:
        return "NoneType"
    if isinstance(v, (list, tuple)):
        inner = {_type_name(e) for e in v}
        return (inner.pop() if len(inner) == 1 else "Any") + "[]"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(v), type(v).__name__)


class Value:
    """``torch._C.Value``: a tensor or constant flowing between nodes."""

    def __init__(self, node: Node | None, name: str, tensor=None, const: Any = None) -> None:
        self._node, self._name, self._const, self._uses = node, name, const, []
        if tensor is not None:
            self._type = TensorType.create_from_tensor(tensor)
        else:
            self._type = _PlainType(_type_name(const))

    def type(self):
        return self._type

    def isCompleteTensor(self) -> bool:  # noqa: N802 - torch's name
        return isinstance(self._type, TensorType)

    def toIValue(self):  # noqa: N802 - torch's name
        """The value of a constant (``prim::Constant``'s output), else ``None``."""
        return (
            self._const if self._node is not None and self._node._kind == "prim::Constant" else None
        )

    def node(self) -> Node | None:
        return self._node

    def debugName(self) -> str:  # noqa: N802 - torch's name
        return self._name

    def unique(self) -> int:
        return id(self)

    def uses(self) -> list:
        return list(self._uses)

    def __repr__(self) -> str:
        return f"{self._name} defined in ({self._node})"


class Node:
    """``torch._C.Node``: one op of the graph."""

    def __init__(self, kind: str, scope: str, inputs: list[Value]) -> None:
        self._kind, self._scope, self._inputs, self._outputs = kind, scope, inputs, []
        self._pyname: str | None = None  # a prim::PythonOp's autograd.Function class name
        for v in inputs:
            v._uses.append(self)

    def kind(self) -> str:
        return self._kind

    def scopeName(self) -> str:  # noqa: N802 - torch's name
        return self._scope

    def inputs(self):
        return iter(self._inputs)

    def outputs(self):
        return iter(self._outputs)

    def input(self) -> Value:
        return self._inputs[0]

    def output(self) -> Value:
        return self._outputs[0]

    def inputsSize(self) -> int:  # noqa: N802 - torch's name
        return len(self._inputs)

    def outputsSize(self) -> int:  # noqa: N802 - torch's name
        return len(self._outputs)

    def pyname(self) -> str:
        return self._pyname or self._kind.split("::")[-1]

    def __str__(self) -> str:
        outs = ", ".join(f"%{v._name} : {v._type}" for v in self._outputs)
        ins = ", ".join(f"%{v._name}" for v in self._inputs)
        const = f"[value={self._outputs[0]._const!r}]" if self._kind == "prim::Constant" else ""
        scope = f", scope: {self._scope}" if self._scope else ""
        return f"{outs} = {self._kind}{const}({ins}){scope}"

    __repr__ = __str__


class Graph:
    """``torch._C.Graph`` of one traced run: ``nodes()``, ``inputs()``, ``outputs()``."""

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._inputs: list[Value] = []
        self._outputs: list[Value] = []

    def nodes(self):
        return iter(self._nodes)

    def inputs(self):
        return iter(self._inputs)

    def outputs(self):
        return iter(self._outputs)

    def findAllNodes(self, kind: str) -> list[Node]:  # noqa: N802 - torch's name
        return [n for n in self._nodes if n._kind == kind]

    def __str__(self) -> str:
        head = ", ".join(f"%{v._name} : {v._type}" for v in self._inputs)
        body = "".join(f"  {n}\n" for n in self._nodes)
        outs = ", ".join(f"%{v._name}" for v in self._outputs)
        return f"graph({head}):\n{body}  return ({outs})\n"

    __repr__ = __str__


class TracingState:
    """``torch._C._get_tracing_state()`` while a trace graph is recorded: module scopes."""

    def __init__(self) -> None:
        self._scopes: list[str] = []

    def push_scope(self, name: str) -> None:
        self._scopes.append(str(name))

    def pop_scope(self) -> None:
        if self._scopes:
            self._scopes.pop()

    def current_scope(self) -> str:
        return "/".join(self._scopes)

    def __bool__(self) -> bool:
        return True


_ACTIVE: list[TracingState] = []


def tracing_state() -> TracingState | None:
    """The state of the trace graph being recorded in this process, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def get_trace_graph(f, args: Any = (), kwargs: dict | None = None, *_: Any, **__: Any):
    """``torch.jit._get_trace_graph(f, args, kwargs)``: run ``f`` once and return
    ``(graph, outputs)``, the graph holding every op the run executed (see the module
    docstring for the names)."""
    from ember import Tensor, no_grad

    from . import _decorators
    from ._trace_record import Recorder

    if isinstance(args, Tensor) or not isinstance(args, (tuple, list)):
        args = (args,)
    state = TracingState()
    rec = Recorder(Graph(), state, _param_names(f))
    for i, a in enumerate(_tensors(args)):
        rec.graph_input(a, f"input.{i + 1}" if i else "input")
    _ACTIVE.append(state)
    _decorators._state["tracing"] += 1
    try:
        with no_grad(), rec:
            out = f(*args, **(kwargs or {}))
    finally:
        _decorators._state["tracing"] -= 1
        _ACTIVE.remove(state)
    rec.graph._outputs = [rec.value_of(t) for t in _tensors(out)]
    return rec.graph, out


def _tensors(obj: Any) -> list:
    from ember import Tensor

    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _param_names(f) -> dict:
    """id -> torch-style debug name (``self.0.weight``) of a module's parameters and buffers."""
    from ember.nn import Module

    if not isinstance(f, Module):
        return {}
    names = {}
    for k, t in (*f.named_parameters(), *f.named_buffers()):
        names[id(t)] = f"self.{k}"
    return names
