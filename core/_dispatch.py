"""``__torch_dispatch__``: dispatch modes and wrapper subclasses below autograd
(docs/torch_dispatch.md; the public names are in ``ember.utils._python_dispatch``).

ember's op entry point is ``Function.apply``. Two routes reach a handler there:

* a **wrapper subclass** (``Tensor._make_wrapper_subclass``) holds a :class:`WrapperData`
  placeholder (shape, dtype, device; no elements) as its ``_data``. ``Function.apply`` meets it
  only off its hot path (the branches that already catch a mismatch of array types and
  non-NumPy arrays), and sends the op to :func:`subclass_apply`;
* a **dispatch mode**: while one is entered (any thread), ``Function.apply`` and the engine's
  per-node backward call are swapped for :func:`_mode_apply` / :func:`_mode_call_backward`
  (through ``profiler._record.set_outer``, so the profiler's own hooks stay underneath), and
  swapped back when the last mode exits: no test on the hot path when no mode is active.

Autograd records at the outer level, as torch's: when an input requires grad, a graph node is
made for the op with the caller's tensors as its edges, and the handler runs with gradient
recording off. For plain inputs under a mode, the node is the op's own ``Function`` instance
whose forward runs when the handler calls ``func`` (or afterwards, when it never does). For
wrapper-subclass inputs, the forward formula runs on meta arrays to learn what it saves
(inputs, outputs, constants), and the backward formula runs on tensors (the double-backward
path), so its ops reach the subclass's ``__torch_dispatch__`` again (a dequantizing matmul,
say); an op that saves an internal intermediate cannot do that and raises, naming the op.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ._shape_only import ShapeOnly
from .autograd import function as _function
from .autograd import grad_mode
from .autograd.function import _as_array, _is_internal, _share_version
from .backend.device import CPU, as_device
from .tensor import Tensor

__all__ = ["WrapperData", "make_wrapper_subclass", "subclass_apply", "push_mode", "pop_mode"]

_TLS = threading.local()
_LOCK = threading.Lock()
_ACTIVE = [0]  # modes entered in all threads; the hooks are installed while it is > 0


# ---- the placeholder of a wrapper subclass ---------------------------------------------------
class _NoData(NotImplementedError, AttributeError):
    """What a wrapper subclass's placeholder raises for array access: NotImplementedError for
    the user, AttributeError for ``hasattr`` probes in ember's code."""


def _no_data(what: str) -> _NoData:
    return _NoData(
        f"{what} on a wrapper subclass tensor (Tensor._make_wrapper_subclass): it holds no "
        "elements of its own, so only ops that reach its __torch_dispatch__ (ember's "
        "Function ops) can run on it; this one does not"
    )


class WrapperData(ShapeOnly):
    """The ``_data`` of a wrapper subclass: shape, dtype, device and strides, no elements."""

    __slots__ = ("shape", "dtype", "device", "_strides")

    def __init__(self, shape, dtype, device, strides=None) -> None:
        self.shape, self.dtype, self.device = tuple(int(s) for s in shape), dtype, device
        self._strides = None if strides is None else tuple(int(s) for s in strides)

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def strides(self) -> tuple:  # NumPy's convention: in bytes
        if self._strides is not None:
            return tuple(s * self.itemsize for s in self._strides)
        out, acc = [], self.itemsize
        for s in reversed(self.shape):
            out.append(acc)
            acc *= max(s, 1)
        return tuple(reversed(out))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise _no_data(f"the NumPy operation {ufunc.__name__!r}")

    def __array_function__(self, func, types, args, kwargs):
        raise _no_data(f"the NumPy operation {func.__name__!r}")

    def __array__(self, dtype=None, copy=None):
        raise _no_data("conversion to a NumPy array")

    def __getattr__(self, name: str):
        raise _no_data(f"the array attribute {name!r}")


