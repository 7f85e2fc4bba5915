"""The shared-memory data plane for ranks on one host.

Each rank owns one POSIX shared-memory segment (``/dev/shm``, mode 0600) holding a ring of
``slots`` slots of ``slot_bytes`` for every other rank on its host. A sender copies a piece into
a free slot of its ring for the receiver and tells it so over a Unix-domain socket; the receiver
reduces or copies straight out of the slot (no intermediate buffer) and returns the slot with a
credit frame. Messages up to ``INLINE_BYTES`` ride inline on the socket instead.

Signalling measured here (Python, 2 processes): a Unix-socket round trip costs ~4.4 us, a futex
round trip through ctypes ~6 us, spinning ~1 us but burns a core that the peer needs on a
2-core machine. The socket also tells at once when a peer dies (end of stream), so it carries
the signals. The socket's syscalls order the slot's bytes before the notice, so no memory
fences are needed.

This transport is driven by the calling thread only: while it waits (for data, or for a free
slot to send into) it keeps draining every peer's socket: frames for posted receives are
consumed on the spot (``_inbox.py``), others are stashed, credits collected. A wait that lasts
a whole ``SLICE`` copies stashed slots out and returns them, so two ranks that both send more
than a ring holds before receiving cannot deadlock.

Connecting to the peers and closing are the mixin ``_ShmSetupMixin`` in ``_shm_setup.py``.
"""

from __future__ import annotations

import atexit
import mmap
import os
import select
import socket
import threading
import time
from collections import defaultdict, deque

import numpy as np

from ember.backend.threads import usable_cores

from ..errors import DistBackendError
from . import _frames, _shm_arena, _shm_reclaim
from ._inbox import Pending, apply_piece, frame_problem
from ._opctx import SLICE
from ._shm_setup import SHM_DIR, _ShmSetupMixin
from ._transport import Listener, Transport

SLOT_BYTES = int(os.environ.get("EMBER_SHM_SLOT_BYTES", 1 << 20)) // 16 * 16
SLOTS = int(os.environ.get("EMBER_SHM_SLOTS", 4))
# Each rank's segment holds a ring per local peer; with many ranks on a host the slots shrink
# so that a segment stays within this budget (and /dev/shm is not exhausted).
BUDGET_BYTES = int(os.environ.get("EMBER_SHM_BUDGET_BYTES", 64 << 20))
# A wait first polls for this long before sleeping in select(): a peer that is running
# answers within microseconds, while a sleep and wake-up costs ~30 us per message (DDP on 2
# ranks: backward 0.1 ms shorter a step than with 50 us). Only when every rank of the host has
# a core of its own: otherwise the poll would take the core the awaited rank needs.
SPIN_S = float(os.environ.get("EMBER_SHM_SPIN_US", 200)) * 1e-6
INLINE_BYTES = int(os.environ.get("EMBER_SHM_INLINE_BYTES", 16 << 10))
_INLINE = -2  # frame.slot value: the payload follows the header on the socket

_DEAD = "closed its connection (the process probably exited or crashed)"
_LEFT = "left the process group (destroy_process_group)"


def available() -> bool:
    return os.path.isdir(SHM_DIR) and hasattr(socket, "AF_UNIX")


