"""Control flow from ``ember.jit.script``: ``ember.cond`` becomes an ONNX ``If``."""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._ops_basic import typed
from ._registry import fn


@fn("cond")
def cond(ctx, pred, true_fn, false_fn, operands=()):
    from ember.fx import GraphModule

    from ._exporter import _flatten, lower_subgraph

    if not isinstance(true_fn, GraphModule) or not isinstance(false_fn, GraphModule):
        raise OnnxExporterError(
            "ember.cond branches must be GraphModules (as ember.jit.script "
            "makes them) to be exported"
        )
    ops = list(operands)
    ex = ctx.ex
    then_g, _ = lower_subgraph(ctx, true_fn, ops, "then")
    else_g, _ = lower_subgraph(ctx, false_fn, ops, "else")
    n_out = len(then_g.output)
    if n_out != len(else_g.output):
        raise OnnxExporterError("the branches of ember.cond return different numbers of values")
    c = ctx.op("Reshape", [typed(ctx, pred, np.bool_), ctx.ints([])])
    outs = ctx.op("If", [c], n_out=n_out, then_branch=then_g, else_branch=else_g)
    outs = [outs] if n_out == 1 else list(outs)
    if isinstance(ex, (tuple, list)):
        return type(ex)(_rebuild(ex, iter(outs)))
    return outs[0] if len(_flatten(ex)) == 1 else tuple(outs)


def _rebuild(like, it):
    for e in like:
        yield tuple(_rebuild(e, it)) if isinstance(e, (tuple, list)) else next(it)


@fn("while_loop")
def while_loop(ctx, cond_fn, body_fn, carried_inputs, additional_inputs=()):
    """An ONNX ``Loop`` whose body runs ``body_fn`` then ``cond_fn`` on the new state."""
    from onnx import TensorProto, helper

    from ._context import Sym
    from ._exporter import _flatten, lower_into, make_subgraph, value_info_any

    carried, extra = list(carried_inputs), list(additional_inputs)
    if any(isinstance(c, (tuple, list)) for c in carried):
        raise OnnxExporterError("while_loop with nested carried values is not converted")
    first = _flatten(lower_into(ctx, cond_fn, carried + extra))
    c0 = ctx.op("Reshape", [typed(ctx, first[0], np.bool_), ctx.ints([])])
    saved = ctx.nodes
    ctx.nodes = []
    try:
        it_name, cin_name = ctx.fresh("loop_iter"), ctx.fresh("loop_cond_in")
        state = [
            Sym(ctx.fresh("loop_carried"), c.ex if isinstance(c, Sym) else c, frozenset())
            for c in carried
        ]
        inputs_vi = [
            helper.make_tensor_value_info(it_name, TensorProto.INT64, []),
            helper.make_tensor_value_info(cin_name, TensorProto.BOOL, []),
        ]
        inputs_vi += [value_info_any(s.name, s) for s in state]
        new = _flatten(lower_into(ctx, body_fn, state + extra))
        if len(new) != len(carried):
            raise OnnxExporterError("while_loop's body returns a different number of values")
        new = [Sym(ctx.name_of(v), v.ex if isinstance(v, Sym) else v) for v in new]
        c = _flatten(lower_into(ctx, cond_fn, new + extra))[0]
        c = ctx.op("Reshape", [typed(ctx, c, np.bool_), ctx.ints([])])
        body = make_subgraph(ctx, "loop_body", inputs_vi, [Sym(c, np.asarray(True))] + new)
    finally:
        ctx.nodes = saved
    outs = ctx.op("Loop", ["", c0] + carried, n_out=len(carried), body=body)
    return tuple([outs] if len(carried) == 1 else outs)
