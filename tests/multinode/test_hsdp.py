"""HSDP across the two network-namespace hosts (see conftest.py): ``ember launch --nnodes 2
--nproc-per-node 2`` runs FSDP(HYBRID_SHARD) with the shard groups taken from the launcher
(LOCAL_WORLD_SIZE: each host's 2 ranks), so parameters are sharded within a host and the
gradient shards all-reduced across the hosts; the weights match one process trained on the
whole batch."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from reference import single_process_weights

pytestmark = [pytest.mark.multinode, pytest.mark.full]

HSDP = """
import os, socket, sys
import numpy as np
import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP, ShardingStrategy

dist.init_process_group(backend=os.environ.get("EMBER_BACKEND", "auto"))
rank, world = dist.get_rank(), dist.get_world_size()
ember.manual_seed(0)
model = FSDP(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)),
             sharding_strategy=ShardingStrategy.HYBRID_SHARD)
opt = ember.optim.Adam(model.parameters(), lr=0.05)
h = model._handles[0]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((os.environ["MASTER_ADDR"], 9))
print("rank", rank, "ip", s.getsockname()[0], "shard",
      ",".join(map(str, dist.get_process_group_ranks(h.config.process_group))),
      "numel", h.flat_param.numel(), "of", h.padded, flush=True)
rng = np.random.default_rng(1)
x = rng.standard_normal((4, 16, 8)).astype(np.float32)
y = rng.integers(0, 3, (4, 16))
for step in range(4):
    part = slice(rank * 4, rank * 4 + 4)  # each rank takes its quarter of the global batch
    loss = nn.functional.cross_entropy(model(ember.tensor(x[step, part])),
                                       ember.tensor(y[step, part]))
    opt.zero_grad()
    loss.backward()
    opt.step()
sd = model.state_dict()
if rank == 0:
    np.savez(sys.argv[1], **{k: v.detach().numpy() for k, v in sd.items()})
dist.destroy_process_group()
"""


def test_hybrid_shard_groups_are_the_hosts(netns_cluster, tmp_path):
    script = tmp_path / "hsdp.py"
    script.write_text(textwrap.dedent(HSDP))
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
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = re.findall(r"rank (\d) ip (\S+) shard (\S+) numel (\d+) of (\d+)", r.stdout)
    assert len(lines) == 4, r.stdout[-3000:]
    ip = {int(rk): addr for rk, addr, *_ in lines}
    assert len(set(ip.values())) == 2  # two hosts
    for rk, _, shard, numel, padded in lines:
        members = [int(m) for m in shard.split(",")]
        assert len(members) == 2 and int(rk) in members
        assert {ip[m] for m in members} == {ip[int(rk)]}  # the shard group is the host
        assert int(numel) * 2 == int(padded)
    got, want = dict(np.load(out)), single_process_weights("Adam", 0.05, 4)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