def make_wrapper_subclass(
    cls: type,
    size,
    strides=None,
    storage_offset=None,
    memory_format=None,
    dtype=None,
    layout=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    dispatch_sizes_strides_policy=None,
    dispatch_device: bool = False,
    dispatch_layout: bool = False,
    **_: Any,
) -> Tensor:
    r"""``torch.Tensor._make_wrapper_subclass``: a ``cls`` instance with the given metadata
    and no data of its own; ops on it reach ``cls.__torch_dispatch__``."""
    if not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise TypeError(f"_make_wrapper_subclass: cls must be a Tensor subclass, got {cls!r}")
    if getattr(cls, "__torch_dispatch__", None) is None:
        raise TypeError(
            f"_make_wrapper_subclass: {cls.__name__} defines no __torch_dispatch__, so no op "
            "could run on its instances"
        )
    from .backend.dtype import get_default_dtype

    np_dtype = (dtype if dtype is not None else get_default_dtype()).np
    dev = CPU if device is None else as_device(device)
    t = object.__new__(cls)
    t._data = WrapperData(tuple(size), np.dtype(np_dtype), dev, strides)
    t.requires_grad = bool(requires_grad)
    t._grad = None
    t.grad_fn = None
    t._output_nr = 0
    t._version_counter = [0]
    t._base = None
    t._hooks = None
    t._post_acc_hooks = None
    return t


def is_wrapper(t: Any) -> bool:
    return isinstance(t, Tensor) and type(t._data) is WrapperData


def _dispatch_types(args: tuple, kwargs: dict) -> tuple:
    """The wrapper-subclass types among the arguments, a subclass before its bases."""
    found: list[type] = []
    for v in (*args, *kwargs.values()):
        for e in v if isinstance(v, (list, tuple)) else (v,):
            if is_wrapper(e) and type(e) not in found:
                found.append(type(e))
    found.sort(key=lambda t: -len(t.__mro__))
    return tuple(found)


def dispatch_to_subclasses(func, args: tuple, kwargs: dict):
    """Hand ``func(*args, **kwargs)`` to the subclasses' ``__torch_dispatch__`` in turn."""
    types = _dispatch_types(args, kwargs)
    for t in types:
        out = t.__torch_dispatch__(func, types, args, kwargs)
        if out is not NotImplemented:
            return out
    names = ", ".join(t.__name__ for t in types) or "none"
    raise TypeError(
        f"no __torch_dispatch__ handled {func}: the subclass(es) {names} returned NotImplemented"
    )


def subclass_apply(cls, args: tuple, kwargs: dict):
    """``Function.apply`` of an op with a wrapper-subclass argument."""
    from ._dispatch_ops import overload_for
    from .autograd._user_function import Opaque, is_user_function

    if is_user_function(cls):
        # a user's autograd.Function runs above dispatch, as in torch: its forward sees the
        # subclass instance itself (a constant of the graph: no gradient flows to it)
        return cls.apply(*(Opaque(a) if is_wrapper(a) else a for a in args), **kwargs)

    if grad_mode._state.enabled and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        from ._dispatch_autograd import outer_autograd

        return outer_autograd(cls, args, kwargs, _subclass_below)
    func, rargs, rkw = overload_for(cls, args, kwargs)
    return dispatch_to_subclasses(func, rargs, rkw)


def _subclass_below(cls, args, kwargs):
    from ._dispatch_ops import overload_for

    func, rargs, rkw = overload_for(cls, args, kwargs)
    return dispatch_to_subclasses(func, rargs, rkw)


# ---- the mode stack --------------------------------------------------------------------------
def mode_stack() -> list:
    st = getattr(_TLS, "stack", None)
    if st is None:
        st = _TLS.stack = []
    return st


def push_mode(mode) -> None:
    """Enter ``mode`` (the innermost from now on); installs the hooks for the first one."""
    with _LOCK:
        if _ACTIVE[0] == 0:
            _set_hooks(True)
        _ACTIVE[0] += 1
    mode_stack().append(mode)


