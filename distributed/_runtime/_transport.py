"""The one transport interface, and the connection set-up the transports share.

A transport moves messages between this rank and its peers. Algorithms see only:

* ``send(peer, ctx, channel, tag, data)`` - returns once ``data`` (a byte view) may be reused;
* ``post(peer, ctx, channel, tag, nbytes, dst=None, consume=None)`` - the next message from
  ``peer`` on ``(channel, tag)`` goes into ``dst`` (bytes) or through ``consume(offset, view)``
  piece by piece, after its fingerprint and size are checked against ``ctx``; ``wait(pending)``
  blocks until it has (see ``_inbox.py``); ``recv`` is both in one call;
* ``probe(peers, channel, tag)`` - which of ``peers`` has a message waiting, without blocking
  (point-to-point ``recv`` from any source polls with it).

Messages bigger than a transport's piece size travel as several frames; each carries the
message's total size so a size disagreement is caught at the first piece.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from ..errors import DistBackendError, DistNetworkError
from . import _auth, _frames
from ._listener import HANDSHAKE_S, Listener  # noqa: F401 (the transports' listener)
from ._listener import HELLO as _HELLO
from ._listener import NONCE_BYTES as _NONCE

# Bytes per frame on byte-stream transports; a multiple of 16 keeps pieces element-aligned.
PIECE_BYTES = int(os.environ.get("EMBER_PIECE_BYTES", 4 << 20)) // 16 * 16


class Transport:
    """Base class; see the module docstring for the contract."""

    name = "transport"
    # set by the World while it connects: raises once the rendezvous has failed (a peer died
    # or was refused), so connection waits end then instead of at the deadline
    rendezvous_check = None

    def send(self, peer: int, ctx, channel: int, tag: int, data: memoryview) -> None:
        raise NotImplementedError

    def post(self, peer: int, ctx, channel: int, tag: int, nbytes: int, dst=None, consume=None):
        raise NotImplementedError

    def wait(self, pending) -> None:
        raise NotImplementedError

    def recv(self, peer: int, ctx, channel: int, tag: int, nbytes: int, consume) -> None:
        self.wait(self.post(peer, ctx, channel, tag, nbytes, consume=consume))

    def probe(self, peers, channel: int, tag: int) -> int | None:
        raise NotImplementedError

    def close(self, clean: bool = True) -> None:
        raise NotImplementedError


# ---- connection set-up: a one-time nonce answered with an HMAC of the job token ------------
def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; raises ``ConnectionError`` at end of stream."""
    n, got = len(view), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if k == 0:
            raise ConnectionError("connection closed by peer")
        got += k


def client_handshake(sock: socket.socket, token: str, rank: int, peer: int, timeout: float) -> None:
    sock.settimeout(timeout)
    nonce = bytearray(_NONCE)
    recv_exact(sock, memoryview(nonce))
    sock.sendall(_HELLO.pack(_frames.MAGIC, rank, _auth.sign(token, bytes(nonce), rank)))
    ok = bytearray(1)
    recv_exact(sock, memoryview(ok))
    if ok[0] != 1:
        raise DistBackendError(
            f"rank {peer} refused this rank's data connection: the job "
            f"tokens differ (all ranks must share {_auth.TOKEN_ENV})"
        )
    sock.settimeout(None)


def connect_with_retry(
    family: int, address, deadline: float, what: str, check=None
) -> socket.socket:
    """Connect, retrying while the peer's listener is not up yet (``check()``, if given, raises
    when the rendezvous has failed meanwhile)."""
    delay = 0.01
    while True:
        if check is not None:
            check()
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise DistNetworkError(f"could not connect to {what} at {address!r}: {e}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def await_registered(
    ready: threading.Condition,
    registered: dict,
    peers,
    deadline: float,
    check,
    poll: float,
    message,
) -> None:
    """Wait (holding ``ready``) until every rank of ``peers`` is in ``registered``, as the
    transports' accept threads register them. ``check()``, when set, fails early if a peer died
    or was refused during the rendezvous; past ``deadline``, raise ``DistNetworkError`` with
    ``message(missing_ranks)``."""
    with ready:
        while not all(p in registered for p in peers):
            left = deadline - time.monotonic()
            if left <= 0:
                raise DistNetworkError(message(sorted(p for p in peers if p not in registered)))
            if check is not None:
                check()  # a peer died or was refused: fail now
            ready.wait(min(left, poll))
