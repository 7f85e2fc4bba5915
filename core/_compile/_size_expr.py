"""Size expressions and shape rules for the guards of ``_guards.py``.

``_expr(node)`` turns a graph node computed from input sizes only (``x.size(-2)``,
``x.shape[0] % 2``, ``min(a, b)``, arithmetic and comparisons on them) into
``(env -> value, text)``; ``env`` maps argument names to a call's values. Sizes of
intermediate tensors come from the inputs' shapes by the shape rules of ``_shape_rule``;
anything else raises :class:`NotGuardable`.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

from ember.fx.node import Node

__all__ = ["Env", "NotGuardable", "is_size_expr"]


Env = dict[str, Any]

_BIN = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.mod: "%",
    operator.pow: "**",
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
    operator.and_: "&",
    operator.or_: "|",
}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.abs: "abs"}

# ops whose result has the shape of their first tensor argument
_SAME = {
    "float", "double", "half", "bfloat16", "int", "long", "bool", "to", "type", "type_as",
    "clone", "contiguous", "detach", "cpu", "cuda", "abs", "neg", "exp", "log", "sqrt",
    "rsqrt", "square", "sigmoid", "tanh", "relu", "gelu", "silu", "softmax", "log_softmax",
    "clamp", "clamp_min", "clamp_max", "sign", "reciprocal", "sin", "cos", "dropout",
    "leaky_relu", "elu", "softplus", "layer_norm", "rms_norm", "normalize",
}  # fmt: skip
_BROADCAST = {
    "add", "sub", "mul", "div", "true_divide", "pow", "lerp", "maximum", "minimum",
    "where", "masked_fill", "rsub", "atan2", "eq", "ne", "lt", "le", "gt", "ge",
}  # fmt: skip
_REDUCE = {"sum", "mean", "amax", "amin", "norm", "std", "var", "prod", "logsumexp"}
_SHAPE_CHANGING_INPLACE = {
    "resize_", "resize_as_", "squeeze_", "unsqueeze_", "t_", "transpose_", "swapdims_",
    "swapaxes_", "set_", "as_strided_",
}  # fmt: skip


class NotGuardable(Exception):
    """The expression is not a function of the inputs' sizes that the rules can recompute."""


def is_size_expr(node: Node) -> bool:
    """Whether ``node`` is computed from input sizes alone (by the rules of this module)."""
    try:
        _expr(node)
    except NotGuardable:
        return False
    return True


# ---- size expressions --------------------------------------------------------------------
def _const(v: Any) -> tuple[Callable[[Env], Any], str]:
    if isinstance(v, Node):
        return _expr(v)
    if isinstance(v, (int, float, bool, type(None))):
        return (lambda env: v), repr(v)
    if isinstance(v, (tuple, list)) and all(not isinstance(e, Node) for e in v):
        return (lambda env: v), repr(v)
    raise NotGuardable(f"{v!r} is not a size")


def _memo(key: str, build: Callable) -> Callable:
    # a node's rule is derived once (node.meta) and evaluated once per call (the env caches
    # it): a value used by several later ops (``X.mT @ X`` in a loop) is not re-derived
    def derive(node: Node) -> tuple[Callable[[Env], Any], str]:
        got = node.meta.get(key)
        if got is None:
            try:
                fn, text = build(node)
            except NotGuardable as e:
                node.meta[key] = e
                raise
            got = node.meta[key] = (_cached(node, fn), text)
        if isinstance(got, NotGuardable):
            raise got
        return got

    return derive


def _cached(node: Node, fn: Callable[[Env], Any]) -> Callable[[Env], Any]:
    def value(env: Env) -> Any:
        if node in env:
            return env[node]
        v = env[node] = fn(env)
        return v

    return value


def _expr_rule(node: Node) -> tuple[Callable[[Env], Any], str]:
    """``(env -> value, text)`` for a node computed from input sizes only."""
    op, t, args = node.op, node.target, node.args
    if op == "call_method" and t in ("size", "dim", "numel", "nelement") and args:
        shape, src = _shape(args[0])
        if t == "size":
            rest = args[1:] or tuple(node.kwargs.values())
            if not rest:
                return shape, f"{src}.size()"
            d, dt = _const(rest[0])
            return (lambda env: shape(env)[d(env)]), f"{src}.size({dt})"
        if t == "dim":
            return (lambda env: len(shape(env))), f"{src}.dim()"
        return (lambda env: _prod(shape(env))), f"{src}.numel()"
    if op == "call_function" and t is builtins.getattr and args[1] in ("shape", "ndim"):
        shape, src = _shape(args[0])
        if args[1] == "ndim":
            return (lambda env: len(shape(env))), f"{src}.ndim"
        return shape, f"{src}.shape"
    if op == "call_function" and t is operator.getitem:
        base, bt = _expr(args[0])
        idx, it = _const(args[1]) if not isinstance(args[1], slice) else _slice(args[1])
        return (lambda env: base(env)[idx(env)]), f"{bt}[{it}]"
    if op == "call_function" and t in _BIN and len(args) == 2:
        (fa, ta), (fb, tb) = _const(args[0]), _const(args[1])
        return (lambda env: t(fa(env), fb(env))), f"({ta} {_BIN[t]} {tb})"
    if op == "call_function" and t in (builtins.min, builtins.max) and len(args) > 1:
        parts = [_const(a) for a in args]
        text = f"{t.__name__}({', '.join(p[1] for p in parts)})"
        return (lambda env: t(*(p[0](env) for p in parts))), text
    if op == "call_function" and t in _UNARY and len(args) == 1:
        fa, ta = _const(args[0])
        return (lambda env: t(fa(env))), f"{_UNARY[t]}({ta})"
    raise NotGuardable(f"{node.name} ({op} {getattr(t, '__name__', t)}) is not a size")


