"""Elastic membership across the two network-namespace hosts (see conftest.py): ``ember launch
--nnodes 1:2 --nproc-per-node 1`` with one rank on each host, FSDP2 (``fully_shard``) and a DCP
checkpoint (model, Adam state, step) saved after every step to a directory both hosts see.

The worker host is killed mid-run (every Ray process SIGKILLed at once, as a machine loss):
the launcher restarts the job on the one node left (a restart, counted against
``--max-restarts``), the script loads the latest checkpoint resharded from 2 ranks to 1 and
goes on from the next step. When the host comes back (``ember up``), the launcher stops the
1-rank group and restarts on 2 nodes (a membership change, not counted), which resumes from
the checkpoint again, resharded back to 2 ranks. Each step trains on the same global batch of
16 rows split over the current world size, so the final weights equal one process trained on
every step (``reference.py``), up to float rounding.

The same scenario through the Trainer (``ScalingConfig(num_workers=(1, 2))``) is ``full``: the
launcher's run covers the shrink, the grow and the resharded resume in CI.
"""

from __future__ import annotations

import json
import re
import textwrap
import time

import numpy as np
import pytest
from reference import single_process_weights

pytestmark = pytest.mark.multinode

HEAD, WORKER = "10.78.0.1", "10.78.0.2"
# world sizes by step: 2 for steps 0..LOSE_AT, 1 up to GROW_AT, then 2 again
STEPS, LOSE_AT, GROW_AT, LR = 6, 1, 3, 0.05

SCRIPT = """
import os, socket, sys, time
import numpy as np
import ember
import ember.distributed as dist
import ember.distributed.checkpoint as dcp
from ember import nn
from ember.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_state_dict, set_state_dict)
from ember.distributed.fsdp import fully_shard

work = sys.argv[1]
STEPS, LOSE_AT, GROW_AT = map(int, sys.argv[2:5])
LR = float(sys.argv[5])
ckpt = os.path.join(work, "ckpt")
dist.init_process_group()
world, rank = dist.get_world_size(), dist.get_rank()
restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((os.environ["MASTER_ADDR"], 9))
ip = s.getsockname()[0]
rng = np.random.default_rng(1)  # reference.py's data: (STEPS, 16, 8) inputs, 3 classes
X = rng.standard_normal((STEPS, 16, 8)).astype(np.float32)
Y = rng.integers(0, 3, (STEPS, 16))

ember.manual_seed(0)
model = fully_shard(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)))
opt = ember.optim.Adam(model.parameters(), lr=LR)
start = 0
if os.path.exists(os.path.join(ckpt, ".metadata")):  # resume, resharded to this world size
    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd, "step": -1}
    dcp.load(state, checkpoint_id=ckpt)
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    start = state["step"] + 1
print(f"START restart {restart} world {world} rank {rank} ip {ip} from {start}", flush=True)
for step in range(start, STEPS):
    part = 16 // world  # the global batch stays 16 rows at any world size
    rows = slice(rank * part, (rank + 1) * part)
    loss = nn.functional.cross_entropy(model(ember.tensor(X[step, rows])),
                                       ember.tensor(Y[step, rows]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd, "step": step}, checkpoint_id=ckpt)
    print(f"STEP {step} world {world}", flush=True)
    if step == LOSE_AT and world == 2:
        print(f"WAIT lose {ip}", flush=True)
        time.sleep(600)  # the test takes the worker host away now
    if step == GROW_AT and world == 1:
        print(f"WAIT grow {ip}", flush=True)
        time.sleep(600)  # the launcher stops this group once the host is back
full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
if rank == 0:
    np.savez(os.path.join(work, "weights.npz"), **{k: v.numpy() for k, v in full.items()})
print(f"DONE world {world}", flush=True)
dist.destroy_process_group()
"""


def _rank_lines(out: str, word: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"\[rank\d+\]: {word} (.*)", out)]


