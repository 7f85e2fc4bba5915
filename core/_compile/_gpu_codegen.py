"""GPU code generation: a chain of elementwise ops of the captured graph as one CuPy kernel.

Why: on the GPU ember waits on the host (docs/gpu.md): every op is a kernel launch of ~10 us
of Python and CuPy, and ``tanh(relu(x * w + b))`` is four launches and three temporaries. The
pass below finds maximal trees of elementwise nodes whose intermediates have one user, and
replaces each by one :class:`FusedElementwise` call. On CuPy arrays of one float dtype that
call runs one generated ``cupy.ElementwiseKernel``, compiled once per expression and dtype and
cached by that key (the "graph hash"); with autograd on, as a Function whose backward is a
second generated kernel (``_gpu_autograd``). Anywhere else (NumPy arrays, mixed dtypes,
autocast, Python numbers only) it replays the original ops in order, so results are eager's
bit for bit.

The device-agnostic parts run in CPU CI: the expression tree, the CUDA source text
(:func:`kernel_source`) and :func:`evaluate`, a NumPy/CuPy evaluator of the same tree with the
same semantics as the kernel (ReLU keeps NaN, as ``ember.relu`` does). The kernel itself has
not been run on a device in this repository's CI (no GPU there); see docs/compile.md.
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any

from ember.fx.graph import Graph
from ember.fx.node import Node

__all__ = ["FusedElementwise", "evaluate", "fuse_elementwise", "kernel_source"]

# op name -> (arity, CUDA expression template over {0}, {1}; T is the kernel's type)
_CUDA = {
    "add": (2, "({0} + {1})"),
    "sub": (2, "({0} - {1})"),
    "mul": (2, "({0} * {1})"),
    "div": (2, "({0} / {1})"),
    "neg": (1, "(-{0})"),
    "relu": (1, "(({0} > (T)0 || isnan({0})) ? {0} : (T)0)"),  # NaN stays, as np.maximum
    # ember's own formula (ops.elementwise.Sigmoid), so both round alike
    "tanh": (1, "tanh({0})"),
    # as eager's Sigmoid: 1 / (1 + exp(-x)), exact in the negative tail (exp overflow gives 0)
    "sigmoid": (1, "((T)1 / ((T)1 + exp(-{0})))"),
    "exp": (1, "exp({0})"),
    "log": (1, "log({0})"),
    "sqrt": (1, "sqrt({0})"),
    "abs": (1, "fabs({0})"),
}


def _numpy_ops(xp) -> dict:
    def relu(a):
        return xp.maximum(a, 0)

    def sigmoid(a):
        return 1 / (1 + xp.exp(-a))

    return {
        "add": operator.add,
        "sub": operator.sub,
        "mul": operator.mul,
        "div": operator.truediv,
        "neg": operator.neg,
        "relu": relu,
        "tanh": xp.tanh,
        "sigmoid": sigmoid,
        "exp": xp.exp,
        "log": xp.log,
        "sqrt": xp.sqrt,
        "abs": xp.abs,
    }


def _targets() -> dict:
    """graph target (function, or method name) -> op name."""
    import ember
    import ember.nn.functional as F

    table: dict[Any, str] = {
        operator.add: "add",
        operator.sub: "sub",
        operator.mul: "mul",
        operator.truediv: "div",
        operator.neg: "neg",
    }
    for name in (
        "relu",
        "tanh",
        "sigmoid",
        "exp",
        "log",
        "sqrt",
        "abs",
        "neg",
        "add",
        "sub",
        "mul",
        "div",
    ):
        for owner in (ember, F):
            fn = getattr(owner, name, None)
            if callable(fn):
                table.setdefault(fn, name)
        table.setdefault(f"method:{name}", name)
    return table


def _op_of(n: Node, table: dict) -> str | None:
    if n.kwargs and not (
        n.op == "call_function" and set(n.kwargs) == {"inplace"} and n.kwargs["inplace"] is False
    ):
        return None
    key = (
        n.target
        if n.op == "call_function"
        else f"method:{n.target}"
        if n.op == "call_method"
        else None
    )
    try:
        name = table.get(key)
    except TypeError:  # an unhashable target
        return None
    if name is None or len(n.args) != _CUDA[name][0]:
        return None
    ok = all(isinstance(a, Node) or type(a) in (int, float) for a in n.args)
    return name if ok and any(isinstance(a, Node) for a in n.args) else None


# ---- the expression tree ------------------------------------------------------------------
# ("in", i) | ("const", value) | (op name, child, ...); leaves are numbered by first use
def _tree(n: Node, absorbed: set, table: dict, leaves: list) -> tuple:
    name = _op_of(n, table)
    kids = []
    for a in n.args:
        if isinstance(a, Node) and a in absorbed:
            kids.append(_tree(a, absorbed, table, leaves))
        elif isinstance(a, Node):
            if a not in leaves:
                leaves.append(a)
            kids.append(("in", leaves.index(a)))
        else:
            kids.append(("const", float(a)))
    return (name, *kids)


def _expr(tree: tuple, lines: list | None = None) -> str:
    """The tree's value as a CUDA expression; with ``lines``, every op is first assigned to a
    local (``T t0 = ...;``) so that a template using its operand twice computes it once."""
    kind = tree[0]
    if kind == "in":
        return f"x{tree[1]}"
    if kind == "const":
        return f"(T){tree[1]!r}"
    text = _CUDA[kind][1].format(*(_expr(t, lines) for t in tree[1:]))
    if lines is None:
        return text
    lines.append(f"T t{len(lines)} = {text};")
    return f"t{len(lines) - 1}"


def _count_inputs(tree: tuple) -> int:
    if tree[0] == "in":
        return tree[1] + 1
    if tree[0] == "const":
        return 0
    return max((_count_inputs(t) for t in tree[1:]), default=0)


def kernel_key(tree: tuple, dtype: Any) -> str:
    """The cache key of a tree's kernel: a hash of its expression and dtype."""
    return hashlib.sha1(f"{tree!r}|{dtype}".encode()).hexdigest()[:12]


