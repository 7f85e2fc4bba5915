"""In-place ops: one generic wrapper over the out-of-place op, plus version counting."""

from __future__ import annotations

import numpy as np

from .._numpy_names import renamer
from ..autograd import grad_mode
from ..autograd.function import Function
from ..tensor import Tensor
from ._util import scalar_type_name


def check_inplace(t: Tensor) -> None:
    if not grad_mode._state.enabled:
        return
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation."
        )
    base = t._base
    if base is not None and t.grad_fn is not None and base.requires_grad and base.grad_fn is None:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation."
        )


def rebase(t: Tensor, out: Tensor) -> None:
    """``t`` now holds ``out``'s values: give it ``out``'s place in the graph.

    When ``t`` is a differentiable view (made by a view op while its base was in the graph),
    the write also changed its base: the base moves to a :class:`CopySlices` node, as in
    PyTorch, so ``K.diagonal().add_(noise)`` or ``K.view(-1)[::n + 1] += noise`` (Pyro's GP
    models) send gradients to ``noise`` through later uses of ``K``. A view of a base outside
    the graph counts too: ``out = x.new_zeros(n, 4); out.narrow(-1, 0, 2).copy_(x)`` (e3nn's
    generated code) makes ``out`` require grad, as in PyTorch."""
    base = t._base
    propagate = (
        base is not None and base is not t and (t.grad_fn is not None or not base.requires_grad)
    )
    t.grad_fn = out.grad_fn
    t._output_nr = out._output_nr
    t.requires_grad = out.requires_grad
    if propagate and out.requires_grad:
        _rebase_base(base, t)


class CopySlices(Function):
    """The base of a view written in place: the view's region comes from the new view, the
    rest from the base's old value. The data already holds the result (the view aliases the
    base), so forward returns the base's array and backward splits the gradient."""

    @staticmethod
    def forward(ctx, base, view, offset, strides):
        ctx.shape, ctx.region = base.shape, (view.shape, offset, strides)
        return base

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        g = xp.array(xp.broadcast_to(grad, ctx.shape), order="C", copy=True)
        shape, offset, strides = ctx.region
        flat = g.reshape(-1)
        region = xp.lib.stride_tricks.as_strided(flat[offset:], shape, strides)
        g_view = region.copy()
        region[...] = 0
        return g, g_view, None, None

    supports_double_backward = False


def _rebase_base(base: Tensor, view: Tensor) -> None:
    """Move ``base`` to a CopySlices node joining its old graph and the new ``view``
    (check_inplace has refused a view of a leaf that requires grad)."""
    b, v = base._data, view._data
    flags = getattr(b, "flags", None)  # (meta arrays have no memory to locate the view in)
    if flags is None or not flags.c_contiguous or b.dtype != v.dtype:
        return  # (a view of a strided base: not located here; its own graph stays right)
    item = b.itemsize
    offset, rem = divmod(_address(v) - _address(b), item)
    if rem or any(st % item for st in v.strides) or not 0 <= offset < max(b.size, 1):
        return
    old = Tensor._wrap(b)
    old.requires_grad, old.grad_fn, old._output_nr = (
        base.requires_grad,
        base.grad_fn,
        base._output_nr,
    )
    out = CopySlices.apply(old, view, offset, v.strides)
    base.grad_fn, base._output_nr, base.requires_grad = out.grad_fn, out._output_nr, True


def _address(a) -> int:
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr  # cupy


def _store(self: Tensor, out: Tensor) -> None:
    src, dst = out._data, self._data
    if src.dtype != dst.dtype:
        if (
            src.dtype.kind in "fcV"
            and dst.dtype.kind not in "fcV"
            or (src.dtype.kind == "c" and dst.dtype.kind != "c")
        ):
            raise RuntimeError(
                f"result type {scalar_type_name(out)} can't be cast to the desired output "
                f"type {scalar_type_name(self)}"
            )
    if src.shape != dst.shape:
        raise RuntimeError(
            f"output with shape {list(dst.shape)} doesn't match the broadcast shape "
            f"{list(src.shape)}"
        )
    dst[...] = src


