"""``ember._inductor.pattern_matcher`` (torch._inductor.pattern_matcher): graph rewrites a
program registers for ``ember.compile`` -- the conv/batch-norm fuser tutorial's idiom::

    patterns = PatternMatcherPass()
    register_replacement(search_fn, replace_fn, example_inputs, fwd_only, patterns)
    config.post_grad_custom_post_pass = patterns.apply

``search_fn`` is traced (``ember.fx.symbolic_trace``) into a pattern of ``call_function`` nodes
over its arguments; the pattern is shape-agnostic. Each match in a captured graph (a node whose
arguments, followed back, have the pattern's targets and constants; inner nodes used nowhere
else) is replaced by one call of ``replace_fn`` on the matched arguments, which runs eagerly
inside the compiled graph (torch traces and inlines it instead: the values are the same).
Module calls the capture keeps whole are matched as their functional form: an eval-mode
``BatchNorm`` as ``F.batch_norm(x, running_mean, running_var, weight, bias, False, momentum,
eps)``, a ``Conv1d/2d/3d`` (zeros padding) as ``F.conv{n}d(x, weight, bias, stride, padding,
dilation, groups)``. ``counters["inductor"]["pattern_matcher_count"]`` counts replacements.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["PatternMatcherPass", "fwd_only", "register_replacement", "run_custom_pass"]

_ROOT: list = [None]  # the module owning the graph a custom pass is running on


def fwd_only(fn: Callable, args: Iterable | None = None, *_, **__) -> Any:
    """Trace ``fn`` (forward only) into a GraphModule; ``args`` are not needed (the pattern
    does not depend on shapes)."""
    from ember.fx import symbolic_trace

    return symbolic_trace(fn)


def _return_true(match: Any) -> bool:
    return True


class _Attr:
    """A module attribute a matched module call reads (``bn1.running_mean``), made a
    ``get_attr`` node only if the match is replaced."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Attr) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _bound(fn: Callable, args: tuple, kwargs: dict) -> dict | None:
    try:
        b = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    b.apply_defaults()
    return dict(b.arguments)


def _module_call(node: Any) -> tuple[Callable, dict] | None:
    """A ``call_module`` node as the functional call it runs (see the module docstring)."""
    import ember.nn.functional as F
    from ember import nn

    root = _ROOT[0]
    if root is None or not node.args:
        return None
    try:
        mod = root.get_submodule(node.target)
    except AttributeError:
        return None
    t = node.target
    x = node.args[0]
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if mod.training or mod.running_mean is None:
            return None
        w = _Attr(f"{t}.weight") if mod.weight is not None else None
        b = _Attr(f"{t}.bias") if mod.bias is not None else None
        args = (x, _Attr(f"{t}.running_mean"), _Attr(f"{t}.running_var"), w, b)
        return F.batch_norm, _bound(F.batch_norm, (*args, False, mod.momentum, mod.eps), {})
    convs = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
    fn = convs.get(type(mod))
    if fn is not None and mod.padding_mode == "zeros" and not isinstance(mod.padding, str):
        b = _Attr(f"{t}.bias") if mod.bias is not None else None
        geometry = (mod.stride, mod.padding, mod.dilation, mod.groups)
        return fn, _bound(fn, (x, _Attr(f"{t}.weight"), b, *geometry), {})
    return None


def _as_call(node: Any) -> tuple[Callable, dict] | None:
    if node.op == "call_function":
        got = _bound(node.target, node.args, node.kwargs)
        return None if got is None else (node.target, got)
    if node.op == "call_module":
        return _module_call(node)
    return None


def _same_const(p: Any, g: Any) -> bool:
    """Constants equal, an int equal to a tuple repeating it (``stride=1`` vs ``(1, 1)``)."""
    if isinstance(p, (list, tuple)) and isinstance(g, (list, tuple)):
        return len(p) == len(g) and all(_same_const(a, b) for a, b in zip(p, g))
    if isinstance(p, (list, tuple)) != isinstance(g, (list, tuple)):
        seq, one = (p, g) if isinstance(p, (list, tuple)) else (g, p)
        return len(seq) > 0 and all(_same_const(v, one) for v in seq)
    if isinstance(p, float) or isinstance(g, float):
        return isinstance(g, (int, float)) and abs(float(p) - float(g)) <= 1e-12 * max(
            1.0, abs(float(p))
        )
    return type(p) is type(g) and p == g or (p is None and g is None)


