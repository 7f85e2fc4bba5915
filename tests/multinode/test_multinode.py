"""Real multi-node runs on the two-namespace cluster (see conftest.py): ``ember launch`` and
``ember submit`` across both hosts, DDP across hosts against a single-host run, and the loss of
the worker host mid-run (recovery when resources remain, a clear error naming the node when
they do not — never a hang), and the Trainer's reports crossing from the worker host."""

from __future__ import annotations

import re
import textwrap
import time

import numpy as np
import pytest
from reference import single_process_weights

pytestmark = pytest.mark.multinode

HEAD, WORKER = "10.78.0.1", "10.78.0.2"

# Prints where each rank runs: its own address toward the master, and torchrun's variables.
WHERE = """
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])))
print("rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"], "node_rank",
      os.environ["NODE_RANK"], "ip", s.getsockname()[0], "master", os.environ["MASTER_ADDR"],
      "backend", os.environ.get("EMBER_BACKEND", "-"), "token", bool(os.environ["EMBER_TOKEN"]))
"""

# Prints a numbered step every 0.3 s; ends after STEPS of them.
STEPS = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((os.environ["MASTER_ADDR"], 9))
ip = s.getsockname()[0]
for i in range(int(sys.argv[1])):
    print("step", i, "ip", ip, flush=True)
    time.sleep(0.3)
print("done on", ip, flush=True)
"""


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _placements(stdout: str) -> dict:
    """{rank: ip} from WHERE's lines."""
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(
            r"\[rank\d+\]: rank (\d+) of 2 "
            r"node_rank \d ip (\S+)",
            stdout,
        )
    }


def test_launch_runs_one_rank_on_each_host(netns_cluster, tmp_path):
    script = _script(tmp_path, "where.py", WHERE)
    r = netns_cluster.ember(
        "launch", "--address", f"{HEAD}:6379", "--nnodes", "2", "--nproc-per-node", "1", script
    )
    assert r.returncode == 0, r.stdout + r.stderr
    placed = _placements(r.stdout)
    assert sorted(placed.values()) == [HEAD, WORKER], r.stdout
    assert re.search(r"rank 0 of 2 node_rank 0 ip (\S+) master \1 ", r.stdout), r.stdout
    assert "token True" in r.stdout


