"""Posted receives: where an incoming message should go, before it arrives.

A receiver posts a ``Pending`` (destination bytes, or a ``consume(offset, view)`` that reduces
into the destination) for the next message from a peer on a (channel, tag). The thread that
reads frames off the wire then puts each piece straight where it belongs: received directly
into the destination (no copy), or reduced on the reading thread while the caller keeps
sending. Frames that arrive before their receive is posted wait in a queue (in pooled buffers)
and are applied by the waiting thread, in order.

``Inbox`` does this for the threaded data planes (socket, gRPC stream); the shared-memory
transport, which is driven by the calling thread, uses ``Pending`` and ``apply_piece`` alone.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np

from ._opctx import SLICE


class Pending:
    """One posted receive of ``nbytes`` from ``peer``."""

    __slots__ = (
        "peer",
        "ctx",
        "key",
        "nbytes",
        "dst",
        "consume",
        "got",
        "first",
        "done",
        "busy",
        "problem",
    )

    def __init__(self, peer: int, ctx, key, nbytes: int, dst=None, consume=None) -> None:
        self.peer, self.ctx, self.key, self.nbytes = peer, ctx, key, nbytes
        self.dst, self.consume = dst, consume  # exactly one of them is set
        self.got, self.first, self.done, self.busy = 0, True, False, False
        self.problem = None  # (kind, frame) when a frame did not match

    @property
    def complete(self) -> bool:
        return not self.first and self.got >= self.nbytes

    def error(self):
        kind, frame = self.problem
        if kind == "mismatch":
            return self.ctx.mismatch(self.peer, frame)
        return self.ctx.size_mismatch(self.peer, self.nbytes, frame.total, frame)


def frame_problem(p: Pending, frame):
    """Why ``frame`` cannot be the next piece of ``p`` (``None`` if it can)."""
    ctx = p.ctx
    if ctx.fp and (frame.fp != ctx.fp or frame.seq != ctx.seq):
        return ("mismatch", frame)
    if p.first and frame.total != p.nbytes:
        return ("size", frame)
    return None


def apply_piece(p: Pending, frame, view) -> None:
    """Put a piece whose payload is readable as ``view`` into ``p``."""
    n = frame.nbytes
    if p.dst is not None:
        if n:
            p.dst[p.got : p.got + n] = np.frombuffer(view, dtype=np.uint8, count=n)
    else:
        p.consume(p.got, view[:n] if len(view) != n else view)
    p.got += n
    p.first = False


class BufferPool:
    """Reuses large receive buffers: fresh multi-MiB allocations cost page faults each time."""

    def __init__(self, keep: int = 16, min_bytes: int = 64 << 10) -> None:
        self._free: dict[int, list] = defaultdict(list)
        self._keep, self._min = keep, min_bytes
        self._lock = threading.Lock()

    def get(self, n: int) -> np.ndarray:
        if n >= self._min:
            with self._lock:
                free = self._free.get(n)
                if free:
                    return free.pop()
        return np.empty(n, dtype=np.uint8)

    def put(self, buf) -> None:
        if isinstance(buf, np.ndarray) and buf.nbytes >= self._min:
            with self._lock:
                free = self._free[buf.nbytes]
                if len(free) < self._keep:
                    free.append(buf)


class Inbox:
    """Posted receives and early frames, per (source, channel, tag), for threaded readers."""

    def __init__(self, pool: BufferPool | None = None) -> None:
        self.pool = pool or BufferPool()
        self._cv = threading.Condition()
        self._queues: dict[tuple, deque] = defaultdict(deque)  # early frames
        self._posted: dict[tuple, deque] = defaultdict(deque)  # Pending, in post order
        self._gone: dict[int, str] = {}

    # ---- the reading thread -----------------------------------------------------------------
    def deliver(self, src: int, frame, read_into) -> None:
        """Called by the reader for each data frame; ``read_into(view)`` must fill ``view``
        with the frame's ``nbytes`` payload bytes."""
        key = (src, frame.channel, frame.tag)
        with self._cv:
            posted = self._posted.get(key)
            p = posted[0] if posted and not self._queues.get(key) else None
            if p is not None:
                if p.busy:
                    p = None
                else:
                    p.busy = True
        if p is None:  # nobody waits for it yet (or its turn comes later): keep it
            buf = self.pool.get(frame.nbytes)
            read_into(memoryview(buf)[: frame.nbytes])
            with self._cv:
                self._queues[key].append((frame, buf))
                self._cv.notify_all()
            return
        problem = frame_problem(p, frame)
        try:
            if problem is not None or p.consume is not None:
                buf = self.pool.get(frame.nbytes)
                view = memoryview(buf)[: frame.nbytes]
                read_into(view)
                if problem is None:
                    apply_piece(p, frame, view)
                self.pool.put(buf)
            else:
                n = frame.nbytes
                if n:
                    read_into(memoryview(p.dst[p.got : p.got + n]))
                p.got += n
                p.first = False
        finally:
            with self._cv:
                p.busy = False
                if problem is not None:
                    p.problem = problem
                if problem is not None or p.complete:
                    posted.popleft()
                    p.done = True
                self._cv.notify_all()

    def peer_gone(self, src: int, reason: str) -> None:
        with self._cv:
            self._gone.setdefault(src, reason)
            self._cv.notify_all()

    # ---- the receiving thread -----------------------------------------------------------------
    def post(
        self, peer: int, ctx, channel: int, tag: int, nbytes: int, dst=None, consume=None
    ) -> Pending:
        key = (peer, channel, tag)
        p = Pending(peer, ctx, key, nbytes, dst, consume)
        with self._cv:
            self._posted[key].append(p)
        return p

    def wait(self, p: Pending) -> None:
        key = p.key
        with self._cv:
            while not p.done:
                posted, queue = self._posted[key], self._queues.get(key)
                if queue and posted[0] is p and not p.busy:
                    frame, buf = queue.popleft()
                    p.busy = True
                    self._cv.release()
                    try:
                        problem = frame_problem(p, frame)
                        if problem is None:
                            apply_piece(p, frame, memoryview(buf)[: frame.nbytes])
                        self.pool.put(buf)
                    finally:
                        self._cv.acquire()
                        p.busy = False
                    if problem is not None:
                        p.problem = problem
                    if problem is not None or p.complete:
                        posted.popleft()
                        p.done = True
                        self._cv.notify_all()
                    continue
                if p.peer in self._gone and not queue and not p.busy:
                    posted.remove(p)
                    raise p.ctx.peer_gone(p.peer, self._gone[p.peer])
                if not self._cv.wait(SLICE):
                    self._cv.release()
                    try:
                        p.ctx.on_idle(p.peer)
                    finally:
                        self._cv.acquire()
        if p.problem is not None:
            raise p.error()

    def probe(self, peers, channel: int, tag: int) -> int | None:
        with self._cv:
            for peer in peers:
                if self._queues.get((peer, channel, tag)) or peer in self._gone:
                    return peer
        return None
