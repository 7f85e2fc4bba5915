"""``Function``: one class per op, forward and backward side by side (DESIGN.md §3).

A Function instance is also the graph node (``grad_fn``) of the outputs it produced: it keeps the
edges to its inputs' nodes, the arrays it saved, and the hooks registered on its outputs.
"""

from __future__ import annotations

import numpy as np

from ..backend import _cupy
from ..backend.device import device_of
from ..backend.meta import MetaArray
from . import grad_mode
from ._acc_node import _Acc, _RemovableHandle  # (re-exported: tensor.py, graph.py)
from ._saved import (  # (re-exported: ops/inplace.py, _dispatch_autograd.py, fx)
    _SAVED_CONST,
    _SAVED_INPUT,
    _SAVED_OUTPUT,
    _SavedMixin,
    _unpacked,
)

# Set by ember.tensor once the Tensor class exists (tensor.py imports this module).
Tensor = None
_wrap = None
_autograd = None  # the ember.autograd module (set there), for Tensor.backward
_new = object.__new__
# Creation order of graph nodes (PyTorch's sequence_nr): the engine runs the latest-created
# ready node first, as PyTorch's does, so hooks fire in PyTorch's order (Opacus pairs each
# module call's activations with its backward hook by that order).
_next_seq = __import__("itertools").count(1).__next__
_ndarray = np.ndarray
# np.may_share_memory's C function without NumPy's __array_function__ dispatch (~0.12 of its
# 0.25 us; every view op asks it), for two plain ndarrays; the public function otherwise
_may_share = getattr(np.may_share_memory, "_implementation", np.may_share_memory)
_NO_GRADS = [(False,) * n for n in range(8)]

_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)

_OUTPUT0_INFO = ((_SAVED_OUTPUT, 0),)
_CONST_INFO = (_SAVED_CONST, None)

# Per-node extras (anomaly mode's forward stacks, saved-tensor hooks, copies under
# allow_mutation_on_saved_tensors): one flag read when a node is recorded; autograd.graph
# sets it and the function that applies them.
_extras = [False]
_node_extras = None
# Set by ember.func's vmap while it runs: a check that no batched tensor reaches an op without
# its batching rule (one list read on the hot path otherwise).
_vmap_guard = [None]
# Set by ember._quantized_ops: quantized tensors take their own route (torch's QuantizedCPU
# kernels or a clear error) instead of running a float op on their integer codes.
_QTensor = type("_NoQTensorYet", (), {})
_quantized_apply = None
# Set by ember.sparse: the placeholder array of a sparse COO tensor, and the route that either
# runs the op's sparse rule or raises NotImplementedError naming the op and the layout. It is
# tested only off the hot path (the array-type-mismatch and non-NumPy branches).
_SparseData = type("_NoSparseYet", (), {})
_sparse_apply = None
# Set by ember.nested the same way: a nested tensor's placeholder and its route
# (core/nested/_route.py), also tested only off the hot path.
_NestedData = type("_NoNestedYet", (), {})
_nested_apply = None
# Set by ember._dispatch (on the first Tensor._make_wrapper_subclass): a wrapper subclass's
# placeholder and the route to its __torch_dispatch__, tested only off the hot path too.
_WrapperData = type("_NoWrapperYet", (), {})
_wrapper_apply = None


def _as_array(out):
    """NumPy reductions may return NumPy scalars; tensors always hold arrays."""
    if type(out) is np.ndarray:
        return out
    if _cupy.cupy is not None and isinstance(out, _cupy.cupy.ndarray):
        return out
    if type(out) is MetaArray:
        return out
    return np.asarray(out)


def _meta_forward(forward):
    from ..backend.meta import run

    return lambda ctx, *arrays, **kwargs: run(forward, ctx, arrays, kwargs)


def _is_internal(cls) -> bool:
    """An op of ember's own (as opposed to a user's ``autograd.Function`` subclass)."""
    return cls.__module__ == "ember" or cls.__module__.startswith("ember.")


