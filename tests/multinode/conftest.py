"""A real two-host Ray cluster for the multi-node tests: two network namespaces joined by a veth
pair (10.78.0.1 and 10.78.0.2, a range used only on that link), a Ray head in one, a Ray worker
in the other, both started by ``ember up``'s local provider through an ``ip netns exec`` prefix.

Teardown stops exactly the processes ``ember up`` started (by session id and temp dir, never
``ray stop``), checks that none survived, removes the namespaces and the temp dir — also when a
test failed. All traffic stays on the veth pair or loopback: the namespaces have no other route,
and every driver (``ember launch``, ``ember submit``) runs inside the head's namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

from ember.launcher import local_cluster
from ember.launcher.config import load
from ember.launcher.netns import NetnsPair, head_env, write_config

SUBNET = "10.78.0"  # engineer F's collective test uses 10.77.x: a different link, no clash
# Let Ray's GCS notice a lost node within seconds rather than the default ~15-30 s.
HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass
class Cluster:
    pair: NetnsPair
    config: str
    root: str
    env: dict = field(default_factory=dict)

    def run(self, *cmd, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
        """Run a command in the head's namespace as a driver of the cluster."""
        return subprocess.run(
            self.pair.prefix(self.pair.head_ns) + list(cmd),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def ember(self, *args, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "ember.launcher.cli", *args, timeout=timeout, **kw)

    def popen_ember(self, *args) -> Streamed:
        return self.popen_run(sys.executable, "-m", "ember.launcher.cli", *args)

    def popen_run(self, *cmd) -> Streamed:
        """Start a command in the head's namespace as a driver; its output is collected."""
        proc = subprocess.Popen(
            self.pair.prefix(self.pair.head_ns) + list(cmd),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Streamed(proc)

    def state(self) -> dict:
        return local_cluster.read_state(self.pair.name)

    def worker_entry(self) -> dict:
        return next(h for h in self.state()["hosts"] if h["role"] == "worker")

    def crash_worker_host(self) -> list:
        """SIGKILL every Ray process of the worker host at once, as a machine loss would."""
        return local_cluster.stop_host(self.worker_entry(), out=lambda *_: None, grace=0)

    def ensure_up(self) -> None:
        """(Re)start Ray on any host where it is not running (``ember up`` is idempotent).

        Runs ``ember up`` inside the head's namespace, as a user on the head would: a running
        cluster's ``up`` asks the head which nodes are alive, and from this (root) namespace the
        head's address is not the head. On a machine whose default route accepts any TCP
        connection (a transparent proxy, as on CI) the address looks reachable, and Ray's driver
        then retried the proxy's HTTP 404 for ~20 s on every call before giving up.
        """
        r = self.ember("up", self.config, timeout=240)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


class Streamed:
    """A running command whose output lines are collected as they arrive."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(s, b), daemon=True)
            for s, b in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, buf) -> None:
        for line in stream:
            buf.append(line)

    def wait_for(self, predicate, timeout: float) -> None:
        deadline = time.time() + timeout
        while not predicate("".join(self.out)):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(
                    f"never saw the expected output; stdout:\n"
                    f"{''.join(self.out)[-3000:]}\nstderr:\n"
                    f"{''.join(self.err)[-3000:]}"
                )
            time.sleep(0.1)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        return code, "".join(self.out), "".join(self.err)


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


@pytest.fixture(scope="session")
def netns_cluster():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and `ip netns`")
    pair = NetnsPair(f"eg{os.getpid() % 100000}", SUBNET)
    root = tempfile.mkdtemp(prefix="em", dir="/tmp")  # short: Ray's socket paths live under it
    state_dir = os.path.join(root, "state")
    saved = os.environ.get("EMBER_STATE_DIR")
    os.environ["EMBER_STATE_DIR"] = state_dir
    os.makedirs(state_dir)
    config = write_config(
        pair, os.path.join(root, "cluster.yaml"), temp_root=root, cpus_per_node=2, env=HEALTH_CHECKS
    )
    pair.create()
    try:
        local_cluster.up(load(config), out=lambda *_: None)
        env = {**head_env(config), "EMBER_STATE_DIR": state_dir}
        env.pop("RAY_API_SERVER_ADDRESS", None)
        yield Cluster(pair, config, root, env)
    finally:
        state = local_cluster.read_state(pair.name)
        if state:
            local_cluster.down_state(state, out=lambda *_: None, grace=3.0)
        survivors = _pids_mentioning(root + "/")
        for pid in survivors:  # a last resort, by PID, so that the machine stays clean
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pair.destroy()
        shutil.rmtree(root, ignore_errors=True)
        if saved is None:
            os.environ.pop("EMBER_STATE_DIR", None)
        else:
            os.environ["EMBER_STATE_DIR"] = saved
        assert not pair.exists(), "the namespaces were not removed"
        assert not survivors, f"processes outlived `ember down`: {survivors}"