def pop_mode(mode=None):
    """Leave ``mode`` (the innermost when None); the last one out removes the hooks."""
    st = mode_stack()
    if not st:
        raise RuntimeError("no TorchDispatchMode is active (nothing to pop)")
    if mode is None or st[-1] is mode:
        mode = st.pop()
    elif mode in st:
        st.remove(mode)
    else:
        return mode
    with _LOCK:
        _ACTIVE[0] -= 1
        if _ACTIVE[0] == 0:
            _set_hooks(False)
    return mode


def _set_hooks(on: bool) -> None:
    from .profiler import _record

    _record.set_outer((classmethod(_mode_apply), _mode_call_backward) if on else None)


def call_mode(func, args: tuple, kwargs: dict):
    """Hand ``func`` to the innermost mode of this thread, popped while its handler runs."""
    st = _TLS.stack
    mode = st.pop()
    try:
        out = mode.__torch_dispatch__(func, _dispatch_types(args, kwargs), args, kwargs)
    finally:
        st.append(mode)
    if out is NotImplemented:
        raise TypeError(
            f"{type(mode).__name__}.__torch_dispatch__ returned NotImplemented for {func}"
        )
    return out


def _mode_apply(cls, *args, **kwargs):
    """``Function.apply`` while a dispatch mode is entered somewhere."""
    from .profiler import _record

    if not getattr(_TLS, "stack", None) or not _is_internal(cls):
        # a user's autograd.Function is above dispatch: the mode sees the ops it runs
        return _record.apply_inner(cls, *args, **kwargs)
    if cls.__name__ in _DECOMPOSED and getattr(_TLS.stack[-1], "_ember_decompose", True):
        # torch's decomposition, op by op (_dispatch_decomp.py); ember's jit trace-graph
        # recorder opts out: torch's tracer records ``aten::linear`` itself
        from ._dispatch_decomp import decomposition_for

        run = decomposition_for(cls, args)
        if run is not None:
            return run(*args, **kwargs)
    if grad_mode._state.enabled and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        from ._dispatch_autograd import outer_autograd

        return outer_autograd(cls, args, kwargs, _mode_below)
    return _mode_below(cls, args, kwargs)


_DECOMPOSED = frozenset({"Linear", "Matmul"})


def _mode_below(cls, args, kwargs):
    from ._dispatch_ops import overload_for

    func, rargs, rkw = overload_for(cls, args, kwargs)
    return call_mode(func, rargs, rkw)


def call_overload(ov, args: tuple, kwargs: dict):
    """``func(*args, **kwargs)`` of a reported op: the next outer mode, else the kernel."""
    if getattr(_TLS, "stack", None):
        return call_mode(ov, args, kwargs)
    a, k = ov.apply_args(args, kwargs)
    pending = getattr(_TLS, "pending", None)
    if pending and pending[-1][0] is ov._cls and not pending[-1][2]:
        # the op of an outer autograd node: its forward fills the node (ctx) once
        pending[-1][2] = True
        return forward_into(pending[-1][1], ov._cls, a, k)
    from .profiler import _record

    with grad_mode.no_grad():
        return _record.apply_inner(ov._cls, *a, **k)


def forward_into(ctx, cls, args: tuple, kwargs: dict):
    """Run ``cls.forward`` on ``ctx`` for plain tensor ``args``; the outputs as tensors."""
    arrays = [a._data if isinstance(a, Tensor) else a for a in args]
    first = next((a._data for a in args if isinstance(a, Tensor)), None)
    forward = cls.forward
    if first is None or type(first) is np.ndarray:
        ctx.xp = np
    elif type(first).__name__ == "MetaArray":
        ctx.xp, ctx._meta = np, True
        forward = _function._meta_forward(forward)
    else:
        from .backend import _cupy

        ctx.xp = _cupy.cupy
    out = forward(ctx, *arrays, **kwargs)
    outs = tuple(Tensor._wrap(_as_array(o)) for o in (out if type(out) is tuple else (out,)))
    if cls._view_of is not None:
        _share_version(ctx, outs, args[cls._view_of])
    return outs if type(out) is tuple else outs[0]


