"""Autograd above ``__torch_dispatch__`` (core/_dispatch.py): one graph node per op, recorded
with the caller's tensors, while the handler below runs with gradient recording off."""

from __future__ import annotations

import numpy as np

from . import _dispatch
from ._dispatch_ops import user_attr
from .autograd import function as _fn
from .autograd import grad_mode
from .autograd.function import _SAVED_CONST, _SAVED_INPUT, Function
from .backend.meta import MetaArray
from .backend.meta import empty as _meta_empty
from .profiler import _record
from .tensor import Tensor

__all__ = ["outer_autograd", "SubclassBackward", "plain_gradient"]

_new = object.__new__


def outer_autograd(cls, args: tuple, kwargs: dict, below):
    """Run ``below(cls, args, kwargs)`` (a mode's or a subclass's handler) with recording off
    and record ``cls``'s node over ``args`` for its outputs."""
    ctx = _new(cls)
    needs, edges = [], []
    for a in args:
        if isinstance(a, Tensor) and a.requires_grad:
            needs.append(True)
            d, fn = a._data, a.grad_fn
            edges.append(
                (a, 0, d.shape, d.dtype) if fn is None else (fn, a._output_nr, d.shape, d.dtype)
            )
        else:
            needs.append(False)
            edges.append(None)
    ctx.needs_input_grad = tuple(needs)
    ctx._edges = edges
    ctx._seq = _fn._next_seq()  # creation order for the engine (function.py)
    if any(_dispatch.is_wrapper(a) for a in args):
        return _subclass_node(ctx, cls, args, kwargs, below)
    stack = getattr(_dispatch._TLS, "pending", None)
    if stack is None:
        stack = _dispatch._TLS.pending = []
    entry = [cls, ctx, False]
    t0 = _record._perf() if _record._active[0] is not None else None
    stack.append(entry)
    try:
        with grad_mode.no_grad():
            out = below(cls, args, kwargs)
    finally:
        stack.remove(entry)
    if not entry[2]:  # the handler never ran the op: run its forward for the backward's state
        with grad_mode.no_grad():
            _dispatch.forward_into(ctx, cls, args, kwargs)
    outs = _outputs(out, args)
    _wire(ctx, outs)
    if ctx._saved:
        ctx._describe_saved(args, outs)
    if entry[2] and (_record._active[0] is not None or _record._observers):
        # the profiler and FlopCounterMode see the op (its forward ran here, not in apply)
        _record.note_apply(cls, args, outs if type(out) is tuple else outs[0], t0)
    return outs if type(out) is tuple else outs[0]


def _outputs(out, args) -> tuple:
    outs = out if type(out) is tuple else (out,)
    fixed = []
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(
                f"__torch_dispatch__ returned {type(o).__name__} where ember expects Tensors"
            )
        # a handler may hand back an input itself (a no-op); the graph needs a new tensor
        fixed.append(o.detach() if any(o is a for a in args) else o)
    return tuple(fixed)


def _wire(node, outs) -> None:
    node._outputs_meta = [(o._data.shape, o._data.dtype) for o in outs]
    non_diff = node._non_diff
    for i, o in enumerate(outs):
        if o._data.dtype.kind in "fcV" and id(o._data) not in non_diff:
            o.requires_grad = True
            o.grad_fn = node
            o._output_nr = i


# ---- subclass inputs: saved values from a meta run, backward on tensors ----------------------
def _subclass_node(ctx, cls, args, kwargs, below):
    metas = [
        _meta_empty(a._data.shape, a._data.dtype) if isinstance(a, Tensor) else a for a in args
    ]
    from .backend.meta import run

    try:
        meta_out = run(cls.forward, ctx, metas, kwargs)
    except Exception as e:
        raise NotImplementedError(
            f"autograd through {cls.__name__} with {_types(args)} inputs: its forward could "
            f"not run on shapes alone ({type(e).__name__}: {e})"
        ) from None
    ctx.xp = np
    with grad_mode.no_grad():
        out = below(cls, args, kwargs)
    outs = _outputs(out, args)
    meta_outs = meta_out if type(meta_out) is tuple else (meta_out,)
    by_id = {id(m): a for m, a in zip(metas, args, strict=True) if isinstance(a, Tensor)}
    info, missing = [], False
    for s in ctx._saved or ():
        if id(s) in by_id:
            info.append((_SAVED_INPUT, by_id[id(s)]))
            continue
        k = next((i for i, m in enumerate(meta_outs) if m is s), None)
        if k is not None:
            info.append((_SAVED_INPUT, outs[k].detach()))  # a handle without the node
        elif isinstance(s, np.ndarray):  # an intermediate only the real forward computes
            info.append((_SAVED_CONST, None))
            missing = True
        else:
            info.append((_SAVED_CONST, None))
    ctx._saved_info = info
    ctx._versions = None
    node = _new(SubclassBackward)
    node._inner, node._missing, node._types = ctx, missing, _types(args)
    node.xp = np
    node.needs_input_grad = ctx.needs_input_grad
    node._edges = ctx._edges
    node._seq = ctx._seq
    _wire(node, outs)
    return outs if type(out) is tuple else outs[0]


def _types(args) -> str:
    return ", ".join(sorted({type(a).__name__ for a in args if _dispatch.is_wrapper(a)}))


class SubclassBackward(Function):
    """The node of an op that had wrapper-subclass inputs: the op's backward formula runs on
    tensors (its saved inputs are the caller's tensors), so its ops dispatch again."""

    supports_double_backward = False

    def name(self) -> str:
        return self._inner.name()

    @staticmethod
    def forward(ctx, *args):  # never called: outer_autograd builds the node
        raise RuntimeError("SubclassBackward is made by ember's dispatch, not applied")

    @staticmethod
    def backward(node, *grads):
        inner = node._inner
        op = type(inner).__name__
        if node._missing:
            raise NotImplementedError(
                f"autograd through {op} with {node._types} inputs is not supported: its "
                "backward needs a value the forward computes internally (only saved inputs and "
                "outputs can be taken from the subclass)"
            )
        tg = tuple(None if g is None else Tensor._wrap(g) for g in grads)
        from .autograd import tensor_xp

        prev = inner.xp
        inner.xp, inner._tensor_mode = tensor_xp, True
        try:
            res = type(inner).backward(inner, *tg)
        finally:
            inner.xp, inner._tensor_mode = prev, False
        res = res if type(res) is tuple else (res,)
        where = f"the backward of {op} ({node._types} inputs)"
        return tuple(
            None if r is None else plain_gradient(r, where) if isinstance(r, Tensor) else r
            for r in res
        )


def plain_gradient(r: Tensor, where: str):
    """The array of gradient ``r``; a wrapper subclass gives its one inner tensor of the same
    shape (a LoggingTensor's); other subclasses cannot be gradients here."""
    seen = 0
    while _dispatch.is_wrapper(r) and seen < 8:
        inner = None
        flatten = getattr(r, "__tensor_flatten__", None)
        if flatten is not None:
            names = flatten()[0]
            cands = [user_attr(r, n) for n in names]
            if len(cands) == 1 and tuple(cands[0].shape) == tuple(r.shape):
                inner = cands[0]
        if inner is None:
            raise NotImplementedError(
                f"{where} produced a {type(r).__name__} gradient; ember's autograd keeps plain "
                "gradients, and this subclass is not a wrapper of one tensor of its shape "
                "(__tensor_flatten__)"
            )
        r, seen = inner, seen + 1
    data = r._data
    if type(data) is MetaArray:
        raise NotImplementedError(f"{where} computed on shapes only (an unsupported op)")
    return data
