"""Extra Ray nodes that a test can add to and take away from the session's local cluster.

Each node is a second raylet on this machine, joined to the running cluster's GCS, with no CPUs
and one unit of a custom resource that only the test's workers ask for: "a host" that holds one
worker. ``remove`` stops its raylet gracefully, so the GCS marks the node dead at once and the
actors on it die, as when a machine leaves the cluster.
"""

from __future__ import annotations

import os
import socket
import threading
import time


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlotNodes:
    """Nodes offering ``{resource: 1}`` each, on the Ray that the driver is connected to."""

    def __init__(self, resource: str):
        self.resource = resource
        self.nodes: dict[str, object] = {}  # node id -> ray._private.node.Node

    def add(self, timeout: float = 120.0, tries: int = 3) -> str:
        """Start one more node; return its id once the cluster offers its resource."""
        for attempt in range(tries):
            try:
                return self._add(timeout)
            except Exception:  # noqa: BLE001 - a raylet that a loaded machine starts too slowly
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def _add(self, timeout: float) -> str:
        import ray
        from ray._private.node import Node
        from ray._private.parameter import RayParams

        head = ray._private.worker.global_worker.node
        before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        # fixed agent ports: the raylet then need not wait for its agents to write port files
        # (a wait that a loaded machine can exceed)
        ports = _free_ports(4)
        params = RayParams(
            metrics_agent_port=ports[0],
            metrics_export_port=ports[1],
            dashboard_agent_listen_port=ports[2],
            runtime_env_agent_port=ports[3],
            gcs_address=head.gcs_address,
            node_ip_address=head.node_ip_address,
            session_name=head.session_name,
            num_cpus=0,
            num_gpus=0,
            resources={self.resource: 1},
            object_store_memory=80 * 1024 * 1024,
        )
        # a loaded machine starts the node's agent slowly; the raylet would give up on it
        saved = os.environ.get("RAY_agent_register_timeout_ms")
        os.environ["RAY_agent_register_timeout_ms"] = "120000"
        try:
            node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
        finally:
            if saved is None:
                os.environ.pop("RAY_agent_register_timeout_ms", None)
            else:
                os.environ["RAY_agent_register_timeout_ms"] = saved
        deadline = time.time() + timeout
        while True:
            new = {n["NodeID"] for n in ray.nodes() if n["Alive"]} - before
            if new and ray.cluster_resources().get(self.resource, 0) >= len(self.nodes) + 1:
                break
            if time.time() > deadline:
                raise TimeoutError(f"the added node never offered {self.resource}")
            time.sleep(0.1)
        node_id = node.node_id
        self.nodes[node_id] = node
        return node_id

    def remove(self, node_id: str) -> None:
        node = self.nodes.pop(node_id)
        node.kill_all_processes(check_alive=False, allow_graceful=True)

    def remove_all(self) -> None:
        for node_id in list(self.nodes):
            self.remove(node_id)


class Host:
    """The test's side of the run: adds a host when rank 0 asks, removes the host of the
    worker that asks (a thread beside ``fit()``)."""

    def __init__(self, nodes, markers: str):
        self.nodes, self.markers = nodes, markers
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _path(self, name):
        return os.path.join(self.markers, name)

    def _run(self):
        try:
            while not self.stop.is_set():
                if os.path.exists(self._path("grow_request")) and not os.path.exists(
                    self._path("grow_done")
                ):
                    try:
                        self.nodes.add()
                    finally:  # (also when it failed: the run goes on and the test reports it)
                        open(self._path("grow_done"), "w").close()
                lose = self._path("lose_request")
                if os.path.exists(lose) and not os.path.exists(self._path("lose_done")):
                    with open(lose) as f:  # "NODE_ID PID", or empty: the newest node
                        said = f.read().split()
                    node = said[0] if said else list(self.nodes.nodes)[-1]
                    self.nodes.remove(node)
                    open(self._path("lose_done"), "w").close()
                time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


class CpuHost:
    """The single-node stand-in for hosts joining and leaving: placement groups of one CPU
    ("hogs") hold the CPUs that the run must not use. ``grow_request`` frees one hog (room
    for one more worker); ``lose_request`` (holding a worker's pid) reserves one CPU *before*
    killing that worker, so that the CPU its group frees goes to the hog (Ray places pending
    groups in order) and the group re-forms smaller, as after a node loss."""

    def __init__(self, markers: str, free_slots: int):
        self.markers, self.free_slots = markers, free_slots
        self.hogs: list = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _path(self, name):
        return os.path.join(self.markers, name)

    def _hog(self, wait: bool):
        import ray
        from ray.util.placement_group import placement_group

        pg = placement_group([{"CPU": 1}])
        self.hogs.append(pg)
        if wait and not ray.get(pg.ready(), timeout=60):
            raise TimeoutError("a one-CPU placement group never became ready")
        return pg

    def _run(self):
        import signal

        from ray.util.placement_group import remove_placement_group

        try:
            while not self.stop.is_set():
                if os.path.exists(self._path("grow_request")) and not os.path.exists(
                    self._path("grow_done")
                ):
                    try:
                        remove_placement_group(self.hogs.pop())
                        _wait_for_cpus(1)
                    finally:
                        open(self._path("grow_done"), "w").close()
                lose = self._path("lose_request")
                if os.path.exists(lose) and not os.path.exists(self._path("lose_done")):
                    with open(lose) as f:  # "NODE_ID PID"
                        pid = int(f.read().split()[1])
                    self._hog(wait=False)  # pending: first in line for the freed CPU
                    os.kill(pid, signal.SIGKILL)
                    open(self._path("lose_done"), "w").close()
                time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def __enter__(self):
        import ray

        # hold every CPU but free_slots, until that has held for 2 s: a previous test's
        # actors may still be releasing theirs, and a CPU freed after the count would let the
        # run grow before it is asked to (seen in CI: world sizes [1, 2, 2, 2, 1, 1])
        stable_since = time.time()
        while time.time() - stable_since < 2.0:
            extra = int(ray.available_resources().get("CPU", 0)) - self.free_slots
            for _ in range(extra):
                self._hog(wait=True)
            if extra > 0:
                stable_since = time.time()
            time.sleep(0.1)
        _wait_for_cpus(self.free_slots, exact=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        from ray.util.placement_group import remove_placement_group

        self.stop.set()
        self.thread.join(timeout=30)
        for pg in self.hogs:
            remove_placement_group(pg)


def _wait_for_cpus(n: int, exact: bool = False, timeout: float = 30.0) -> None:
    """Until Ray's view has ``n`` CPUs available (``exact``: no more), so that the run sizes
    its group on the intended room."""
    import ray

    deadline = time.time() + timeout
    while True:
        free = int(ray.available_resources().get("CPU", 0))
        if free == n or (free >= n and not exact):
            return
        if time.time() > deadline:
            raise TimeoutError(f"{free} CPUs available, expected {n}")
        time.sleep(0.1)
