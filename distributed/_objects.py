"""Collectives on picklable Python objects (PyTorch's ``*_object`` functions).

Objects are pickled into uint8 tensors; sizes travel first so every rank can allocate. Like
PyTorch's, these unpickle whatever the peers send: use them only within one trusted job (the
job token keeps other processes out).
"""

from __future__ import annotations

import pickle

import numpy as np

from ember import _interop
from ember.tensor import Tensor

from . import collectives as C
from ._runtime._state import resolve_group


def _pack(obj) -> np.ndarray:
    return np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)


def _unpack(buf: np.ndarray):
    return pickle.loads(buf.tobytes())


def _t(arr: np.ndarray) -> Tensor:
    return _interop.wrap(np.ascontiguousarray(arr))


def broadcast_object_list(
    object_list: list, src: int = 0, group=None, device=None, group_src: int | None = None
) -> None:
    """Replace ``object_list``'s entries on every rank with rank ``src``'s (in place)."""
    pg = resolve_group(group)
    if pg is None:
        return
    root = group_src if group_src is not None else pg.group_rank(src, "src")
    mine = pg.rank() == root
    parts = [_pack(o) for o in object_list] if mine else []
    sizes = _t(
        np.array([p.size for p in parts] if mine else [0] * len(object_list), dtype=np.int64)
    )
    C.broadcast(sizes, group=group, group_src=root)
    offsets = np.concatenate([[0], np.cumsum(_interop.array_of(sizes))])
    data = _t(np.concatenate(parts) if mine and parts else np.empty(int(offsets[-1]), np.uint8))
    C.broadcast(data, group=group, group_src=root)
    if not mine:
        for i in range(len(object_list)):
            object_list[i] = _unpack(_interop.array_of(data)[offsets[i] : offsets[i + 1]])


def object_from_rank0(obj, group=None):
    """Rank 0's ``obj`` on every rank (the other ranks' argument is ignored): the
    "rank 0 decides, everyone follows" step of checkpoint and state-dict loading."""
    pg = resolve_group(group)
    box = [obj if pg is None or pg.rank() == 0 else None]
    broadcast_object_list(box, group=group, group_src=0)
    return box[0]


def all_gather_object(object_list: list, obj, group=None) -> None:
    """``object_list[i]`` on every rank becomes rank ``i``'s ``obj``."""
    pg = resolve_group(group)
    if pg is None:
        return
    n = pg.size()
    if len(object_list) != n:
        raise ValueError(f"object_list has {len(object_list)} entries but the group has {n} ranks")
    mine = _pack(obj)
    sizes = _t(np.zeros(n, dtype=np.int64))
    C.all_gather_into_tensor(sizes, _t(np.array([mine.size], dtype=np.int64)), group=group)
    width = int(_interop.array_of(sizes).max())
    padded = np.zeros(width, dtype=np.uint8)
    padded[: mine.size] = mine
    out = _t(np.empty(width * n, dtype=np.uint8))
    C.all_gather_into_tensor(out, _t(padded), group=group)
    got, lengths = _interop.array_of(out), _interop.array_of(sizes)
    for i in range(n):
        object_list[i] = _unpack(got[i * width : i * width + int(lengths[i])])


def gather_object(
    obj,
    object_gather_list: list | None = None,
    dst: int = 0,
    group=None,
    group_dst: int | None = None,
) -> None:
    """Rank ``dst``'s ``object_gather_list[i]`` becomes rank ``i``'s ``obj``."""
    pg = resolve_group(group)
    if pg is None:
        return
    root = group_dst if group_dst is not None else pg.group_rank(dst, "dst")
    n = pg.size()
    if pg.rank() == root and (object_gather_list is None or len(object_gather_list) != n):
        raise ValueError(
            f"object_gather_list must be a list of {n} entries on the destination rank"
        )
    everything: list = [None] * n
    all_gather_object(everything, obj, group=group)
    if pg.rank() == root:
        object_gather_list[:] = everything


def scatter_object_list(
    scatter_object_output_list: list,
    scatter_object_input_list=None,
    src: int = 0,
    group=None,
    group_src: int | None = None,
) -> None:
    """``scatter_object_output_list[0]`` on rank ``i`` becomes ``src``'s input entry ``i``."""
    pg = resolve_group(group)
    if pg is None:
        return
    root = group_src if group_src is not None else pg.group_rank(src, "src")
    if not isinstance(scatter_object_output_list, list) or not scatter_object_output_list:
        raise ValueError(
            "Expected argument scatter_object_output_list to be a list of size at least 1."
        )
    n = pg.size()
    objs = list(scatter_object_input_list) if pg.rank() == root else [None] * n
    if len(objs) != n:
        raise ValueError(f"scatter_object_input_list must have {n} entries on the source rank")
    broadcast_object_list(objs, group=group, group_src=root)
    scatter_object_output_list[0] = objs[pg.rank()]


def send_object_list(
    object_list: list, dst: int | None = None, group=None, device=None, group_dst=None
) -> None:
    """Send the picklable objects of ``object_list`` to rank ``dst`` (global rank, or
    ``group_dst`` within ``group``), which receives them with :func:`recv_object_list`."""
    from . import p2p

    pg = resolve_group(group)
    if pg is None:
        return
    parts = [_pack(o) for o in object_list]
    sizes = _t(np.array([p.size for p in parts], dtype=np.int64))
    p2p.send(sizes, dst, group=group, group_dst=group_dst)
    data = _t(np.concatenate(parts) if parts else np.empty(0, np.uint8))
    p2p.send(data, dst, group=group, group_dst=group_dst)


def recv_object_list(
    object_list: list, src: int | None = None, group=None, device=None, group_src=None
) -> int:
    """Fill ``object_list`` in place with the objects a peer sent with
    :func:`send_object_list` (``len(object_list)`` of them); from rank ``src``, or from any
    rank when ``src`` is None. Returns the sender's rank (-1 outside the group)."""
    from . import p2p

    pg = resolve_group(group)
    if pg is None:
        return -1
    sizes = _t(np.zeros(len(object_list), dtype=np.int64))
    sender = p2p.recv(sizes, src, group=group, group_src=group_src)
    lengths = _interop.array_of(sizes)
    data = _t(np.empty(int(lengths.sum()), dtype=np.uint8))
    # the data comes from the rank that sent the sizes, even when ``src`` was "any"
    if group_src is None and src is None:
        p2p.recv(data, sender, group=group)
    else:
        p2p.recv(data, src, group=group, group_src=group_src)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    got = _interop.array_of(data)
    for i in range(len(object_list)):
        object_list[i] = _unpack(got[offsets[i] : offsets[i + 1]])
    return sender
