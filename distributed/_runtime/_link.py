"""One peer's data connection that survives being reset: sequence numbers, acks and resending.

A middlebox RST, a NAT or conntrack flush, or ``ss -K`` ends a TCP connection while both
processes live on (issue #28). So the socket transport numbers the data frames it sends to each
peer (``slot`` of the header, modulo 2**31), keeps a copy of each until the peer acknowledges it
(an ``ACK`` frame carrying how many frames it has read, sent every ``ACK_BYTES`` or
``ACK_FRAMES``), and bounds that copy to ``RESEND_BYTES``: a sender that gets that far ahead of
the peer's acks waits, as it would for a full socket buffer.

When the connection breaks, the rank that dialled it (the higher rank) dials again, proves the
job token as at set-up, and both sides send ``RESUME`` with the number of frames they have read;
each then sends again the frames the other has not seen, in order, and carries on. A frame that
was cut off half-way leaves nothing behind on the receiving side (``_inbox.py`` applies a piece
only once it is whole), so resending it whole is exact. The other rank waits for that new
connection, and checks every second that the peer's listener still answers.

The peer fails the job only when it is gone: its listener refuses the connection (its process
has exited), it left (``BYE``), or no new connection came within the grace period
(``_grace.py``).
"""

from __future__ import annotations

import os
import threading
from collections import deque

import numpy as np

from . import _frames

