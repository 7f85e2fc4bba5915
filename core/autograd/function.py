"""``Function``: one class per op, forward and backward side by side (DESIGN.md §3).

A Function instance is also the graph node (``grad_fn``) of the outputs it produced: it keeps the
edges to its inputs' nodes, the arrays it saved, and the hooks registered on its outputs.
"""

from __future__ import annotations

import numpy as np

from ..backend import _cupy
from ..backend.device import device_of
from . import grad_mode

# Set by ember.tensor once the Tensor class exists (tensor.py imports this module).
Tensor = None

_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)

# How a saved array relates to the graph, for double backward: an input, the output, or a constant.
_SAVED_INPUT, _SAVED_OUTPUT, _SAVED_CONST = 0, 1, 2


def _as_array(out):
    """NumPy reductions may return NumPy scalars; tensors always hold arrays."""
    if type(out) is np.ndarray:
        return out
    if _cupy.cupy is not None and isinstance(out, _cupy.cupy.ndarray):
        return out
    return np.asarray(out)


class Function:
    """Base class for differentiable ops and for user-defined autograd functions.

    Subclasses define ``forward(ctx, *args)`` on raw arrays (``ctx.xp`` is numpy or cupy) and
    ``backward(ctx, *grads)`` returning one gradient per forward argument (None for
    non-differentiable ones). Gradients may be returned in the broadcast shape: the engine sums
    them back to each input's shape. Call ``MyFunction.apply(*args)`` with tensors.
    """

    # Index of the argument whose memory the output may alias (view ops), or None.
    _view_of: int | None = None
    # Set to False for ops whose backward cannot run on tensors (no double backward).
    supports_double_backward = True

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must implement forward")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("Function subclasses must implement backward")

    # ---- ctx API -------------------------------------------------------------------------
    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is None:
            raise RuntimeError(_FREED_MSG)
        if self._versions is not None:
            self._check_versions()
        if self._tensor_mode:
            return tuple(self._saved_as_tensor(i) for i in range(len(saved)))
        return saved

    def mark_non_differentiable(self, *arrays) -> None:
        self._non_diff = tuple(id(a) for a in arrays)

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize = value

    @property
    def next_functions(self):
        return tuple(
            (None, 0) if e is None else (e[0] if isinstance(e[0], Function) else _Acc(e[0]), e[1])
            for e in self._edges
        )

    def name(self) -> str:
        return type(self).__name__ + "Backward0"

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"

    def register_prehook(self, hook, output_nr: int = 0):
        hooks = self._pre_hooks
        if hooks is None:
            hooks = self._pre_hooks = {}
        hooks.setdefault(output_nr, []).append(hook)
        return _RemovableHandle(hooks[output_nr], hook)

    # ---- apply ---------------------------------------------------------------------------
    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = cls.__new__(cls)
        ctx._saved = ()
        ctx._non_diff = ()
        ctx._tensor_mode = False
        ctx._versions = None
        ctx._pre_hooks = None
        xp = None
        arrays = []
        requires = False
        first = None
        for a in args:
            if isinstance(a, Tensor):
                data = a._data
                if first is None:
                    first = data
                    xp = np if type(data) is np.ndarray else _cupy.cupy
                elif type(data) is not type(first):
                    _device_mismatch(first, data)
                arrays.append(data)
                if a.requires_grad:
                    requires = True
            else:
                arrays.append(a)
        ctx.xp = np if xp is None else xp
        needs_graph = requires and grad_mode._state.enabled
        if needs_graph:
            ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        else:
            ctx.needs_input_grad = (False,) * len(args)
        out = cls.forward(ctx, *arrays, **kwargs)
        if type(out) is tuple:
            outs = tuple(Tensor._wrap(_as_array(o)) for o in out)
        else:
            outs = None
            result = Tensor._wrap(_as_array(out))
        if cls._view_of is not None:
            src = args[cls._view_of]
            for o in outs if outs is not None else (result,):
                if ctx.xp.may_share_memory(o._data, src._data):
                    o._version_counter = src._version_counter
                    o._base = src if src._base is None else src._base
        if not needs_graph:
            return outs if outs is not None else result
        ctx._record_graph(args, arrays, outs if outs is not None else (result,))
        return outs if outs is not None else result

    def _record_graph(self, args, arrays, outs) -> None:
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                fn = a.grad_fn
                if fn is None:
                    edges.append((a, 0, a._data.shape, a._data.dtype))
                else:
                    edges.append((fn, a._output_nr, a._data.shape, a._data.dtype))
            else:
                edges.append(None)
        self._edges = edges
        self._outputs_meta = tuple((o._data.shape, o._data.dtype) for o in outs)
        self._materialize = True
        non_diff = self._non_diff
        for i, o in enumerate(outs):
            if o._data.dtype.kind in "fcV" and (not non_diff or id(o._data) not in non_diff):
                o.requires_grad = True
                o.grad_fn = self
                o._output_nr = i
        if self._saved:
            self._describe_saved(args, arrays, outs)

    def _describe_saved(self, args, arrays, outs) -> None:
        # Record where each saved array came from, so double backward can see them as tensors,
        # and the version of each saved input/output, to catch in-place modification.
        info = []
        versions = []
        for s in self._saved:
            kind, ref = _SAVED_CONST, None
            for a, arr in zip(args, arrays):
                if arr is s and isinstance(a, Tensor):
                    kind, ref = _SAVED_INPUT, a
                    break
            else:
                for i, o in enumerate(outs):
                    if o._data is s:
                        kind, ref = _SAVED_OUTPUT, i
                        break
            if kind == _SAVED_INPUT:
                versions.append((ref, ref._version_counter, ref._version_counter[0], None))
            elif kind == _SAVED_OUTPUT:
                o = outs[ref]
                versions.append((o, o._version_counter, o._version_counter[0], ref))
            info.append((kind, ref))
        self._saved_info = info
        self._versions = versions or None

    def _check_versions(self) -> None:
        for tensor, counter, expected, out_nr in self._versions:
            if counter[0] != expected:
                where = (
                    f"output {out_nr} of {self.name()}"
                    if out_nr is not None
                    else (
                        f"output {tensor._output_nr} of {tensor.grad_fn.name()}"
                        if tensor.grad_fn is not None
                        else "a leaf tensor"
                    )
                )
                shape = ", ".join(str(s) for s in tensor._data.shape)
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: [ember.{tensor.dtype.name} [{shape}]], which is "
                    f"{where}, is at version {counter[0]}; expected version {expected} instead."
                )

    def _saved_as_tensor(self, i: int):
        kind, ref = self._saved_info[i]
        if kind == _SAVED_INPUT:
            return ref
        array = self._saved[i]
        if kind == _SAVED_CONST and not hasattr(array, "__array_namespace__"):
            return array  # None, Python scalars, shapes
        t = Tensor._wrap(array)
        if kind == _SAVED_OUTPUT:
            # A fresh handle on the output that still points at this node, so gradients of the
            # backward graph flow through the forward graph (no reference cycle is kept).
            t.requires_grad = True
            t.grad_fn = self
            t._output_nr = ref
        return t


class _Acc:
    """What ``next_functions`` shows for a leaf: PyTorch's AccumulateGrad."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


class _RemovableHandle:
    __slots__ = ("_list", "_item")

    def __init__(self, lst, item):
        self._list, self._item = lst, item

    def remove(self) -> None:
        try:
            self._list.remove(self._item)
        except ValueError:
            pass


def _device_mismatch(a, b):
    da, db = device_of(a), device_of(b)
    if da != db:
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{da} and {db}!"
        )
