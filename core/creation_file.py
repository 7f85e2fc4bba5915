"""``ember.from_file``: a tensor over a file's bytes mapped into memory (``torch.from_file``).

tensordict's ``MemoryMappedTensor`` stores every leaf of ``TensorDict.memmap()`` this way.
"""

from __future__ import annotations

import os

import numpy as np

from .backend.device import as_device
from .backend.dtype import get_default_dtype, to_dtype
from .tensor import Tensor

__all__ = ["from_file"]


def from_file(
    filename: str | os.PathLike,
    shared: bool | None = None,
    size: int = 0,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
) -> Tensor:
    r"""A 1-D tensor of ``size`` elements over the bytes of ``filename``, mapped into memory.

    Args:
        filename (str): the file to map.
        shared (bool, optional): ``True``: writes to the tensor go to the file (and other
            mappings of it see them); a missing file is created and a short one grown to fit.
            ``False`` (default): the mapping is private (copy-on-write) and the file must hold
            at least ``size`` elements.
        size (int): the number of elements.
        dtype (ember.dtype, optional): default: the default dtype.
        device: the tensor is mapped on the CPU, then moved there if another device is given.

    Example::

        >>> t = ember.from_file("/tmp/x.bin", shared=True, size=4)  # doctest: +SKIP
        >>> t[1] = 3  # written to /tmp/x.bin
    """
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(
            f"from_file(): argument 'filename' must be str, not {type(filename).__name__}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"from_file(): size must be a non-negative int, got {size!r}")
    if pin_memory:
        raise RuntimeError("from_file(): pin_memory=True needs an accelerator (ember maps on CPU)")
    dt = to_dtype(dtype) if dtype is not None else get_default_dtype()
    npd = np.dtype(dt.np)
    path = os.fspath(filename)
    nbytes = size * npd.itemsize
    if shared:
        # torch's MapAllocator (shared): open read-write, creating the file, and grow it to fit
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < nbytes:
                os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
    else:
        if not os.path.exists(path):
            raise RuntimeError(
                f"unable to open file <{path}> in read-only mode: No such file or directory (2)"
            )
        have = os.path.getsize(path)
        if have < nbytes:
            raise RuntimeError(
                f"file <{path}> size <{have}> is smaller than the required mapping size <{nbytes}>"
            )
    if size == 0:
        arr = np.empty(0, dtype=npd)
    else:
        mm = np.memmap(path, dtype=npd, mode="r+" if shared else "c", shape=(size,))
        arr = mm.view(np.ndarray)  # keeps the mapping alive through its base
    t = Tensor._wrap(arr)
    if device is not None and as_device(device).type != "cpu":
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t
