"""Link-cut scenarios between two network namespaces (two "hosts"), shared by the chaos tests and
``benchmarks/chaos.py``.

Two ranks, one per namespace, run a small data-parallel training loop (gradients averaged with
``all_reduce``) over the socket data plane. Mid-run every packet on the veth pair is dropped with
an nftables rule in both namespaces (no RST, no interface event: a silent partition, as a failed
switch or a cable pulled mid-route looks), then the rule is removed. ``run_scenario`` reports what
happened: both ranks' exit codes and errors, the time from the cut to the first failure, the
bytes left behind in ``/dev/shm`` and the temp directory, and the final weights, which the tests
compare with ``reference_weights`` (the same loop computed in one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "distributed"))
from dist_harness import free_port  # noqa: E402
from netns import ADDRS, NetnsPair, available  # noqa: E402

__all__ = ["ADDRS", "NetnsPair", "Outcome", "available", "reference_weights", "run_scenario"]

STEPS = 16
STEP_SLEEP = 0.1  # seconds per step: the loop spans the cut

RANK_CODE = r"""
import json, os, sys, time
import numpy as np
import ember, ember.distributed as dist
rank = int(os.environ["RANK"])
steps, pause = int(os.environ["CHAOS_STEPS"]), float(os.environ["CHAOS_SLEEP"])
dim = int(os.environ.get("CHAOS_DIM", "32"))
dist.init_process_group("grpc", timeout=120)
print("READY", flush=True)
ember.manual_seed(0)
model = ember.nn.Linear(64, dim)
opt = ember.optim.SGD(model.parameters(), lr=0.05)
rng = np.random.default_rng(rank)
try:
    for step in range(steps):
        x = ember.from_numpy(rng.standard_normal((16, 64)).astype(np.float32))
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad.div_(2)
        opt.step()
        print("STEP", step, flush=True)
        time.sleep(pause)
except Exception as e:
    print("ERROR", json.dumps(f"{type(e).__name__}: {e}"), flush=True)
    os._exit(3)
dist.barrier()
dist.destroy_process_group()
print("DONE", json.dumps({n: p.detach().numpy().tobytes().hex()
                          for n, p in model.named_parameters()}), flush=True)
"""


def reference_weights(steps: int = STEPS, dim: int = 32) -> dict[str, str]:
    """The loop of ``RANK_CODE`` for both ranks in one process, without a network: what an
    uninterrupted run must end with, bit for bit (a two-rank sum is the same in either order).
    ``dim``: the model's output features (``CHAOS_DIM``). BLAS runs on one thread, as in the
    ranks (``OMP_NUM_THREADS=1``): a multi-threaded matmul of a larger model rounds otherwise."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if dim > 32:  # small matmuls run on one thread anyway
            raise RuntimeError(
                f"reference_weights(dim={dim}) needs threadpoolctl to run BLAS on one thread"
            ) from None
        return _reference(steps, dim)
    import numpy  # noqa: F401  (threadpoolctl limits the BLAS libraries already loaded)

    import ember  # noqa: F401

    with threadpool_limits(1):
        return _reference(steps, dim)


def _reference(steps: int, dim: int) -> dict[str, str]:
    import numpy as np

    import ember

    models, opts, rngs = [], [], []
    for rank in (0, 1):
        ember.manual_seed(0)
        models.append(ember.nn.Linear(64, dim))
        opts.append(ember.optim.SGD(models[-1].parameters(), lr=0.05))
        rngs.append(np.random.default_rng(rank))
    for _ in range(steps):
        for m, o, rng in zip(models, opts, rngs):
            x = ember.from_numpy(rng.standard_normal((16, 64)).astype(np.float32))
            o.zero_grad()
            (m(x) ** 2).mean().backward()
        for p0, p1 in zip(models[0].parameters(), models[1].parameters()):
            total = p0.grad + p1.grad
            p0.grad.copy_(total.div(2))
            p1.grad.copy_(total.div(2))
        for o in opts:
            o.step()
    return {n: p.detach().numpy().tobytes().hex() for n, p in models[0].named_parameters()}


@dataclass
class Outcome:
    cut_s: float
    grace_s: float | None
    returncodes: list[int] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    weights: list[dict | None] = field(default_factory=list)
    detect_s: float | None = None  # from the start of the cut to the first rank's error
    resume_s: float | None = None  # from the link's return to rank 0's next finished step
    leaked_bytes: int = 0
    wall_s: float = 0.0
    step_s: float | None = None  # rank 0's mean time between steps (after the first 2)
    lost: int | None = None  # the side whose host was lost (``lose``)

    @property
    def survived(self) -> bool:
        return self.returncodes == [0, 0] and all(w is not None for w in self.weights)