def kernel_source(tree: tuple, dtype: Any = "float32") -> tuple[str, str, str, str]:
    """``(in_params, out_params, operation, name)``: ``cupy.ElementwiseKernel``'s arguments."""
    n = _count_inputs(tree)
    in_params = ", ".join(f"T x{i}" for i in range(n))
    lines: list[str] = []
    result = _expr(tree, lines)
    lines.append(f"y = {result};")
    return in_params, "T y", "\n".join(lines), f"ember_fused_{kernel_key(tree, dtype)}"


def evaluate(tree: tuple, arrays: list, xp: Any = None) -> Any:
    """The tree on arrays (NumPy or CuPy), op by op, with the kernel's semantics."""
    import numpy as np

    xp = np if xp is None else xp
    ops = _numpy_ops(xp)

    def ev(t):
        if t[0] == "in":
            return arrays[t[1]]
        if t[0] == "const":
            return t[1]
        return ops[t[0]](*(ev(c) for c in t[1:]))

    return ev(tree)


_KERNELS: dict[str, Any] = {}


def _kernel(tree: tuple, dtype: Any) -> Any:  # pragma: no cover - needs a GPU
    key = kernel_key(tree, dtype)
    k = _KERNELS.get(key)
    if k is None:
        import cupy

        in_params, out_params, op, name = kernel_source(tree, dtype)
        k = _KERNELS[key] = cupy.ElementwiseKernel(in_params, out_params, op, name)
    return k


class FusedElementwise:
    """One node standing for a tree of elementwise ops (see the module docstring)."""

    def __init__(self, tree: tuple, replay: list) -> None:
        self.tree = tree
        self._replay = replay  # [(target or method name, is_method, arg spec)] in order
        self.__name__ = "fused_elementwise"

    def __repr__(self) -> str:
        return f"FusedElementwise({_expr(self.tree)})"

    def __call__(self, *leaves: Any) -> Any:
        fast = _device_arrays(leaves)
        if fast is not None:  # pragma: no cover - needs a GPU
            from ember import Tensor, is_grad_enabled

            if is_grad_enabled() and any(t.requires_grad for t in leaves):
                from ._gpu_autograd import FusedElementwiseFunction

                return FusedElementwiseFunction.apply(self.tree, *leaves)
            return Tensor._wrap(_kernel(self.tree, fast[0].dtype)(*fast))
        vals: list = []
        for target, is_method, spec in self._replay:
            args = [
                leaves[i] if kind == "in" else vals[i] if kind == "tmp" else i for kind, i in spec
            ]
            vals.append(getattr(args[0], target)(*args[1:]) if is_method else target(*args))
        return vals[-1]


def _device_arrays(leaves: tuple) -> list | None:
    """The CuPy arrays of the leaves where the generated kernel may run, else None."""
    from ember import Tensor

    if not leaves or not all(isinstance(t, Tensor) for t in leaves):
        return None
    arrays = [t._data for t in leaves]
    if type(arrays[0]).__module__.split(".")[0] != "cupy":
        return None
    dt = arrays[0].dtype
    if (
        any(type(a) is not type(arrays[0]) or a.dtype != dt for a in arrays)
        or dt.kind != "f"
        or dt.itemsize < 4
    ):
        return None
    from ember.amp.autocast_mode import is_autocast_enabled

    if any(is_autocast_enabled(d) for d in ("cpu", "cuda")):
        return None
    return arrays


# ---- the graph pass -----------------------------------------------------------------------
def fuse_elementwise(graph: Graph, min_ops: int = 2) -> int:
    """Replace every tree of at least ``min_ops`` fusable elementwise nodes (intermediates
    with one user) by one :class:`FusedElementwise` call; returns how many."""
    table = _targets()
    outputs = {a for n in graph.nodes if n.op == "output" for a in n.all_input_nodes}
    fusable = {
        n
        for n in graph.nodes
        if n.op in ("call_function", "call_method") and _op_of(n, table) is not None
    }
    absorbed = {
        n
        for n in fusable
        if len(n.users) == 1 and n not in outputs and next(iter(n.users)) in fusable
    }
    count = 0
    for root in [n for n in graph.nodes if n in fusable and n not in absorbed]:
        members = _members(root, absorbed)
        if len(members) < min_ops:
            continue
        leaves: list = []
        tree = _tree(root, absorbed, table, leaves)
        order = [n for n in graph.nodes if n in members]
        replay = []
        for n in order:
            spec = [
                ("tmp", order.index(a))
                if isinstance(a, Node) and a in members
                else ("in", leaves.index(a))
                if isinstance(a, Node)
                else ("const", a)
                for a in n.args
            ]
            replay.append((n.target, n.op == "call_method", spec))
        with graph.inserting_before(root):
            fused = graph.create_node(
                "call_function",
                FusedElementwise(tree, replay),
                tuple(leaves),
                {},
                name="fused_elementwise",
            )
        root.replace_all_uses_with(fused)
        for n in reversed(order):
            graph.erase_node(n)
        count += 1
    return count


def _members(root: Node, absorbed: set) -> set:
    out, stack = set(), [root]
    while stack:
        n = stack.pop()
        out.add(n)
        stack.extend(a for a in n.args if isinstance(a, Node) and a in absorbed)
    return out
