"""``ember up``/``ember status`` ask the Ray head directly when an HTTP proxy is configured in
the environment: before, ``node_health.query_alive`` went through the proxy (Ray's driver
connects to the GCS over gRPC, which honours ``http_proxy``) and stalled ~11 s here with a
proxy that accepts and never answers, as a proxy that cannot reach the cluster's addresses does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from ember.launcher.up import proxy_bypassed


@pytest.fixture
def clean_no_proxy(monkeypatch):
    for k in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize(
    "address,host",
    [
        ("192.0.2.2:6379", "192.0.2.2"),
        ("ray://10.0.0.1:10001", "10.0.0.1"),
        ("http://10.0.0.2:8265", "10.0.0.2"),
        ("[fd00::1]:6379", "fd00::1"),
        ("head.local", "head.local"),
    ],
)
def test_proxy_bypassed_adds_the_head_and_restores(clean_no_proxy, address, host):
    os.environ["no_proxy"] = "corp.example"
    with proxy_bypassed(address):
        for k in ("no_proxy", "NO_PROXY"):
            assert os.environ[k].split(",") == ["corp.example", host, "127.0.0.1", "localhost"]
    assert os.environ["no_proxy"] == "corp.example" and "NO_PROXY" not in os.environ


class _BlackholeProxy:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def test_query_alive_skips_a_configured_proxy(ray_session):
    address = ray_session.get_runtime_context().gcs_address
    proxy = _BlackholeProxy()
    try:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
            env[k] = proxy.url
        code = (
            "import time\n"
            "from ember.launcher import node_health as nh\n"
            "t = time.monotonic()\n"
            f"alive = nh.query_alive({address!r})\n"
            "print(alive, time.monotonic() - t)\n"
        )
        # (a stalled ray.init would end on Ray's own timeout; the subprocess limit backs it)
        p = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr[-2000:]
        alive, seconds = p.stdout.split("\n")[-2].rsplit(" ", 1)
        assert alive.startswith("{") and "True" in alive, p.stdout
        assert not proxy.conns, "a connection went to the proxy"
        assert float(seconds) < 6.0, seconds  # ~1 s direct; ~11 s through the proxy before
    finally:
        proxy.close()