class ShmTransport(_ShmSetupMixin, Transport):
    """Shared-memory rings between the ranks of one host (see the module docstring)."""

    name = "shm"

    def __init__(
        self,
        rank: int,
        token: str,
        local_ranks: list[int],
        slots: int = SLOTS,
        slot_bytes: int = SLOT_BYTES,
    ) -> None:
        if not available():
            raise DistBackendError(f"shared memory needs {SHM_DIR} and Unix sockets")
        self.rank, self.token = rank, token
        self.local_ranks = sorted(local_ranks)
        self.spin = SPIN_S if len(self.local_ranks) <= usable_cores() else 0.0
        consumers = [r for r in self.local_ranks if r != rank]
        per_ring = BUDGET_BYTES // max(1, len(consumers)) // int(slots)
        self.slots = int(slots)
        self.slot_bytes = max(64 << 10, min(int(slot_bytes), per_ring)) // 16 * 16
        self._ring = self.slots * self.slot_bytes
        size = max(1, len(consumers)) * self._ring
        # first remove what ranks killed during an earlier rendezvous left (issue #28)
        _shm_reclaim.reclaim(SHM_DIR)
        self.segment = _shm_reclaim.segment_name()
        self._path = os.path.join(SHM_DIR, self.segment)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        atexit.register(self.unlink)
        try:
            # Reserve the pages now: on a full /dev/shm this fails cleanly here instead of
            # killing the process with SIGBUS at the first write into a slot.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except OSError as e:
            self.unlink()
            free = os.statvfs(SHM_DIR)
            raise DistBackendError(
                f"could not reserve {size >> 20} MiB of shared memory in {SHM_DIR} "
                f"({free.f_bavail * free.f_frsize >> 20} MiB free): {e.strerror}; enlarge "
                f"{SHM_DIR} (docker --shm-size), lower EMBER_SHM_BUDGET_BYTES, or use "
                "backend='grpc'"
            ) from None
        finally:
            os.close(fd)
        self._out = np.frombuffer(self._map, dtype=np.uint8)
        self._out_base = {c: i * self._ring for i, c in enumerate(consumers)}
        self._free = {c: deque(range(self.slots)) for c in consumers}
        self._in: dict[int, np.ndarray] = {}
        self._in_base: dict[int, int] = {}
        self._in_maps: list[mmap.mmap] = []
        self._socks: dict[int, socket.socket] = {}
        self._peer_of: dict[int, int] = {}  # socket fileno -> rank
        self._stash: dict[int, dict] = defaultdict(lambda: defaultdict(deque))
        self._posted: dict[int, dict] = defaultdict(lambda: defaultdict(deque))
        self._gone: dict[int, str] = {}
        self._lock = threading.RLock()
        self._ready = threading.Condition()
        self._uds = "\0ember-" + self.segment
        usock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        usock.bind(self._uds)
        usock.listen(128)
        self._listener = Listener(usock, token, self._register, "shm")
        self._own_arena: _shm_arena.Arena | None = None
        if _shm_arena.ARENA_BYTES > 0:
            try:
                self._own_arena = _shm_arena.Arena()
            except (OSError, ValueError):
                pass  # collectives keep to the message rings
        self.arena: _shm_arena.Arena | None = None  # set once every peer's arena is mapped

    def endpoint(self) -> dict:
        return {
            "segment": self.segment,
            "uds": self._uds,
            "slots": self.slots,
            "slot_bytes": self.slot_bytes,
            "arena": self._own_arena.name if self._own_arena else None,
        }

    # ---- the wire: frames on the signalling socket --------------------------------------------
    def _read_frame(self, peer: int, sock: socket.socket) -> None:
        """Read one frame from ``peer`` (its socket is readable) and file it."""
        try:
            hdr = _recv(sock, _frames.HEADER_SIZE)
            frame = _frames.unpack(hdr)
            frame.info = _recv(sock, frame.info) if frame.info else b""
            payload = None
            if frame.kind == _frames.DATA and frame.slot == _INLINE:
                payload = _recv(sock, frame.nbytes) if frame.nbytes else b""
        except (OSError, ConnectionError, ValueError) as e:
            self._drop(peer, sock, _DEAD if isinstance(e, ConnectionError) else str(e))
            return
        if frame.kind == _frames.CREDIT:
            self._free[peer].append(frame.slot)
        elif frame.kind == _frames.DATA:
            posted, stash = self._posted[peer][frame.key], self._stash[peer][frame.key]
            if posted and not stash:  # someone waits for exactly this: consume it now
                self._fulfil(peer, posted, frame, payload)
            else:
                stash.append((frame, payload))
        elif frame.kind == _frames.BYE:
            self._drop(peer, sock, _LEFT)

    def _drop(self, peer: int, sock: socket.socket, reason: str) -> None:
        self._gone.setdefault(peer, reason)
        self._peer_of.pop(sock.fileno(), None)

    def _pump(self, timeout: float) -> bool:
        """Read one frame from every peer socket that is readable within ``timeout``."""
        socks = [self._socks[p] for p in self._peer_of.values()]
        if not socks:
            if timeout:
                time.sleep(timeout)
            return False
        readable, _, _ = select.select(socks, [], [], timeout)
        for sock in readable:
            peer = self._peer_of.get(sock.fileno())
            if peer is not None:
                self._read_frame(peer, sock)
        return bool(readable)

    def _idle(self, ctx, peer: int | None) -> None:
        self._rescue()
        ctx.on_idle(peer)

    def _rescue(self) -> None:
        """Copy stashed frames out of their slots and return the slots (deadlock breaker)."""
        for peer, queues in self._stash.items():
            for q in queues.values():
                for i, (frame, payload) in enumerate(q):
                    if payload is None:
                        base = self._in_base[peer] + frame.slot * self.slot_bytes
                        q[i] = (frame, self._in[peer][base : base + frame.nbytes].tobytes())
                        self._credit(peer, frame.slot)

    def _write(self, peer: int, data: bytes, ctx) -> None:
        sock = self._socks[peer]
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view, socket.MSG_DONTWAIT) :]
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                self._drop(peer, sock, _DEAD if isinstance(e, ConnectionError) else str(e))
                raise ctx.peer_gone(peer, self._gone[peer]) from None
            # The peer's socket buffer is full: drain our own side so the peer can progress.
            _, writable, _ = select.select([], [sock], [], 0.001)
            if not writable and not self._pump(0.0):
                _, writable, _ = select.select([], [sock], [], SLICE)
                if not writable:
                    self._idle(ctx, peer)

    def _credit(self, peer: int, slot: int) -> None:
        try:
            self._socks[peer].sendall(_frames.pack(_frames.CREDIT, 0, 0, 0, 0, 0, 0, slot))
        except OSError:
            pass  # the peer is gone; its receive side will report it

    # ---- the Transport API --------------------------------------------------------------------
    def send(self, peer, ctx, channel, tag, data):
        n = len(data)
        with self._lock:
            if peer in self._gone:
                raise ctx.peer_gone(peer, self._gone[peer])
            if n <= INLINE_BYTES:
                hdr = _frames.pack(
                    _frames.DATA, channel, tag, ctx.seq, ctx.fp, n, n, _INLINE, ctx.info
                )
                self._write(peer, hdr + bytes(data), ctx)
                return
            off, free, base0 = 0, self._free[peer], self._out_base[peer]
            while off < n:
                while not free:
                    if peer in self._gone:
                        raise ctx.peer_gone(peer, self._gone[peer])
                    if not self._pump(SLICE):
                        self._idle(ctx, peer)
                slot = free.popleft()
                k = min(self.slot_bytes, n - off)
                base = base0 + slot * self.slot_bytes
                self._out[base : base + k] = np.frombuffer(data[off : off + k], dtype=np.uint8)
                self._write(
                    peer,
                    _frames.pack(_frames.DATA, channel, tag, ctx.seq, ctx.fp, k, n, slot, ctx.info),
                    ctx,
                )
                off += k

    def _fulfil(self, peer: int, posted: deque, frame, payload) -> None:
        """Apply a frame to the oldest posted receive of its key, then free its slot."""
        p = posted[0]
        problem = frame_problem(p, frame)
        if problem is None:
            if payload is None:
                base = self._in_base[peer] + frame.slot * self.slot_bytes
                apply_piece(p, frame, memoryview(self._in[peer][base : base + frame.nbytes]))
            else:
                apply_piece(p, frame, memoryview(payload))
        if payload is None:
            self._credit(peer, frame.slot)
        if problem is not None:
            p.problem = problem
        if problem is not None or p.complete:
            posted.popleft()
            p.done = True

    def post(self, peer, ctx, channel, tag, nbytes, dst=None, consume=None):
        key = (channel, tag)
        p = Pending(peer, ctx, key, nbytes, dst, consume)
        with self._lock:
            posted, stash = self._posted[peer][key], self._stash[peer][key]
            posted.append(p)
            while stash and posted and posted[0] is p and not p.done:  # already here
                self._fulfil(peer, posted, *stash.popleft())
        return p

    def wait(self, p):
        peer, key = p.peer, p.key
        with self._lock:
            posted, stash = self._posted[peer][key], self._stash[peer][key]
            spin_until = time.perf_counter() + self.spin
            while not p.done:
                if stash and posted[0] is p:
                    self._fulfil(peer, posted, *stash.popleft())
                elif peer in self._gone:
                    posted.remove(p)
                    raise p.ctx.peer_gone(peer, self._gone[peer])
                elif time.perf_counter() < spin_until:
                    self._pump(0.0)
                elif not self._pump(SLICE):
                    self._idle(p.ctx, peer)
        if p.problem is not None:
            raise p.error()

    def watch(self, peer: int, ctx, channel: int, reached=None) -> None:
        """For a rank waiting on ``peer``'s shared-memory signals (``_shm_arena.Signals``):
        raise if ``peer`` has left, or has sent a message on ``channel``, which means it is in
        another operation than the one awaited -- unless ``reached()`` now says the awaited
        signal came: then the peer finished this operation and its message is the next one's
        (it was set between the caller's test and this look)."""
        with self._lock:
            self._pump(0.0)
            if peer in self._gone:
                raise ctx.peer_gone(peer, self._gone[peer])
            for (ch, _tag), queue in self._stash[peer].items():
                if ch == channel and queue:
                    if reached is not None and reached():
                        return
                    frame = queue[0][0]
                    if frame.fp != ctx.fp:
                        raise ctx.mismatch(peer, frame)
                    raise ctx.world.fail(
                        DistBackendError(
                            f"rank {peer} sent its part of {ctx.label} through the message rings "
                            f"while rank {self.rank} expected it in shared memory: hold the "
                            "buffer in the arena (ProcessGroup.shared_block) on every rank or on "
                            "none"
                        )
                    )

    def probe(self, peers, channel, tag):
        with self._lock:
            self._pump(0.0)
            for p in peers:
                if self._stash[p].get((channel, tag)) or p in self._gone:
                    return p
        return None


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if k == 0:
            raise ConnectionError("connection closed by peer")
        got += k
    return bytes(buf)
