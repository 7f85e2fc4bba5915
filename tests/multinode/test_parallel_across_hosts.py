"""A 2x2 DeviceMesh and HYBRID_SHARD across the two network-namespace hosts (see conftest.py).

One ``ember launch --nnodes 2 --nproc-per-node 2`` (ranks 0, 1 on one host, 2, 3 on the
other: the launcher orders ranks by node) runs both cases, to pay the start-up once:

- **TP x FSDP2 on a (dp=2, tp=2) mesh**: ``parallelize_module`` over ``mesh["tp"]`` (colwise,
  then rowwise) and ``fully_shard`` over ``mesh["dp"]``; each dp row trains on its half of the
  global batch. The tp groups must stay within a host and the dp groups cross the link.
- **FSDP(HYBRID_SHARD)**: the shard groups come from the launcher's LOCAL_WORLD_SIZE (each
  host's 2 ranks), so parameters are sharded within a host and gradient shards all-reduced
  across the hosts; each rank trains on its quarter of the batch.

Both end with the weights of one process trained on the whole batch (``reference.py``).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from reference import single_process_weights

pytestmark = pytest.mark.multinode

HEAD, WORKER = "10.78.0.1", "10.78.0.2"
STEPS, LR = 4, 0.05

SCRIPT = """
import json, os, socket, sys
import numpy as np
import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.device_mesh import init_device_mesh
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP, ShardingStrategy
from ember.distributed.fsdp import fully_shard
from ember.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                               parallelize_module)

STEPS, LR = int(sys.argv[2]), float(sys.argv[3])
rng = np.random.default_rng(1)  # reference.py's data: (STEPS, 16, 8) inputs, 3 classes
X = rng.standard_normal((STEPS, 16, 8)).astype(np.float32)
Y = rng.integers(0, 3, (STEPS, 16))


def net():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def train(model, rows):
    opt = ember.optim.Adam(model.parameters(), lr=LR)
    for step in range(STEPS):
        out = model(ember.tensor(X[step, rows]))
        loss = nn.functional.cross_entropy(out, ember.tensor(Y[step, rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()


mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))  # inits the world too
rank = dist.get_rank()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((os.environ["MASTER_ADDR"], 9))
ranks = dist.get_process_group_ranks
where = {"rank": rank, "ip": s.getsockname()[0], "coord": list(mesh.get_coordinate()),
         "tp": ranks(mesh.get_group("tp")), "dp": ranks(mesh.get_group("dp"))}

# TP within a host (colwise then rowwise), FSDP2 over the dp dimension across the hosts
tp = net()
parallelize_module(tp, mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
fully_shard(tp, mesh=mesh["dp"])
dp = mesh.get_coordinate()[0]
train(tp, slice(dp * 8, dp * 8 + 8))
weights = {"tp." + n: p.full_tensor().detach().numpy() for n, p in tp.named_parameters()}

# HYBRID_SHARD: shard groups of LOCAL_WORLD_SIZE ranks (a host), replicated across hosts
hsdp = FSDP(net(), sharding_strategy=ShardingStrategy.HYBRID_SHARD)
h = hsdp._handles[0]
where.update(shard=ranks(h.config.process_group), numel=h.flat_param.numel(), padded=h.padded)
train(hsdp, slice(rank * 4, rank * 4 + 4))
weights.update({"hsdp." + k: v.detach().numpy() for k, v in hsdp.state_dict().items()})

print("WHERE", json.dumps(where), flush=True)
if rank == 0:
    np.savez(sys.argv[1], **weights)
dist.destroy_process_group()
"""


def test_2x2_mesh_and_hybrid_shard_across_hosts(netns_cluster, tmp_path):
    netns_cluster.ensure_up()  # a test before may have taken the worker host away
    script = tmp_path / "parallel.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = str(tmp_path / "weights.npz")
    r = netns_cluster.ember(
        "launch",
        "--cluster",
        netns_cluster.config,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "2",
        str(script),
        out,
        str(STEPS),
        str(LR),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    where = {}
    for line in r.stdout.splitlines():
        if "WHERE " in line:
            w = json.loads(line.split("WHERE ", 1)[1])
            where[w["rank"]] = w
    assert sorted(where) == [0, 1, 2, 3], r.stdout[-3000:]
    ip = {rk: w["ip"] for rk, w in where.items()}
    # ranks by node: 0, 1 on one host, 2, 3 on the other (which one is Ray's choice)
    assert ip[0] == ip[1] and ip[2] == ip[3] and {ip[0], ip[2]} == {HEAD, WORKER}, ip
    for rk, w in where.items():
        assert w["coord"] == [rk // 2, rk % 2]
        assert w["tp"] == [rk - rk % 2, rk - rk % 2 + 1]  # the tp pair: one host
        assert {ip[m] for m in w["tp"]} == {ip[rk]}
        assert w["dp"] == [rk % 2, rk % 2 + 2]  # the dp pair: one rank on each host
        assert {ip[m] for m in w["dp"]} == {HEAD, WORKER}
        assert w["shard"] == w["tp"]  # HSDP's shard group is the host too
        assert w["numel"] * 2 == w["padded"]
    got, want = dict(np.load(out)), single_process_weights("Adam", LR, STEPS)
    for case in ("tp", "hsdp"):
        mine = {k.split(".", 1)[1]: v for k, v in got.items() if k.startswith(case + ".")}
        assert mine.keys() == want.keys(), case
        for k in want:
            np.testing.assert_allclose(
                mine[k], want[k], rtol=1e-5, atol=1e-6, err_msg=f"{case} {k}"
            )