def test_launch_with_the_cluster_config_uses_its_defaults(netns_cluster, tmp_path):
    script = _script(tmp_path, "where.py", WHERE)
    # --nnodes alone: workers_per_node (1) from the config; EMBER_BACKEND from ember.backend
    r = netns_cluster.ember("launch", "--cluster", netns_cluster.config, "--nnodes", "2", script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(_placements(r.stdout).values()) == [HEAD, WORKER]
    assert r.stdout.count("backend grpc") == 2


def test_submit_runs_the_same_job_through_ray_jobs(netns_cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _script(work, "where.py", WHERE)
    r = netns_cluster.ember(
        "submit",
        "--cluster",
        netns_cluster.config,
        "--working-dir",
        str(work),
        "--",
        "python",
        "-m",
        "ember.launcher.cli",
        "launch",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "where.py",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(_placements(r.stdout).values()) == [HEAD, WORKER], r.stdout
    assert "succeeded" in r.stderr


def test_status_lists_both_nodes(netns_cluster):
    r = netns_cluster.ember("status", netns_cluster.config)
    assert r.returncode == 0, r.stderr
    assert "2 node(s) alive" in r.stdout
    assert HEAD in r.stdout and WORKER in r.stdout and "Ray processes" in r.stdout


DDP = """
import os, sys
import numpy as np
import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

dist.init_process_group(backend=os.environ.get("EMBER_BACKEND", "auto"))
rank, world = dist.get_rank(), dist.get_world_size()
ember.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
ddp = DDP(model)
opt = ember.optim.SGD(ddp.parameters(), lr=0.1)
rng = np.random.default_rng(1)
x = rng.standard_normal((6, 16, 8)).astype(np.float32)
y = rng.integers(0, 3, (6, 16))
for step in range(6):
    shard = slice(rank * 8, rank * 8 + 8)  # each rank takes its half of the global batch
    loss = nn.functional.cross_entropy(ddp(ember.tensor(x[step, shard])),
                                       ember.tensor(y[step, shard]))
    opt.zero_grad()
    loss.backward()
    opt.step()
if rank == 0:
    np.savez(sys.argv[1], **{k: v.detach().numpy() for k, v in model.state_dict().items()})
print("trained", rank, flush=True)
dist.destroy_process_group()
"""


def test_ddp_across_hosts_matches_a_single_host_run(netns_cluster, tmp_path):
    import ember.distributed as dist

    if not hasattr(dist, "init_process_group"):
        pytest.skip("ember.distributed.init_process_group is not available yet")
    script = _script(tmp_path, "ddp.py", DDP)
    out = str(tmp_path / "weights.npz")
    r = netns_cluster.ember(
        "launch",
        "--cluster",
        netns_cluster.config,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        script,
        out,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "trained 0" in r.stdout and "trained 1" in r.stdout
    got = dict(np.load(out))
    want = single_process_weights("SGD", 0.1, 6)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_losing_the_worker_host_fails_with_an_error_naming_it(netns_cluster, tmp_path):
    netns_cluster.ensure_up()
    script = _script(tmp_path, "steps.py", STEPS)
    run = netns_cluster.popen_ember(
        "launch",
        "--cluster",
        netns_cluster.config,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--max-restarts",
        "1",
        script,
        "400",
    )
    run.wait_for(lambda out: f"step 3 ip {WORKER}" in out and f"step 3 ip {HEAD}" in out, 90)
    t0 = time.time()
    assert netns_cluster.crash_worker_host()
    code, out, err = run.finish(timeout=120)  # bounded: a hang fails here
    assert code != 0
    assert f"node {WORKER}" in err and "died" in err, err[-3000:]
    assert f"lost: {WORKER}" in err, err[-3000:]  # the restart saw that the node was gone
    assert time.time() - t0 < 90
    assert "done on" not in out


def test_losing_the_worker_host_recovers_when_resources_remain(netns_cluster, tmp_path):
    netns_cluster.ensure_up()  # brings the worker host back after the previous test
    script = _script(tmp_path, "steps.py", STEPS)
    run = netns_cluster.popen_ember(
        "launch",
        "--cluster",
        netns_cluster.config,
        "--workers",
        "2",
        "--placement",
        "spread",
        "--max-restarts",
        "1",
        script,
        "30",
    )
    run.wait_for(lambda out: f"step 2 ip {WORKER}" in out, 90)
    assert netns_cluster.crash_worker_host()
    code, out, err = run.finish(timeout=150)
    assert code == 0, err[-3000:]
    assert f"node {WORKER}" in err and "restarting (1/1)" in err
    # after the restart both ranks ran on the head, the one node left
    assert out.count(f"done on {HEAD}") == 2, out[-2000:]
    netns_cluster.ensure_up()
    assert [h["ip"] for h in netns_cluster.state()["hosts"]] == [HEAD, WORKER]


# The Trainer as a driver of the cluster: one worker per host (SPREAD). Each reports the address
# it runs on and a checkpoint file of its own; the reports cross the link to the driver.
TRAINER = """
import json, os, socket, sys, tempfile
from ember.distributed import train

def loop():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((os.environ["MASTER_ADDR"], 9))
    ip = s.getsockname()[0]
    rank = train.get_context().get_world_rank()
    for step in range(3):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, f"rank{rank}.txt"), "w") as f:
                f.write(f"{step} {ip}")
            train.report({"step": step, "ip": ip}, checkpoint=train.Checkpoint.from_directory(d))

result = train.Trainer(loop, scaling_config=train.ScalingConfig(num_workers=2,
                                                                placement_strategy="SPREAD"),
                       run_config=train.RunConfig(name="mn", storage_path=sys.argv[1],
                                                  verbose=0)).fit()
files = {n: open(os.path.join(result.checkpoint.path, n)).read()
         for n in sorted(os.listdir(result.checkpoint.path))}
print("RESULT", json.dumps({"steps": [m["step"] for m in result.metrics_history],
                            "ip": result.metrics["ip"], "files": files}))
"""


def test_trainer_across_hosts_collects_every_ranks_reports(netns_cluster, tmp_path):
    import json
    import sys

    netns_cluster.ensure_up()
    script = _script(tmp_path, "trainer.py", TRAINER)
    r = netns_cluster.run(sys.executable, script, str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert got["steps"] == [0, 1, 2]
    # rank 0's metrics; both hosts' checkpoint files, merged, from the last report
    assert got["files"] == {
        "rank0.txt": f"2 {got['ip']}",
        "rank1.txt": f"2 {WORKER if got['ip'] == HEAD else HEAD}",
    }
