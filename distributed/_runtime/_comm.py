"""``Comm``: a list of member ranks with the transport that reaches each of them.

The algorithms (``_algorithms.py``) speak only to a ``Comm``: send a flat array to member ``i``,
receive member ``i``'s next message into an array or reduce it into one. Sub-communicators
(the ranks of one host, the host leaders) share the parent's transports and channel.
"""

from __future__ import annotations

import time

import numpy as np

from ._opctx import SLICE

# Longest sleep on a shared-memory signal between checks that the peer is still there (a
# posted signal wakes the sleeper at once).
_SIGNAL_NAP = 0.01


def as_bytes(arr: np.ndarray) -> np.ndarray:
    """A flat contiguous array's bytes (any dtype, including bool and bfloat16)."""
    return arr.view(np.uint8)


class Comm:
    __slots__ = ("ranks", "size", "me", "channel", "_tps", "arena")

    def __init__(self, ranks, me: int, channel: int, transports) -> None:
        self.ranks = list(ranks)
        self.size = len(self.ranks)
        self.me = me
        self.channel = channel
        self._tps = list(transports)  # transport per member (None for this rank)
        # The shared-memory arena (``_shm_arena.py``) when every other member is on this
        # host and reachable through it; the same on every member.
        peers = {id(tp): tp for tp in self._tps if tp is not None}
        tp = next(iter(peers.values())) if len(peers) == 1 else None
        self.arena = getattr(tp, "arena", None)

    @classmethod
    def of(cls, world, ranks, channel: int) -> Comm:
        ranks = list(ranks)
        return cls(
            ranks,
            ranks.index(world.rank),
            channel,
            [None if r == world.rank else world.transport_for(r) for r in ranks],
        )

    def sub(self, members) -> Comm:
        """The communicator of ``members`` (indices into this one); must include this rank."""
        members = list(members)
        return Comm(
            [self.ranks[i] for i in members],
            members.index(self.me),
            self.channel,
            [self._tps[i] for i in members],
        )

    def send(self, i: int, ctx, arr: np.ndarray, tag: int = 0) -> None:
        self._tps[i].send(self.ranks[i], ctx, self.channel, tag, memoryview(as_bytes(arr)))

    def post_into(self, i: int, ctx, arr: np.ndarray, tag: int = 0):
        """Post the receive of member ``i``'s next message into ``arr``; ``wait`` for it."""
        tp = self._tps[i]
        dst = as_bytes(arr)
        return tp, tp.post(self.ranks[i], ctx, self.channel, tag, dst.nbytes, dst=dst)

    def post_reduce(
        self, i: int, ctx, dst: np.ndarray, fn, tag: int = 0, src: np.ndarray | None = None
    ):
        """Post ``dst = fn(src, incoming)`` (``src`` defaults to ``dst``), applied piece by
        piece as member ``i``'s next message arrives; ``wait`` for it."""
        isz, dtype = dst.itemsize, dst.dtype
        src = dst if src is None else src

        def consume(off, view):
            a, b = off // isz, (off + len(view)) // isz
            fn(src[a:b], np.frombuffer(view, dtype=dtype), out=dst[a:b])

        tp = self._tps[i]
        return tp, tp.post(self.ranks[i], ctx, self.channel, tag, dst.nbytes, consume=consume)

    @staticmethod
    def wait(handle) -> None:
        tp, pending = handle
        tp.wait(pending)

    def recv_into(self, i: int, ctx, arr: np.ndarray, tag: int = 0) -> None:
        self.wait(self.post_into(i, ctx, arr, tag))

    def recv_reduce(
        self, i: int, ctx, dst: np.ndarray, fn, tag: int = 0, src: np.ndarray | None = None
    ) -> None:
        self.wait(self.post_reduce(i, ctx, dst, fn, tag, src))

    def await_signal(self, sig, i: int, counter: int, ctx) -> None:
        """Until member ``i`` has reached ``sig``'s current call on ``counter``
        (``_shm_arena.Signals``): poll while the transport may spin, then sleep on the
        counter, checking meanwhile that the member is alive and in this operation."""
        if sig.reached(i, counter):
            return
        tp = self._tps[i]
        end = time.perf_counter() + tp.spin
        while time.perf_counter() < end:
            if sig.reached(i, counter):
                return
        next_idle = time.monotonic() + SLICE
        while not sig.reached(i, counter):
            # (the member may reach the signal and start its next operation between the test
            # above and the watch: the watch re-tests the signal before calling it a mismatch)
            tp.watch(self.ranks[i], ctx, self.channel, lambda: sig.reached(i, counter))
            sig.sleep(i, counter, _SIGNAL_NAP)
            if time.monotonic() >= next_idle:
                next_idle = time.monotonic() + SLICE
                ctx.on_idle(self.ranks[i])

    def wait_any(self, ctx, candidates, tag: int) -> int:
        """Index of the first member among ``candidates`` with a message on ``tag``."""
        by_tp: dict = {}
        for i in candidates:
            by_tp.setdefault(self._tps[i], []).append(i)
        next_idle = time.monotonic() + SLICE
        while True:
            for tp, members in by_tp.items():
                found = tp.probe([self.ranks[i] for i in members], self.channel, tag)
                if found is not None:
                    return self.ranks.index(found)
            time.sleep(0.0005)
            if time.monotonic() >= next_idle:
                next_idle = time.monotonic() + SLICE
                ctx.on_idle(None)
