"""Sizes as Python ints during capture, as torch.compile specializes on them by default.

While ember.compile traces with static shapes, a Proxy's ``shape``, ``size()``, ``dim()``,
``ndim``, ``numel()``, ``len()``, ``dtype`` and ``device`` are answered with the values the
traced call's own inputs give (``core/fx/proxy.py`` asks the tracer's ``concrete_meta``), so
``if g.size(-2) > g.size(-1):``, ``for i in range(x.shape[0])`` and ``x.view(b * t, -1)``
are ordinary Python on ints. The graph holds those ints; the cache key guards every tensor
input's exact shape, dtype, device and ``requires_grad``, so another shape recompiles.

A size of an intermediate value is found by evaluating the nodes it depends on once, on the
example inputs, with autograd off (what torch does with fake tensors, done with real ones):
in-place ops run on copies, the RNG is restored afterwards, and anything that cannot be
evaluated (a leaf module call, an error) leaves the query symbolic, as it was before.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

from ember.fx.node import Node, _side_effectful_functions, map_arg
from ember.fx.proxy import _NO_META

__all__ = ["StaticShapes", "mark_dynamic", "mark_static"]

_FAIL = object()


class StaticShapes:
    """Values of graph nodes on the example inputs, for a compile trace's size queries."""

    def __init__(self, examples: dict[str, Any], root: Any, tensor_dict: dict) -> None:
        self._examples = examples
        self._root = root
        self._methods = tensor_dict  # Tensor.__dict__ before the trace patched it
        self._values: dict[Node, Any] = {}

    def query(self, proxy: Any, what: str, args: tuple) -> Any:
        from ember import Tensor

        try:
            node = proxy.node
        except Exception:
            return _NO_META
        val = self._value(node)
        if val is _FAIL:
            return _NO_META
        if what == "len":
            return len(val)
        if not isinstance(val, Tensor):
            return _NO_META
        if what == "size":
            return val.size(*args)
        if what in ("dim", "numel"):
            return getattr(val, what)()
        return getattr(val, what)  # shape, ndim, dtype, device

    def _value(self, node: Node) -> Any:
        if node in self._values:
            return self._values[node]
        import ember

        rng = ember.get_rng_state()
        cuda_rng = _cuda_rng_state()
        try:
            with ember.no_grad():
                val = self._eval(node)
        except Exception:
            val = _FAIL
        finally:
            ember.set_rng_state(rng)
            if cuda_rng is not None:
                ember.cuda.set_rng_state(cuda_rng)
        self._values[node] = val
        return val

    def _eval(self, node: Node) -> Any:
        from ember.fx.proxy import Proxy

        if node in self._values:
            val = self._values[node]
            if val is _FAIL:
                raise RuntimeError("not evaluable")
            return val
        # the dependencies first, iteratively: a deep network must not hit the recursion limit
        todo = [node]
        order: list[Node] = []
        seen = set()
        while todo:
            n = todo.pop()
            if n in seen or n in self._values:
                continue
            seen.add(n)
            order.append(n)
            todo.extend(n.all_input_nodes)
        for n in reversed(_topo(order)):
            if n in self._values:
                continue
            self._values[n] = _FAIL  # until it succeeds
            val = self._run(n)
            if isinstance(val, Proxy) or _holds_proxy(val):
                raise RuntimeError("evaluated to a Proxy")
            self._values[n] = val
        val = self._values[node]
        if val is _FAIL:
            raise RuntimeError("not evaluable")
        return val

    def _run(self, n: Node) -> Any:
        if n.op == "placeholder":
            name = n.target.lstrip("*")
            if name in self._examples:
                return self._examples[name]
            if n.args:
                return n.args[0]
            raise KeyError(name)
        if n.op == "get_attr":
            obj = self._root
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return obj
        args = map_arg(n.args, self._values.__getitem__)
        kwargs = map_arg(n.kwargs, self._values.__getitem__)
        if n.op == "call_function":
            target = n.target
            mod = getattr(target, "__module__", None) or ""
            if target is not operator.setitem and (
                target in _side_effectful_functions or mod.startswith("ember.distributed")
            ):
                # a collective or a side effect must not run an extra time at capture (other
                # ranks would not join it): that size stays symbolic
                raise RuntimeError(f"{n.name} is not evaluated for sizes")
            if target is operator.setitem:
                args = (_copy(args[0]), *args[1:])
            return target(*args, **kwargs)
        if n.op == "call_method":
            name = n.target
            self_val = args[0]
            if name.endswith("_") and not name.endswith("__"):
                self_val = _copy(self_val)  # in place: never on the user's tensors
            fn = self._methods.get(name)
            if callable(fn) and not isinstance(fn, (staticmethod, classmethod)):
                return fn(self_val, *args[1:], **kwargs)
            return getattr(self_val, name)(*args[1:], **kwargs)
        raise RuntimeError(f"{n.op} nodes are not evaluated for sizes")


