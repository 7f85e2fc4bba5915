"""The grace period's configuration (``EMBER_NET_GRACE_S``, ``network_grace=``) and the socket
options it sets; the link-cut behaviour itself is tested in test_linkcut.py."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from ember.distributed._runtime import _grace


@pytest.fixture(autouse=True)
def _reset():
    yield
    _grace.set_grace(None)


def test_default_env_and_argument(monkeypatch):
    monkeypatch.delenv(_grace.ENV, raising=False)
    assert _grace.grace_seconds() == 60.0
    monkeypatch.setenv(_grace.ENV, "7.5")
    assert _grace.grace_seconds() == 7.5
    _grace.set_grace(timedelta(seconds=3))  # the argument wins over the environment
    assert _grace.grace_seconds() == 3.0
    _grace.set_grace(None)
    assert _grace.grace_seconds() == 7.5


@pytest.mark.parametrize("bad", ["soon", "0", "-1", "nan", "inf"])
def test_bad_values_name_the_setting(monkeypatch, bad):
    monkeypatch.setenv(_grace.ENV, bad)
    with pytest.raises(ValueError, match=_grace.ENV):
        _grace.grace_seconds()
    with pytest.raises(ValueError, match="network_grace"):
        _grace.set_grace(bad)


def test_socket_options():
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    try:
        _grace.tune_socket(a, grace=12.5)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 1
        assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1
        assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 12500
    finally:
        a.close()
        b.close()


def test_docs_snippet_runs():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "failure_modes.md")
    section = open(path).read().split("## Network blips", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
