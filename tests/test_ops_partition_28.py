"""Issue #28 item 7: `ember up` after a partition (a worker node DEAD in Ray while its
processes still run) and the launcher's note on a lost worker's node ("unreachable" vs "Ray
processes are gone")."""

from __future__ import annotations

import errno
import socket

import pytest

from ember.launcher import _node_reach as nr
from ember.launcher import local_cluster
from ember.launcher import node_health as nh
from ember.launcher.config import load

H = nh.HostCheck


@pytest.mark.parametrize(
    "check, action",
    [
        (H("10.0.0.2", True, True), nh.OK),
        (H("10.0.0.2", True, False), nh.RESTART),  # the partition case: was "already up"
        (H("10.0.0.2", True, None), nh.OK),  # head not asked: trust the processes (as before)
        (H("10.0.0.2", False, True), nh.START),
        (H("10.0.0.2", False, False), nh.START),
        (H("10.0.0.2", None, False, "ssh: no route"), nh.MANUAL),
        (H("10.0.0.2", None, None, "ssh: no route"), nh.MANUAL),
        (H("10.0.0.2", None, True, "ssh: no route"), nh.OK),  # Ray has it Alive
    ],
)
def test_decide(check, action):
    assert nh.decide(check) == action
    assert check.ip in nh.reason(check)


def test_alive_by_ip_any_alive_entry_counts():
    nodes = [
        {"NodeManagerAddress": "10.0.0.1", "Alive": True},
        {"NodeManagerAddress": "10.0.0.2", "Alive": False},  # before the restart
        {"NodeManagerAddress": "10.0.0.2", "Alive": True},  # after it
        {"NodeManagerAddress": "10.0.0.3", "Alive": False},
    ]
    assert nh.alive_by_ip(nodes) == {"10.0.0.1": True, "10.0.0.2": True, "10.0.0.3": False}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(
        "cluster_name: part28\n"
        "provider: {type: local, head_ip: 127.0.0.1, worker_ips: [10.77.0.2, 10.77.0.3]}\n"
        "ember: {workers_per_node: 1, temp_dir: /tmp/e28}\n"  # nothing is created there
    )
    return load(str(path))


class _FakeHost:
    def __init__(self, running):
        self.running = running

    def processes(self, sid):
        if self.running is None:
            raise local_cluster.HostError("host 10.77.0.3: cannot reach it over ssh (timeout)")
        return [123] if self.running else []


@pytest.mark.parametrize(
    "worker2", ["dead_running", "alive_running", "absent_running", "unreachable_dead"]
)
def test_up_restarts_dead_nodes(cfg, monkeypatch, worker2):
    """`ember up` on a running cluster: a worker whose node the head has DEAD but whose
    processes still run is stopped and started again; an unreachable one gets the command."""
    ips = ["127.0.0.1", "10.77.0.2", "10.77.0.3"]
    state = {
        "name": "part28",
        "head": "127.0.0.1:6379",
        "hosts": [
            {"ip": ip, "role": "head" if i == 0 else "worker", "sid": 10 + i}
            for i, ip in enumerate(ips)
        ],
    }
    running = {"127.0.0.1": True, "10.77.0.2": True, "10.77.0.3": True}
    alive = {"127.0.0.1": True, "10.77.0.2": True, "10.77.0.3": True}
    if worker2 == "dead_running":
        alive["10.77.0.3"] = False
    elif worker2 == "unreachable_dead":
        running["10.77.0.3"], alive["10.77.0.3"] = None, False
    elif worker2 == "absent_running":  # an address Ray does not list: not taken for DEAD
        del alive["10.77.0.3"]
    monkeypatch.setattr(local_cluster, "host_from_state", lambda e: _FakeHost(running[e["ip"]]))
    monkeypatch.setattr(nh, "query_alive", lambda address: alive)
    stopped, started, lines = [], [], []
    monkeypatch.setattr(
        local_cluster, "stop_host", lambda e, out, grace=5.0: stopped.append(e["ip"])
    )
    monkeypatch.setattr(
        local_cluster,
        "_start_host",
        lambda cfg, host, setup, start, *a: started.append((host.ip, start)),
    )
    steps = local_cluster.plan(cfg)
    out = local_cluster._complete(cfg, state, steps, {}, None, lines.append, 10)
    text = "\n".join(lines)
    if worker2 in ("alive_running", "absent_running"):
        assert not stopped and not started and "already up" in text
    elif worker2 == "dead_running":
        assert stopped == ["10.77.0.3"] and [ip for ip, _ in started] == ["10.77.0.3"]
        assert "DEAD" in text and "already up" not in text
        assert "--address=127.0.0.1:" in " ".join(started[0][1])
        assert [h["ip"] for h in out["hosts"]] == ["127.0.0.1", "10.77.0.2"]
    else:
        assert not stopped and not started and "already up" not in text
        assert "unreachable" in text and "ray start" in text and "10.77.0.3" in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "exc", [TimeoutError("timed out"), OSError(errno.EHOSTUNREACH, "No route to host")]
)
def test_probe_unreachable(monkeypatch, exc):
    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(socket, "create_connection", fail)
    assert nr.probe("10.77.0.3", 1234) == nr.UNREACHABLE
    nodes = [{"NodeID": "n", "Alive": False, "NodeManagerPort": 1234}]
    note = nr.lost_note(nodes, "n", "10.77.0.3")
    assert "unreachable" in note and "gone" not in note and "may still be running" in note


def test_probe_and_notes():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert nr.probe("127.0.0.1", port) == nr.ANSWERS
        nodes = [{"NodeID": "n1", "Alive": False, "NodeManagerPort": port}]
        note = nr.lost_note(nodes, "n1", "127.0.0.1")
        assert "DEAD" in note and "still run" in note and "gone" not in note
    assert nr.probe("127.0.0.1", _closed_port()) == nr.REFUSED
    nodes = [{"NodeID": "n1", "Alive": False, "NodeManagerPort": _closed_port()}]
    assert "Ray processes are gone" in nr.lost_note(nodes, "n1", "127.0.0.1")
    note = nr.describe("192.0.2.1", True, nr.UNREACHABLE)
    assert "unreachable" in note and "gone" not in note and "may still be running" in note
    assert nr.lost_note(nodes, "other-node", "127.0.0.1") == ""
