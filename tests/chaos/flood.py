"""A local flood against a training job's listeners, shared by the chaos tests and
``benchmarks/chaos.py`` (issue #28).

Two ranks on this machine train a small model with DDP over the socket data plane (backend
``grpc``) in alternating phases, quiet and flooded. During a flooded phase a local process (a
``Flooder``, threads of the caller) holds ``silent`` idle connections open on rank 0's data
listener and on the store, and opens connections that fail the handshake with a wrong token
(``rate`` per second on the data listener, ``store_rate`` bad-token store calls). Each rank
measures its training steps per CPU-second of its own process (the flood's cost to the job
shows up there, whatever else the machine runs) and the wall time per phase. ``run_flood``
returns those figures and the number of refusal lines in the ranks' logs.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "distributed"))
from dist_harness import free_port  # noqa: E402

__all__ = ["FloodOutcome", "Flooder", "run_flood"]

RANK_CODE = r"""
import json, os, sys, time
import numpy as np
import ember, ember.distributed as dist
from ember.distributed._runtime import _state
rank = int(os.environ["RANK"])
phases, steps = int(os.environ["FLOOD_PHASES"]), int(os.environ["FLOOD_STEPS"])
sync = os.environ["FLOOD_SYNC"]
dist.init_process_group("grpc", timeout=120)
tp = _state.world.transports[1 - rank]
print("ADDR", json.dumps({"data": list(tp.address)}), flush=True)
ember.manual_seed(0)
model = dist.DistributedDataParallel(
    ember.nn.Sequential(ember.nn.Linear(256, 512), ember.nn.ReLU(), ember.nn.Linear(512, 10)))
opt = ember.optim.SGD(model.parameters(), lr=0.01)
rng = np.random.default_rng(rank)
x = ember.from_numpy(rng.standard_normal((64, 256)).astype(np.float32))
y = ember.from_numpy(rng.integers(0, 10, 64))
def step():
    opt.zero_grad()
    ember.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(3):
    step()