def _slice(s: slice) -> tuple[Callable[[Env], Any], str]:
    if any(isinstance(p, Node) for p in (s.start, s.stop, s.step)):
        raise NotGuardable("a symbolic slice")
    text = f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
    return (lambda env: s), text


def _prod(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _name(t: Any) -> str:
    return t if isinstance(t, str) else getattr(t, "__name__", "")


def _shape(node: Any) -> tuple[Callable[[Env], tuple], str]:
    if not isinstance(node, Node):
        raise NotGuardable("not a traced tensor")
    return _shape_memo(node)


def _shape_rule(node: Node) -> tuple[Callable[[Env], tuple], str]:
    """``(env -> shape, text)`` of a tensor node, from the inputs' shapes by shape rules."""
    op, t, args, kw = node.op, node.target, node.args, node.kwargs
    if op == "placeholder":
        name = t.lstrip("*")
        return (lambda env: tuple(env[name].shape)), name
    name = _name(t)
    text = f"<{node.name}>"
    if op == "call_function" and t is builtins.getattr and args[1] in ("mT", "T", "mH", "H"):
        s, _ = _shape(args[0])
        if args[1] in ("mT", "mH"):
            return (lambda env: (*s(env)[:-2], s(env)[-1], s(env)[-2])), text
        return (lambda env: tuple(reversed(s(env)))), text
    if op not in ("call_method", "call_function"):
        raise NotGuardable(f"shape of {node.name}")
    if op == "call_function" and not (getattr(t, "__module__", "") or "").startswith(
        ("ember", "_operator", "operator")
    ):
        raise NotGuardable(f"shape of {node.name}")
    # a size expression among the arguments (``t / (x.size(-2) ** 0.5)``) is a scalar
    tensors = [a for a in args if isinstance(a, Node) and not is_size_expr(a)]
    if not tensors:
        raise NotGuardable(f"shape of {node.name}")
    if op == "call_method" and name.endswith("_") and not name.endswith("__"):
        if name in _SHAPE_CHANGING_INPLACE:
            raise NotGuardable(f"shape of {node.name}")
        return _shape(args[0])  # in place: self's shape (shown as self's)
    if name in _SAME or t in (operator.neg, operator.pos, operator.abs, operator.invert):
        return _shape(args[0])
    if name in _BROADCAST or t in _BIN:
        shapes = [_shape(a)[0] for a in tensors]
        return (lambda env: _broadcast([s(env) for s in shapes])), text
    if name in ("matmul", "mm", "bmm") or t is operator.matmul:
        a, b = (_shape(x)[0] for x in args[:2])
        return (lambda env: _matmul(a(env), b(env))), text
    if name in ("t", "transpose", "swapaxes", "swapdims") and op == "call_method":
        s, _ = _shape(args[0])
        dims = args[1:3] if name != "t" else (0, -1)
        if any(not isinstance(d, int) for d in dims):
            raise NotGuardable(f"shape of {node.name}")
        return (lambda env: _swap(s(env), *dims)), text
    if name in _REDUCE:
        s, _ = _shape(args[0])
        pos = 2 if name == "norm" else 1  # norm(p, dim, keepdim)
        dim = kw.get("dim", args[pos] if len(args) > pos else None)
        keep = kw.get("keepdim", args[pos + 1] if len(args) > pos + 1 else False)
        if isinstance(dim, Node) or isinstance(keep, Node):
            raise NotGuardable(f"shape of {node.name}")
        return (lambda env: _reduce(s(env), dim, bool(keep))), text
    raise NotGuardable(f"shape of {node.name} ({name})")


_expr = _memo("_ember_size_expr", _expr_rule)
_shape_memo = _memo("_ember_shape_rule", _shape_rule)


def _broadcast(shapes: list[tuple]) -> tuple:
    n = max(len(s) for s in shapes)
    out = []
    for i in range(-n, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _matmul(a: tuple, b: tuple) -> tuple:
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return (*b[:-2], b[-1])
    if len(b) == 1:
        return a[:-1]
    if a[-1] != b[-2]:
        raise ValueError(f"matmul of {a} and {b}")
    return (*_broadcast([a[:-2], b[:-2]]), a[-2], b[-1])


def _swap(s: tuple, d0: int, d1: int) -> tuple:
    out = list(s)
    out[d0], out[d1] = out[d1], out[d0]
    return tuple(out)


def _reduce(s: tuple, dim: Any, keep: bool) -> tuple:
    if dim is None or dim == ():
        return tuple(1 for _ in s) if keep else ()
    dims = {d % len(s) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return tuple(1 if i in dims else n for i, n in enumerate(s) if keep or i not in dims)
