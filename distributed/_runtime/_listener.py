"""The shared listener of raw connections (data planes, the Trainer's report inbox): every
pending handshake at once, each under a short deadline (issue #28).

A new connection is challenged with a one-time nonce and must answer with an HMAC of the job
token (``_auth.sign``) within ``timeout`` seconds. One thread serves every pending handshake
with a selector, so a silent or slow connection delays nobody, and a refused one costs a few
system calls and an HMAC (measured: threads per handshake cost ~5x more CPU per refused
connection, taken from the process that trains). A source address may hold ``per_source``
handshakes pending at once; past that its oldest pending one is dropped (a real rank answers
in milliseconds, so the oldest is the silent one), and at most ``MAX_PENDING`` are pending in
all. A source whose handshakes keep failing is served at most ``FAILS_PER_S`` handshakes a
second (a token bucket of failures): beyond that its connections are closed as they are
accepted, without a handshake (a few microseconds each instead of an HMAC and two wake-ups;
a rank of the job that connects from the same address retries until it is served). Refusals
go to the job's rate-limited refusal log (``_auth.log_refusal``).
"""

from __future__ import annotations

import os
import secrets
import selectors
import socket
import struct
import threading
import time

from . import _auth, _frames

HELLO = struct.Struct("<4si32s")  # magic, rank, HMAC(token, nonce + rank)
NONCE_BYTES = 16
HANDSHAKE_S = float(os.environ.get("EMBER_HANDSHAKE_TIMEOUT_S", 5.0))
PER_SOURCE = int(os.environ.get("EMBER_HANDSHAKES_PER_SOURCE", 16))
MAX_PENDING = 256
FAILS_PER_S = float(os.environ.get("EMBER_HANDSHAKE_FAILS_PER_S", 10.0))
PAUSE_S = 0.02  # while shedding a flood, accept in batches this far apart
_MAX_SOURCES = 4096  # failure buckets kept (full ones are dropped first)


class _Pending:
    __slots__ = ("conn", "addr", "src", "nonce", "buf", "got", "deadline")

    def __init__(self, conn, addr, src: str, nonce: bytes, deadline: float) -> None:
        self.conn, self.addr, self.src, self.nonce = conn, addr, src, nonce
        self.buf = bytearray(HELLO.size)
        self.got = 0
        self.deadline = deadline


