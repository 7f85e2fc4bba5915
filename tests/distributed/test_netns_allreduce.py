"""Allreduce over the network data plane between two network namespaces (two "hosts").

Marked ``multinode``: needs root and ``ip netns``; packet-loss cases need ``nft`` (Debian's
``nftables``, installed by .ci/run). See netns.py for what is created and torn down.
"""

from __future__ import annotations

import json
import shutil

import pytest
from dist_harness import free_port
from netns import ADDRS, NetnsPair, available

pytestmark = pytest.mark.multinode

RANK_CODE = r"""
import json, os, time
import numpy as np
import ember, ember.distributed as dist
rank = int(os.environ["RANK"])
dist.init_process_group("grpc", timeout=60)
out = {}
for n in (1000, 1 << 20):                      # direct path and pipelined ring
    t = ember.from_numpy(np.arange(n, dtype=np.float32) * (rank + 1))
    t0 = time.perf_counter()
    dist.all_reduce(t)
    out[n] = time.perf_counter() - t0
    want = np.arange(n, dtype=np.float32) * 3
    assert np.array_equal(t._data, want), (n, t._data[:5])
b = ember.full((300000,), float(rank))
dist.broadcast(b, src=1)
assert float(b[0]) == 1.0
peer = dist.distributed_c10d._state.world.infos[1 - rank]
dist.barrier()
dist.destroy_process_group()
print(json.dumps({"rank": rank, "times": out, "peer_host": peer["host"]}))
"""


@pytest.fixture
def pair():
    if not available():
        pytest.skip("needs root and `ip netns`")
    with NetnsPair() as p:
        yield p


def _allreduce_across(pair: NetnsPair, timeout: float = 90) -> list[dict]:
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": ADDRS[0],
            "MASTER_PORT": str(port),
            "EMBER_TOKEN": "netns-token",
            "OMP_NUM_THREADS": "1",
        }
        procs.append(pair.python(rank, RANK_CODE, env))
    results = []
    for rank, p in enumerate(procs):
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_allreduce_between_namespaces(pair):
    results = _allreduce_across(pair)
    assert results[0]["peer_host"] != results[1]["peer_host"]  # really two "hosts"


def test_allreduce_with_packet_loss(pair):
    if shutil.which("nft") is None:
        pytest.skip("needs nft (apt-get install nftables)")
    pair.packet_loss(1, 1)
    _allreduce_across(pair)


def test_allreduce_with_bandwidth_cap(pair):
    pair.bandwidth_cap(0, "100mbit")
    pair.bandwidth_cap(1, "100mbit")
    results = _allreduce_across(pair)
    # 4 MiB allreduce moves 4 MiB each way at most 12.5 MB/s: the cap really applies
    assert min(r["times"]["1048576"] for r in results) > 0.25, results