for phase in range(phases):
    if rank == 0:  # the driver starts or stops the flood, then says go
        print("PHASE", phase, flush=True)
        while not os.path.exists(f"{sync}/go-{phase}"):
            time.sleep(0.01)
    dist.barrier()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    out = {"phase": phase, "cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}
    print("RESULT", json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
print("DONE", flush=True)
"""


class Flooder:
    """Silent connections and bad-token handshakes against ``data`` (host, port) and bad-token
    calls to the store at ``store`` (host, port), until ``stop()``."""

    def __init__(
        self, data, store=None, silent: int = 32, rate: float = 200.0, store_rate: float = 50.0
    ) -> None:
        self.data, self.store = tuple(data), store
        self.silent, self.rate, self.store_rate = silent, rate, store_rate
        self.attempts = self.handshakes = self.refused = self.store_calls = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._held: list[socket.socket] = []

    def start(self) -> Flooder:
        targets = [self.data] + ([tuple(self.store)] if self.store else [])
        for addr in targets:
            for _ in range(self.silent):
                try:
                    self._held.append(socket.create_connection(addr, timeout=2))
                except OSError:
                    pass
        self._threads.append(threading.Thread(target=self._bad_handshakes, daemon=True))
        if self.store and self.store_rate > 0:
            self._threads.append(threading.Thread(target=self._bad_store_calls, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def _bad_handshakes(self) -> None:
        period = 1.0 / self.rate
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.attempts += 1
            try:
                with socket.create_connection(self.data, timeout=2) as s:
                    if len(s.recv(16)) == 16:  # challenged (else closed at once)
                        self.handshakes += 1
                        s.sendall(b"EMB1" + b"\0" * 4 + os.urandom(32))  # a wrong HMAC
                        if s.recv(1) == b"\x00":
                            self.refused += 1
            except OSError:
                pass
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def _bad_store_calls(self) -> None:
        import grpc

        from ember.protos import store_pb2, store_pb2_grpc

        channel = grpc.insecure_channel("{}:{}".format(*self.store))
        stub = store_pb2_grpc.StoreStub(channel)
        period = 1.0 / self.store_rate
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                stub.Get(
                    store_pb2.GetRequest(key="x", timeout_ms=1),
                    metadata=(("x-ember-token", "wrong"),),
                    timeout=2,
                )
            except grpc.RpcError:
                pass
            self.store_calls += 1
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))
        channel.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in self._held:
            s.close()
        self._held.clear()


@dataclass
class FloodOutcome:
    returncodes: list = field(default_factory=list)
    quiet: list = field(default_factory=list)  # per quiet phase: rank 0's steps per CPU-second
    flooded: list = field(default_factory=list)  # per flooded phase: the same
    quiet_wall: list = field(default_factory=list)  # seconds per phase
    flooded_wall: list = field(default_factory=list)
    refusal_lines: int = 0
    attempts: int = 0  # bad-token connections the flooder opened
    handshakes: int = 0  # of which the listener challenged (the others: closed at once)
    store_calls: int = 0
    logs: list = field(default_factory=list)

    @property
    def cpu_ratio(self) -> float:
        """Flooded over quiet throughput (steps per CPU-second; medians of the phases), 1.0 =
        no cost."""
        return statistics.median(self.flooded) / statistics.median(self.quiet)


def _tally(out: FloodOutcome, flooder: Flooder) -> None:
    out.attempts += flooder.attempts
    out.handshakes += flooder.handshakes
    out.store_calls += flooder.store_calls


def run_flood(
    phases: int = 4,
    steps: int = 30,
    silent: int = 32,
    rate: float = 200.0,
    store_rate: float = 50.0,
    timeout: float = 120.0,
) -> FloodOutcome:
    """Train in ``phases`` phases of ``steps`` steps, odd phases flooded; see the module
    docstring."""
    port = free_port()
    sync = tempfile.mkdtemp(prefix="ember-flood-")
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "EMBER_TOKEN": "flood-token",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "FLOOD_PHASES": str(phases),
            "FLOOD_STEPS": str(steps),
            "FLOOD_SYNC": sync,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_CODE],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    out = FloodOutcome()
    lines: list[list[str]] = [[], []]
    flooder = None
    deadline = time.monotonic() + timeout
    data = None

    def pump(rank: int) -> None:
        for line in procs[rank].stdout:
            lines[rank].append(line)

    readers = [threading.Thread(target=pump, args=(r,), daemon=True) for r in (0, 1)]
    for t in readers:
        t.start()
    try:
        for phase in range(phases):
            while not any(x.startswith(f"PHASE {phase}") for x in list(lines[0])):
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError(f"rank 0 never reached phase {phase}: {lines}")
                time.sleep(0.01)
            if data is None:
                data = next(json.loads(x[5:])["data"] for x in lines[0] if x.startswith("ADDR "))
            if phase % 2 and flooder is None:
                flooder = Flooder(data, ("127.0.0.1", port), silent, rate, store_rate).start()
                time.sleep(0.2)  # let the flood reach full rate before the phase starts
            elif not phase % 2 and flooder is not None:
                flooder.stop()
                _tally(out, flooder)
                flooder = None
            open(os.path.join(sync, f"go-{phase}"), "w").close()
        for p in procs:
            p.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if flooder is not None:
            flooder.stop()
            _tally(out, flooder)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for t in readers:
            t.join(5)
        for f in os.listdir(sync):
            os.unlink(os.path.join(sync, f))
        os.rmdir(sync)
    out.returncodes = [p.returncode for p in procs]
    out.logs = ["".join(x) for x in lines]
    results = [
        [json.loads(x[7:]) for x in rank_lines if x.startswith("RESULT ")] for rank_lines in lines
    ]
    for phase in range(phases):
        rows = [r[phase] for r in results if len(r) > phase]
        if len(rows) < 2:
            continue
        rate_cpu = steps / rows[0]["cpu"]  # rank 0: it hosts the store and is flooded
        wall = max(r["wall"] for r in rows)
        (out.flooded if phase % 2 else out.quiet).append(rate_cpu)
        (out.flooded_wall if phase % 2 else out.quiet_wall).append(wall)
    out.refusal_lines = sum(x.count("refused") for x in out.logs)
    return out