def _kill_namespace(pair: NetnsPair, side: int) -> None:
    """SIGKILL every process in namespace ``side`` (the host is gone)."""
    r = subprocess.run(["ip", "netns", "pids", pair.ns[side]], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass


def _cut(pair: NetnsPair, side: int, on: bool, how: str) -> None:
    if how == "down":  # the interface goes down (its routes go with it), then comes back up
        state = "down" if on else "up"
        subprocess.run(
            ["ip", "-n", pair.ns[side], "link", "set", pair.dev[side], state],
            check=True,
            capture_output=True,
        )
        return
    if on:
        rules = (
            "table inet ember_cut {\n"
            '  chain input { type filter hook input priority 0; iifname != "lo" drop; }\n'
            '  chain output { type filter hook output priority 0; oifname != "lo" drop; }\n'
            "}\n"
        )
        cmd = ["nft", "-f", "-"]
    else:
        rules, cmd = None, ["nft", "delete", "table", "inet", "ember_cut"]
    subprocess.run(
        ["ip", "netns", "exec", pair.ns[side], *cmd],
        input=rules,
        text=True,
        check=True,
        capture_output=True,
    )


def _footprint(tmp: str, pids: list[int]) -> dict[str, int]:
    """Sizes of the ranks' files in /dev/shm (ember names them by pid, see _shm_reclaim.py;
    other processes' files are not counted) and of everything in their temp directory."""
    sizes = {}
    tags = tuple(f"-{pid}-" for pid in pids)
    for root in ("/dev/shm", tmp):
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if root == "/dev/shm" and not any(t in f for t in tags):
                    continue
                path = os.path.join(dirpath, f)
                try:
                    sizes[path] = os.stat(path).st_blocks * 512
                except OSError:
                    pass
    return sizes


def run_scenario(
    pair: NetnsPair,
    cut_s: float,
    grace_s: float | None = None,
    cut_after_step: int = 3,
    steps: int = STEPS,
    timeout: float = 120.0,
    how: str = "drop",
    dim: int = 32,
    sleep: float = STEP_SLEEP,
    lose: int | None = None,
) -> Outcome:
    """Start the two ranks, cut the link for ``cut_s`` seconds once rank 0 has done
    ``cut_after_step`` steps (``cut_s=0``: no cut), wait for both, and report. ``how``:
    ``"drop"`` (nftables drops every packet) or ``"down"`` (``ip link set down``).
    ``dim``: the model's output features; ``sleep``: seconds each rank sleeps after a step.
    ``lose=side``: at the cut, the host of namespace ``side`` is lost for good: the link is
    cut (and never restored) and every process in that namespace is SIGKILLed, so no FIN or RST
    reaches the other side; ``cut_s`` is then ignored. Faults present from the start (packet
    loss, bandwidth caps: ``NetnsPair.packet_loss`` / ``bandwidth_cap``) are set on ``pair``
    before the call."""
    if how not in ("drop", "down"):
        raise ValueError(f"how must be 'drop' or 'down', got {how!r}")
    if lose not in (None, 0, 1):
        raise ValueError(f"lose must be None, 0 or 1, got {lose!r}")
    out = Outcome(cut_s, grace_s, lost=lose)
    tmp = tempfile.mkdtemp(prefix="ember-chaos-")
    port = free_port()
    lines: list[list[str]] = [[], []]
    reached = threading.Event()
    first_error = [None]
    step_times: list[float] = []
    procs = []
    t_start = time.monotonic()
    for rank in (0, 1):
        env = {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": ADDRS[0],
            "MASTER_PORT": str(port),
            "EMBER_TOKEN": "chaos-token",
            "OMP_NUM_THREADS": "1",
            "CHAOS_STEPS": str(steps),
            "CHAOS_SLEEP": str(sleep),
            "CHAOS_DIM": str(dim),
            "TMPDIR": tmp,
        }
        if grace_s is not None:
            env["EMBER_NET_GRACE_S"] = str(grace_s)
        procs.append(
            pair.popen(
                rank,
                [sys.executable, "-c", RANK_CODE],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    def read(rank: int) -> None:
        for line in procs[rank].stdout:
            lines[rank].append(line)
            if line.startswith("STEP") and rank == 0:
                step_times.append(time.monotonic())
                if line.startswith(f"STEP {cut_after_step}"):
                    reached.set()
            if line.startswith("ERROR") and first_error[0] is None:
                first_error[0] = time.monotonic()

    readers = [threading.Thread(target=read, args=(r,), daemon=True) for r in (0, 1)]
    for t in readers:
        t.start()
    t_cut = t_back = None
    try:
        if lose is not None:
            if not reached.wait(timeout / 2):
                raise RuntimeError(f"the ranks never reached step {cut_after_step}: {lines}")
            t_cut = time.monotonic()
            for side in (0, 1):  # first the link: the dying processes' FINs never leave
                _cut(pair, side, True, how)
            _kill_namespace(pair, lose)
        elif cut_s > 0:
            if not reached.wait(timeout / 2):
                raise RuntimeError(f"the ranks never reached step {cut_after_step}: {lines}")
            t_cut = time.monotonic()
            for side in (0, 1):
                _cut(pair, side, True, how)
            # sleep in small steps so a run that fails early is not waited for
            while time.monotonic() - t_cut < cut_s and any(p.poll() is None for p in procs):
                time.sleep(0.05)
            for side in (0, 1):
                _cut(pair, side, False, how)
            t_back = time.monotonic()
        for p in procs:
            p.wait(max(1.0, timeout - (time.monotonic() - t_start)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for t in readers:
            t.join(5)
    out.wall_s = time.monotonic() - t_start
    for rank, p in enumerate(procs):
        out.returncodes.append(p.returncode)
        err = next((json.loads(x[6:]) for x in lines[rank] if x.startswith("ERROR ")), None)
        if err is None and p.returncode != 0:
            err = "".join(lines[rank])[-2000:]
        out.errors.append(err)
        done = next((json.loads(x[5:]) for x in lines[rank] if x.startswith("DONE ")), None)
        out.weights.append(done)
    if first_error[0] is not None and t_cut is not None:
        out.detect_s = first_error[0] - t_cut
    if t_back is not None:
        out.resume_s = next((t - t_back for t in step_times if t > t_back), None)
    if len(step_times) > 3:  # the mean: a lossy link's cost is in rare stalls (TCP's RTO)
        out.step_s = (step_times[-1] - step_times[2]) / (len(step_times) - 3)
    out.leaked_bytes = sum(_footprint(tmp, [p.pid for p in procs]).values())
    subprocess.run(["rm", "-rf", tmp])
    return out
