"""What the launcher says about a worker's node after the worker died (issue #28 item 7).

Ray marks a node DEAD when its head stops hearing from it: after a network partition as well
as after the node's Ray processes exited. Those differ for the operator (wait for the network,
or restart Ray there), so the launcher probes the node's raylet port from the driver:

- connection refused: the host answers but nothing listens: its Ray processes are gone;
- connected: the raylet still runs (cut off from the head, not from here);
- no answer (timeout, no route): the host is unreachable; its processes may still run.
"""

from __future__ import annotations

import errno
import socket

ANSWERS, REFUSED, UNREACHABLE = "answers", "refused", "unreachable"


def probe(ip: str, port: int | None, timeout: float = 2.0) -> str:
    """``ANSWERS``, ``REFUSED`` or ``UNREACHABLE`` for a TCP connect to ``ip:port``."""
    if not port:
        return UNREACHABLE
    try:
        with socket.create_connection((ip, int(port)), timeout=timeout):
            return ANSWERS
    except ConnectionRefusedError:
        return REFUSED
    except OSError as e:
        return REFUSED if e.errno == errno.ECONNREFUSED else UNREACHABLE


def describe(ip: str, dead: bool, reach: str) -> str:
    """The note after "worker rank R on node IP died" (empty when there is nothing to add)."""
    if reach == REFUSED:
        if dead:
            return f" (node {ip} was lost: the host answers but its Ray processes are gone)"
        return f" (node {ip}: the host answers but its raylet does not: Ray processes exited)"
    if reach == UNREACHABLE:
        state = "Ray marked it DEAD" if dead else "Ray has not marked it DEAD yet"
        return (
            f" (node {ip} is unreachable from here and {state}: a network partition or a "
            "host failure; its Ray processes may still be running there)"
        )
    if dead:
        return (
            f" (Ray marked node {ip} DEAD, but its raylet still answers from here: the head "
            "lost contact with it (a partition); its Ray processes still run)"
        )
    return ""


def lost_note(nodes: list[dict], node_id: str, ip: str, timeout: float = 2.0) -> str:
    """The note for a worker that died on node ``node_id`` (``nodes``: ``ray.nodes()``)."""
    entry = next((n for n in nodes if n.get("NodeID") == node_id), None)
    if entry is None:
        return ""
    dead = not entry.get("Alive")
    return describe(ip, dead, probe(ip, entry.get("NodeManagerPort"), timeout))