def test_elastic_job_shrinks_when_a_host_is_lost_and_grows_back(netns_cluster, tmp_path):
    netns_cluster.ensure_up()  # a test before may have taken the worker host away
    script = tmp_path / "elastic.py"
    script.write_text(textwrap.dedent(SCRIPT))
    work = tmp_path / "work"
    work.mkdir()
    run = netns_cluster.popen_ember(
        "launch",
        "--cluster",
        netns_cluster.config,
        "--nnodes",
        "1:2",
        "--nproc-per-node",
        "1",
        "--max-restarts",
        "1",
        str(script),
        str(work),
        str(STEPS),
        str(LOSE_AT),
        str(GROW_AT),
        str(LR),
    )
    t = [time.time()]
    try:
        run.wait_for(lambda out: len(_rank_lines(out, "WAIT lose")) == 2, 120)
        t.append(time.time())
        assert netns_cluster.crash_worker_host()
        run.wait_for(lambda out: "WAIT grow" in out, 120)
        t.append(time.time())
    finally:
        netns_cluster.ensure_up()  # the host comes back (and so the job grows)
    t.append(time.time())
    code, out, err = run.finish(timeout=120)
    t.append(time.time())
    # shown when the test fails: start to the loss, loss to the 1-rank group's wait, `ember up`,
    # the grown group's run
    print("phases (s):", [round(b - a, 1) for a, b in zip(t, t[1:])])
    shrink_s = t[2] - t[1]
    assert code == 0, out[-3000:] + err[-3000:]
    starts = [line.split() for line in _rank_lines(out, "START")]
    # (restart count, world size, rank, resumed from step, ip) of every attempt
    attempts = sorted((int(s[1]), int(s[3]), int(s[5]), int(s[9]), s[7]) for s in starts)
    assert [a[:4] for a in attempts] == [
        (0, 2, 0, 0),
        (0, 2, 1, 0),
        (1, 1, 0, LOSE_AT + 1),  # shrunk: one rank, from the checkpoint of step LOSE_AT
        (1, 2, 0, GROW_AT + 1),  # grown back: not counted as a restart
        (1, 2, 1, GROW_AT + 1),
    ], out[-3000:]
    assert attempts[2][4] == HEAD, attempts  # the group of one runs on the host that is left
    assert {a[4] for a in attempts if a[1] == 2} == {HEAD, WORKER}, attempts
    # every step ran exactly once per rank, at the expected world size
    steps = sorted({tuple(map(int, line.split()[::2])) for line in _rank_lines(out, "STEP")})
    assert steps == [(s, 2 if s <= LOSE_AT or s > GROW_AT else 1) for s in range(STEPS)], out
    assert "worker rank" in err and f"on node {WORKER} died" in err, err[-3000:]
    assert "restarting (1/1)" in err
    assert "elastic job on 1 node(s) of 1..2: WORLD_SIZE=1" in err
    assert "1 more node(s) have room; restarting the workers on more nodes" in err
    assert shrink_s < 90, shrink_s
    got, want = dict(np.load(work / "weights.npz")), single_process_weights("Adam", LR, STEPS)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


