"""Issue #28 item 7 end to end: after a partition cuts the worker host off long enough for the
head to mark its node DEAD, `ember up` restarts Ray there (it used to say "already up" while
the worker's processes still ran), and `ember status` shows both nodes alive again."""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = [pytest.mark.multinode, pytest.mark.full]

HEAD, WORKER = "10.78.0.1", "10.78.0.2"


def _link(cluster, up: bool) -> None:
    pair = cluster.pair
    dev = f"{pair.name[:12]}-w"
    subprocess.run(
        ["ip", "-n", pair.worker_ns, "link", "set", dev, "up" if up else "down"], check=True
    )


def _worker_line(cluster) -> str:
    r = cluster.ember("status", cluster.config, timeout=120)
    lines = [s for s in r.stdout.splitlines() if s.strip().startswith(WORKER) and "CPU" in s]
    return "\n".join(lines) + "\n" + r.stdout[-1500:]


def test_up_restarts_a_node_dead_after_a_partition(netns_cluster):
    netns_cluster.ensure_up()
    _link(netns_cluster, False)
    try:
        deadline = time.time() + 60  # health checks: 3 misses of 1 s (conftest.HEALTH_CHECKS)
        while "alive" in _worker_line(netns_cluster).split("\n")[0]:
            assert time.time() < deadline, "Ray never marked the cut-off worker node DEAD"
            time.sleep(1)
    finally:
        _link(netns_cluster, True)
    entry = netns_cluster.worker_entry()
    r = netns_cluster.ember("up", netns_cluster.config, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "already up" not in r.stdout, r.stdout
    assert WORKER in r.stdout and "Ray started" in r.stdout, r.stdout
    assert netns_cluster.worker_entry()["sid"] != entry["sid"]
    deadline = time.time() + 60
    while "alive" not in _worker_line(netns_cluster).split("\n")[0]:
        assert time.time() < deadline, _worker_line(netns_cluster)
        time.sleep(1)