RESEND_BYTES = int(os.environ.get("EMBER_RESEND_BUFFER_BYTES", 16 << 20))
ACK_BYTES = max(1, RESEND_BYTES // 4)
ACK_FRAMES = 64
SEQ_MOD = 1 << 31  # the header's ``slot`` is a signed 32-bit field
_SMALL = 64 << 10  # frames up to this size are kept as bytes, larger ones in pooled buffers
# Frames of at least this size are not copied at all: the sender keeps a reference to the
# caller's memory and its send() returns only once the peer has read them (the receiver
# acknowledges such a frame at once). A copy of every byte sent cost 5-20 % of a large
# all_reduce's CPU time; an acknowledgement's round trip costs microseconds per MiB.
BORROW_BYTES = 256 << 10


class _SendPool:
    """Reuses the copies' buffers (a fresh multi-MiB allocation costs page faults each time)."""

    def __init__(self) -> None:
        self._free: dict[int, list] = {}

    def get(self, n: int) -> np.ndarray:
        free = self._free.get(n)
        return free.pop() if free else np.empty(n, dtype=np.uint8)

    def put(self, buf: np.ndarray) -> None:
        free = self._free.setdefault(buf.nbytes, [])
        if len(free) < 8:
            free.append(buf)


class Link:
    """Send-side and receive-side counters and the resend buffer of one peer.

    ``lock`` guards the socket for writing (one frame at a time); ``cv`` guards the buffer,
    the counters and the state (``up``, ``dead``).
    """

    def __init__(self, peer: int, sock, dialer: bool) -> None:
        self.peer, self.sock, self.dialer = peer, sock, dialer
        self.lock = threading.Lock()
        self.cv = threading.Condition()
        self.msg_lock = threading.Lock()  # one message at a time per peer (frames in order)
        self.up = True
        self.dead: str | None = None
        self.next_seq = 0  # frames sent (the next one's number)
        self.unacked: deque = deque()  # (seq, header, payload or None, nbytes), oldest first
        self.sent_bytes = 0  # payload bytes kept in all (grows on the sending thread)
        self.acked_bytes = 0  # of which acknowledged and dropped (grows on the reader's)
        self.peer_read = 0  # frames the peer said it has read
        self.recv_seq = 0  # frames received whole
        self.acked_recv = 0  # the recv_seq we last acknowledged
        self.recv_bytes_since_ack = 0
        self.ack_due = False
        self.offered = None  # (socket, peer's recv_seq): a new connection from the listener
        self.resets = 0  # connections replaced (for tests and logs)
        self.gen = 0  # which recovery the current connection comes from
        self.addr = "?"  # the peer's address, for messages
        self.write_error: OSError | None = None  # why a write found the connection broken
        self._pool = _SendPool()

    # ---- sending ----------------------------------------------------------------------------
    def wait_room(self, nbytes: int, on_idle, slice_s: float) -> None:
        """Block while the resend buffer is full; raise ``ConnectionError`` once dead."""
        if self.dead is None and self.sent_bytes - self.acked_bytes + nbytes <= RESEND_BYTES:
            return  # the fast path: no lock (the counters only grow; a stale read is safe)
        with self.cv:
            while True:
                if self.dead is not None:
                    raise ConnectionError(self.dead)
                if not self.unacked or self.sent_bytes - self.acked_bytes + nbytes <= RESEND_BYTES:
                    return
                if not self.cv.wait(slice_s):
                    self.cv.release()
                    try:
                        on_idle()
                    finally:
                        self.cv.acquire()

    def keep(self, seq: int, hdr: bytes, data) -> bool:
        """Keep frame ``seq`` (``next_seq``), about to be sent, until the peer has read it
        (holding ``lock``; ``acked`` may run at once on the reader's thread: a deque's ends
        are thread-safe). True if ``data`` itself is kept (no copy): the caller must then
        ``wait_read`` before it lets ``data`` change."""
        n = len(data)
        borrowed = n >= BORROW_BYTES
        if borrowed:
            copy = data
        elif n > _SMALL:
            copy = self._pool.get(n)
            copy[:] = np.frombuffer(data, dtype=np.uint8, count=n)
        else:
            copy = bytes(data) if n else None
        self.unacked.append((seq, hdr, copy, n))
        self.sent_bytes += n
        self.next_seq = seq + 1
        return borrowed

    def wait_read(self, seq: int, on_idle, slice_s: float) -> None:
        """Block until the peer has read frame ``seq``; raise ``ConnectionError`` once dead."""
        if self.peer_read > seq:
            return
        with self.cv:
            while self.peer_read <= seq:
                if self.dead is not None:
                    raise ConnectionError(self.dead)
                if not self.cv.wait(slice_s):
                    self.cv.release()
                    try:
                        on_idle()
                    finally:
                        self.cv.acquire()

    def acked(self, count: int) -> None:
        """The peer has read ``count`` frames: drop what was kept of them."""
        with self.cv:
            while self.unacked and self.unacked[0][0] < count:
                _, _, copy, n = self.unacked.popleft()
                self.acked_bytes += n
                if isinstance(copy, np.ndarray):
                    self._pool.put(copy)
            if count > self.peer_read:
                self.peer_read = count
            self.cv.notify_all()

    def backlog(self, peer_recv: int) -> list:
        """The frames the peer has not read, after it said it read ``peer_recv``."""
        self.acked(peer_recv)
        with self.cv:
            if peer_recv > self.next_seq or (self.unacked and self.unacked[0][0] > peer_recv):
                raise ConnectionError(
                    f"cannot resume: the peer has read {peer_recv} frames, this rank sent "
                    f"{self.next_seq} and still holds from "
                    f"{self.unacked[0][0] if self.unacked else self.next_seq}"
                )
            return list(self.unacked)

    # ---- receiving ----------------------------------------------------------------------------
    def received(self, nbytes: int) -> bool:
        """Count a whole frame read; True when an acknowledgement is due."""
        self.recv_seq += 1
        self.recv_bytes_since_ack += nbytes
        if (
            nbytes >= BORROW_BYTES  # its sender waits for this acknowledgement
            or self.recv_bytes_since_ack >= ACK_BYTES
            or self.recv_seq - self.acked_recv >= ACK_FRAMES
        ):
            self.ack_due = True
        return self.ack_due

    def expects(self, slot: int) -> int:
        """0: ``slot`` is the next frame; -1: one read already (drop it); 1: frames were lost."""
        want = self.recv_seq % SEQ_MOD
        if slot == want:
            return 0
        return -1 if 0 < (want - slot) % SEQ_MOD < SEQ_MOD // 2 else 1

    def ack_frame(self) -> bytes:
        """The ACK header for what has been read (call holding ``lock``)."""
        self.ack_due = False
        self.acked_recv = self.recv_seq
        self.recv_bytes_since_ack = 0
        return _frames.pack(_frames.ACK, 0, 0, self.recv_seq, 0, 0, 0)

    # ---- state ------------------------------------------------------------------------------
    def set_dead(self, reason: str) -> None:
        with self.cv:
            if self.dead is None:
                self.dead = reason
            self.up = False
            self.cv.notify_all()

    def offer(self, sock, peer_recv: int) -> None:
        """A new connection for this peer arrived (the peer redialled)."""
        with self.cv:
            old, self.offered = self.offered, (sock, peer_recv)
            self.cv.notify_all()
        if old is not None:
            old[0].close()
