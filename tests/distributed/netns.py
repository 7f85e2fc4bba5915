"""Two network namespaces joined by a veth pair: a two-"host" network on one machine.

Addresses 10.77.0.1/24 and 10.77.0.2/24 live only on that link (DESIGN.md section 6): traffic
goes to the namespaces' own addresses or loopback, nowhere else. Faults: random packet loss
with an nftables ``numgen random`` drop rule, bandwidth caps with ``tc qdisc ... tbf``
(``tc netem`` is not available on these kernels). Everything made here is removed by
``close()``; only processes started through ``popen`` are ever stopped.

Used by tests/distributed/test_multinode.py and benchmarks/collectives.py (``--netns``); needs
root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ADDRS = ("10.77.0.1", "10.77.0.2")


def available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"ember-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def _run(*cmd: str, stdin: str | None = None) -> None:
    r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


class NetnsPair:
    """``ns[0]`` holds ``ADDRS[0]`` on its end of the veth, ``ns[1]`` holds ``ADDRS[1]``."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = (f"ember-a-{tag}", f"ember-b-{tag}")
        self.dev = (f"emva{tag}", f"emvb{tag}")  # interface names: at most 15 characters
        self._procs: list[subprocess.Popen] = []
        self._made: list[str] = []
        try:
            for ns in self.ns:
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
            _run("ip", "link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1])
            for ns, dev, addr in zip(self.ns, self.dev, ADDRS):
                _run("ip", "link", "set", dev, "netns", ns)
                _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def popen(self, side: int, argv: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``side`` (0 or 1)."""
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[side], *argv], env={**os.environ, **(env or {})}, **kw
        )
        self._procs.append(p)
        return p

    def python(self, side: int, code: str, env: dict | None = None) -> subprocess.Popen:
        return self.popen(
            side,
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def packet_loss(self, side: int, percent: int) -> None:
        """Drop ``percent``% of packets entering and leaving namespace ``side`` at random."""
        rules = f"""
table inet ember_loss {{
  chain input {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}
  chain output {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}
}}
"""
        _run("ip", "netns", "exec", self.ns[side], "nft", "-f", "-", stdin=rules)

    def bandwidth_cap(self, side: int, rate: str = "200mbit") -> None:
        """Token-bucket cap on what namespace ``side`` sends."""
        _run(
            "ip",
            "netns",
            "exec",
            self.ns[side],
            "tc",
            "qdisc",
            "add",
            "dev",
            self.dev[side],
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "256kb",
            "latency",
            "100ms",
        )

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for ns in self._made:  # deleting a namespace removes its end of the veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()

    def __enter__(self) -> NetnsPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
