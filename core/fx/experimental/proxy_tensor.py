"""``make_fx``: a GraphModule of the ops a function actually ran (torch's ``make_fx``).

ember has no dispatcher below its ops, so ``make_fx`` is export's recording tracer
(``ember.export._recorder``) applied to a function: the function runs on its example inputs
and every ember op (and custom operator, ``ember.ops.<ns>.<op>``) it reaches is recorded, with
Python control flow following the values (the branch taken is baked in). Nodes are ember's
public ops, not aten's: ``ember.relu`` where torch shows ``aten.relu.default``.

``tracing_mode="fake"`` / ``"symbolic"`` run the trace on meta copies of the inputs (shapes
and dtypes only; custom ops use their fake kernels), so nothing is computed; shapes are still
specialized to the example's. ``ember.autograd.grad`` and functions made by ``ember.func``'s
``grad`` / ``grad_and_value``, called by the function, put their backward's ops into the graph,
as torch's do (``_traced_backward.py``; a backward that reads a value the graph does not hold
is one node instead). Each call of a function made by ``jacrev``, ``jacfwd``, ``hessian`` or
``vmap`` is one node (their ops are not expanded, as torch's would be).
``decomposition_table`` maps an op (an ember function, ``ember.ops.aten.<op>.<overload>`` or a
custom op) to a function that replaces it, traced through.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["get_proxy_mode", "make_fx"]

_MODES = ("real", "fake", "symbolic")
# ember.func transforms whose returned function becomes one node when called on traced values
_TRANSFORMS = ("jacrev", "jacfwd", "hessian", "vmap")
# ember.func transforms whose calls on traced values record the function's and its backward's ops
_GRAD_TRANSFORMS = ("grad", "grad_and_value")
# the tracers of the make_fx calls now running, innermost last (get_proxy_mode reads it)
_ACTIVE: list = []


def get_proxy_mode() -> Any:
    """The innermost running ``make_fx`` trace, or ``None`` outside one (torch's
    ``get_proxy_mode``; libraries test it to skip data-dependent fast paths while tracing)."""
    return _ACTIVE[-1] if _ACTIVE else None


def _leaf(fn: Callable, name: str) -> Callable:
    """``fn`` recorded as one call_function node (named ``name``) when a traced value is among
    its arguments."""
    from ember.fx._patch import _find_proxy

    def call(*args, **kwargs):
        proxy = _find_proxy(args, kwargs)
        if proxy is None:
            return fn(*args, **kwargs)
        return proxy.tracer.create_proxy("call_function", fn, args, kwargs, name=name)

    return call


def _patch_transforms(patcher, fn_globals: dict) -> None:
    import functools

    import ember.autograd
    import ember.func as func

    from ._traced_backward import expanding_autograd_grad, expanding_grad_and_value

    def expanding(orig, name):
        def transform(f, argnums=0, has_aux=False):
            return expanding_grad_and_value(
                orig, f, argnums, has_aux, with_value=name == "grad_and_value"
            )

        return functools.wraps(orig)(transform)

    patches = [(ember.autograd, "grad", expanding_autograd_grad(ember.autograd.grad))]
    for name in _GRAD_TRANSFORMS:
        patches.append((func, name, expanding(getattr(func, name), name)))
    for name in _TRANSFORMS:
        orig = getattr(func, name)
        patched = functools.wraps(orig)(lambda *a, _o=orig, _n=name, **k: _leaf(_o(*a, **k), _n))
        patches.append((func, name, patched))
    for owner, name, patched in patches:
        orig = getattr(owner, name)
        patcher.set_attr(owner, name, patched)
        for key, value in list(fn_globals.items()):  # ``from ember.func import grad``
            if value is orig:
                patcher.set_item(fn_globals, key, patched)


def _named_wrapper(f: Callable, n: int) -> Callable:
    """``f`` behind a function with ``n`` named parameters (arg0_1, ...) and ``f``'s globals,
    so the tracer patches the names ``f``'s module imported (``from ember import relu``)."""
    import types

    params = ", ".join(f"arg{i}_1" for i in range(n))
    src = f"def _outer(_f):\n    def forward({params}):\n        return _f({params})\n"
    src += "    return forward\n"
    scope: dict = {}
    exec(src, scope)  # noqa: S102  (a fixed template: only parameter names vary)
    inner = scope["_outer"](f)
    g = getattr(f, "__globals__", None)
    if g is None:
        return inner
    return types.FunctionType(inner.__code__, g, "forward", None, inner.__closure__)


