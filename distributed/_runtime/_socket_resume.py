"""Resuming the socket data plane's connections (``_socket.py``): when a connection to a peer
is reset, the side that dialled it dials again and the other waits for the new one (checking
that the peer's listener still answers); both exchange how many frames they have read
(``RESUME``) and the writer sends the rest again, in order (``_link.py`` keeps the copies).
A peer that is gone or silent past the grace period fails the job, named with the reason.

``SocketTransport`` inherits these methods from ``_Resume``; the module helpers (the control
frame reader, ``_shut``) serve both files."""

from __future__ import annotations

import errno
import socket
import threading
import time

from . import _frames, _grace
from ._link import Link
from ._transport import recv_exact

_DEAD = "closed its connection (the process probably exited or crashed)"
_GONE = "closed its connection and refuses new ones (its process exited or crashed)"
_SILENT = (errno.ETIMEDOUT, errno.EHOSTUNREACH)


class _Refused(Exception):
    """The peer's listener refused the connection: its process is gone."""


class _Lost(ValueError):
    """Frames are missing from the stream: it cannot be resumed."""


class _Resume:
    """``SocketTransport``'s connection recovery (uses its ``_dial``, ``_tune``, ``inbox``,
    ``_endpoints`` and ``_closing``)."""

    def _reason(self, link: Link, e: Exception) -> str:
        if isinstance(e, OSError) and e.errno in _SILENT:
            return f"at {link.addr} {_grace.unreachable()} [{e.strerror}]"
        if isinstance(e, ConnectionError):
            return _DEAD
        return f"broke its connection ({e})"

    def _fail(self, link: Link, reason: str) -> None:
        link.set_dead(reason)
        _shut(link.sock)
        self.inbox.peer_gone(link.peer, reason)

    def _recover(self, link: Link, err: Exception):
        """Replace ``link``'s broken connection; the new socket, or None once the peer is
        reported gone."""
        with link.cv:
            link.up = False
            written, link.write_error = link.write_error, None
        _shut(link.sock)
        if isinstance(written, OSError) and written.errno in _SILENT:
            err = written  # a send timed out first: the grace period has passed already
        if isinstance(err, _Lost) or (isinstance(err, OSError) and err.errno in _SILENT):
            # frames lost, or already silent for the whole grace period: nothing to wait for
            self._fail(link, self._reason(link, err))
            return None
        deadline = time.monotonic() + _grace.grace_seconds()
        delay = 0.01
        while not self._closing:
            now = time.monotonic()
            if now > deadline:
                self._fail(
                    link,
                    f"at {link.addr} {_grace.unreachable()} [its connection was reset and no "
                    "new one could be opened]",
                )
                return None
            try:
                if link.dialer:
                    sock, peer_recv = self._dial(link.peer, deadline, link.recv_seq)
                else:
                    # check the peer's listener, then wait a while for its new connection
                    got = self._await_offer(link, min(deadline, now + delay * 20))
                    if got is None:
                        delay = min(delay * 2, 0.05)
                        continue
                    sock, peer_recv = got
                    sock.sendall(_frames.pack(_frames.RESUME, 0, 0, link.recv_seq, 0, 0, 0))
            except _Refused:
                self._fail(link, f"at {link.addr} {_GONE}")
                return None
            except (OSError, ConnectionError, ValueError):
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self._tune(sock)
            with link.cv:
                link.resets += 1
                link.gen += 1
            threading.Thread(
                target=self._resend,
                args=(link, sock, peer_recv, link.gen),
                daemon=True,
                name=f"ember-resend-{link.peer}",
            ).start()
            return sock
        return None

    def _await_offer(self, link: Link, until: float):
        """The acceptor's side: the peer's new connection, or None after ``until``. Checks the
        peer's listener first (raises ``_Refused`` if its process is gone)."""
        if link.peer in self._endpoints and link.offered is None:
            try:
                self._dial(link.peer, time.monotonic() + 1.0, 0, kind=_frames.PROBE)[0].close()
            except _Refused:
                with link.cv:
                    if link.offered is None:
                        raise
            except (OSError, ConnectionError, ValueError):
                pass  # unreachable for now: a partition, or the peer is busy
        with link.cv:
            while link.offered is None:
                left = until - time.monotonic()
                if left <= 0 or self._closing:
                    return None
                link.cv.wait(left)
            got, link.offered = link.offered, None
        return got

    def _resend(self, link: Link, sock: socket.socket, peer_recv: int, gen: int) -> None:
        """Install the new connection and send what the peer has not read, in order."""
        with link.lock:
            if gen != link.gen:  # broke again before it was installed: a newer one follows
                _shut(sock)
                return
            try:
                backlog = link.backlog(peer_recv)
            except ConnectionError as e:
                self._fail(link, f"at {link.addr} could not resume its connection: {e}")
                return
            link.sock = sock
            for _, hdr, copy, _ in backlog:
                if not self._write(link, [hdr] if copy is None else [hdr, copy], None):
                    return  # broke again: the reader starts over
            with link.cv:
                link.up = True
                link.cv.notify_all()


def _read_control(sock: socket.socket, want):
    """Read one control frame (``want`` kind, or RESUME/PROBE when None); its ``seq``."""
    hdr = bytearray(_frames.HEADER_SIZE)
    recv_exact(sock, memoryview(hdr))
    frame = _frames.unpack(hdr)
    allowed = (want,) if want is not None else (_frames.RESUME, _frames.PROBE)
    if frame.kind not in allowed or frame.info:
        raise ValueError(f"expected a RESUME frame, got kind {frame.kind}")
    return frame.seq if want is not None else (frame.kind, frame.seq)


def _discard(sock: socket.socket, n: int) -> None:
    buf = bytearray(min(n, 1 << 20))
    while n > 0:
        k = min(n, len(buf))
        recv_exact(sock, memoryview(buf)[:k])
        n -= k


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
