"""Collective algorithms, written once over a ``Comm`` (any transport).

Buffers are flat, contiguous NumPy arrays; ring algorithms take one array per member's
segment (views of one flat buffer, or separate tensors), so results can land straight in the
caller's output and inputs need not be copied first. Large messages take bandwidth-optimal
rings, pipelined by chunk so the next chunk is on the wire while this one is reduced:
allreduce is ring reduce-scatter + ring all-gather, broadcast a pipelined chain. Small ones take
direct exchanges (one step, fewest round trips). Reductions combine contributions in the same
order on every rank, so every rank ends up with bitwise identical results.
"""

from __future__ import annotations

import os

import numpy as np

CHUNK_BYTES = int(os.environ.get("EMBER_CHUNK_BYTES", 4 << 20))
SMALL_BYTES = int(os.environ.get("EMBER_SMALL_BYTES", 64 << 10))


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most one."""
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + q + (1 if i < r else 0)
        out.append((start, stop))
        start = stop
    return out


def views(buf: np.ndarray, segs) -> list[np.ndarray]:
    return [buf[a:b] for a, b in segs]


def chunks(arr: np.ndarray) -> list[np.ndarray]:
    """Pipeline chunks of ``arr``; always at least one (possibly empty) chunk."""
    per = max(1, CHUNK_BYTES // max(1, arr.itemsize))
    if arr.size <= per:
        return [arr]
    return [arr[a : a + per] for a in range(0, arr.size, per)]


# ---- reduce-scatter / all-gather rings ---------------------------------------------------------
def ring_reduce_scatter(comm, ctx, src: list, red, work: list) -> None:
    """``work[me]`` ends as the reduction over ranks of ``src[me]``.

    Segment ``k`` travels the ring once, each rank adding its ``src[k]``; partial sums are
    kept in ``work[k]``, which may alias ``src[k]`` (in place) or be a scratch or output array.
    Each step posts all its receives first, so pieces are reduced as they arrive while this
    rank is still sending.
    """
    n, me = comm.size, comm.me
    nxt, prv = (me + 1) % n, (me - 1) % n
    for s in range(n - 1):
        ks, kr = (me - s - 1) % n, (me - s - 2) % n
        pending = [
            comm.post_reduce(prv, ctx, d, red.fn, src=a)
            for d, a in zip(chunks(work[kr]), chunks(src[kr]))
        ]
        for c in chunks(src[ks] if s == 0 else work[ks]):
            comm.send(nxt, ctx, c)
        for h in pending:
            comm.wait(h)


def ring_all_gather(comm, ctx, parts: list) -> None:
    """``parts[i]`` of member ``i`` reaches every member."""
    n, me = comm.size, comm.me
    nxt, prv = (me + 1) % n, (me - 1) % n
    for s in range(n - 1):
        pending = [comm.post_into(prv, ctx, c) for c in chunks(parts[(me - s - 1) % n])]
        for c in chunks(parts[(me - s) % n]):
            comm.send(nxt, ctx, c)
        for h in pending:
            comm.wait(h)


def all_gather(comm, ctx, parts: list) -> None:
    """``parts[i]``: member ``i``'s contribution (filled on member ``i``), received elsewhere."""
    n, me = comm.size, comm.me
    if n == 1:
        return
    if sum(p.nbytes for p in parts) > SMALL_BYTES:
        ring_all_gather(comm, ctx, parts)
        return
    for i in range(n):
        if i != me:
            comm.send(i, ctx, parts[me])
    for i in range(n):
        if i != me:
            comm.recv_into(i, ctx, parts[i])


# ---- allreduce -----------------------------------------------------------------------------------
def all_reduce(comm, ctx, buf: np.ndarray, red) -> None:
    """In-place allreduce of a flat array (``red``: a ``Reduction``)."""
    n = comm.size
    if n == 1:
        red.finish(buf, 1)
    elif buf.nbytes <= SMALL_BYTES:
        direct_reduce(comm, ctx, buf, red, root=None)
        red.finish(buf, n)
    else:
        ring_all_reduce(comm, ctx, buf, red)