# The Trainer's elastic path on the same hosts: ScalingConfig(num_workers=(1, 2)), one worker
# per host (STRICT_SPREAD), DCP checkpoints reported every step. The worker on the worker host
# asks (a marker file) to lose its host at step LOSE_AT, before that step's checkpoint; the
# group of one waits at step GROW_AT until the test has brought the host back, and grows at
# that checkpoint.
TRAINER = """
import json, os, socket, sys, tempfile, time
import numpy as np
from ember.distributed import train

marks, STEPS, LOSE_AT, GROW_AT, LR = sys.argv[1], 6, 1, 3, 0.05
WORKER = "10.78.0.2"


def loop():
    import ember
    import ember.distributed.checkpoint as dcp
    from ember import nn
    from ember.distributed.checkpoint.state_dict import (StateDictOptions,
        get_model_state_dict, get_state_dict, set_state_dict)
    from ember.distributed.fsdp import fully_shard

    ctx = train.get_context()
    world, rank = ctx.get_world_size(), ctx.get_world_rank()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((os.environ["MASTER_ADDR"], 9))
    ip = s.getsockname()[0]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((STEPS, 16, 8)).astype(np.float32)
    Y = rng.integers(0, 3, (STEPS, 16))
    ember.manual_seed(0)
    model = fully_shard(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)))
    opt = ember.optim.Adam(model.parameters(), lr=LR)
    start, ckpt = 0, train.get_checkpoint()
    if ckpt is not None:
        model_sd, optim_sd = get_state_dict(model, opt)
        state = {"model": model_sd, "optim": optim_sd, "step": -1}
        with ckpt.as_directory() as d:
            dcp.load(state, checkpoint_id=d)
        set_state_dict(model, opt, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
        start = state["step"] + 1
    for step in range(start, STEPS):
        part = 16 // world
        rows = slice(rank * part, (rank + 1) * part)
        loss = nn.functional.cross_entropy(model(ember.tensor(X[step, rows])),
                                           ember.tensor(Y[step, rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == LOSE_AT and world == 2 and ip == WORKER:
            open(os.path.join(marks, "lose_request"), "w").close()
            time.sleep(600)  # the test takes this host away
        if step == GROW_AT and world == 1:
            open(os.path.join(marks, "grow_request"), "w").close()
            deadline = time.time() + 240
            while not os.path.exists(os.path.join(marks, "grow_done")) and time.time() < deadline:
                time.sleep(0.1)
        model_sd, optim_sd = get_state_dict(model, opt)
        with tempfile.TemporaryDirectory() as d:
            dcp.save({"model": model_sd, "optim": optim_sd, "step": step}, checkpoint_id=d)
            train.report({"step": step, "world": world, "ip": ip},
                         checkpoint=train.Checkpoint.from_directory(d))
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    if rank == 0:
        np.savez(os.path.join(marks, "weights.npz"), **{k: v.numpy() for k, v in full.items()})


trainer = train.Trainer(
    loop,
    scaling_config=train.ScalingConfig(num_workers=(1, 2), placement_strategy="STRICT_SPREAD"),
    run_config=train.RunConfig(name="elastic", storage_path=os.path.join(marks, "runs"),
                               verbose=0, failure_config=train.FailureConfig(1)),
    collective_timeout=60,
)
result = trainer.fit()
print("RESULT", json.dumps({"steps": [m["step"] for m in result.metrics_history],
                            "worlds": [m["world"] for m in result.metrics_history],
                            "sizes": trainer._world_sizes}), flush=True)
"""


@pytest.mark.full
def test_trainer_shrinks_when_a_host_is_lost_and_grows_back(netns_cluster, tmp_path):
    import sys

    netns_cluster.ensure_up()
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(TRAINER))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = netns_cluster.popen_run(sys.executable, str(script), str(marks))
    try:
        deadline = time.time() + 120
        while not (marks / "lose_request").exists():
            assert proc.proc.poll() is None and time.time() < deadline, proc.err[-30:]
            time.sleep(0.2)
        assert netns_cluster.crash_worker_host()
        deadline = time.time() + 120
        while not (marks / "grow_request").exists():
            assert proc.proc.poll() is None and time.time() < deadline, proc.err[-30:]
            time.sleep(0.2)
    finally:
        netns_cluster.ensure_up()
        (marks / "grow_done").touch()
    code, out, err = proc.finish(timeout=180)
    assert code == 0, out[-3000:] + err[-3000:]
    got = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    # step LOSE_AT's checkpoint was never made: the group of one redoes that step
    assert got["steps"] == list(range(STEPS)), got
    assert got["worlds"] == [2 if s < LOSE_AT or s > GROW_AT else 1 for s in range(STEPS)], got
    assert got["sizes"] == [2, 1, 2], got
    weights, want = dict(np.load(marks / "weights.npz")), single_process_weights("Adam", LR, STEPS)
    assert weights.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(weights[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