def _keep_original_self(node, self: Tensor) -> None:
    """The op about to overwrite ``self`` saved ``self`` itself as an input (``x /= x.sum()``:
    Div keeps its dividend for the divisor's gradient). Give the node a snapshot of the old
    values, still joined to ``self``'s old place in the graph, so that its backward (and a
    double backward through it) reads what the forward read, as PyTorch's formulas do."""
    from ..autograd.function import _SAVED_INPUT

    old = self._data
    snap = Tensor._wrap(old.copy())
    snap.requires_grad = self.requires_grad
    snap.grad_fn, snap._output_nr = self.grad_fn, self._output_nr
    node._saved = tuple(snap._data if s is old else s for s in node._saved)
    if getattr(node, "_saved_info", None) is not None:
        node._saved_info = [
            (_SAVED_INPUT, snap) if kind == _SAVED_INPUT and ref is self else (kind, ref)
            for kind, ref in node._saved_info
        ]
    if node._versions is not None:
        node._versions = [v for v in node._versions if v[2] is not self] or None


def make_inplace(fn, name: str):
    """``self.op_(...)``: compute ``fn(self, ...)`` and write the result into self's storage."""
    ren = renamer(fn, name)  # NumPy's axis=/keepdims= (``x.cumsum_(axis=0)``), or None

    def method(self, *args, **kwargs):
        if ren is not None and kwargs:
            ren(kwargs)
        # (tensors passed by keyword count too: ``index_copy_(dim, index=i, source=x)``)
        tracking = grad_mode._state.enabled and (
            self.requires_grad
            or any(isinstance(a, Tensor) and a.requires_grad for a in (*args, *kwargs.values()))
        )
        if tracking:
            check_inplace(self)
            out = fn(self, *args, **kwargs)
            node = out.grad_fn
            if node is not None and node._saved and not node._packed:
                if any(s is self._data for s in node._saved):
                    _keep_original_self(node, self)
            _store(self, out)
            rebase(self, out)
        else:
            with grad_mode.no_grad():
                out = fn(self, *args, **kwargs)
            _store(self, out)
        self._version_counter[0] += 1
        return self

    method.__name__ = name
    method.__doc__ = (
        f"The in-place form of ``{name[:-1]}``: computes it with ``self`` as the first argument, "
        "writes the result into ``self`` and returns ``self``."
    )
    return method


class CopyFrom(Function):
    """``self.copy_(src)``: the new value depends on ``src`` only (broadcast and cast)."""

    @staticmethod
    def forward(ctx, dst, src):
        xp = ctx.xp
        if type(src) is not type(dst):  # a device move
            src = src.get() if hasattr(src, "get") else xp.asarray(src)
        ctx.src_dtype = src.dtype
        out = xp.empty_like(dst)
        out[...] = src
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, grad.astype(ctx.src_dtype, copy=False)

    supports_double_backward = False


def copy_(self: Tensor, src, non_blocking: bool = False) -> Tensor:
    if not isinstance(src, Tensor):
        from .. import creation

        src = creation.tensor(src)
    if self.is_meta is not src.is_meta:
        return _meta_copy(self, src)
    return _copy_inplace(self, src)


def _meta_copy(self: Tensor, src: Tensor) -> Tensor:
    """``copy_`` between a meta tensor and a real one: into meta, a no-op (torch: only the
    shapes are checked); out of meta, there is nothing to copy."""
    if src.is_meta:
        raise NotImplementedError("Cannot copy out of meta tensor; no data!")
    if tuple(np.broadcast_shapes(src.shape, self.shape)) != tuple(self.shape):
        raise RuntimeError(
            f"output with shape {list(self.shape)} doesn't match the broadcast shape "
            f"{list(np.broadcast_shapes(src.shape, self.shape))}"
        )
    self._version_counter[0] += 1
    return self


_copy_inplace = make_inplace(CopyFrom.apply, "copy_")


def zero_(self: Tensor) -> Tensor:
    check_inplace(self)
    self._data[...] = 0
    self._version_counter[0] += 1
    return self


def fill_(self: Tensor, value) -> Tensor:
    if isinstance(value, Tensor) and value.requires_grad and grad_mode._state.enabled:
        return copy_(self, value)
    check_inplace(self)
    self._data[...] = value.item() if isinstance(value, Tensor) else value
    self._version_counter[0] += 1
    return self