# ---- backward nodes under a mode -------------------------------------------------------------
def _mode_call_backward(node, grads, create_graph: bool):
    from ._dispatch_autograd import SubclassBackward
    from ._dispatch_ops import backward_overload_for
    from .profiler import _record

    if not getattr(_TLS, "stack", None) or not _is_internal(type(node)):
        return _record.call_backward_inner(node, grads, create_graph)
    cls = type(node._inner) if type(node) is SubclassBackward else type(node)
    func = backward_overload_for(cls)
    tg = tuple(
        None if g is None else g if create_graph else Tensor._wrap(_as_array(g)) for g in grads
    )
    bw = getattr(_TLS, "bw", None)
    if bw is None:
        bw = _TLS.bw = []
    bw.append((node, create_graph))
    try:
        out = call_mode(func, tg, {})
    finally:
        bw.pop()
    out = out if type(out) is tuple else (out,)
    return tuple(None if r is None else r if create_graph else _array_of(r) for r in out)


def _array_of(r):
    if isinstance(r, Tensor):
        from ._dispatch_autograd import plain_gradient

        return plain_gradient(r, "a dispatch mode's backward")
    return r


def call_backward_overload(ov, grads: tuple):
    """``func(*grads)`` of a reported backward node: the next outer mode, else the formula."""
    if getattr(_TLS, "stack", None):
        return call_mode(ov, grads, {})
    bw = getattr(_TLS, "bw", None)
    if not bw:
        raise RuntimeError(f"{ov} can only be called inside the backward pass it was handed by")
    from .profiler import _record

    node, create_graph = bw[-1]
    raw = [g if g is None or create_graph else _array_of(g) for g in grads]
    out = _record.call_backward_inner(node, raw, create_graph)
    return tuple(
        None if r is None else r if create_graph else Tensor._wrap(_as_array(r)) for r in out
    )


# NumPy's names of the comparison/logical ops without gradients -> aten's
_NOGRAD_NAMES = {
    "not_equal": "ne",
    "equal": "eq",
    "greater": "gt",
    "greater_equal": "ge",
    "less": "lt",
    "less_equal": "le",
    "invert": "bitwise_not",
}
_NOGRAD_OPS: dict = {}


def nograd_dispatch(kernel, ufunc_name: str, args: tuple):
    """A no-gradient builder (``ops/function_free.py``: ``x != y``, ``isnan``) met a wrapper
    subclass: hand it to the subclass as ``aten.ne.Tensor`` / ``aten.ne.Scalar``, ...; its
    kernel is the builder itself (on the unwrapped tensors)."""
    from ._dispatch_ops import MethodOverload

    name = _NOGRAD_NAMES.get(ufunc_name, ufunc_name)
    over = "default" if len(args) == 1 else "Tensor" if isinstance(args[1], Tensor) else "Scalar"
    ov = _NOGRAD_OPS.get((name, over))
    if ov is None:
        ov = _NOGRAD_OPS[(name, over)] = MethodOverload(name, kernel, over)
    if getattr(_TLS, "stack", None):
        return call_mode(ov, args, {})
    return dispatch_to_subclasses(ov, args, {})


def index_dispatch(getitem_cls, x, idx):
    """``x[idx]`` where an index is a wrapper subclass: ``aten.index.Tensor(x, indices)``."""
    from ._dispatch_ops import _cached, _full, _index_back

    key = idx if type(idx) is tuple else (idx,)
    if not all(_full(k) or isinstance(k, Tensor) for k in key):
        raise NotImplementedError(
            "indexing with a __torch_dispatch__ subclass mixed with ints, slices or None is "
            "not supported; index with tensors (and ':') only"
        )
    indices = [None if _full(k) else k for k in key]
    ov = _cached(getitem_cls, "index", "Tensor", _index_back)
    if getattr(_TLS, "stack", None):
        return call_mode(ov, (x, indices), {})
    return dispatch_to_subclasses(ov, (x, indices), {})


# Function.apply sends ops with a wrapper-subclass argument here (off its hot path)
_function._WrapperData = WrapperData
_function._wrapper_apply = subclass_apply