def _topo(order: list[Node]) -> list[Node]:
    # ``order`` is a DFS from the queried node; sort it by graph position (users after inputs)
    pos = {n: i for i, n in enumerate(order[0].graph.nodes)}
    return sorted(order, key=lambda n: -pos.get(n, 0))


def _copy(v: Any) -> Any:
    from ember import Tensor

    return v.clone() if isinstance(v, Tensor) else v


def _holds_proxy(v: Any) -> bool:
    from ember.fx.proxy import Proxy

    if isinstance(v, (tuple, list)):
        return any(isinstance(e, Proxy) or _holds_proxy(e) for e in v)
    if isinstance(v, dict):
        return any(isinstance(e, Proxy) or _holds_proxy(e) for e in v.values())
    return False


def _cuda_rng_state() -> Any:
    import ember

    try:
        if ember.cuda.is_available() and ember.cuda.is_initialized():
            return ember.cuda.get_rng_state()
    except Exception:
        return None
    return None


# id(tensor) -> (weakref, dims marked dynamic) (Tensor has __slots__: no attribute to set)
_DIM_MARKS: dict[int, tuple[Any, set[int]]] = {}


def mark_dynamic(t: Any, index: int | list[int] | tuple[int, ...]) -> None:
    """Mark dims of ``t`` dynamic (torch._dynamo.mark_dynamic): a compiled call with ``t``
    captures shape-generic code instead of specializing on these sizes."""
    from ember import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"mark_dynamic: expected a Tensor, got {type(t).__name__}")
    dims = [index] if isinstance(index, int) else list(index)
    for d in dims:
        if not isinstance(d, int) or not -t.dim() <= d < max(t.dim(), 1):
            raise IndexError(f"mark_dynamic: dim {d!r} is out of range for a {t.dim()}-d tensor")
    key = id(t)
    if key not in _DIM_MARKS:
        _DIM_MARKS[key] = (weakref.ref(t, lambda _r, k=key: _DIM_MARKS.pop(k, None)), set())
    _DIM_MARKS[key][1].update(d % max(t.dim(), 1) for d in dims)


def mark_static(t: Any, index: int | list[int] | tuple[int, ...] | None = None) -> None:
    """Undo :func:`mark_dynamic` for dims of ``t`` (all dims when ``index`` is None); sizes
    are specialized by default."""
    marks = _DIM_MARKS.get(id(t))
    if marks is None:
        return
    if index is None:
        marks[1].clear()
    else:
        dims = [index] if isinstance(index, int) else list(index)
        marks[1].difference_update(d % max(t.dim(), 1) for d in dims)
    if not marks[1]:
        _DIM_MARKS.pop(id(t), None)


def _marked_dynamic(v: Any) -> bool:
    if isinstance(v, (tuple, list)):
        return any(_marked_dynamic(e) for e in v)
    m = _DIM_MARKS.get(id(v))
    return m is not None and m[0]() is v and bool(m[1])
