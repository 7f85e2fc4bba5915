"""The socket data plane: one TCP connection per pair of ranks, for ranks on different hosts.

Measured here (DESIGN.md section 8): plain grpcio streams carry about half of what raw sockets
carry, so bulk chunks go over raw TCP while gRPC keeps rendezvous and control. The addresses are
exchanged through the store at rendezvous; each connection starts with an HMAC challenge on the
job token. Payloads are sent straight from the tensor's memory (``sendmsg`` of header and
payload, no copy in Python); a reader thread per connection reads the peer's frames as they come,
straight into posted destinations (``_inbox.py``) or into pooled buffers when none is posted
yet, so both directions flow at once and a send never waits for the peer's program to reach
its receive.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time

from ..errors import DistNetworkError
from . import _frames, _grace
from ._inbox import Inbox
from ._opctx import SLICE
from ._transport import (
    PIECE_BYTES,
    Listener,
    Transport,
    await_registered,
    client_handshake,
    connect_with_retry,
    recv_exact,
)

_DEAD = "closed its connection (the process probably exited or crashed)"
_LEFT = "left the process group (destroy_process_group)"


class SocketTransport(Transport):
    """TCP connections to a set of peers (see the module docstring)."""

    name = "socket"

    def __init__(self, rank: int, token: str, bind_host: str) -> None:
        self.rank, self.token = rank, token
        self.inbox = Inbox()
        self._conns: dict[int, socket.socket] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._addrs: dict[int, str] = {}
        self._ready = threading.Condition()
        self._closing = False
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((bind_host, 0))
        except OSError as e:
            sock.close()
            raise DistNetworkError(f"could not bind a data socket to {bind_host}: {e}") from None
        sock.listen(128)
        self.address = (bind_host, sock.getsockname()[1])
        self._listener = Listener(sock, token, self._register, "socket")

    def endpoint(self) -> list:
        return list(self.address)

    # ---- set-up ---------------------------------------------------------------------------
    def connect(self, peers: dict[int, list], deadline: float) -> None:
        """Open connections to lower-ranked ``peers`` ({rank: [host, port]}) and wait for the
        higher-ranked ones to connect to us."""
        for peer, (host, port) in sorted(peers.items()):
            if peer < self.rank:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = connect_with_retry(
                    family, (host, port), deadline, f"rank {peer}", self.rendezvous_check
                )
                client_handshake(
                    sock, self.token, self.rank, peer, max(1.0, deadline - time.monotonic())
                )
                self._register(peer, sock)
        await_registered(
            self._ready,
            self._conns,
            peers,
            deadline,
            self.rendezvous_check,
            SLICE,
            lambda missing: (
                f"ranks {missing} did not open their data connections to rank {self.rank} in time"
            ),
        )

    def _register(self, peer: int, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A kernel-side send timeout: a blocking send queues everything in one call, yet
        # returns after SLICE without progress so timeouts and aborts are still checked.
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("ll", int(SLICE), int(SLICE % 1 * 1e6)),
        )
        # ride out a silent link for the grace period, then fail naming the peer
        _grace.tune_socket(sock)
        with self._ready:
            if peer in self._conns:  # a second connection claiming the same rank
                sock.close()
                return
            self._conns[peer] = sock
            self._locks[peer] = threading.Lock()
            try:
                self._addrs[peer] = "{}:{}".format(*sock.getpeername()[:2])
            except OSError:
                self._addrs[peer] = "?"
            self._ready.notify_all()
        threading.Thread(
            target=self._reader, args=(peer, sock), daemon=True, name=f"ember-recv-{peer}"
        ).start()

    # ---- receive side -----------------------------------------------------------------------
    def _reader(self, peer: int, sock: socket.socket) -> None:
        hdr = bytearray(_frames.HEADER_SIZE)
        view = memoryview(hdr)
        try:
            while True:
                recv_exact(sock, view)
                frame = _frames.unpack(hdr)
                info = bytearray(frame.info)
                if info:
                    recv_exact(sock, memoryview(info))
                frame.info = bytes(info)
                if frame.kind == _frames.BYE:
                    self.inbox.peer_gone(peer, _LEFT)
                    return
                self.inbox.deliver(peer, frame, lambda view: recv_exact(sock, view))
        except (OSError, ConnectionError, ValueError) as e:
            if not self._closing:
                self.inbox.peer_gone(peer, self._reason(peer, e))

    def _reason(self, peer: int, e: Exception) -> str:
        if isinstance(e, OSError) and e.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH):
            return f"at {self._addrs.get(peer, '?')} {_grace.unreachable()} [{e.strerror}]"
        if isinstance(e, ConnectionError):
            return _DEAD
        return f"broke its connection ({e})"

    def post(self, peer, ctx, channel, tag, nbytes, dst=None, consume=None):
        return self.inbox.post(peer, ctx, channel, tag, nbytes, dst, consume)

    def wait(self, pending):
        self.inbox.wait(pending)

    def probe(self, peers, channel, tag):
        return self.inbox.probe(peers, channel, tag)

    # ---- send side --------------------------------------------------------------------------
    def send(self, peer, ctx, channel, tag, data):
        sock = self._conns[peer]
        n, off = len(data), 0
        with self._locks[peer]:
            while True:
                k = min(PIECE_BYTES, n - off)
                hdr = _frames.pack(_frames.DATA, channel, tag, ctx.seq, ctx.fp, k, n, -1, ctx.info)
                self._send_all(sock, [hdr, data[off : off + k]], peer, ctx)
                off += k
                if off >= n:
                    return

    def _send_all(self, sock, bufs, peer, ctx) -> None:
        views = [memoryview(b).cast("B") for b in bufs if len(b)]
        while views:
            try:
                sent = sock.sendmsg(views)
            except BlockingIOError:  # SO_SNDTIMEO passed without progress
                sent = 0
            except OSError as e:
                raise ctx.peer_gone(peer, self._reason(peer, e)) from None
            if not sent:
                ctx.on_idle(peer)
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views.pop(0))
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    # ---- teardown ---------------------------------------------------------------------------
    def close(self, clean: bool = True) -> None:
        self._closing = True
        self._listener.close()
        for sock in list(self._conns.values()):
            if clean:
                try:
                    sock.settimeout(1.0)  # never hang at exit on a peer that stopped reading
                    sock.sendall(_frames.pack(_frames.BYE, 0, 0, 0, 0, 0, 0))
                except OSError:
                    pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._conns.clear()
