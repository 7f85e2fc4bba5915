"""``make_fx`` through a backward: ``ember.autograd.grad`` and ``ember.func.grad`` /
``grad_and_value`` called on traced values put their gradient ops into the graph (as torch's
``make_fx`` does), so the traced function, run again, computes the gradient without autograd.

How: the autograd graph of the real values the recording tracer computes beside the proxies is
walked by ember's own engine with ``create_graph=True``, where every op's backward formula runs
on tensors (``ctx.xp`` is ``autograd.tensor_xp``). Here the gradients are proxies, the saved
tensors and tensor attributes of each node are replaced by the proxies of the traced values
they are, and ``tensor_xp``'s ops record nodes, so each formula records its ops.

A backward that needs a value the graph does not hold (an array computed inside a forward and
saved, a saved-tensor hook, a tensor made inside an ember function the trace saw as one node)
cannot be replayed for new inputs: such a call is recorded as one node instead (the whole
``grad`` call, run by autograd when the graph runs). So is a result that differs from the
engine's own gradient on the example inputs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["expanding_autograd_grad", "expanding_grad_and_value"]


class _Unexpandable(Exception):
    """The backward reads a value that is not in the traced graph."""


class _TracedOps:
    """``ember.ops`` as ``tensor_xp`` sees it while expanding: each op records a node (named
    after the public ``ember.<op>`` where there is one)."""

    def __init__(self) -> None:
        import ember.ops as ops
        from ember.fx import _patch

        self._ops = ops
        self._public = {n: fn for m, n, fn in _patch._namespace_entries() if m == "ember"}
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        fn = self._cache.get(name)
        if fn is None:
            from ember.fx._patch import tracing_wrapper

            orig = getattr(self._ops, name)
            pub = self._public.get(name)
            same = pub is orig or getattr(pub, "_ember_out_wrapped", None) is orig
            fn = self._cache[name] = tracing_wrapper(pub if same else orig)
        return fn


class _Expansion:
    """One expansion: the traced values by identity, and the patches that make a backward
    formula record its ops."""

    def __init__(self, tracer) -> None:
        from ember import Tensor

        self.tracer = tracer
        self.by_obj: dict[int, Any] = {}
        self.by_out: dict[tuple[int, int], Any] = {}
        for node, v in tracer.values.items():
            if isinstance(v, Tensor):
                self.by_obj.setdefault(id(v), node)
                if v.grad_fn is not None:
                    self.by_out.setdefault((id(v.grad_fn), v._output_nr), node)

    def proxy_of(self, t: Any) -> Any:
        """The proxy of real tensor ``t`` (a traced value), else :class:`_Unexpandable`."""
        from ember import Tensor

        if not isinstance(t, Tensor):
            return t
        node = self.by_obj.get(id(t))
        if node is None and t.grad_fn is not None:
            node = self.by_out.get((id(t.grad_fn), t._output_nr))
        if node is None:
            raise _Unexpandable("a tensor the backward reads is not a value of the graph")
        return self.tracer.proxy(node)

    def concrete_meta(self, proxy, what: str, args: tuple) -> Any:
        from ember import Tensor
        from ember.fx.proxy import _NO_META

        v = self.tracer.values.get(proxy.node)
        if not isinstance(v, Tensor):
            return _NO_META
        return v.size(*args) if what == "size" else getattr(v, what)

    def saved_as_proxy(self, fn_node, i: int) -> Any:
        from ember.autograd.function import _SAVED_CONST, _SAVED_INPUT, _SAVED_OUTPUT

        info = getattr(fn_node, "_saved_info", None)
        if info is None or fn_node._packed:
            raise _Unexpandable(f"{fn_node.name()} saves values the graph cannot name")
        kind, ref = info[i]
        if kind == _SAVED_INPUT:
            return self.proxy_of(ref)
        array = fn_node._saved[i]
        if kind == _SAVED_CONST:
            if hasattr(array, "__array_namespace__"):
                raise _Unexpandable(f"{fn_node.name()} saves an array computed in its forward")
            return array
        assert kind == _SAVED_OUTPUT
        node = self.by_out.get((id(fn_node), ref))
        if node is None:
            raise _Unexpandable(f"an output of {fn_node.name()} is not a value of the graph")
        return self.tracer.proxy(node)

    def function_apply(self):
        """``Function.apply`` that records a node when a proxy is among its arguments (backward
        formulas apply other ops directly: getitem's applies ``IndexPutZeros``)."""
        from ember.autograd.function import Function
        from ember.fx._names import register_name
        from ember.fx._patch import _find_proxy

        orig = Function.__dict__["apply"]
        bound_by_cls: dict = {}

        def apply(cls, *args, **kwargs):
            proxy = _find_proxy(args, kwargs)
            if proxy is None:
                return orig.__get__(None, cls)(*args, **kwargs)
            fn = bound_by_cls.get(cls)
            if fn is None:  # one bound method per class, kept alive: its name stays valid
                fn = bound_by_cls[cls] = orig.__get__(None, cls)
                register_name(fn, f"{cls.__module__}.{cls.__qualname__}.apply")
            return proxy.tracer.create_proxy("call_function", fn, args, kwargs)

        return classmethod(apply)

    def call_backward(self, orig, fn_node, grads, create_graph):
        """The engine's ``_call_backward`` with the node's tensor attributes as proxies."""
        from ember import Tensor

        swapped = {}
        for k, v in list(vars(fn_node).items()):
            if k.startswith("_") or k in ("xp", "grad_out"):
                continue
            if isinstance(v, Tensor):
                swapped[k] = v
            elif isinstance(v, (tuple, list)) and any(isinstance(e, Tensor) for e in v):
                swapped[k] = v
            elif hasattr(v, "__array_namespace__"):
                raise _Unexpandable(f"{fn_node.name()} keeps an array from its forward")
        try:
            for k, v in swapped.items():
                new = (
                    type(v)(self.proxy_of(e) for e in v)
                    if isinstance(v, (tuple, list))
                    else self.proxy_of(v)
                )
                setattr(fn_node, k, new)
            return orig(fn_node, grads, create_graph)
        finally:
            for k, v in swapped.items():
                setattr(fn_node, k, v)


def _rollback(graph, tracer, mark) -> None:
    """Erase the nodes recorded after ``mark`` (a failed expansion's), newest first."""
    later, seen = [], False
    for n in graph.nodes:
        if seen:
            later.append(n)
        seen = seen or n is mark
    for n in reversed(later):
        if n.op != "output" and not n.users:
            tracer.values.pop(n, None)
            graph.erase_node(n)


def _drop_noop_casts(tracer, mark, res: list) -> list:
    """Remove the engine's ``g.to(dtype)`` nodes that keep the dtype (recorded because the
    engine compares an ember dtype with a NumPy one); returns ``res`` with replacements."""
    from ember import Tensor
    from ember.fx.proxy import Proxy

    later, seen = [], False
    for n in tracer.graph.nodes:
        if seen:
            later.append(n)
        seen = seen or n is mark
    repl = {}
    for n in later:
        if n.op != "call_method" or n.target != "to" or n.kwargs or len(n.args) != 2:
            continue
        src, out = n.args[0], tracer.values.get(n)
        v = tracer.values.get(src) if hasattr(src, "op") else None
        if isinstance(v, Tensor) and isinstance(out, Tensor) and v.dtype == out.dtype:
            if v.device == out.device:
                n.replace_all_uses_with(src)
                tracer.graph.erase_node(n)
                tracer.values.pop(n, None)
                repl[n] = src
    return [
        tracer.proxy(repl[g.node]) if isinstance(g, Proxy) and g.node in repl else g for g in res
    ]


def _same(got, want) -> bool:
    import ember

    if (got.shape, got.dtype) != (want.shape, want.dtype):
        return False
    if got.is_meta or want.is_meta:  # tracing_mode="fake": shapes and dtypes are all there is
        return True
    return bool(ember.allclose(got, want, rtol=1e-4, atol=1e-6))


def _expand(tracer, outs: list, ins: list, gos: list, allow_unused: bool):
    """The gradient proxies of ``outs`` with respect to ``ins`` (proxies or traced tensors),
    recorded into the trace; raises :class:`_Unexpandable` (after undoing what it recorded)."""
    import ember
    from ember.autograd import engine, tensor_xp
    from ember.autograd.function import Function
    from ember.fx import _patch
    from ember.fx.proxy import Proxy

    graph = tracer.graph
    mark = list(graph.nodes)[-1]
    exp = _Expansion(tracer)
    try:
        outs = [o if isinstance(o, Proxy) else exp.proxy_of(o) for o in outs]
        ins = [i if isinstance(i, Proxy) else exp.proxy_of(i) for i in ins]
        real_outs = [tracer.values[o.node] for o in outs]
        real_ins = [tracer.values[i.node] for i in ins]
        if not all(isinstance(t, ember.Tensor) for t in real_outs + real_ins):
            raise _Unexpandable("grad of values that are not tensors")
        gos = [
            ember.ones_like(o) if g is None else (g if isinstance(g, Proxy) else exp.proxy_of(g))
            for o, g in zip(outs, gos)
        ]
        real_gos = [tracer.values[g.node] for g in gos]
        orig_call = engine._call_backward
        with _patch.Patcher() as patcher:
            patcher.set_item(vars(tensor_xp), "_ops", _TracedOps())
            # sizes and dtypes are the example's (the engine compares them with the edges')
            patcher.set_attr(tracer, "concrete_meta", exp.concrete_meta)
            patcher.set_attr(Function, "_saved_as_tensor", lambda n, i: exp.saved_as_proxy(n, i))
            patcher.set_attr(Function, "apply", exp.function_apply())
            patcher.set_item(
                vars(engine),
                "_call_backward",
                lambda n, g, cg: exp.call_backward(orig_call, n, g, cg),
            )
            res = engine.run_backward(
                real_outs, gos, True, True, inputs=real_ins, allow_unused=True
            )
        res = _drop_noop_casts(tracer, mark, list(res))
        # the engine's own gradient on the same graph: the expansion must reproduce it
        want = ember.autograd.grad(
            real_outs, real_ins, real_gos, retain_graph=True, allow_unused=True
        )
        for g, w in zip(res, want):
            got = tracer.values[g.node] if isinstance(g, Proxy) else g
            if (got is None) != (w is None) or (w is not None and not _same(got.detach(), w)):
                raise _Unexpandable("the expanded backward differs from autograd's")
        if not allow_unused and any(g is None for g in res):
            raise _Unexpandable("an input is unused (autograd raises)")
        return list(res), real_ins
    except Exception:
        _rollback(graph, tracer, mark)
        raise


def _no_graph(tracer, g, keep: bool):
    """Without ``create_graph`` a gradient carries no graph (its real value is detached)."""
    from ember.fx.proxy import Proxy

    if isinstance(g, Proxy) and not keep:
        v = tracer.values[g.node]
        tracer.values[g.node] = v.detach()
    return g


def expanding_autograd_grad(orig):
    """``ember.autograd.grad`` that, given traced values, records the backward's ops."""
    import functools

    from ember.fx._patch import _find_proxy

    @functools.wraps(orig)
    def grad(
        outputs,
        inputs,
        grad_outputs=None,
        retain_graph=None,
        create_graph=False,
        only_inputs=True,
        allow_unused=None,
        is_grads_batched=False,
        materialize_grads=False,
    ):
        args = (outputs, inputs, grad_outputs)
        kwargs = dict(
            retain_graph=retain_graph,
            create_graph=create_graph,
            allow_unused=allow_unused,
            is_grads_batched=is_grads_batched,
            materialize_grads=materialize_grads,
        )
        proxy = _find_proxy(args, {})
        if proxy is None:
            return orig(*args, **kwargs)
        tracer = proxy.tracer
        seq_in = isinstance(inputs, (tuple, list))
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        ins = list(inputs) if seq_in else [inputs]
        gos = grad_outputs
        gos = list(gos) if isinstance(gos, (tuple, list)) else [gos] * (gos is not None)
        gos = gos or [None] * len(outs)
        if not is_grads_batched and len(gos) == len(outs):
            try:
                res, _ = _expand(tracer, outs, ins, gos, bool(allow_unused) or materialize_grads)
            except Exception:
                res = None
            if res is not None:
                import ember

                out = []
                for i, g in zip(ins, res):
                    if g is None and materialize_grads:
                        g = ember.zeros_like(i)
                    out.append(_no_graph(tracer, g, create_graph))
                return tuple(out)
        # not expandable: one node, run by autograd when the graph runs
        return tracer.create_proxy("call_function", orig, args, kwargs, name="grad")

    return grad


def expanding_grad_and_value(orig, func, argnums=0, has_aux=False, *, with_value: bool):
    """``ember.func.grad`` (``with_value=False``) or ``grad_and_value`` of ``func`` that,
    called on traced values, records ``func``'s ops and its backward's."""
    import functools

    from ember.fx._patch import _find_proxy

    transformed = orig(func, argnums, has_aux)

    @functools.wraps(transformed)
    def call(*args, **kwargs):
        proxy = _find_proxy(args, kwargs)
        if proxy is None:
            return transformed(*args, **kwargs)
        tracer = proxy.tracer
        mark = list(tracer.graph.nodes)[-1]
        try:
            return _traced_call(tracer, func, argnums, has_aux, with_value, args, kwargs)
        except Exception:
            _rollback(tracer.graph, tracer, mark)
        name = "grad_and_value" if with_value else "grad"
        return tracer.create_proxy("call_function", transformed, args, kwargs, name=name)

    return call


def _traced_call(tracer, func, argnums, has_aux, with_value, args, kwargs):
    import ember
    from ember.func._common import normalize_argnums
    from ember.func._pytree import tree_flatten, tree_unflatten
    from ember.fx.proxy import Proxy

    nums = normalize_argnums(argnums, len(args))
    args = list(args)
    lifted, keep_graph = [], False
    for n in nums:
        leaves, spec = tree_flatten(args[n])
        new = []
        for leaf in leaves:
            if not isinstance(leaf, Proxy) or not isinstance(
                tracer.values[leaf.node], ember.Tensor
            ):
                raise _Unexpandable("func.grad of an argument that is not a traced tensor")
            real = tracer.values[leaf.node]
            if real.requires_grad:  # an outer level's input: a differentiable alias
                keep_graph = True
                p = leaf.view_as(leaf)
            else:
                p = leaf.detach()
                tracer.values[p.node].requires_grad_(True)
            new.append(p)
        lifted.append((new, spec))
        args[n] = tree_unflatten(new, spec)
    with ember.enable_grad():
        out = func(*args, **kwargs)
    aux = None
    if has_aux:
        out, aux = out
    if not isinstance(out, Proxy) or tracer.values[out.node].numel() != 1:
        raise _Unexpandable("func.grad of a function whose output is not a traced scalar")
    flat_in = [p for new, _ in lifted for p in new]
    res, _ = _expand(tracer, [out], flat_in, [None], True)
    res = [ember.zeros_like(p) if g is None else g for p, g in zip(flat_in, res)]
    res = [_no_graph(tracer, g, keep_graph) for g in res]
    trees, k = [], 0
    for new, spec in lifted:
        trees.append(tree_unflatten(res[k : k + len(new)], spec))
        k += len(new)
    g = trees[0] if isinstance(argnums, int) else tuple(trees)
    if with_value:
        value = out if keep_graph else out.detach()
        return (g, (value, aux)) if has_aux else (g, value)
    return (g, aux) if has_aux else g
