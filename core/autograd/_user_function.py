"""Custom ``autograd.Function`` subclasses written for PyTorch: tensors in, tensors out.

ember's own ops take raw arrays in ``forward``/``backward`` (the op contract in
docs/architecture.md). A PyTorch script's custom Function calls tensor methods there instead
(``input.clamp(min=0)``, ``grad_output.clone()``, ``torch.exp(x)``), so a ``Function`` subclass
defined outside ember's own package gets its ``forward`` and ``backward`` wrapped once, at class
creation: they see tensors (``forward`` under ``no_grad``, as in PyTorch), ``ctx.saved_tensors``
gives tensors, and what they return is handed back to the engine as arrays. PyTorch 2's split
form (``forward(*args)`` without ``ctx`` plus ``setup_context(ctx, inputs, output)``) is
supported too. Under ``create_graph=True`` the engine already runs backward on tensors and the
wrapper passes through.

As in PyTorch, ``forward`` gets the caller's own tensor objects (a module's parameters, an input
that requires grad), not fresh tensors over the same arrays: a memory-saving Function that runs
``torch.autograd.grad`` on those parameters inside ``forward`` under ``enable_grad`` (normflows'
residual flows) must reach the real graph leaves. ``apply`` keeps the caller's arguments on a
per-thread stack for the wrapped ``forward`` to pick them up.

A Function defining ``jvp`` but no ``backward`` (or ``vjp``) works under forward-mode AD, as in
PyTorch. ember's forward mode is the double-vjp construction (``forward_ad.py``): it runs a
differentiable backward on a zero cotangent ``u`` and differentiates ``<J^T u, v>`` with respect
to ``u``. Such a Function's backward therefore returns :class:`_TransposedJvp` of ``u``: zeros
(``J^T 0``, exact) whose own backward is the user's ``jvp``. A real backward pass (a nonzero
cotangent) raises PyTorch's error for a Function without ``backward``.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np

from ..backend import _cupy
from . import grad_mode
from ._saved import _SAVED_INPUT, _SAVED_OBJECT, _SAVED_OUTPUT
from .function import Function  # (imported from function.py once Function exists)

__all__ = ["Opaque", "adapt_user_function", "is_user_function"]

_NO_BACKWARD = (
    "You must implement either the backward or vjp method for your custom autograd.Function "
    "to use it with backward mode AD."
)


def is_user_function(cls: type) -> bool:
    """A Function subclass defined outside ember's own modules."""
    return (getattr(cls, "__module__", None) or "").partition(".")[0] != "ember"


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or (
        _cupy.cupy is not None and isinstance(a, _cupy.cupy.ndarray)
    )


class Opaque:
    """A tensor handed to a user Function's ``forward`` as it is, outside the graph: the
    sparse route (core/sparse/_route.py) wraps sparse arguments in it so ``apply`` treats them
    as constants; ``forward`` sees the tensor itself."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _as_tensors(values):
    from ..tensor import Tensor

    return tuple(
        Tensor._wrap(v) if _is_array(v) else (v.value if type(v) is Opaque else v) for v in values
    )


# The arguments of the user Function applications in progress on this thread, innermost last.
_callers = threading.local()


def _user_apply(cls, *args, **kwargs):
    """``Function.apply`` for a user Function: remembers the caller's tensors for ``forward``."""
    if getattr(Function.__dict__["apply"], "__func__", None) is not _function_apply:  # a mode
        from .._dispatch_decomp import mode_hook

        hook = mode_hook("_ember_python_op")
        if hook is not None:  # jit._get_trace_graph: one prim::PythonOp, as torch's tracer
            return hook(cls, lambda: _user_apply_inner(cls, args, kwargs), args, kwargs)
    return _user_apply_inner(cls, args, kwargs)


def _user_apply_inner(cls, args: tuple, kwargs: dict):
    stack = getattr(_callers, "stack", None)
    if stack is None:
        stack = _callers.stack = []
    stack.append(args)
    nones = getattr(_callers, "nones", None)
    if nones is None:
        nones = _callers.nones = []
    nones.append(())
    try:
        out = _function_apply(cls, *args, **kwargs)
        _adopt_saved_objects(out)
    finally:
        stack.pop()
        positions = nones.pop()
    if positions:  # forward returned None / a non-tensor there: so does apply, as PyTorch's
        out = tuple(positions[i] if i in positions else o for i, o in enumerate(out))
    return out


_function_apply = Function.__dict__["apply"].__func__


def _forward_inputs(args):
    """``forward``'s tensors: the caller's own tensor where its array is the one ``apply``
    passed (the same position), else a new tensor over the array."""
    from ..tensor import Tensor

    stack = getattr(_callers, "stack", None)
    callers = stack[-1] if stack else ()
    out = []
    for i, v in enumerate(args):
        if _is_array(v):
            c = callers[i] if i < len(callers) else None
            out.append(c if isinstance(c, Tensor) and c._data is v else Tensor._wrap(v))
        else:
            out.append(v.value if type(v) is Opaque else v)
    return tuple(out)