class Function(_SavedMixin):
    """Base class for differentiable ops and for user-defined autograd functions.

    Subclasses define ``forward(ctx, *args)`` on raw arrays (``ctx.xp`` is numpy or cupy) and
    ``backward(ctx, *grads)`` returning one gradient per forward argument (None for
    non-differentiable ones). Gradients may be returned in the broadcast shape: the engine sums
    them back to each input's shape. Call ``MyFunction.apply(*args)`` with tensors. Subclasses
    defined outside ember (user code written for PyTorch) see tensors instead, as in PyTorch
    (``_user_function.py``).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        from ._user_function import adapt_user_function, is_user_function

        if is_user_function(cls):
            adapt_user_function(cls)

    # Index of the argument whose memory the output may alias (view ops), or None.
    _view_of: int | None = None
    # Set to False for ops whose backward cannot run on tensors (no double backward).
    supports_double_backward = True
    # Per-node state; class-level defaults so the hot path sets only what differs.
    _saved = ()
    _non_diff = ()
    _tensor_mode = False
    _versions = None
    _pre_hooks = None
    _post_hooks = None  # register_hook: hook(grad_inputs, grad_outputs) after backward
    _meta = False  # a node recorded on meta tensors (its backward runs through backend/meta.py)
    _materialize = True
    _packed = False  # saved arrays went through a saved-tensor pack hook (autograd.graph)
    _saved_forward = None  # ctx.save_for_forward's tensors (user Functions with a jvp)
    # Read with getattr(ctx, name, None) on hot paths: a class default keeps those reads off
    # ``__getattr__`` below (a Python call and a formatted AttributeError, ~1 us each).
    _lowp_in = None  # float32_compute's input dtypes (ops/_lowp.py)
    _saved_info = None
    _anomaly_stack = None
    _seq = 0  # creation order, set when the node joins a graph (see _next_seq)
    _grad_dest = None  # a node is never a gradient destination (engine._grad_outs)
    # Set by the engine just before backward: per input, an array the gradient may be written
    # into (``out=``) and returned, or None (see ``engine.grad_destinations``). Ops that ignore
    # it stay correct; it only saves the copy into a preallocated buffer such as DDP's bucket.
    grad_out = None

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must implement forward")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("Function subclasses must implement backward")

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            "You must implement the jvp function for custom autograd.Function to use it with "
            "forward mode AD."
        )

    def __getattr__(self, name: str):
        # Reached only when normal lookup fails (never on the hot path): PyTorch's
        # ``grad_fn._saved_self`` / ``_saved_other`` / ``_saved_result`` (_saved_attrs.py).
        if name.startswith("_saved_"):
            from ._saved_attrs import ROLES, saved_by_role

            if name[7:] in ROLES:
                return saved_by_role(self, name[7:])
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    # ---- ctx API -------------------------------------------------------------------------
    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    def save_for_forward(self, *tensors) -> None:
        """Keep ``tensors`` for the Function's ``jvp`` (forward-mode AD), where they are read
        back as ``ctx.saved_tensors`` (``_user_function.py``)."""
        self._saved_forward = tensors

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is None:
            raise RuntimeError(_FREED_MSG)
        if self._versions is not None:
            self._check_versions()
        if self._tensor_mode:
            return tuple(self._saved_as_tensor(i) for i in range(len(saved)))
        return _unpacked(saved) if self._packed else saved

    def saved_array(self, i: int):
        """Saved array ``i`` as it was saved, without the in-place modification check: for
        arrays a first-order backward does not read (an input kept only for double
        backward must not stop its first-order backward when modified afterwards)."""
        if self._saved is None:
            raise RuntimeError(_FREED_MSG)
        return _unpacked(self._saved[i : i + 1])[0] if self._packed else self._saved[i]

    def mark_non_differentiable(self, *arrays) -> None:
        # user Functions (``_user_function.py``) pass the output tensors: track their arrays
        self._non_diff = tuple(id(a._data) if isinstance(a, Tensor) else id(a) for a in arrays)

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize = value

    @property
    def next_functions(self):
        return tuple(
            (None, 0) if e is None else (e[0] if isinstance(e[0], Function) else _Acc(e[0]), e[1])
            for e in self._edges
        )

    def name(self) -> str:
        # torch: its own nodes are ``MulBackward0``; a user's Function is ``LegendreBackward``
        cls = type(self)
        return cls.__name__ + ("Backward0" if _is_internal(cls) else "Backward")

    def __repr__(self) -> str:
        where = "" if _is_internal(type(self)) else "ember.autograd.function."
        return f"<{where}{self.name()} object at {id(self):#x}>"

    def register_hook(self, hook):
        r"""Run ``hook(grad_inputs, grad_outputs)`` after this node's backward; it may return
        new ``grad_inputs`` (PyTorch's ``Node.register_hook``). ``grad_inputs`` has one entry
        per tensor input of the forward op (``None`` where no gradient flows)."""
        hooks = self._post_hooks
        if hooks is None:
            hooks = self._post_hooks = []
        hooks.append(hook)
        return _RemovableHandle(hooks, hook)

    def register_prehook(self, hook, output_nr: int = 0):
        hooks = self._pre_hooks
        if hooks is None:
            hooks = self._pre_hooks = {}
        hooks.setdefault(output_nr, []).append(hook)
        return _RemovableHandle(hooks[output_nr], hook)

    # ---- apply ---------------------------------------------------------------------------
    @classmethod
    def apply(cls, *args, **kwargs):
        # The hot path of every op: keep it flat (no helper calls when no graph is needed).
        if _vmap_guard[0] is not None:
            _vmap_guard[0](cls, args)
        ctx = _new(cls)
        arrays = []
        first = None
        requires = False
        for a in args:
            if isinstance(a, Tensor):
                if type(a) is _QTensor:
                    return _quantized_apply(cls, args, kwargs)
                data = a._data
                if first is None:
                    first = data
                elif type(data) is not type(first):
                    if type(data) is _SparseData or type(first) is _SparseData:
                        return _sparse_apply(cls, args, kwargs)
                    if type(data) is _NestedData or type(first) is _NestedData:
                        return _nested_apply(cls, args, kwargs)
                    if type(data) is _WrapperData or type(first) is _WrapperData:
                        return _wrapper_apply(cls, args, kwargs)
                    first = _device_mismatch(first, data)
                arrays.append(data)
                if a.requires_grad:
                    requires = True
            else:
                arrays.append(a)
        forward = cls.forward
        if first is None or type(first) is _ndarray:
            ctx.xp = np
        elif type(first) is MetaArray:  # shapes only: backend/meta.py runs the op's NumPy code
            ctx.xp = np
            ctx._meta = True
            forward = _meta_forward(forward)
        elif type(first) is _SparseData:
            return _sparse_apply(cls, args, kwargs)
        elif type(first) is _NestedData:
            return _nested_apply(cls, args, kwargs)
        elif type(first) is _WrapperData:
            return _wrapper_apply(cls, args, kwargs)
        else:
            ctx.xp = _cupy.cupy
        if not (requires and grad_mode._state.enabled):
            ctx.needs_input_grad = _NO_GRADS[len(args)] if len(args) < 8 else (False,) * len(args)
            out = forward(ctx, *arrays, **kwargs)
            if type(out) is _ndarray:
                result = _wrap(out)
                if cls._view_of is not None:
                    _share_version(ctx, (result,), args[cls._view_of])
                return result
            outs = (
                tuple(_wrap(_as_array(o)) for o in out)
                if type(out) is tuple
                else (_wrap(_as_array(out)),)
            )
            if cls._view_of is not None:
                _share_version(ctx, outs, args[cls._view_of])
            return outs if type(out) is tuple else outs[0]
        needs = []
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                needs.append(True)
                d = a._data
                fn = a.grad_fn
                edges.append(
                    (a, 0, d.shape, d.dtype) if fn is None else (fn, a._output_nr, d.shape, d.dtype)
                )
            else:
                needs.append(False)
                edges.append(None)
        ctx.needs_input_grad = tuple(needs)
        ctx._edges = edges
        ctx._seq = _next_seq()
        out = forward(ctx, *arrays, **kwargs)
        if type(out) is tuple:
            outs = tuple(_wrap(_as_array(o)) for o in out)
            if cls._view_of is not None:
                _share_version(ctx, outs, args[cls._view_of])
            ctx._outputs_meta = [(o._data.shape, o._data.dtype) for o in outs]
            non_diff = ctx._non_diff
            for i, o in enumerate(outs):
                if o._data.dtype.kind in "fcV" and id(o._data) not in non_diff:
                    o.requires_grad = True
                    o.grad_fn = ctx
                    o._output_nr = i
            if ctx._saved:
                ctx._describe_saved(args, outs, arrays)
            if _extras[0]:
                _node_extras(ctx)
            return outs
        d = out if type(out) is _ndarray else _as_array(out)
        if d is not out and ctx._saved:  # a saved NumPy scalar output: save the 0-d array
            ctx._saved = tuple(d if s is out else s for s in ctx._saved)
        result = _wrap(d)
        if cls._view_of is not None:
            _share_version(ctx, (result,), args[cls._view_of])
        ctx._outputs_meta = ((d.shape, d.dtype),)
        if d.dtype.kind in "fcV" and id(d) not in ctx._non_diff:
            result.requires_grad = True
            result.grad_fn = ctx
        saved = ctx._saved
        if saved:
            if len(saved) == 1 and saved[0] is d:  # the common "save my output" case, inline
                counter = result._version_counter
                ctx._saved_info = _OUTPUT0_INFO
                ctx._versions = [(counter, counter[0], 0)]
            else:
                ctx._describe_saved(args, (result,), arrays)
        if _extras[0]:
            _node_extras(ctx)
        return result

    def _describe_saved(self, args, outs, arrays=None) -> None:
        # Where each saved array came from, so double backward can see it as a tensor, and the
        # version of each saved input/output, to catch later in-place modification.
        # ``arrays``: the forward's arguments with tensors replaced by their arrays (apply's
        # list), compared by identity first (a layer norm saves six arrays, four of them
        # derived: an isinstance per argument per saved array was ~20% of its apply).
        if arrays is None:
            arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        info = []
        versions = []
        for s in self._saved:
            if s is None:
                info.append(_CONST_INFO)
                continue
            j = 0
            for d in arrays:
                if d is s:
                    a = args[j]
                    if isinstance(a, Tensor):  # (a raw array argument: a tensor may follow)
                        info.append((_SAVED_INPUT, a))
                        counter = a._version_counter
                        versions.append((counter, counter[0], a))
                        break
                j += 1
            else:
                i = 0
                for o in outs:
                    if o._data is s:
                        info.append((_SAVED_OUTPUT, i))
                        # the counter, not the tensor: output -> node -> output would be a cycle
                        counter = o._version_counter
                        versions.append((counter, counter[0], i))
                        break
                    i += 1
                else:
                    info.append(_CONST_INFO)
        self._saved_info = info
        self._versions = versions or None


def _share_version(ctx, outs, src) -> None:
    """Outputs of view ops that alias their input share its version counter and base."""
    s = src._data
    for o in outs:
        d = o._data
        if (
            _may_share(d, s)
            if type(d) is _ndarray and type(s) is _ndarray
            else ctx.xp.may_share_memory(d, s)
        ):
            o._version_counter = src._version_counter
            o._base = src if src._base is None else src._base


def _device_mismatch(a, b):
    """Raise for arrays of two devices; returns the one whose device the result takes (a
    meta array meets a 0-d CPU array, as torch lets a CPU scalar tensor join a meta op)."""
    da, db = device_of(a), device_of(b)
    if da.type == "meta" and db.type == "cpu" and b.ndim == 0:
        return a
    if db.type == "meta" and da.type == "cpu" and a.ndim == 0:
        return b
    if da != db:
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{da} and {db}!"
        )
    return a


# torch.autograd.function.once_differentiable, importable from here as in PyTorch
from ._once import once_differentiable  # noqa: E402,F401

# torch.autograd.function.FunctionCtx: the type of ``ctx``. Here a Function instance is its
# own ctx, so the name is Function itself (isinstance(ctx, FunctionCtx) holds, as in torch).
FunctionCtx = Function
