"""Which hosts of a running local cluster need their Ray restarted (issue #28 item 7).

After a network partition the head's GCS marks a cut-off worker node DEAD, while that host's
raylet may still run (it was cut off, not killed). Checking the host's processes alone then
says "already up". ``ember up`` therefore asks both sources, per host:

- the host itself: are the Ray processes of the recorded session running (or is the host
  unreachable)?
- the head (``ray.nodes()``): is a node with that address Alive?

and :func:`decide` turns the two answers into one action per host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hosts import Host

# actions
OK = "ok"  # processes running and the node Alive in Ray
START = "start"  # no Ray processes on the host: start them
RESTART = "restart"  # processes run but Ray has the node DEAD: stop them, start anew
MANUAL = "manual"  # the host cannot be reached from here: the user must run the command


@dataclass(frozen=True)
class HostCheck:
    """What is known about one worker host: ``running`` is True/False, or None when the host
    could not be reached (``error`` says why); ``alive`` is the node's Alive flag in Ray, or
    None when the head could not be asked or does not list the address."""

    ip: str
    running: bool | None
    alive: bool | None
    error: str = ""


def decide(check: HostCheck) -> str:
    """The action for one worker host (see the module docstring)."""
    if check.running is None:
        return OK if check.alive else MANUAL
    if not check.running:
        return START
    if check.alive is False:
        return RESTART
    return OK  # Alive, or Ray could not be asked: trust the processes


def reason(check: HostCheck) -> str:
    """One line on why :func:`decide` chose its action, for ``ember up``'s output."""
    action = decide(check)
    ray_says = {True: "Alive", False: "DEAD", None: "unknown to the head"}[check.alive]
    if action == START:
        return f"{check.ip}: no Ray processes running (Ray: {ray_says}); starting Ray"
    if action == RESTART:
        return (
            f"{check.ip}: Ray's head has this node DEAD (e.g. after a network partition) while "
            "its Ray processes still run; stopping them and starting Ray again"
        )
    if action == MANUAL:
        return f"{check.ip}: node {ray_says} in Ray and the host is unreachable ({check.error})"
    return f"{check.ip}: running, node {ray_says}"


def alive_by_ip(nodes: list[dict]) -> dict[str, bool]:
    """``ray.nodes()`` reduced to address -> Alive. A host restarted after a partition has its
    old DEAD entry and a new Alive one under the same address: any Alive entry counts."""
    out: dict[str, bool] = {}
    for n in nodes:
        ip = n.get("NodeManagerAddress")
        if ip:
            out[ip] = out.get(ip, False) or bool(n.get("Alive"))
    return out


def query_alive(address: str) -> dict[str, bool] | None:
    """Address -> Alive for every node the head at ``address`` knows; None if it cannot be
    asked (then ``ember up`` decides from the hosts' processes alone, as before)."""
    from .up import proxy_bypassed, reachable

    if not reachable(address, timeout=2.0):
        return None
    import ray

    if ray.is_initialized():  # this process is already some cluster's driver: do not disturb
        return None
    try:
        # the head is asked directly, never through an HTTP proxy in the environment
        with proxy_bypassed(address):
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level="error",
                log_to_driver=False,
            )
            try:
                return alive_by_ip(ray.nodes())
            finally:
                ray.shutdown()
    except Exception:  # noqa: BLE001 - a head that cannot be asked is "unknown", not a failure
        return None


def manual_command(host: Host, start: list, env: dict | None = None) -> str:
    """The exact command line to run (from this machine) to start Ray on ``host`` again."""
    stop = f"(stop the old Ray processes under {host.temp_dir} on {host.ip} first)"
    return f"{shlex.join(host.argv(start, env))}    {stop}"