class Listener:
    """Accepts connections on the listening ``sock`` and hands each authenticated one, in
    blocking mode, to ``on_peer(rank, conn)`` (called on the listener's thread: it must not
    block). ``what`` names the endpoint in refusal messages."""

    def __init__(
        self,
        sock: socket.socket,
        token: str,
        on_peer,
        what: str,
        timeout: float | None = None,
        per_source: int | None = None,
    ) -> None:
        self.timeout = HANDSHAKE_S if timeout is None else float(timeout)
        self.per_source = PER_SOURCE if per_source is None else int(per_source)
        if not self.timeout > 0 or self.per_source < 1:
            raise ValueError(
                f"Listener needs timeout > 0 and per_source >= 1, got timeout={self.timeout}, "
                f"per_source={self.per_source}"
            )
        self.sock, self.token, self.on_peer, self.what = sock, token, on_peer, what
        self.refused = 0  # connections refused so far (bad proof, timeout, dropped)
        self._closed = False
        self._pending: dict[socket.socket, _Pending] = {}  # insertion order: oldest first
        self._per_src: dict[str, int] = {}
        self._fails: dict[str, list] = {}  # source -> [tokens, time]: the failure bucket
        self._paused_until = 0.0  # accepting again then (a flood is being shed)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        sock.setblocking(False)
        self._sel.register(sock, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"ember-accept-{what}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Handshakes in progress now."""
        return len(self._pending)

    # ---- the listener's thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._closed:
                wait = None
                if self._pending:
                    oldest = min(p.deadline for p in self._pending.values())
                    wait = max(0.0, oldest - time.monotonic())
                if self._paused_until:
                    left = self._paused_until - time.monotonic()
                    if left <= 0:  # take connections again
                        self._paused_until = 0.0
                        self._sel.register(self.sock, selectors.EVENT_READ, "accept")
                    else:
                        wait = left if wait is None else min(wait, left)
                for key, _ in self._sel.select(wait):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        return
                    else:
                        self._read(key.data)
                now = time.monotonic()
                for p in [p for p in self._pending.values() if p.deadline <= now]:
                    self._refuse(p, f"no handshake within {self.timeout:g} s")
        finally:
            for p in list(self._pending.values()):
                self._forget(p)
                p.conn.close()
            self._sel.close()
            self._wake_r.close()

    def _accept(self) -> None:
        if self._accept_batch() and not self._paused_until:
            # let the backlog gather for a moment: a flood then costs one wake-up per
            # PAUSE_S, not one per connection (a real rank waits at most that long)
            self._paused_until = time.monotonic() + PAUSE_S
            self._sel.unregister(self.sock)

    def _accept_batch(self) -> bool:
        """Accept what is waiting (up to 64); True if a flooding source was shed."""
        shed = False
        for _ in range(64):  # drain the backlog, then serve the others again
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return shed
            except OSError:
                return False  # closed
            src = addr[0] if isinstance(addr, tuple) and addr else "local"
            if not self._may_try(src):
                conn.close()
                self._count(addr, src, "too many failed handshakes from this address", False)
                shed = True
                continue
            if self._per_src.get(src, 0) >= self.per_source:
                oldest = next(p for p in self._pending.values() if p.src == src)
                self._refuse(oldest, f"more than {self.per_source} pending from this address")
            if len(self._pending) >= MAX_PENDING:
                self._refuse(next(iter(self._pending.values())), "too many pending handshakes")
            nonce = secrets.token_bytes(NONCE_BYTES)
            try:
                conn.setblocking(False)
                conn.send(nonce)  # 16 bytes always fit a new connection's send buffer
            except OSError:
                conn.close()
                continue
            p = _Pending(conn, addr, src, nonce, time.monotonic() + self.timeout)
            self._pending[conn] = p
            self._per_src[src] = self._per_src.get(src, 0) + 1
            self._sel.register(conn, selectors.EVENT_READ, p)
        return shed

    def _read(self, p: _Pending) -> None:
        try:
            k = p.conn.recv_into(memoryview(p.buf)[p.got :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._refuse(p, e.strerror or str(e))
            return
        if k == 0:
            self._refuse(p, "connection closed before the handshake")
            return
        p.got += k
        if p.got < len(p.buf):
            return
        self._forget(p)
        magic, rank, proof = HELLO.unpack(p.buf)
        ok = magic == _frames.MAGIC and _auth.verify(self.token, p.nonce, rank, proof)
        try:
            p.conn.send(b"\x01" if ok else b"\x00")
        except OSError:
            ok = None
        if not ok:
            if ok is not None:
                self._log(p, "bad handshake (wrong job token or not an ember rank)")
            p.conn.close()
            return
        p.conn.setblocking(True)
        if self._closed:
            p.conn.close()
            return
        self.on_peer(rank, p.conn)

    def _forget(self, p: _Pending) -> None:
        if self._pending.pop(p.conn, None) is None:
            return
        left = self._per_src[p.src] - 1
        if left:
            self._per_src[p.src] = left
        else:
            del self._per_src[p.src]
        try:
            self._sel.unregister(p.conn)
        except (KeyError, ValueError):
            pass

    def _refuse(self, p: _Pending, reason: str) -> None:
        self._forget(p)
        p.conn.close()
        self._log(p, reason)

    def _log(self, p: _Pending, reason: str) -> None:
        self._count(p.addr, p.src, reason, True)

    def _count(self, addr, src: str, reason: str, failed: bool) -> None:
        self.refused += 1
        if failed:  # take a token from the source's bucket
            bucket = self._fails.get(src)
            if bucket is None:
                if len(self._fails) >= _MAX_SOURCES:
                    self._fails.clear()
                bucket = self._fails[src] = [FAILS_PER_S, time.monotonic()]
            bucket[0] -= 1
        if not self._closed:
            _auth.log_refusal(f"{self.what} listener refused a connection", addr, reason)

    def _may_try(self, src: str) -> bool:
        bucket = self._fails.get(src)
        if bucket is None:
            return True
        now = time.monotonic()
        bucket[0] = min(FAILS_PER_S, bucket[0] + (now - bucket[1]) * FAILS_PER_S)
        bucket[1] = now
        if bucket[0] >= FAILS_PER_S:
            del self._fails[src]  # full again: forget it
            return True
        return bucket[0] >= 1

    # ---- any thread -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting; pending handshakes are dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        self._wake_w.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
