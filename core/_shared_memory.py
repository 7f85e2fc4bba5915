"""Shared-memory tensor data that survives ``spawn``: ``share_memory_()`` puts a tensor's array in
a memfd-backed mapping, and multiprocessing's pickler (``ForkingPickler``, used for
``Process`` arguments and queues) sends such tensors as a duplicated file descriptor, so the
child maps the same pages instead of receiving a copy. This is what Hogwild training
(``model.share_memory()``, then ``mp.Process(target=train, args=(model,))``) relies on.

Tensors whose data is not shared pickle as before (a copy). Without ``os.memfd_create`` (not
Linux) the mapping is anonymous: shared with forked children only.
"""

from __future__ import annotations

import mmap
import os
import weakref
from multiprocessing.reduction import DupFd, ForkingPickler

import numpy as np

_FDS: dict[int, int] = {}  # id(mmap) -> the memfd behind it (closed when the mmap is collected)


def _register(m: mmap.mmap, fd: int) -> None:
    key = id(m)
    _FDS[key] = fd

    def _release(key=key, fd=fd):
        _FDS.pop(key, None)
        os.close(fd)

    weakref.finalize(m, _release)


def shared_array(data: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``data`` in a shared mapping."""
    nbytes = max(data.nbytes, 1)
    install()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ember-shared-tensor", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, nbytes)
            m = mmap.mmap(fd, nbytes)
        except BaseException:
            os.close(fd)
            raise
        _register(m, fd)
    else:  # pragma: no cover - non-Linux
        m = mmap.mmap(-1, nbytes)
    out = np.ndarray(data.shape, dtype=data.dtype, buffer=m)
    out[...] = data
    return out


def _memfd_base(arr: np.ndarray):
    """The registered mmap under ``arr`` (following ``.base``) and its fd, or None."""
    base = arr
    while base is not None:
        if isinstance(base, mmap.mmap):
            fd = _FDS.get(id(base))
            return None if fd is None else (base, fd)
        base = getattr(base, "base", None)
    return None


def _reduce(t):
    data = t._data
    found = _memfd_base(data) if type(data) is np.ndarray else None
    if found is None:
        return t.__reduce_ex__(4)
    m, fd = found
    offset = data.__array_interface__["data"][0] - np.frombuffer(m, np.uint8).ctypes.data
    state = dict(getattr(t, "__dict__", {}))
    return (
        _rebuild_shared,
        (
            type(t),
            DupFd(fd),
            len(m),
            offset,
            data.shape,
            data.strides,
            data.dtype.str,
            t.requires_grad,
            state,
        ),
    )


def _rebuild_shared(cls, dupfd, size, offset, shape, strides, dtype, requires_grad, state):
    from .nn.parameter import Parameter
    from .tensor import Tensor

    fd = dupfd.detach()
    m = mmap.mmap(fd, size)
    _register(m, fd)  # the child can share it onwards; the fd closes with the mapping
    arr = np.ndarray(shape, dtype=np.dtype(dtype), buffer=m, offset=offset, strides=strides)
    if issubclass(cls, Parameter):
        out = cls(Tensor._wrap(arr), requires_grad)
    else:
        out = Tensor._wrap(arr)
        out.requires_grad = requires_grad
    if state:
        out.__dict__.update(state)
    return out


_installed = False


def install() -> None:
    """Register the reducer for ember's tensor types with multiprocessing's pickler (on the
    first ``share_memory_``: only shared tensors need it)."""
    global _installed
    if _installed:
        return
    from .nn.parameter import Parameter
    from .tensor import Tensor

    for cls in (Tensor, Parameter):
        ForkingPickler.register(cls, _reduce)
    _installed = True