def _as_arrays(out):
    from ..tensor import Tensor

    if isinstance(out, Tensor):
        return out._data
    if type(out) is tuple:
        return tuple(o._data if isinstance(o, Tensor) else o for o in out)
    return out


def _saved_objects(saved, inputs, out) -> dict:
    """The saved tensors that are neither ``forward``'s inputs nor its outputs, by position:
    PyTorch's ``saved_tensors`` returns each of those objects as it was saved (``x.detach()``
    does not require grad although its array is the input's)."""
    from ..tensor import Tensor

    outs = out if type(out) is tuple else (out,)
    return {
        i: s
        for i, s in enumerate(saved)
        if isinstance(s, Tensor)
        and _is_array(s._data)
        and not any(s is t for t in inputs)
        and not any(s is o for o in outs)
    }


def _adopt_saved_objects(out) -> None:
    """After ``apply`` recorded where each saved array came from (by array identity), point
    the user's own saved objects (``_saved_objects``) at themselves, with their own version
    counters, in place of the input or output whose array they share. The node keeps a weak
    reference (its saved array stays the strong one, freed after backward as any): an object
    nobody else holds comes back as a new tensor over the same array, not requiring grad."""
    for o in out if type(out) is tuple else (out,):
        ctx = getattr(o, "grad_fn", None)
        if ctx is not None and "_saved_objects" in ctx.__dict__:
            break
    else:
        return
    others = ctx.__dict__.pop("_saved_objects")
    if ctx._saved_info is None or ctx._packed:  # a pack hook's unpack decides what comes back
        return
    info = list(ctx._saved_info)
    for i, t in others.items():
        info[i] = (_SAVED_OBJECT, weakref.ref(t))
    inputs = [ref for kind, ref in info if kind == _SAVED_INPUT]
    outputs = {ref for kind, ref in info if kind == _SAVED_OUTPUT}
    versions = [
        v
        for v in ctx._versions or ()
        if (v[2] in outputs if isinstance(v[2], int) else any(v[2] is r for r in inputs))
    ]
    versions += [(t._version_counter, t._version_counter[0], _Named(t)) for t in others.values()]
    ctx._saved_info = info
    ctx._versions = versions or None


class _Named:
    """What the in-place check's error names for a saved object: a leaf of its shape and
    dtype (a zero-stride array: the node must not keep the object's memory alive)."""

    __slots__ = ("_data", "grad_fn")

    def __init__(self, t) -> None:
        d = t._data
        self._data = np.broadcast_to(np.zeros((), dtype=d.dtype), d.shape)
        self.grad_fn = None


def _saved_array(s):
    """What the engine keeps for a saved value: a tensor's array, or (a sparse or
    ``__torch_dispatch__`` tensor, whose array is a placeholder) the tensor itself."""
    from ..tensor import Tensor

    if isinstance(s, Tensor):
        return s._data if _is_array(s._data) else Opaque(s)
    return s


def _own(cls, name: str):
    """``cls``'s own (not inherited) plain function for the staticmethod ``name``."""
    attr = cls.__dict__.get(name)
    if isinstance(attr, staticmethod):
        return attr.__func__
    if isinstance(attr, classmethod):  # ``def forward(cls, ctx, ...)`` (pytorch_tabular's entmax)
        return attr.__get__(None, cls)
    return attr if callable(attr) else None


def adapt_user_function(cls: type) -> None:
    """Wrap ``cls``'s own ``forward``/``backward`` to take and return tensors."""
    if _own(cls, "backward") is None and _own(cls, "vjp") is not None:
        cls.backward = staticmethod(_own(cls, "vjp"))  # PyTorch's alias
    if cls.backward is Function.backward:  # forward mode only (without jvp: PyTorch's errors)
        cls.backward = staticmethod(_backward_from_jvp)

    if getattr(cls.apply, "__func__", None) is _function_apply:  # not the user's own apply
        cls.apply = classmethod(_user_apply)
    fwd = _own(cls, "forward")
    if fwd is not None and not getattr(fwd, "_ember_tensor_io", False):
        setup = getattr(cls, "setup_context", None)
        split = setup is not None and setup is not Function.__dict__.get("setup_context")

        @functools.wraps(fwd)
        def forward(ctx, *args, **kwargs):
            # the inputs' layouts: jvp gets zeros for a tensor input without a tangent
            ctx._jvp_inputs = tuple((a.shape, a.dtype) if _is_array(a) else None for a in args)
            targs = _forward_inputs(args)
            for t, a, need in zip(targs, args, ctx.needs_input_grad, strict=False):
                if need and _is_array(a) and not t.requires_grad:  # as torch's: inputs keep it
                    t.requires_grad = True
            with grad_mode.no_grad():
                if split:
                    out = fwd(*targs, **kwargs)
                    type(ctx).setup_context(ctx, targs, out)
                else:
                    out = fwd(ctx, *targs, **kwargs)
            if ctx._saved:  # the engine tracks saved arrays (versions, double backward)
                others = _saved_objects(ctx._saved, targs, out)
                if others:
                    ctx._saved_objects = others
                ctx._saved = tuple(_saved_array(s) for s in ctx._saved)
            if type(out) is tuple and any(_passes_through(o) for o in out):
                out = _none_placeholders(ctx, out)
            return _as_arrays(out)

        forward._ember_tensor_io = True
        cls.forward = staticmethod(forward)

    bwd = _own(cls, "backward")
    if bwd is not None and not getattr(bwd, "_ember_tensor_io", False):

        @functools.wraps(bwd)
        def backward(ctx, *grads):
            none_out = ctx.__dict__.get("_none_outputs")
            if none_out:  # outputs forward returned as None get None, as in PyTorch
                grads = tuple(None if i in none_out else g for i, g in enumerate(grads))
            if ctx._tensor_mode:  # create_graph: grads and saved values are tensors already
                return bwd(ctx, *grads)
            ctx._tensor_mode = True
            try:
                with grad_mode.no_grad():
                    res = bwd(ctx, *_as_tensors(grads))
            finally:
                ctx._tensor_mode = False
            return _as_arrays(res)

        backward._ember_tensor_io = True
        cls.backward = staticmethod(backward)


