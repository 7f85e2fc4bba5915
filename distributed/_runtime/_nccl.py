"""NCCL for CuPy arrays (``cupy.cuda.nccl``): one communicator per process group.

Rank 0 of the group creates the unique id and shares it through the store. Operations are
enqueued on the caller's current CUDA stream, so later work on that stream sees the results
and CuPy's stream-ordered memory pool keeps the buffers alive until the collective finishes;
``Work.wait`` for an asynchronous op synchronises that stream with the caller.

This module imports CuPy only when a communicator is first built, so it stays importable (and
its pure helpers testable) on machines without a GPU.
"""

from __future__ import annotations

import json

from ..errors import DistBackendError
from ..reduce_op import ReduceOp

# NCCL's enums (nccl.h); cupy.cuda.nccl exposes the same values as NCCL_* constants.
_NCCL_DTYPES = {
    "int8": 0,
    "uint8": 1,
    "int32": 2,
    "uint32": 3,
    "int64": 4,
    "uint64": 5,
    "float16": 6,
    "float32": 7,
    "float64": 8,
    "bfloat16": 9,
    "bool": 1,
}
_NCCL_OPS = {
    ReduceOp.SUM: 0,
    ReduceOp.PRODUCT: 1,
    ReduceOp.MAX: 2,
    ReduceOp.MIN: 3,
    ReduceOp.AVG: 4,
}


def nccl_dtype(dtype) -> int:
    name = str(dtype)
    if name not in _NCCL_DTYPES:
        raise TypeError(f"NCCL does not support tensors of dtype {name}")
    return _NCCL_DTYPES[name]


def nccl_op(op, dtype) -> int:
    op = ReduceOp(op)
    if str(dtype) == "bool":  # bools travel as 0/1 bytes: OR is MAX, AND is MIN
        op = {ReduceOp.SUM: ReduceOp.MAX, ReduceOp.PRODUCT: ReduceOp.MIN}.get(op, op)
    if op not in _NCCL_OPS:
        raise ValueError(f"ReduceOp.{op.name} is not supported by NCCL")
    return _NCCL_OPS[op]


def encode_unique_id(uid) -> bytes:
    """CuPy returns the id as bytes (new) or a tuple of ints (old); the store holds bytes."""
    if isinstance(uid, (bytes, bytearray)):
        return b"B" + bytes(uid)
    return b"T" + json.dumps(list(uid)).encode()


def decode_unique_id(raw: bytes):
    return raw[1:] if raw[:1] == b"B" else tuple(json.loads(raw[1:]))


def available() -> bool:
    try:
        from cupy.cuda import nccl  # noqa: F401

        import ember

        return ember.cuda.is_available()
    except Exception:
        return False


class NcclComm:
    """A communicator over the members of one process group."""

    def __init__(self, group) -> None:
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise DistBackendError(f"NCCL needs CuPy with NCCL support: {e}") from None
        self._cp, self._nccl = cupy, nccl
        world = group.world
        key = f"nccl/{group.group_id}/uid"
        me = group.rank()
        if me == 0:
            world.store.set(key, encode_unique_id(nccl.get_unique_id()))
        uid = decode_unique_id(world.store.get(key))
        self.comm = nccl.NcclCommunicator(group.size(), uid, me)
        self.size, self.rank = group.size(), me

    def _stream(self) -> int:
        return self._cp.cuda.get_current_stream().ptr

    def all_reduce(self, arr, op) -> None:
        self.comm.allReduce(
            arr.data.ptr,
            arr.data.ptr,
            arr.size,
            nccl_dtype(arr.dtype),
            nccl_op(op, arr.dtype),
            self._stream(),
        )

    def broadcast(self, arr, root: int) -> None:
        self.comm.bcast(arr.data.ptr, arr.size, nccl_dtype(arr.dtype), root, self._stream())

    def reduce(self, arr, op, root: int) -> None:
        self.comm.reduce(
            arr.data.ptr,
            arr.data.ptr,
            arr.size,
            nccl_dtype(arr.dtype),
            nccl_op(op, arr.dtype),
            root,
            self._stream(),
        )

    def all_gather(self, src, dst) -> None:
        """``dst`` (size ``n * src.size``) receives every rank's ``src`` in rank order."""
        self.comm.allGather(
            src.data.ptr, dst.data.ptr, src.size, nccl_dtype(src.dtype), self._stream()
        )

    def reduce_scatter(self, src, dst, op) -> None:
        self.comm.reduceScatter(
            src.data.ptr,
            dst.data.ptr,
            dst.size,
            nccl_dtype(src.dtype),
            nccl_op(op, src.dtype),
            self._stream(),
        )

    def send(self, arr, peer: int) -> None:
        self.comm.send(arr.data.ptr, arr.size, nccl_dtype(arr.dtype), peer, self._stream())

    def recv(self, arr, peer: int) -> None:
        self.comm.recv(arr.data.ptr, arr.size, nccl_dtype(arr.dtype), peer, self._stream())

    def all_to_all(self, sends, recvs) -> None:
        self._nccl.groupStart()
        try:
            for peer in range(self.size):
                self.send(sends[peer], peer)
                self.recv(recvs[peer], peer)
        finally:
            self._nccl.groupEnd()

    def synchronize(self) -> None:
        self._cp.cuda.get_current_stream().synchronize()

    def close(self) -> None:
        try:
            self.comm.destroy()
        except Exception:
            pass
