"""Dtype casts and device moves (both differentiable), clone and contiguous."""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend import _cupy, meta
from ..backend.device import CPU


class Cast(Function):
    @staticmethod
    def forward(ctx, x, np_dtype):
        ctx.src = x.dtype
        return x.astype(np_dtype)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return ctx.xp.astype(grad, ctx.src), None
        if grad.dtype.kind == "c" and ctx.src.kind != "c":  # a real input: the real part
            grad = grad.real
        return grad.astype(ctx.src), None


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, dev):
        if dev.type == "meta":  # a shape and a dtype: nothing to copy
            ctx.src = "meta"
            return meta.empty(x.shape, x.dtype)
        if type(x) is meta.MetaArray:
            raise NotImplementedError("Cannot copy out of meta tensor; no data!")
        ctx.src = None if type(x) is np.ndarray else x.device.id
        if dev.type == "cpu":
            return x if type(x) is np.ndarray else x.get()
        cp = _cupy.require_cupy()
        with cp.cuda.Device(dev.index):
            return cp.asarray(x)

    @staticmethod
    def backward(ctx, grad):
        if ctx.src == "meta":  # the gradient of a move to meta has no values to bring back
            raise NotImplementedError("Cannot copy out of meta tensor; no data!")
        if ctx.src is None:
            return (grad if type(grad) is np.ndarray else grad.get()), None
        cp = _cupy.require_cupy()
        with cp.cuda.Device(ctx.src):
            return cp.asarray(grad), None

    supports_double_backward = False


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


class Contiguous(Function):
    @staticmethod
    def forward(ctx, x):
        return ctx.xp.ascontiguousarray(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def to_dtype_op(t, dt):
    if t._data.dtype == dt.np:
        return t
    return Cast.apply(t, dt.np)


def to(t, dev, dt, copy: bool = False):
    out = t
    if dev is not None and dev != (CPU if type(t._data) is np.ndarray else t.device):
        out = ToDevice.apply(out, dev)
    if dt is not None and out._data.dtype != dt.np:
        out = Cast.apply(out, dt.np)
    if copy and out is t:
        out = Clone.apply(t)
    return out


def clone(t, memory_format=None):
    """A copy of ``t`` with its own data; the copy stays in the autograd graph (gradients flow back
    to ``t``). ``memory_format`` is accepted for PyTorch's signature.
    """
    return Clone.apply(t)


def contiguous(t, memory_format=None):
    """``t`` itself: ember tensors are always contiguous. ``memory_format`` is accepted for
    PyTorch's signature.
    """
    return t if t._data.flags.c_contiguous else Contiguous.apply(t)