def ring_all_reduce(comm, ctx, buf: np.ndarray, red) -> None:
    """Ring reduce-scatter, then ring all-gather (bandwidth-optimal over messages)."""
    parts = views(buf, split(buf.size, comm.size))
    ring_reduce_scatter(comm, ctx, parts, red, parts)
    red.finish(parts[comm.me], comm.size)
    ring_all_gather(comm, ctx, parts)


def direct_reduce(
    comm, ctx, buf: np.ndarray, red, root: int | None, out: np.ndarray | None = None
) -> None:
    """Everyone sends ``buf`` to ``root`` (``None``: to everyone), who combine in member order
    into ``out`` (default: ``buf``)."""
    n, me = comm.size, comm.me
    for i in range(n) if root is None else [root]:
        if i != me:
            comm.send(i, ctx, buf)
    if root is not None and me != root:
        return
    acc = buf.copy() if me == 0 else np.empty_like(buf)
    if me != 0:
        comm.recv_into(0, ctx, acc)
    for i in range(1, n):
        if i == me:
            red.fn(acc, buf, out=acc)
        else:
            comm.recv_reduce(i, ctx, acc, red.fn)
    (buf if out is None else out)[...] = acc


def hierarchical_all_reduce(
    comm, ctx, buf: np.ndarray, red, hosts: list[list[int]], scratch: np.ndarray
) -> None:
    """Reduce within each host to its first member, allreduce across those leaders, then
    broadcast within each host. ``hosts``: member indices grouped by host."""
    plain = red.without_avg()  # AVG divides once, by the total count, at the leaders
    mine = next(h for h in hosts if comm.me in h)
    local = comm.sub(mine)
    if local.size > 1:
        reduce(local, ctx, buf, plain, root=0, scratch=scratch, ack=False)
    if comm.me == mine[0]:
        all_reduce(comm.sub([h[0] for h in hosts]), ctx, buf, plain)
        red.finish(buf, comm.size)
    if local.size > 1:
        broadcast(local, ctx, buf, root=0, ack=False)


# ---- reduce / broadcast -------------------------------------------------------------------------
def reduce(
    comm, ctx, buf: np.ndarray, red, root: int, scratch: np.ndarray, ack: bool = True
) -> None:
    """Reduction into ``buf`` on ``root``; ``buf`` is left alone elsewhere (``scratch``, as
    large as ``buf``, holds partial sums). ``ack``: the root acknowledges, so that a sender
    that took another rank for the root finds out at this call (the ring path needs none)."""
    n, me = comm.size, comm.me
    if n > 1 and buf.nbytes <= SMALL_BYTES:
        direct_reduce(comm, ctx, buf, red, root)
        if ack:
            _acks_from_root(comm, ctx, root)
    elif n > 1:
        segs = split(buf.size, n)
        src = views(buf, segs)
        work = src if me == root else views(scratch, segs)
        ring_reduce_scatter(comm, ctx, src, red, work)
        if me != root:
            comm.send(root, ctx, work[me])
        else:
            for i in range(n):
                if i != root:
                    comm.recv_into(i, ctx, src[i])
    if me == root:
        red.finish(buf, n)


def broadcast(comm, ctx, buf: np.ndarray, root: int, ack: bool = True) -> None:
    n = comm.size
    if n == 1:
        return
    # ``ack``: the receivers acknowledge (``_acks_to_root``); off where the root is fixed.
    if buf.nbytes <= SMALL_BYTES:
        if comm.me == root:
            for i in range(n):
                if i != root:
                    comm.send(i, ctx, buf)
        else:
            comm.recv_into(root, ctx, buf)
        if ack:
            _acks_to_root(comm, ctx, root)
        return
    # Pipelined chain root -> root+1 -> ...: every link busy once the pipe is full; the chain's
    # end acknowledges to the root.
    pos = (comm.me - root) % n
    prv, nxt = (comm.me - 1) % n, (comm.me + 1) % n
    parts = chunks(buf)
    pending = [comm.post_into(prv, ctx, c) for c in parts] if pos > 0 else []
    for j, c in enumerate(parts):
        if pos > 0:
            comm.wait(pending[j])
        if pos < n - 1:
            comm.send(nxt, ctx, c)
    if ack and pos == n - 1:
        comm.send(root, ctx, _EMPTY)
    elif ack and pos == 0:
        comm.recv_into(prv, ctx, _EMPTY)


