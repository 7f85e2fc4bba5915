"""Chaos: a real TCP reset of the data connection between two "hosts" (network namespaces).

Mid-training, ``ss -K`` in rank 1's namespace destroys its data connection to rank 0: the kernel
sends a RST across the veth link (as a middlebox or a conntrack flush would) and both ends see
the connection reset while both processes live on. The ranks reconnect, resend what the other
had not read, and finish with weights bitwise equal to an uninterrupted run (issue #28).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from linkcut import ADDRS, NetnsPair, available, reference_weights

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "distributed"))
from dist_harness import free_port  # noqa: E402

pytestmark = pytest.mark.multinode

STEPS = 12

# the loop of linkcut.reference_weights, printing how many connections each rank replaced
RANK_CODE = r"""
import json, os, sys, time
import numpy as np
import ember, ember.distributed as dist
from ember.distributed._runtime import _state
rank = int(os.environ["RANK"])
dist.init_process_group("grpc", timeout=120)
tp = _state.world.transports[1 - rank]
ember.manual_seed(0)
model = ember.nn.Linear(64, 32)
opt = ember.optim.SGD(model.parameters(), lr=0.05)
rng = np.random.default_rng(rank)
for step in range(int(os.environ["STEPS"])):
    x = ember.from_numpy(rng.standard_normal((16, 64)).astype(np.float32))
    loss = (model(x) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad.div_(2)
    opt.step()
    print("STEP", step, flush=True)
    time.sleep(0.1)
dist.barrier()
resets = tp.resets
dist.destroy_process_group()
print("DONE", json.dumps({"resets": resets, "weights": {
    n: p.detach().numpy().tobytes().hex() for n, p in model.named_parameters()}}), flush=True)
"""


@pytest.fixture
def pair():
    if not available() or shutil.which("ss") is None:
        pytest.skip("needs root, `ip netns` and ss")
    with NetnsPair() as p:
        yield p


def test_tcp_reset_mid_training_is_ridden_out_bitwise(pair):
    port = free_port()
    procs, lines = [], [[], []]
    reached = threading.Event()
    for rank in (0, 1):
        env = {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": ADDRS[0],
            "MASTER_PORT": str(port),
            "EMBER_TOKEN": "chaos-token",
            "OMP_NUM_THREADS": "1",
            "STEPS": str(STEPS),
        }
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

    def read(rank):
        for line in procs[rank].stdout:
            lines[rank].append(line)
            if rank == 0 and line.startswith("STEP 3"):
                reached.set()

    readers = [threading.Thread(target=read, args=(r,), daemon=True) for r in (0, 1)]
    for t in readers:
        t.start()
    try:
        assert reached.wait(90), lines
        # every TCP connection from rank 1 to rank 0 except the store's: the data connection
        kill = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                pair.ns[1],
                "ss",
                "-K",
                "-t",
                "dst",
                ADDRS[0],
                "and",
                "not",
                "dport",
                "=",
                f":{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "ESTAB" in kill.stdout, kill  # a connection was destroyed (RST sent)
        t_kill = time.monotonic()
        for p in procs:
            p.wait(90)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for t in readers:
            t.join(5)
    assert [p.returncode for p in procs] == [0, 0], lines
    want = reference_weights(STEPS)
    for rank in (0, 1):
        done = next(json.loads(x[5:]) for x in lines[rank] if x.startswith("DONE "))
        assert done["weights"] == want
        assert done["resets"] >= 1, lines[rank]  # the connection really was replaced
    assert time.monotonic() - t_kill < 60
