"""The shared-memory arena's allreduce: the one-host fast path of ``Comm``'s members.

Not one of the generic algorithms (``_algorithms.py`` work over any transport); the
communicator (``_communicator.py``) dispatches here when an allreduce's buffer lies in the
arena (``_shm_arena.py``) of every member, and to the generic algorithms otherwise.
"""

from __future__ import annotations

import numpy as np

from ..errors import DistributedError
from ._algorithms import split
from ._shm_arena import ARRIVED, DONE


def usable(comm, buf: np.ndarray) -> bool:
    """Whether ``buf`` lies in this member's arena (callers keep such buffers on every
    member or on none, so all members take the same path)."""
    return comm.arena is not None and comm.arena.offset_of(buf) is not None


def all_reduce(comm, ctx, arr: np.ndarray, red) -> None:
    """Same-host allreduce of buffers that lie in the members' shared-memory arenas
    (``_shm_arena.py``): no data is copied through messages. Callers keep a buffer there
    on every member or on none (DDP agrees on it when it builds its buckets); other buffers
    take the ring, since staging them into the arena costs more memory traffic than it saves.

    Member ``k`` owns segment ``k`` (``split``): it combines that segment from every arena in
    the ring's order (members k+1, k+2, ..., k), so results are bitwise those of the ring
    (``_algorithms.ring_all_reduce``), and writes the result into every arena. Two rounds of
    notices order the steps: "here, at this offset" before, "done" after; after the second
    round every arena holds the whole result and nobody touches another rank's arena until
    the next call's first round. The notices are shared-memory signals once the communicator's first
    call has introduced them (socket frames before that, and where signals are not used).
    """
    n, me, arena = comm.size, comm.me, comm.arena
    off = arena.offset_of(arr)
    others = [i for i in range(n) if i != me]
    key = (comm.channel, tuple(comm.ranks))
    if key not in arena.signals:
        offs = _arena_introduce(comm, ctx, arr, off, key)
        sig = None
    else:
        sig = arena.signals[key]
        offs = (
            _arena_notes(comm, ctx, arr, off, others)
            if sig is None
            else _arena_signals(comm, ctx, arr, off, others, sig)
        )
    _arena_combine(comm, arr, red, offs)
    if sig is None:
        done, got = np.zeros(1, dtype=np.int64), np.empty(1, dtype=np.int64)
        for i in others:
            comm.send(i, ctx, done)
        for i in others:
            comm.recv_into(i, ctx, got)
    else:
        sig.post(DONE)
        for i in others:
            comm.await_signal(sig, i, DONE, ctx)


# Pieces of a segment combined, scaled and written out in turn while they are in cache.
_PIECE_BYTES = 256 << 10


def _arena_combine(comm, arr: np.ndarray, red, offs: dict) -> None:
    """Combine this member's segment from every arena and write the result into all of them."""
    n, me, arena = comm.size, comm.me, comm.arena
    a, b = split(arr.size, n)[me]
    isz, dtype = arr.itemsize, arr.dtype
    order = [(me + j) % n for j in range(1, n)]  # the ring's order
    theirs = [
        arena.peer(comm.ranks[i])[offs[i] + a * isz : offs[i] + b * isz].view(dtype) for i in order
    ]
    mine = arr[a:b]
    step = max(1, _PIECE_BYTES // isz)
    for s in range(0, b - a, step):
        m, parts = mine[s : s + step], [t[s : s + step] for t in theirs]
        if n == 2:
            red.fn(parts[0], m, out=m)
        else:
            acc = red.fn(parts[0], parts[1])
            for x in parts[2:]:
                red.fn(acc, x, out=acc)
            red.fn(acc, m, out=m)
        red.finish(m, n)
        for x in parts:
            np.copyto(x, m)


def _size_mismatch(comm, ctx, i: int, mine: int, theirs: int) -> DistributedError:
    return ctx.world.fail(
        DistributedError(
            f"size mismatch in {ctx.group.label}: rank {ctx.world.rank} has {mine} bytes for "
            f"{ctx.label}, rank {comm.ranks[i]} has {theirs}"
        )
    )


def _arena_notes(comm, ctx, arr, off: int, others, extra: int | None = None) -> dict:
    """The first round through the transport: every member's buffer offset (and ``extra``,
    the offset of its signal block, when given: then the result maps member -> (offset,
    extra))."""
    note = np.array([off, arr.nbytes] + ([] if extra is None else [extra]), dtype=np.int64)
    for i in others:
        comm.send(i, ctx, note)
    offs, got = {}, np.empty_like(note)
    for i in others:
        comm.recv_into(i, ctx, got)
        if int(got[1]) != arr.nbytes:
            raise _size_mismatch(comm, ctx, i, arr.nbytes, int(got[1]))
        offs[i] = int(got[0]) if extra is None else (int(got[0]), int(got[2]))
    return offs


def _arena_introduce(comm, ctx, arr, off: int, key) -> dict:
    """A communicator's first call: notices through the transport, which also tell every
    member where the others' signal blocks are; all members then use signals, or none."""
    arena = comm.arena
    sig = arena.new_signals()
    others = [i for i in range(comm.size) if i != comm.me]
    got = _arena_notes(comm, ctx, arr, off, others, -1 if sig is None else sig.offset)
    if sig is not None and all(s >= 0 for _, s in got.values()):
        for i, (_, s) in got.items():
            sig.attach(i, arena.peer_block(comm.ranks[i], s))
        arena.signals[key] = sig
    else:
        if sig is not None:
            arena.free(sig.offset, sig.nbytes)
        arena.signals[key] = None
    return {i: o for i, (o, _) in got.items()}


def _arena_signals(comm, ctx, arr, off: int, others, sig) -> dict:
    """The first round through shared-memory signals: post this member's buffer, read the
    others' (checking that they are in the same operation, on a buffer of the same size)."""
    sig.next_call()
    sig.arrive(off, arr.nbytes, ctx.fp, ctx.seq, ctx.what)
    offs = {}
    for i in others:
        comm.await_signal(sig, i, ARRIVED, ctx)
        o, nbytes, fp = sig.fields(i)
        if fp != ctx.fp:
            raise ctx.world.fail(
                DistributedError(
                    f"collective mismatch in {ctx.group.label}: rank {ctx.world.rank} called "
                    f"{ctx.info.decode()}, but rank {comm.ranks[i]} called "
                    f"{ctx.describe(*sig.described(i))}"
                )
            )
        if nbytes != arr.nbytes:
            raise _size_mismatch(comm, ctx, i, arr.nbytes, nbytes)
        offs[i] = o
    return offs