def _passes_through(o) -> bool:
    """A forward output that is no tensor (``None``, a flag, a type, a number): PyTorch's
    ``apply`` returns it as it is (torchopt's implicit gradients return ``output_is_tensor``
    and ``type(output)`` so)."""
    from ..tensor import Tensor

    return not (isinstance(o, Tensor) or _is_array(o))


def _none_placeholders(ctx, out: tuple) -> tuple:
    """A forward that returns ``None`` or other non-tensors among its outputs (PyTorch passes
    them through): the engine takes arrays, so each becomes a 0-d bool array (never
    differentiable), ``apply`` (``_user_apply``) hands the object back in its place and
    ``backward`` gets ``None`` for its gradient."""
    positions = {i: o for i, o in enumerate(out) if _passes_through(o)}
    ctx._none_outputs = tuple(positions)
    nones = getattr(_callers, "nones", None)
    if nones:
        nones[-1] = positions
    xp = ctx.__dict__.get("xp", np)
    return tuple(xp.zeros((), dtype=bool) if i in positions else o for i, o in enumerate(out))


def _backward_from_jvp(ctx, *grads):
    """The backward of a Function that defines only ``jvp`` (see the module docstring)."""
    if not ctx._tensor_mode:
        raise NotImplementedError(_NO_BACKWARD)
    outs = _TransposedJvp.apply(ctx, *grads)
    outs = outs if type(outs) is tuple else (outs,)
    it = iter(outs)
    return tuple(None if e is None else next(it) for e in ctx._edges)


class _JvpContext:
    """The Function's ctx as its ``jvp`` sees it: ``saved_tensors`` are the tensors given to
    ``save_for_forward`` (else those saved for backward); other attributes pass through."""

    __slots__ = ("_ctx", "_deleted")

    def __init__(self, ctx) -> None:
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_deleted", set())

    @property
    def saved_tensors(self):
        ctx = self._ctx
        if ctx._saved_forward is not None:
            return ctx._saved_forward
        return _as_tensors(ctx.saved_tensors)

    def __getattr__(self, name: str):
        if name in self._deleted:
            raise AttributeError(f"'{type(self._ctx).__name__}' object has no attribute '{name}'")
        return getattr(self._ctx, name)

    def __setattr__(self, name: str, value) -> None:
        self._deleted.discard(name)
        setattr(self._ctx, name, value)

    def __delattr__(self, name: str) -> None:
        # ``del ctx.result`` in a jvp (the forward-AD tutorial frees what backward will not
        # use): hidden from this call only, as ember may run the jvp again for another tangent
        getattr(self, name)  # AttributeError if there is nothing to delete
        self._deleted.add(name)


class _TransposedJvp(Function):
    """``J^T u`` of a jvp-only Function ``node`` at ``u = 0``: zeros for each input that
    requires grad; its backward with respect to ``u`` is ``J v``, the user's ``jvp``."""

    @staticmethod
    def forward(ctx, node, *grads):
        xp = ctx.xp
        if any(g is not None and bool(xp.any(g != 0)) for g in grads):
            raise NotImplementedError(_NO_BACKWARD)
        ctx.node = node
        outs = tuple(xp.zeros(e[2], dtype=e[3]) for e in node._edges if e is not None)
        return outs if len(outs) != 1 else outs[0]

    @staticmethod
    def backward(ctx, *cotangents):
        node = ctx.node
        it = iter(cotangents)
        tangents = []
        for meta, edge in zip(node._jvp_inputs, node._edges):
            if meta is None:
                tangents.append(None)  # not a tensor: None, as PyTorch passes
                continue
            t = next(it) if edge is not None else None
            if t is None:
                t = ctx.xp.zeros(meta[0], dtype=meta[1])
            tangents.append(t)
        if ctx._tensor_mode:  # create_graph: a differentiable jvp
            res = type(node).jvp(_JvpContext(node), *tangents)
        else:
            with grad_mode.no_grad():
                res = type(node).jvp(_JvpContext(node), *_as_tensors(tangents))
            res = _as_arrays(res)
        res = res if type(res) is tuple else (res,)
        return (None, *res)
