"""``freeze`` and ``optimize_for_inference`` for compiled modules.

``freeze`` turns the weights into constants of the program (detached, no gradient) and folds
every computation that depends only on them (``weight.t()``, ``scale * weight``) into new
constants. ``optimize_for_inference`` freezes, then folds eval-mode batch norm into the
convolution before it (new weight and bias), so the program runs fewer ops.
"""

from __future__ import annotations

import inspect
import types

from ember.fx.node import Node, map_arg

from ._script_module import ScriptModule

__all__ = ["freeze", "optimize_for_inference"]

_IMPURE_WORDS = ("dropout", "rand", "bernoulli", "normal", "multinomial", "uniform", "empty")


def _check(mod, api: str) -> None:
    if not isinstance(mod, ScriptModule):
        raise RuntimeError(
            f"ember.jit.{api} expects a ScriptModule (from ember.jit.trace or "
            f"ember.jit.script), got {type(mod).__name__}"
        )
    if mod.training:
        raise RuntimeError(
            "Freezing is currently only implemented for modules in eval mode. "
            "Please call .eval() on your module before freezing."
        )


def _foldable(n: Node) -> bool:
    if n.op not in ("call_function", "call_method") or n.is_impure():
        return False
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    return not any(w in name for w in _IMPURE_WORDS)


def freeze(
    mod: ScriptModule, preserved_attrs: list[str] | None = None, optimize_numerics: bool = True
) -> ScriptModule:
    """A frozen copy of ``mod`` (eval mode): weights inlined as constants, constant
    subexpressions folded. ``preserved_attrs`` names weights to keep as-is."""
    import ember

    _check(mod, "freeze")
    keep = set(preserved_attrs or ())
    graph = mod.graph.__class__()
    env: dict[Node, Node] = {}
    consts: dict[str, object] = {}
    values: dict[Node, object] = {}  # new node -> its constant value, when known
    counter = [0]

    def const_node(value) -> Node:
        name = f"_frozen_param{counter[0]}"
        counter[0] += 1
        consts[name] = value
        node = graph.get_attr(name)
        values[node] = value
        return node

    with ember.no_grad():
        for n in mod.graph.nodes:
            if n.op == "get_attr" and n.target not in keep:
                value = (
                    mod.get_parameter(n.target)
                    if _is_param(mod, n.target)
                    else _fetch(mod, n.target)
                )
                env[n] = const_node(value.detach() if isinstance(value, ember.Tensor) else value)
                continue
            ins = [env[i] for i in n.all_input_nodes]
            if _foldable(n) and ins and all(i in values for i in ins):
                args = map_arg(n.args, lambda x: values[env[x]])
                kwargs = map_arg(n.kwargs, lambda x: values[env[x]])
                if n.op == "call_function":
                    value = n.target(*args, **kwargs)
                else:
                    value = getattr(args[0], n.target)(*args[1:], **kwargs)
                if isinstance(value, ember.Tensor):
                    env[n] = const_node(value)
                    continue
            env[n] = graph.node_copy(n, lambda x: env[x])
    graph.eliminate_dead_code()
    used = {n.target for n in graph.nodes if n.op == "get_attr"}
    root = {k: v for k, v in consts.items() if k in used}
    for k in keep:
        root[k] = _fetch(mod, k)
    # (type(mod) is GraphModule's per-instance class: make a fresh one of the public class)
    cls = next(c for c in type(mod).__mro__ if "_fx_impl" not in c.__dict__)
    out = cls(root, graph, type(mod).__name__)
    for k in keep:
        # what the graph does not read (an exported method, a plain attribute) is carried over
        # as it is: torch keeps a preserved attribute or method on the frozen module
        if "." not in k and not hasattr(out, k):
            value = _fetch(mod, k)
            if inspect.ismethod(value):
                value = types.MethodType(value.__func__, out)
            object.__setattr__(out, k, value)
    out.eval()
    out.__dict__["_frozen"] = True
    return out


def _is_param(mod, target: str) -> bool:
    try:
        mod.get_parameter(target)
        return True
    except AttributeError:
        return False


def _fetch(mod, target: str):
    obj = mod
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj


def optimize_for_inference(
    mod: ScriptModule, other_methods: list[str] | None = None
) -> ScriptModule:
    """Freeze ``mod`` (if not frozen) and fold eval-mode batch norms into convolutions."""
    _check(mod, "optimize_for_inference")
    if not mod.__dict__.get("_frozen"):
        mod = freeze(mod)
    _fold_conv_bn(mod)
    mod.graph.eliminate_dead_code()
    mod.recompile()
    return mod


def _fold_conv_bn(mod: ScriptModule) -> None:
    import ember
    import ember.nn.functional as F

    convs = {F.conv1d, F.conv2d, F.conv3d}
    for bn in list(mod.graph.nodes):
        if bn.op != "call_function" or bn.target is not F.batch_norm:
            continue
        b = _bound(F.batch_norm, bn)
        conv = b.get("input")
        if (
            not isinstance(conv, Node)
            or conv.op != "call_function"
            or conv.target not in convs
            or len(conv.users) != 1
            or b.get("training")
        ):
            continue
        c = _bound(conv.target, conv)
        parts = [
            c.get("weight"),
            c.get("bias"),
            b.get("running_mean"),
            b.get("running_var"),
            b.get("weight"),
            b.get("bias"),
        ]
        if (
            not all(p is None or (isinstance(p, Node) and p.op == "get_attr") for p in parts)
            or parts[0] is None
            or parts[2] is None
            or parts[3] is None
        ):
            continue
        w, cb, mean, var, gamma, beta = (
            None if p is None else _fetch(mod, p.target) for p in parts
        )
        with ember.no_grad():
            scale = (var + b.get("eps", 1e-5)).rsqrt()
            if gamma is not None:
                scale = scale * gamma
            shape = (-1,) + (1,) * (w.ndim - 1)
            new_w = w * scale.reshape(shape)
            new_b = ((cb if cb is not None else ember.zeros_like(mean)) - mean) * scale
            if beta is not None:
                new_b = new_b + beta
        names = []
        for value in (new_w, new_b):
            i = 0
            while hasattr(mod, f"_folded_bn{i}"):
                i += 1
            mod.register_buffer(f"_folded_bn{i}", value)
            names.append(f"_folded_bn{i}")
        with mod.graph.inserting_before(conv):
            wn, bnode = mod.graph.get_attr(names[0]), mod.graph.get_attr(names[1])
        args = list(conv.args)
        args[1] = wn
        if len(args) > 2:
            args[2] = bnode
            conv.args = tuple(args)
        else:
            conv.args = tuple(args)
            conv.kwargs = {**conv.kwargs, "bias": bnode}
        bn.replace_all_uses_with(conv)
        mod.graph.erase_node(bn)


def _bound(fn, node: Node) -> dict:
    sig = inspect.signature(fn)
    b = sig.bind(*node.args, **node.kwargs)
    b.apply_defaults()
    return dict(b.arguments)
