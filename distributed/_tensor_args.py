"""Argument checks and NumPy views shared by the collectives and point-to-point ops."""

from __future__ import annotations

import numpy as np

from ember import _interop
from ember.tensor import Tensor

from ._runtime import _nccl
from .work import Work


def _check(t, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(
            f"Invalid function argument. Expected parameter `{name}` of type "
            f"ember.Tensor but got {type(t)} instead."
        )
    return t


def _check_list(ts, name: str, n: int | None, dtype=None) -> list:
    if not isinstance(ts, (list, tuple)):
        raise TypeError(
            f"Invalid function argument. Expected parameter `{name}` of type "
            f"List[ember.Tensor] but got {type(ts)} instead."
        )
    for i, t in enumerate(ts):
        _check(t, f"{name}[{i}]")
        if dtype is not None and t.dtype is not dtype:
            raise TypeError(
                f"Invalid usage of tensors with different dtypes Found {dtype} and "
                f"{t.dtype} ({name}[{i}])"
            )
    if n is not None and len(ts) != n:
        raise ValueError(f"{name} has {len(ts)} tensors but the group has {n} ranks")
    return list(ts)


def _d(**kw) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")"


def _sh(t: Tensor) -> list:
    return list(t.shape)


def _cuda(t: Tensor) -> bool:
    return type(_interop.array_of(t)) is not np.ndarray


def _staged(arr):
    """A flat contiguous NumPy view of ``arr`` (or a copy) and how to write results back."""
    if type(arr) is np.ndarray:
        if arr.flags.c_contiguous:
            return arr.reshape(-1), None
        flat = np.ascontiguousarray(arr).reshape(-1)
        return flat, lambda: np.copyto(arr, flat.reshape(arr.shape))
    import cupy  # a CuPy tensor without NCCL: stage through host memory

    host = np.ascontiguousarray(cupy.asnumpy(arr)).reshape(-1)
    return host, lambda: arr.__setitem__(Ellipsis, cupy.asarray(host.reshape(arr.shape)))


def _host(arr) -> np.ndarray:
    """``arr`` as a NumPy array (CuPy arrays are copied to the host)."""
    if type(arr) is np.ndarray:
        return arr
    import cupy

    return cupy.asnumpy(arr)


def _copy_flat(arr, out: np.ndarray | None = None) -> np.ndarray:
    """A private flat copy of ``arr`` (for inputs the op must not modify), into ``out`` if
    given (a reused scratch buffer: fresh multi-MiB allocations cost a page fault per page)."""
    src = _host(arr)
    if out is None:
        return np.array(src, copy=True, order="C").reshape(-1)
    np.copyto(out.reshape(src.shape), src)
    return out


def _write(t: Tensor, flat: np.ndarray) -> None:
    """Copy a flat result into tensor ``t`` (any layout or device) and bump its version."""
    arr = _interop.array_of(t)
    if type(arr) is np.ndarray:
        np.copyto(arr, flat.reshape(arr.shape))
    else:
        import cupy

        arr[...] = cupy.asarray(flat.reshape(arr.shape))
    _bump(t)


def _bump(*ts: Tensor) -> None:
    for t in ts:
        _interop.bump_version(t)


def _nccl_comm(pg, *ts: Tensor):
    """The group's NCCL communicator when these tensors are CuPy and the backend has NCCL."""
    cuda = [_cuda(t) for t in ts]
    if not any(cuda):
        return None
    if not all(cuda):
        raise ValueError(
            "all tensors of a collective must be on the same device type (got "
            "both CPU and CUDA tensors)"
        )
    if pg.backend not in ("auto", "nccl") or not _nccl.available():
        return None
    nc = getattr(pg, "nccl", None)
    if nc is None:
        nc = pg.nccl = _nccl.NcclComm(pg)
    return nc


def _nccl_run(fn, async_op: bool, outputs: list):
    """NCCL ops are enqueued on the current stream right away; ``Work.wait`` syncs it."""
    from concurrent.futures import Future

    fn()
    if not async_op:
        return None
    fut: Future = Future()
    fut.set_result(None)
    return Work(fut, outputs)


def _root(pg, rank: int, group_rank, what: str) -> int:
    if group_rank is not None:
        if not 0 <= group_rank < pg.size():
            raise ValueError(f"Invalid group_{what} {group_rank}: the group has {pg.size()} ranks")
        return int(group_rank)
    return pg.group_rank(rank, what)


def _nccl_inplace(t: Tensor, fn) -> None:
    arr = _interop.array_of(t)
    if arr.flags.c_contiguous:
        fn(arr.reshape(-1))
    else:
        import cupy

        flat = cupy.ascontiguousarray(arr).reshape(-1)
        fn(flat)
        arr[...] = flat.reshape(arr.shape)
    _bump(t)


def _cont(arr):
    import cupy

    return cupy.ascontiguousarray(arr).reshape(-1)


def _segments(sizes) -> list[tuple[int, int]]:
    out, start = [], 0
    for n in sizes:
        out.append((start, start + int(n)))
        start += int(n)
    return out


def _same_numel(ts: list, like: Tensor, name: str) -> None:
    for i, t in enumerate(ts):
        if t.numel() != like.numel():
            raise ValueError(
                f"{name}[{i}] has {t.numel()} elements, expected "
                f"{like.numel()} like the tensor argument"
            )
