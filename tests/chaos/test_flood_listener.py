"""The shared listener under hostile connections (``_listener.py``, issue #28), in one process.

Silent connections must not delay a real rank's handshake; a source holds a bounded number of
pending handshakes; a source whose handshakes keep failing is cut off cheaply; a refusal is never
reported to a real rank as a token mismatch.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from ember.distributed._runtime import _listener, _transport

TOKEN = "listener-test-token"


@pytest.fixture
def listener():
    got: list = []
    ready = threading.Event()

    def on_peer(rank, conn):
        got.append((rank, conn))
        ready.set()

    srv = socket.create_server(("127.0.0.1", 0))
    lst = _listener.Listener(srv, TOKEN, on_peer, "test", timeout=2.0, per_source=4)
    lst.got, lst.ready = got, ready
    yield lst
    lst.close()
    for _, conn in got:
        conn.close()


def _connect(lst) -> socket.socket:
    return socket.create_connection(lst.sock.getsockname()[:2], timeout=5)


def _bad_handshake(lst) -> bytes:
    with _connect(lst) as s:
        try:
            s.recv(_listener.NONCE_BYTES)
            s.sendall(b"EMB1" + bytes(4) + os.urandom(32))
            return s.recv(1)
        except OSError:
            return b""


def test_silent_connections_do_not_delay_a_rank(listener):
    silent = [_connect(listener) for _ in range(3)]  # under the per-source limit of 4
    try:
        t0 = time.monotonic()
        with _connect(listener) as s:
            _transport.client_handshake(s, TOKEN, 5, 0, timeout=5.0)
            assert listener.ready.wait(5.0)
        assert time.monotonic() - t0 < 1.0  # not the 2 s deadline of the silent ones
        assert listener.got[0][0] == 5
        assert listener.pending == 3
    finally:
        for s in silent:
            s.close()


def test_silent_connections_time_out_and_the_oldest_is_dropped(listener):
    silent = [_connect(listener) for _ in range(6)]  # 2 over the per-source limit
    try:
        deadline = time.monotonic() + 5.0
        while listener.pending != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert listener.pending == 4
        silent[0].settimeout(5.0)  # the oldest was dropped: the nonce, then end of stream
        assert len(silent[0].recv(64)) == _listener.NONCE_BYTES and silent[0].recv(64) == b""
        while listener.pending and time.monotonic() < deadline + 3.0:
            time.sleep(0.02)
        assert listener.pending == 0  # the rest timed out after 2 s
    finally:
        for s in silent:
            s.close()


def test_wrong_token_is_refused_and_a_flood_is_cut_off(listener, monkeypatch):
    assert _bad_handshake(listener) == b"\x00"  # an explicit refusal: a wrong token
    t0 = time.monotonic()
    replies = [_bad_handshake(listener) for _ in range(40)]
    took = time.monotonic() - t0
    # the source's failure bucket: FAILS_PER_S, refilled at FAILS_PER_S a second; beyond that
    # its connections are closed at once, without a challenge
    assert replies.count(b"\x00") <= _listener.FAILS_PER_S * (1 + took) + 1
    assert b"" in replies
    # a real rank from the same address still gets in by retrying (as the transports do)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            with _connect(listener) as s:
                _transport.client_handshake(s, TOKEN, 3, 0, timeout=2.0)
                assert listener.ready.wait(5.0)
                break
        except ConnectionError:  # closed before the challenge: not a token error
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert listener.got[0][0] == 3


def test_docs_snippet_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "failure_modes.md")
    section = open(path).read().split("## Hostile connections on the listeners", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
