"""The network grace period: how long ranks ride out a lost connection before the job fails.

A link that goes silent (a switch reboots, a cable is re-seated, a cloud network blips) must not
kill a job that gloo or NCCL would carry through, and a peer that is really gone must still be
reported, naming it, soon after the grace period ends (issue #28). Within the grace period:

* data connections between hosts stay open: TCP retransmits what was in flight, keepalive probes
  run every second on idle connections, and a retransmission interval capped at 1 s
  (``TCP_RTO_MAX_MS``, Linux 6.15+) makes a connection resume within about a second of the link
  coming back; ``TCP_USER_TIMEOUT`` ends the connection once nothing has been acknowledged for the
  grace period, and the rank waiting on it raises naming the peer (rank, host, address);
* store calls that time out or cannot connect are retried with backoff on a fresh connection
  (a refused or reset connection is not a blip: the master is gone, and that fails at once).

The period is ``EMBER_NET_GRACE_S`` (seconds, default 60) or ``init_process_group(...,
network_grace=...)``; it never extends a collective beyond its own ``timeout``.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from datetime import timedelta

ENV = "EMBER_NET_GRACE_S"
DEFAULT_S = 60.0
_RTO_MAX_MS = 44  # TCP_RTO_MAX_MS (linux/tcp.h, 6.15+); Python has no name for it yet
_RTO_MIN_MS = 200  # Linux's TCP_RTO_MIN

_override: float | None = None


def _parse(value, what: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    try:
        secs = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be a number of seconds or a timedelta, got {value!r}"
        ) from None
    if not secs > 0 or secs != secs or secs == float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {value!r}")
    return secs


def set_grace(value) -> None:
    """Set this process's grace period (``None``: back to ``EMBER_NET_GRACE_S`` or 60 s)."""
    global _override
    _override = None if value is None else _parse(value, "network_grace")


def grace_seconds() -> float:
    """The grace period in seconds (see the module docstring)."""
    if _override is not None:
        return _override
    raw = os.environ.get(ENV)
    return DEFAULT_S if raw in (None, "") else _parse(raw, ENV)


def tune_socket(sock: socket.socket, grace: float | None = None) -> None:
    """Keepalive every second, a 1 s cap on the retransmission interval where the kernel has
    one, and a ``grace``-long user timeout on a connected TCP socket."""
    grace = grace_seconds() if grace is None else grace
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 1), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 127)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        # overrides the keepalive count: the connection ends after `grace` s without an ack
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(grace * 1000))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _RTO_MAX_MS, struct.pack("i", rto_cap_ms(grace)))
    except OSError:
        pass  # older kernel: retransmissions back off to up to 120 s, resumption is slower


def _tcp_retries() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_retries2") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 15


@functools.cache
def rto_cap_ms(grace: float, retries: int | None = None) -> int:
    """The smallest cap on the retransmission interval (whole seconds, at least 1) with which
    ``tcp_retries2`` retransmissions still span the grace period: the kernel also ends a
    connection after that many retransmissions, so a 1 s cap would cut a 60 s grace to ~15 s,
    while no cap leaves up to 2 minutes between retransmissions once the link is back."""
    retries = _tcp_retries() if retries is None else retries
    for cap in range(1000, 120_001, 1000):
        total, rto = 0, _RTO_MIN_MS
        for _ in range(retries):
            total += min(rto, cap)
            rto *= 2
        if total >= grace * 1000 + 1000:
            return cap
    return 120_000


def unreachable(grace: float | None = None) -> str:
    """The reason given for a peer whose connection timed out."""
    grace = grace_seconds() if grace is None else grace
    return (
        f"was unreachable over the network for {grace:g} s (no reply on the connection: a "
        f"network partition or the host is down; the grace period is {ENV})"
    )
