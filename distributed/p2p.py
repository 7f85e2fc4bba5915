"""Point-to-point messages: ``send``, ``recv``, ``isend``, ``irecv``, ``batch_isend_irecv``.

Messages travel on the group's point-to-point channel, matched by peer and ``tag`` in order.
The receiver checks the size against what it expects and, on a mismatch, names the sender's
tensor and call site. The data moves through the group's communicator
(``_runtime/_communicator.py``).
"""

from __future__ import annotations

from ember import _interop
from ember.tensor import Tensor

from ._runtime._state import execute, resolve_group
from ._tensor_args import _bump, _check, _d, _root, _sh
from .errors import DistributedError
from .work import Work


def _peer(pg, rank, group_rank, what: str) -> int:
    peer = _root(pg, rank, group_rank, what)
    if peer == pg.rank():
        name = "destination" if what == "dst" else "source"
        raise ValueError(
            f"Invalid {name} rank: should not be the same as the rank of the current process."
        )
    return peer


def _send_job(pg, tensor: Tensor, peer: int, tag: int):
    ctx = pg.p2p_op("send", _d(shape=_sh(tensor), dtype=tensor.dtype, tag=tag), peer, tag)

    def run():
        pg.communicator.send(ctx, _interop.array_of(tensor), peer, tag)

    return run


def _recv_job(pg, tensor: Tensor, peer: int | None, tag: int):
    ctx = pg.p2p_op(
        "recv",
        _d(shape=_sh(tensor), dtype=tensor.dtype, tag=tag),
        -1 if peer is None else peer,
        tag,
    )

    def run():
        src = pg.communicator.recv(ctx, _interop.array_of(tensor), peer, tag)
        _bump(tensor)
        return pg.ranks[src]

    return run


def _group_or_raise(group):
    pg = resolve_group(group)
    if pg is None:
        raise DistributedError(
            "this rank is not a member of the group given to a point-to-point operation"
        )
    return pg


def isend(
    tensor: Tensor, dst: int | None = None, group=None, tag: int = 0, group_dst: int | None = None
) -> Work:
    """Send ``tensor`` to rank ``dst`` asynchronously."""
    _check(tensor, "tensor")
    pg = _group_or_raise(group)
    return execute(pg, _send_job(pg, tensor, _peer(pg, dst, group_dst, "dst"), tag), True, [tensor])


def irecv(
    tensor: Tensor, src: int | None = None, group=None, tag: int = 0, group_src: int | None = None
) -> Work:
    """Receive into ``tensor`` from rank ``src`` (any rank if ``None``) asynchronously."""
    _check(tensor, "tensor")
    pg = _group_or_raise(group)
    peer = None if src is None and group_src is None else _peer(pg, src, group_src, "src")
    return execute(pg, _recv_job(pg, tensor, peer, tag), True, [tensor])


def send(
    tensor: Tensor, dst: int | None = None, group=None, tag: int = 0, group_dst: int | None = None
) -> None:
    """Send ``tensor`` to rank ``dst``; returns once ``tensor`` may be modified again."""
    _check(tensor, "tensor")
    pg = _group_or_raise(group)
    execute(pg, _send_job(pg, tensor, _peer(pg, dst, group_dst, "dst"), tag), False, [tensor])


def recv(
    tensor: Tensor, src: int | None = None, group=None, tag: int = 0, group_src: int | None = None
) -> int:
    """Receive into ``tensor`` from rank ``src`` (any rank if ``None``); returns the sender."""
    _check(tensor, "tensor")
    pg = _group_or_raise(group)
    peer = None if src is None and group_src is None else _peer(pg, src, group_src, "src")
    job = _recv_job(pg, tensor, peer, tag)
    out = []
    execute(pg, lambda: out.append(job()), False, [tensor])
    return out[0]


class P2POp:
    """One operation of ``batch_isend_irecv``: ``P2POp(dist.isend, tensor, peer)``."""

    def __init__(
        self,
        op,
        tensor: Tensor,
        peer: int | None = None,
        group=None,
        tag: int = 0,
        group_peer: int | None = None,
    ) -> None:
        if op not in (isend, irecv):
            raise ValueError(
                "Invalid ``op``. Expected ``op`` to be of type ``dist.isend`` or ``dist.irecv``."
            )
        self.op, self.tensor, self.peer = op, _check(tensor, "tensor"), peer
        self.group, self.tag, self.group_peer = group, tag, group_peer


def batch_isend_irecv(p2p_op_list: list) -> list[Work]:
    """Issue a list of ``P2POp``: every send first, then every receive, as one job."""
    if not p2p_op_list:
        raise ValueError("batch_isend_irecv needs a non-empty list of P2POp")
    jobs = []
    for p in p2p_op_list:
        if not isinstance(p, P2POp):
            raise TypeError("batch_isend_irecv expects P2POp instances")
        pg = _group_or_raise(p.group)
        if p.op is isend:
            jobs.append((0, _send_job(pg, p.tensor, _peer(pg, p.peer, p.group_peer, "dst"), p.tag)))
        else:
            jobs.append((1, _recv_job(pg, p.tensor, _peer(pg, p.peer, p.group_peer, "src"), p.tag)))

    def run():
        for _, job in sorted(jobs, key=lambda j: j[0]):
            job()

    work = execute(pg, run, True, [p.tensor for p in p2p_op_list])
    return [work] * len(p2p_op_list)