def _decomposed(gm, table: dict) -> Callable:
    """A function that replays ``gm``, calling ``table``'s replacement for listed targets."""
    from ember.export._recorder import fetch_attr
    from ember.fx._patch import tracing_wrapper
    from ember.fx.node import map_arg

    def lookup(target):
        for key, fn in table.items():
            if key is target or getattr(key, "_fn", None) is target:
                return fn
        return None

    def replay(*args):
        env: dict = {}
        it = iter(args)
        for node in gm.graph.nodes:
            a = map_arg(node.args, env.__getitem__)
            k = map_arg(node.kwargs, env.__getitem__)
            if node.op == "placeholder":
                env[node] = next(it)
            elif node.op == "get_attr":
                env[node] = fetch_attr(gm, node.target)
            elif node.op == "call_function":
                fn = lookup(node.target)
                env[node] = fn(*a, **k) if fn is not None else tracing_wrapper(node.target)(*a, **k)
            elif node.op == "call_method":
                env[node] = getattr(a[0], node.target)(*a[1:], **k)
            elif node.op == "output":
                return a[0]
            else:
                raise RuntimeError(f"make_fx: unexpected node {node.op} in a recorded graph")
        return None

    return replay


def make_fx(
    f: Callable,
    decomposition_table: dict | None = None,
    tracing_mode: str = "real",
    _allow_non_fake_inputs: bool = False,
    *,
    pre_dispatch: bool = False,
    record_module_stack: bool = False,
    _allow_fake_constant: bool = False,
    _error_on_data_dependent_ops: bool = True,
) -> Callable[..., Any]:
    """Return a function that, given example inputs, traces ``f`` into a GraphModule.

    The trace runs ``f`` once on the inputs and records every ember op it calls, so Python
    control flow is specialised to those inputs.

    Args:
        f: the function to trace (its arguments are tensors or pytrees of them).
        decomposition_table: ``{op: function}``: ops traced through these functions instead.
        tracing_mode: ``"real"`` (run on the inputs), ``"fake"`` or ``"symbolic"`` (run on
            meta copies of them: no data is computed).
        pre_dispatch: accepted for PyTorch's signature.
        record_module_stack: accepted for PyTorch's signature.

    Example::

        >>> gm = make_fx(lambda x: ember.sin(x) * 2)(ember.ones(3))
        >>> print(gm.code)
        def forward(self, arg0_1):
            sin = ember.sin(arg0_1);  arg0_1 = None
            mul = sin * 2;  sin = None
            return mul
    """
    if tracing_mode not in _MODES:
        raise ValueError(f"make_fx: tracing_mode must be one of {_MODES}, got {tracing_mode!r}")
    if not callable(f):
        raise TypeError(f"make_fx expects a callable, got {type(f).__name__}")

    def wrapped(*args):
        import ember
        from ember.export._recorder import RecordingTracer, TracerWarning
        from ember.fx import GraphModule, _patch
        from ember.fx.node import map_aggregate

        if tracing_mode != "real":
            args = map_aggregate(
                args,
                lambda a: (
                    a.detach().to("meta").requires_grad_(a.requires_grad)
                    if isinstance(a, ember.Tensor)
                    else a
                ),
            )
        tracer = RecordingTracer(mode="jit")
        fn = _named_wrapper(f, len(args))
        with warnings.catch_warnings(), _patch.Patcher() as patcher:
            warnings.simplefilter("ignore", TracerWarning)  # make_fx bakes branches silently
            _patch_transforms(patcher, getattr(f, "__globals__", {}))
            _ACTIVE.append(tracer)
            try:
                graph, _ = tracer.trace_with_inputs(fn, args)
            finally:
                _ACTIVE.pop()
        graph.eliminate_dead_code()
        root = tracer.root if isinstance(tracer.root, ember.nn.Module) else ember.nn.Module()
        gm = GraphModule(root, graph, "make_fx")
        if decomposition_table:
            return make_fx(_decomposed(gm, decomposition_table), None, tracing_mode)(*args)
        return gm

    return wrapped
