"""The backward of a fused elementwise tree, generated as a second CuPy kernel.

With autograd on, a :class:`~._gpu_codegen.FusedElementwise` node on CuPy arrays runs as one
Function: the forward kernel, and a backward kernel that recomputes the tree's values from the
saved inputs and accumulates every input's gradient in reverse (one kernel instead of one
launch per op and per gradient). Each input's gradient comes out in the broadcast shape; the
autograd engine sums it back to the input's shape, as for every op.

The adjoint program is built once as expression trees in the same form as the forward tree
(``("in", i)``, ``("const", v)``, ``(op, ...)``, plus ``("var", name)`` for the recomputed
values and the incoming gradient ``g``), so one rule table gives both the CUDA source
(:func:`backward_source`) and the NumPy evaluator (:func:`evaluate_backward`) that the CPU
tests compare with eager autograd. The rules are ember's own backward formulas
(``ops.elementwise``); fused, their rounding may differ from eager's in the last bits.
"""

from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ._gpu_codegen import _CUDA, _count_inputs, _numpy_ops, kernel_key

__all__ = ["FusedElementwiseFunction", "adjoint_program", "backward_source", "evaluate_backward"]

_EXTRA_CUDA = {
    "relu_grad": (2, "(({1} <= (T)0) ? (T)0 : {0})"),  # torch's: a NaN output passes grad
    "sign": (1, "(T)(({0} > (T)0) - ({0} < (T)0))"),
}


def _extra_numpy(xp) -> dict:
    return {"relu_grad": lambda a, t: a * ~(t <= 0), "sign": xp.sign}


def _c(v: float) -> tuple:
    return ("const", float(v))


def _rules(op: str, a: tuple, kids: list, t: tuple) -> list:
    """Adjoints of an op's operands from its adjoint ``a``, operands ``kids``, value ``t``."""
    if op == "add":
        return [a, a]
    if op == "sub":
        return [a, ("neg", a)]
    if op == "mul":
        return [("mul", a, kids[1]), ("mul", a, kids[0])]
    if op == "div":  # d/db (x / b) = -x / b^2, as ember's Div: -(grad * a) / (b * b)
        return [
            ("div", a, kids[1]),
            ("neg", ("div", ("mul", a, kids[0]), ("mul", kids[1], kids[1]))),
        ]
    if op == "neg":
        return [("neg", a)]
    if op == "relu":
        return [("relu_grad", a, t)]
    if op == "tanh":
        return [("mul", a, ("sub", _c(1), ("mul", t, t)))]
    if op == "sigmoid":
        return [("mul", ("mul", a, t), ("sub", _c(1), t))]
    if op == "exp":
        return [("mul", a, t)]
    if op == "log":
        return [("div", a, kids[0])]
    if op == "sqrt":
        return [("div", a, ("mul", _c(2), t))]
    if op == "abs":
        return [("mul", a, ("sign", kids[0]))]
    raise KeyError(op)


def adjoint_program(tree: tuple) -> tuple[list, dict]:
    """``(statements, grads)``: ``statements`` the forward ops, then the adjoints, as
    ``[(name, op tree over earlier names)]`` in order; ``grads`` maps input index -> its
    gradient's tree (absent: the input gets no gradient)."""
    values: list = []

    def forward(t):
        if t[0] in ("in", "const"):
            return t
        node = (t[0], *(forward(c) for c in t[1:]))
        name = f"t{len(values)}"
        values.append((name, node))
        return ("var", name)

    root = forward(tree)
    grads: dict[int, tuple] = {}
    by_name = dict(values)  # the forward values only: adjoints are never looked up

    def backward(v, a):
        if v[0] == "in":
            grads[v[1]] = a if v[1] not in grads else ("add", grads[v[1]], a)
            return
        if v[0] != "var":
            return
        node = by_name[v[1]]
        for kid, ka in zip(node[1:], _rules(node[0], a, list(node[1:]), v)):
            if kid[0] == "const":
                continue
            name = f"a{len(values)}"  # named, so that a rule using it twice computes it once
            values.append((name, ka))
            backward(kid, ("var", name))

    backward(root, ("var", "g"))
    return values, grads


def _render(t: tuple) -> str:
    kind = t[0]
    if kind == "in":
        return f"x{t[1]}"
    if kind == "var":
        return t[1]
    if kind == "const":
        return f"(T){t[1]!r}"
    template = _CUDA.get(kind) or _EXTRA_CUDA[kind]
    return template[1].format(*(_render(c) for c in t[1:]))


def backward_source(tree: tuple, dtype: Any = "float32") -> tuple[str, str, str, str]:
    """``cupy.ElementwiseKernel`` arguments of the backward: inputs ``g, x0..``, outputs
    ``gx0..`` (inputs that get no gradient, as under a constant-only path, get zeros)."""
    n = _count_inputs(tree)
    values, grads = adjoint_program(tree)
    lines = [f"T {name} = {_render(node)};" for name, node in values]
    lines += [f"gx{i} = {_render(grads[i]) if i in grads else '(T)0'};" for i in range(n)]
    in_params = ", ".join(["T g"] + [f"T x{i}" for i in range(n)])
    out_params = ", ".join(f"T gx{i}" for i in range(n))
    return in_params, out_params, "\n".join(lines), f"ember_fused_bw_{kernel_key(tree, dtype)}"


def evaluate_backward(tree: tuple, arrays: list, g: Any, xp: Any = None) -> list:
    """Each input's gradient (broadcast shape, or None) by the adjoint program, on arrays."""
    import numpy as np

    xp = np if xp is None else xp
    ops = {**_numpy_ops(xp), **_extra_numpy(xp)}
    values, grads = adjoint_program(tree)
    env: dict[str, Any] = {"g": g}

    def ev(t):
        if t[0] == "in":
            return arrays[t[1]]
        if t[0] == "var":
            return env[t[1]]
        if t[0] == "const":
            return t[1]
        return ops[t[0]](*(ev(c) for c in t[1:]))

    for name, node in values:
        env[name] = ev(node)
    shape = xp.broadcast_shapes(*(a.shape for a in arrays), g.shape)
    return [
        xp.broadcast_to(ev(grads[i]), shape) if i in grads else None for i in range(len(arrays))
    ]


_KERNELS: dict[str, Any] = {}


class FusedElementwiseFunction(Function):  # pragma: no cover - runs on CuPy arrays only
    """forward(tree, *arrays): the generated forward kernel; backward: the generated
    backward kernel over the saved inputs."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, tree, *arrays):
        from ._gpu_codegen import _kernel

        ctx.tree = tree
        ctx.save_for_backward(*arrays)
        return _kernel(tree, arrays[0].dtype)(*arrays)

    @staticmethod
    def backward(ctx, grad):
        import cupy

        arrays = ctx.saved_tensors
        tree = ctx.tree
        key = kernel_key(tree, arrays[0].dtype)
        k = _KERNELS.get(key)
        if k is None:
            k = _KERNELS[key] = cupy.ElementwiseKernel(*backward_source(tree, arrays[0].dtype))
        outs = k(grad, *arrays)
        outs = outs if isinstance(outs, tuple) else (outs,)
        need = ctx.needs_input_grad[1:]
        return (None, *(o if n else None for o, n in zip(outs, need)))
