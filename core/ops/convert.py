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


class ToChannelsLast(Function):
    """A copy laid out NHWC (NDHWC) in memory, indexed NCHW: torch's ``channels_last`` strides
    (the kernels read any strides; this is what ``stride()`` and ``is_contiguous`` report)."""

    @staticmethod
    def forward(ctx, x):
        return nhwc_array(ctx.xp, x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def nhwc_array(xp, x):
    """A copy of the 4-D / 5-D array ``x`` laid out NHWC (NDHWC), indexed as ``x``."""
    if type(x) is meta.MetaArray:
        return x.copy()  # no memory to lay out
    order = (0, *range(2, x.ndim), 1)
    back = (0, x.ndim - 1, *range(1, x.ndim - 1))
    out = xp.empty(tuple(x.shape[i] for i in order), x.dtype)  # its own strides, even for
    n, c = x.shape[0], x.shape[1]  # size-1 dims (ascontiguousarray may keep a view's)
    plane = x.size // max(n * c, 1)
    if xp is np and x.flags.c_contiguous and plane >= _BLOCK_PLANE and c > 8:
        # a row-major array: (C, plane) -> (plane, C) per sample, a few channels at a time:
        # NumPy's one transposing copy reads a new line per element (1 thread, 32 x 32 x
        # 32^2 float32: 2.04 -> 0.65 ms; 32 x 64 x 16^2: 0.45 -> 0.24 ms)
        b = 8 if plane >= 1024 else 16
        o3, x3 = out.reshape(n, plane, c), x.reshape(n, c, plane)
        for j in range(0, c, b):
            o3[:, :, j : j + b] = x3[:, j : j + b, :].transpose(0, 2, 1)
    else:
        out[...] = x.transpose(order)
    return out.transpose(back)


# Planes (H * W) from this size take nhwc_array's blocked copy (smaller: its one copy is as fast)
_BLOCK_PLANE = 256


def like_layout(out, input, memory_format):
    """``out`` (a new ``*_like(input)`` tensor) laid out as torch's: NHWC for ``channels_last``,
    and for the default ``preserve_format`` where ``input`` is NHWC; otherwise row-major."""
    from .._torch_misc import preserve_format

    rank = _channels_last_rank(memory_format)
    if rank:
        _check_rank(out, rank)
    elif memory_format is None or memory_format is preserve_format:
        rank = _nhwc_rank(input)
    if rank:
        from ..backend.device import get_array_module

        out._data = nhwc_array(get_array_module(out._data), out._data)
    return out


def _channels_last_rank(memory_format) -> int:
    """4 for ``channels_last``, 5 for ``channels_last_3d``, else 0."""
    from .._torch_misc import channels_last, channels_last_3d

    return 4 if memory_format is channels_last else 5 if memory_format is channels_last_3d else 0


def _nhwc_rank(t) -> int:
    """4 or 5 where ``t`` is laid out NHWC (NDHWC) and not row-major (what ``preserve_format``
    keeps), else 0."""
    flags = getattr(t._data, "flags", None)  # sparse / nested arrays: none
    r = t.ndim
    if r in (4, 5) and flags is not None and not flags.c_contiguous and is_channels_last(t, r):
        return r
    return 0


def _check_rank(t, rank: int) -> None:
    if t.ndim != rank:
        name = "channels_last" if rank == 4 else "channels_last_3d"
        raise RuntimeError(f"required rank {rank} tensor to use {name} format")


def is_channels_last(t, rank: int) -> bool:
    """torch's ``is_contiguous(memory_format=channels_last[_3d])``: the strides read NHWC
    (NDHWC) where the sizes are not 1."""
    if t.ndim != rank:
        return False
    shape, strides = t.shape, t.stride()
    expected = 1
    for d in (1, *range(rank - 1, 1, -1), 0):
        if shape[d] != 1:
            if strides[d] != expected:
                return False
            expected *= shape[d]
    return True


def _to_layout(t, memory_format, copy: bool):
    """``t`` in ``memory_format`` (a copy when ``copy`` or when its layout differs)."""
    rank = _channels_last_rank(memory_format)
    if rank:
        _check_rank(t, rank)
        return ToChannelsLast.apply(t) if copy or not is_channels_last(t, rank) else t
    if copy:
        return Clone.apply(t)
    return t if t._data.flags.c_contiguous else Contiguous.apply(t)


def to_channels_last(t, memory_format):
    """``t.to(memory_format=channels_last[_3d])``: ``t`` where its strides already suggest that
    format, else an NHWC (NDHWC) copy (torch's rule: ``suggest_memory_format``)."""
    from .._prims_common import suggest_memory_format

    _check_rank(t, _channels_last_rank(memory_format))
    return t if suggest_memory_format(t) is memory_format else ToChannelsLast.apply(t)


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
    to ``t``). ``memory_format``: ``channels_last`` lays the copy out NHWC; the default
    (``preserve_format``) keeps a ``channels_last`` tensor's layout and copies any other row-major.
    """
    from .._torch_misc import preserve_format

    if memory_format is None or memory_format is preserve_format:
        return ToChannelsLast.apply(t) if _nhwc_rank(t) else Clone.apply(t)
    return _to_layout(t, memory_format, True)


def contiguous(t, memory_format=None):
    """``t`` itself where it is laid out in ``memory_format`` (row-major by default, NHWC for
    ``channels_last``), else a copy that is (torch's strides; see ``ToChannelsLast``).
    """
    if memory_format is None:
        return t if t._data.flags.c_contiguous else Contiguous.apply(t)
    return _to_layout(t, memory_format, False)


def nhwc_elementwise(fn, input, *args):
    """``fn(input, *args)`` for an elementwise op whose kernel reads row-major memory: an NHWC
    (NDHWC) ``input`` goes in as its row-major ``(N, H, W, C)`` view and the result comes back
    permuted, so it is ``channels_last`` as torch's with no copy either way (the kernel would
    copy the input to row-major, and :func:`keep_nhwc` copy the result back)."""
    flags = getattr(getattr(input, "_data", None), "flags", None)
    if flags is None or flags.c_contiguous:
        return fn(input, *args)
    rank = _nhwc_rank(input)
    if not rank:
        return fn(input, *args)
    order = (0, *range(2, rank), 1)
    back = (0, rank - 1, *range(1, rank - 1))
    return fn(input.permute(order), *args).permute(back)
