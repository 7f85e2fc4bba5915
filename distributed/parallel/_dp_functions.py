"""Device copies for DataParallel (PyTorch's ``nn/parallel/_functions.py`` and ``comm``).

Copies between GPUs are made synchronous at both ends: CuPy runs each device's work on that
device's own stream, and a peer copy is ordered with neither the kernels that wrote the source
nor the ones that may reuse its memory once it is freed.
"""

from __future__ import annotations

import contextlib

from ember.autograd import Function
from ember.backend import _cupy
from ember.backend.device import CPU, as_device, device, device_of


def _as_device(d) -> device:
    """An ember.device from an int (a CUDA index; -1 is the CPU, as in PyTorch's comm), a string
    or a device."""
    if isinstance(d, int) and not isinstance(d, bool):
        return CPU if d < 0 else device("cuda", d)
    return as_device(d)


def _on(dev: device):
    """The device context work for ``dev`` runs in (CuPy computes on the current device)."""
    if dev.type == "cpu":
        return contextlib.nullcontext()
    return _cupy.require_cupy().cuda.Device(dev.index)


def _move(arr, dev: device, copy: bool = False):
    """``arr`` on ``dev``; with ``copy`` a new array even when it is there already."""
    src = device_of(arr)
    if src == dev:
        if not copy:
            return arr
        with _on(dev):
            return arr.copy()
    if dev.type == "cpu":
        return arr.get()  # synchronous
    cp = _cupy.require_cupy()
    if src.type == "cuda":
        # let the kernels that wrote ``arr`` finish, and the copy before ``arr`` can be reused
        arr.device.synchronize()
    with cp.cuda.Device(dev.index):
        out = cp.asarray(arr)
        if src.type == "cuda":
            cp.cuda.get_current_stream().synchronize()
    return out


class _Copy(Function):
    """A differentiable move to ``dev``; backward moves the gradient back."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, dev):
        ctx.src = device_of(x)
        return _move(x, dev)

    @staticmethod
    def backward(ctx, grad):
        return _move(grad, ctx.src), None


class _Broadcast(Function):
    """One tensor copied to every device in ``devices``: PyTorch's Broadcast. The first copy on
    the tensor's own device shares its memory. Backward sums the copies' gradients on the
    source device (PyTorch's ReduceAddCoalesced)."""

    supports_double_backward = False
    _materialize = False  # a replica that did not use the tensor sends no gradient

    @staticmethod
    def forward(ctx, x, devices):
        ctx.src = device_of(x)
        return tuple(_shared_first(x, devices, ctx.src, lambda a, d: _move(a, d, copy=True)))

    @staticmethod
    def backward(ctx, *grads):
        total = None
        with _on(ctx.src):
            for g in grads:
                if g is not None:
                    g = _move(g, ctx.src)
                    total = g if total is None else total + g
        return total, None


def _shared_first(x, devices, src, copy_to):
    """``x`` itself for the first of ``devices`` that is ``src``, ``copy_to(x, d)`` for the rest."""
    shared = False
    for d in devices:
        if d == src and not shared:
            shared = True
            yield x
        else:
            yield copy_to(x, d)