class _Pattern:
    def __init__(self, search_fn: Callable, replace_fn: Callable, trace_fn: Callable, check):
        gm = trace_fn(search_fn, None)
        nodes = list(gm.graph.nodes)
        self.inputs = [n for n in nodes if n.op == "placeholder"]
        outs = [n for n in nodes if n.op == "output"]
        out = outs[0].args[0] if outs else None
        if not hasattr(out, "op") or out.op != "call_function":
            raise RuntimeError(
                "register_replacement: the search function must return one tensor computed "
                "by a function call"
            )
        self.output = out
        self.replace_fn = replace_fn
        self.check = check

    def match(self, node: Any) -> tuple[dict, list] | None:
        env: dict = {}
        matched: list = []
        if not self._match(self.output, node, env, matched):
            return None
        inner = set(matched) - {node}
        for n in inner:  # an inner value read outside the match cannot be removed
            if any(u not in inner and u is not node for u in n.users):
                return None
        return env, matched

    def _match(self, p: Any, g: Any, env: dict, matched: list) -> bool:
        if p.op == "placeholder":
            if p in env:
                return env[p] is g or (isinstance(g, _Attr) and env[p] == g)
            env[p] = g
            return True
        if not hasattr(g, "op"):
            return False
        call = _as_call(g)
        if call is None or call[0] is not p.target:
            return False
        pargs = _bound(p.target, p.args, p.kwargs)
        if pargs is None:
            return False
        for name, pv in pargs.items():
            gv = call[1].get(name)
            if hasattr(pv, "op"):
                # a pattern input may be None in the graph (a conv without bias)
                if gv is None and pv.op != "placeholder" or not self._match(pv, gv, env, matched):
                    return False
            elif not _same_const(pv, gv):
                return False
        matched.append(g)
        return True


class PatternMatcherPass:
    """A set of registered patterns; :meth:`apply` rewrites a graph with them."""

    def __init__(self, pass_name: str | None = None, **_: Any) -> None:
        self.pass_name = pass_name
        self.patterns: list[_Pattern] = []

    def apply(self, graph: Any) -> int:
        """Replace every match in ``graph`` (an ``fx.Graph`` or ``GraphModule``); returns the
        number of replacements."""
        from ember._compile._frame import counters

        graph = getattr(graph, "graph", graph)
        if _ROOT[0] is None and getattr(graph, "owning_module", None) is not None:
            _ROOT[0] = graph.owning_module
        count = 0
        for node in reversed(list(graph.nodes)):
            if node.graph is not graph or node.op not in ("call_function", "call_module"):
                continue  # erased by an earlier replacement
            for pat in self.patterns:
                got = pat.match(node)
                if got is None or not pat.check(got):
                    continue
                _replace(graph, pat, node, *got)
                count += 1
                counters["inductor"]["pattern_matcher_count"] += 1
                counters["inductor"]["pattern_matcher_nodes"] += len(got[1])
                break
        return count

    __call__ = apply


def _replace(graph: Any, pat: _Pattern, root: Any, env: dict, matched: list) -> None:
    with graph.inserting_before(root):
        attrs: dict = {}
        args = []
        for p in pat.inputs:
            v = env.get(p)
            if isinstance(v, _Attr):
                if v.name not in attrs:
                    attrs[v.name] = graph.get_attr(v.name)
                v = attrs[v.name]
            args.append(v)
        new = graph.call_function(pat.replace_fn, tuple(args))
    root.replace_all_uses_with(new)
    for n in reversed(matched):  # users first
        if not n.users:
            graph.erase_node(n)


def register_replacement(
    search_fn: Callable,
    replace_fn: Callable,
    example_inputs: Iterable,
    trace_fn: Callable,
    pass_dicts: PatternMatcherPass | Iterable[PatternMatcherPass],
    extra_check: Callable = _return_true,
    scalar_workaround: Any = (),
    exclusive_arg_names: Any = (),
    search_fn_pattern: Any = None,
) -> bool:
    """Register ``search_fn``'s graph, to be replaced by calls of ``replace_fn`` (same
    arguments) in ``pass_dicts``. ``example_inputs`` are accepted for torch's signature
    (patterns here do not depend on shapes)."""
    pat = _Pattern(search_fn, replace_fn, trace_fn, extra_check)
    passes = [pass_dicts] if isinstance(pass_dicts, PatternMatcherPass) else list(pass_dicts)
    for p in passes:
        p.patterns.append(pat)
    return True


def run_custom_pass(fn: Callable, graph: Any, root: Any) -> None:
    """Run a program's ``config.post_grad_custom_post_pass`` on a captured graph of ``root``
    (called by ``ember.compile`` for the ember / inductor backends)."""
    prev, _ROOT[0] = _ROOT[0], root
    try:
        fn(graph)
    finally:
        _ROOT[0] = prev