# ---- the rest ------------------------------------------------------------------------------------
def reduce_scatter(comm, ctx, src: list, red, out: np.ndarray, scratch: np.ndarray) -> None:
    """``out`` on member ``i`` gets the reduction over members of ``src[i]``; ``src`` is not
    modified (``scratch``: room for the partial sums of the other segments)."""
    n, me = comm.size, comm.me
    if n == 1:
        out[...] = src[0]
    elif sum(s.nbytes for s in src) <= SMALL_BYTES:
        for i in range(n):
            if i != me:
                comm.send(i, ctx, src[i])
        if me == 0:
            out[...] = src[0]
        else:
            comm.recv_into(0, ctx, out)
        for i in range(1, n):
            if i == me:
                red.fn(out, src[me], out=out)
            else:
                comm.recv_reduce(i, ctx, out, red.fn)
    else:
        offsets = np.cumsum([0] + [s.size for s in src])
        work = [out if k == me else scratch[offsets[k] : offsets[k + 1]] for k in range(n)]
        ring_reduce_scatter(comm, ctx, src, red, work)
    red.finish(out, n)


def gather(comm, ctx, send: np.ndarray, outs: list | None, root: int) -> None:
    if comm.me != root:
        comm.send(root, ctx, send)
    else:
        for i in range(comm.size):
            if i == root:
                outs[i][...] = send
            else:
                comm.recv_into(i, ctx, outs[i])
    _acks_from_root(comm, ctx, root)


def scatter(comm, ctx, parts: list | None, out: np.ndarray, root: int) -> None:
    if comm.me == root:
        for i in range(comm.size):
            if i != root:
                comm.send(i, ctx, parts[i])
        out[...] = parts[root]
    else:
        comm.recv_into(root, ctx, out)
    _acks_to_root(comm, ctx, root)


def all_to_all(comm, ctx, sends: list, recvs: list) -> None:
    """Pairwise exchange: in step k send to me+k and receive from me-k."""
    n, me = comm.size, comm.me
    recvs[me][...] = sends[me]
    for k in range(1, n):
        comm.send((me + k) % n, ctx, sends[(me + k) % n])
        comm.recv_into((me - k) % n, ctx, recvs[(me - k) % n])


_EMPTY = np.empty(0, dtype=np.uint8)


# Rooted collectives end with empty acknowledgements (issue #28): a member that only sends
# cannot see that another member disagrees on the root (both send, nobody receives, and the
# wrong data is left for the next call). An ack carries its sender's fingerprint, root
# included, so the disagreement raises at this call.
def _acks_to_root(comm, ctx, root: int) -> None:
    if comm.me == root:
        for i in range(comm.size):
            if i != root:
                comm.recv_into(i, ctx, _EMPTY)
    else:
        comm.send(root, ctx, _EMPTY)


def _acks_from_root(comm, ctx, root: int) -> None:
    if comm.me == root:
        for i in range(comm.size):
            if i != root:
                comm.send(i, ctx, _EMPTY)
    else:
        comm.recv_into(root, ctx, _EMPTY)


def barrier(comm, ctx) -> None:
    """Dissemination barrier: ceil(log2 n) rounds of empty messages."""
    n, me, k = comm.size, comm.me, 1
    while k < n:
        comm.send((me + k) % n, ctx, _EMPTY)
        comm.recv_into((me - k) % n, ctx, _EMPTY)
        k *= 2
