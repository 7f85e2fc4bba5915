"""The socket data plane: one TCP connection per pair of ranks, for ranks on different hosts.

Measured here (DESIGN.md section 8): plain grpcio streams carry about half of what raw sockets
carry, so bulk chunks go over raw TCP while gRPC keeps rendezvous and control. The addresses are
exchanged through the store at rendezvous; each connection starts with an HMAC challenge on the
job token. Payloads are sent straight from the tensor's memory (``sendmsg`` of header and
payload, no copy in Python); a reader thread per connection reads the peer's frames as they come,
straight into posted destinations (``_inbox.py``) or into pooled buffers when none is posted
yet, so both directions flow at once and a send never waits for the peer's program to reach
its receive. A connection that is reset is replaced and what it lost is sent again
(``_link.py``, ``_socket_resume.py``); a peer fails the job only once it is gone.

Threads per peer: the reader (never writes, so a peer's writes always drain), and an ack writer
(acknowledges what the reader has read, so the peer can drop its copies); writers (the caller,
the ack writer, a resend after a reconnect) take the link's lock one frame at a time.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from ..errors import DistNetworkError
from . import _frames, _grace
from ._inbox import Inbox
from ._link import SEQ_MOD, Link
from ._opctx import SLICE
from ._socket_resume import (  # noqa: F401  (_DEAD, _GONE, _SILENT: their old home)
    _DEAD,
    _GONE,
    _SILENT,
    _discard,
    _Lost,
    _read_control,
    _Refused,
    _Resume,
    _shut,
)
from ._transport import (
    HANDSHAKE_S,
    PIECE_BYTES,
    Listener,
    Transport,
    await_registered,
    client_handshake,
    recv_exact,
)

_LEFT = "left the process group (destroy_process_group)"


class SocketTransport(_Resume, Transport):
    """TCP connections to a set of peers (see the module docstring)."""

    name = "socket"

    def __init__(self, rank: int, token: str, bind_host: str) -> None:
        self.rank, self.token = rank, token
        self.inbox = Inbox()
        self._links: dict[int, Link] = {}
        self._endpoints: dict[int, tuple] = {}
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
        # (the listener's thread must not block: the RESUME exchange runs on a thread)
        self._listener = Listener(
            sock,
            token,
            lambda peer, conn: threading.Thread(
                target=self._on_peer, args=(peer, conn), daemon=True, name="ember-resume"
            ).start(),
            "socket",
        )

    def endpoint(self) -> list:
        return list(self.address)

    @property
    def resets(self) -> int:
        """Connections replaced after a reset so far (all peers)."""
        return sum(link.resets for link in list(self._links.values()))

    # ---- set-up -----------------------------------------------------------------------------
    def connect(self, peers: dict[int, list], deadline: float) -> None:
        """Open connections to lower-ranked ``peers`` ({rank: [host, port]}) and wait for the
        higher-ranked ones to connect to us."""
        self._endpoints = {peer: (host, int(port)) for peer, (host, port) in peers.items()}
        for peer in sorted(peers):
            if peer < self.rank:
                while True:
                    try:
                        sock, _ = self._dial(peer, deadline, 0, initial=True)
                        break
                    except _Refused:
                        if time.monotonic() > deadline:
                            raise DistNetworkError(
                                f"could not connect to rank {peer} at {self._endpoints[peer]!r}: "
                                "connection refused"
                            ) from None
                        time.sleep(0.05)  # its listener may not be up yet
                    except (OSError, ConnectionError) as e:
                        # a handshake cut short (a flood on the peer's listener): try again
                        if time.monotonic() > deadline:
                            raise DistNetworkError(
                                f"could not connect to rank {peer} at "
                                f"{self._endpoints[peer]!r}: {e}"
                            ) from None
                        time.sleep(0.05)
                self._add_link(peer, sock, dialer=True)
        await_registered(
            self._ready,
            self._links,
            peers,
            deadline,
            self.rendezvous_check,
            SLICE,
            lambda missing: (
                f"ranks {missing} did not open their data connections to rank {self.rank} in time"
            ),
        )

    def _dial(self, peer: int, deadline: float, recv_seq: int, initial=False, kind=None):
        """Connect to ``peer``'s listener, prove the token, exchange ``RESUME``; returns the
        socket and how many of our frames the peer has read."""
        host, port = self._endpoints[peer]
        if initial and self.rendezvous_check is not None:
            self.rendezvous_check()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.settimeout(max(0.05, min(HANDSHAKE_S, deadline - time.monotonic())))
            try:
                sock.connect((host, port))
            except ConnectionRefusedError:
                raise _Refused() from None
            client_handshake(sock, self.token, self.rank, peer, sock.gettimeout())
            sock.settimeout(max(0.05, min(HANDSHAKE_S, deadline - time.monotonic())))
            sock.sendall(_frames.pack(kind or _frames.RESUME, 0, 0, recv_seq, 0, 0, 0))
            if kind == _frames.PROBE:
                return sock, 0
            peer_recv = _read_control(sock, _frames.RESUME)
            sock.settimeout(None)
            return sock, peer_recv
        except BaseException:
            sock.close()
            raise

    def _on_peer(self, peer: int, sock: socket.socket) -> None:
        """The listener authenticated a connection from ``peer`` (on its handshake thread)."""
        try:
            sock.settimeout(HANDSHAKE_S)
            kind, peer_recv = _read_control(sock, None)
        except (OSError, ConnectionError, ValueError):
            sock.close()
            return
        with self._ready:
            link = self._links.get(peer)
        if kind == _frames.PROBE or peer < self.rank or self._closing:
            sock.close()  # a liveness probe, or a connection only the other side may open
            return
        if link is None:
            if peer_recv != 0:
                sock.close()
                return
            try:
                sock.sendall(_frames.pack(_frames.RESUME, 0, 0, 0, 0, 0, 0))
            except OSError:
                sock.close()
                return
            sock.settimeout(None)
            self._add_link(peer, sock, dialer=False)
            return
        sock.settimeout(None)
        link.offer(sock, peer_recv)
        _shut(link.sock)  # the old connection, if it still looks alive here: the reader moves on

    def _tune(self, sock: socket.socket) -> None:
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

    def _add_link(self, peer: int, sock: socket.socket, dialer: bool) -> None:
        self._tune(sock)
        with self._ready:
            if peer in self._links:  # a second connection claiming the same rank
                sock.close()
                return
            link = Link(peer, sock, dialer)
            try:
                link.addr = "{}:{}".format(*sock.getpeername()[:2])
            except OSError:
                link.addr = "?"
            self._links[peer] = link
            self._ready.notify_all()
        for target, name in ((self._reader, "recv"), (self._acker, "ack")):
            threading.Thread(
                target=target, args=(link,), daemon=True, name=f"ember-{name}-{peer}"
            ).start()

    # ---- receive side -------------------------------------------------------------------------
    def _reader(self, link: Link) -> None:
        sock = link.sock
        while True:
            try:
                self._read_frames(link, sock)
                return  # the peer left (BYE)
            except (OSError, ConnectionError, ValueError) as e:
                if self._closing or link.dead is not None:
                    return
                sock = self._recover(link, e)
                if sock is None:
                    return

    def _read_frames(self, link: Link, sock: socket.socket) -> None:
        peer, inbox = link.peer, self.inbox
        hdr = bytearray(_frames.HEADER_SIZE)
        view = memoryview(hdr)

        def read_into(v):
            recv_exact(sock, v)

        while True:
            recv_exact(sock, view)
            frame = _frames.unpack(hdr)
            info = bytearray(frame.info)
            if info:
                recv_exact(sock, memoryview(info))
            frame.info = bytes(info)
            kind = frame.kind
            if kind == _frames.DATA:
                order = link.expects(frame.slot)
                if order:
                    if order > 0:
                        raise _Lost(f"frame {frame.slot} came when {link.recv_seq} was next")
                    _discard(sock, frame.nbytes)  # sent again after a reconnect: read already
                    continue
                inbox.deliver(peer, frame, read_into)
                if link.received(frame.nbytes):
                    with link.cv:
                        link.cv.notify_all()  # wake the ack writer
            elif kind == _frames.ACK:
                link.acked(frame.seq)
            elif kind == _frames.BYE:
                link.set_dead(_LEFT)
                inbox.peer_gone(peer, _LEFT)
                return
            else:
                raise ValueError(f"unexpected frame kind {kind} on a data connection")

    # ---- send side --------------------------------------------------------------------------
    def post(self, peer, ctx, channel, tag, nbytes, dst=None, consume=None):
        return self.inbox.post(peer, ctx, channel, tag, nbytes, dst, consume)

    def wait(self, pending):
        self.inbox.wait(pending)

    def probe(self, peers, channel, tag):
        return self.inbox.probe(peers, channel, tag)

    def send(self, peer, ctx, channel, tag, data):
        link = self._links[peer]
        n, off = len(data), 0
        idle = lambda: ctx.on_idle(peer)  # noqa: E731
        borrowed = -1  # the last frame sent from ``data`` itself (not copied)
        with link.msg_lock:
            while True:
                k = min(PIECE_BYTES, n - off)
                try:
                    link.wait_room(k, idle, SLICE)
                except ConnectionError as e:
                    raise ctx.peer_gone(peer, str(e)) from None
                piece = data[off : off + k]
                with link.lock:
                    seq = link.next_seq
                    hdr = _frames.pack(
                        _frames.DATA, channel, tag, ctx.seq, ctx.fp, k, n, seq % SEQ_MOD, ctx.info
                    )
                    if link.keep(seq, hdr, piece):
                        borrowed = seq
                    if link.up:
                        bufs = [hdr, piece]
                        if link.ack_due:  # piggyback the acknowledgement on this write
                            bufs.insert(0, link.ack_frame())
                        self._write(link, bufs, idle)
                off += k
                if off >= n:
                    break
        if borrowed >= 0:  # ``data`` may change once we return: the peer must have it
            try:
                link.wait_read(borrowed, idle, SLICE)
            except ConnectionError as e:
                raise ctx.peer_gone(peer, str(e)) from None

    def _write(self, link: Link, bufs, on_idle) -> bool:
        """Write ``bufs`` whole (holding ``link.lock``); False if the connection broke (the
        reader replaces it, and what it lost is sent again)."""
        views = [memoryview(b).cast("B") for b in bufs if len(b)]
        sock = link.sock
        while views:
            try:
                sent = sock.sendmsg(views)
            except BlockingIOError:  # SO_SNDTIMEO passed without progress
                sent = 0
            except OSError as e:
                with link.cv:
                    link.up = False
                    link.write_error = e  # the reader sees only its own end of the stream
                _shut(sock)
                return False
            if not sent and on_idle is not None:
                on_idle()
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views.pop(0))
                else:
                    views[0] = views[0][sent:]
                    sent = 0
        return True

    def _acker(self, link: Link) -> None:
        """Acknowledge what the reader has read whenever it is due (a writer may block; the
        reader never does)."""
        while not self._closing and link.dead is None:
            with link.cv:
                while not (link.ack_due and link.up) and not self._closing and link.dead is None:
                    link.cv.wait(1.0)
            if self._closing or link.dead is not None:
                return
            with link.lock:
                if link.ack_due and link.up:
                    self._write(link, [link.ack_frame()], None)

    # ---- teardown ---------------------------------------------------------------------------
    def close(self, clean: bool = True) -> None:
        self._closing = True
        self._listener.close()
        for link in list(self._links.values()):
            with link.cv:
                link.cv.notify_all()
            if clean and link.up and link.lock.acquire(timeout=1.0):
                try:
                    link.sock.settimeout(1.0)  # never hang at exit on a peer that stopped reading
                    link.sock.sendall(_frames.pack(_frames.BYE, 0, 0, 0, 0, 0, 0))
                except OSError:
                    pass
                finally:
                    link.lock.release()
            _shut(link.sock)
            link.sock.close()
        self._links.clear()
