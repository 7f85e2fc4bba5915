"""HSDP: FSDP(sharding_strategy=HYBRID_SHARD / _HYBRID_SHARD_ZERO2) and fully_shard on a 2-d
mesh. On 4 ranks as 2 "hosts" x 2: the groups from a 2-d device_mesh, a (shard, replicate)
tuple, or LOCAL_WORLD_SIZE all train as DDP does (and as PyTorch's HYBRID_SHARD: ``full``),
with each rank holding half of the padded parameters. Bad meshes and groups: clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from fsdp_ext_worker import CI_ENV, CI_SCENARIOS, CI_WORLD, results
from sharding_worker import make_model

import ember
from ember.distributed.device_mesh import init_device_mesh
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
from ember.distributed.fsdp import ShardingStrategy, fully_shard

HYBRID = ShardingStrategy.HYBRID_SHARD
HSDP = ("hybrid", "hybrid_pg", "hybrid_env", "hybrid_zero2", "fsdp2_hsdp")


def _params(npz: dict) -> dict:
    return {k: v for k, v in npz.items() if k.startswith("param/")}


def _assert_same(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=f"{what} {k}")


def test_hybrid_on_four_ranks_matches_ddp(tmp_path_factory):
    runs = results("fsdp_ext_worker.py", CI_WORLD, CI_SCENARIOS, tmp_path_factory, env=CI_ENV)
    for rank in range(4):
        want = _params(runs[("ddp", rank)])
        for sc in HSDP:
            _assert_same(_params(runs[(sc, rank)]), want, f"{sc} rank {rank}")
        for sc in ("hybrid", "hybrid_pg", "hybrid_env", "hybrid_zero2"):
            e = runs[(sc, rank)]  # sharded within the host's 2 ranks, not over all 4
            assert int(e["shard_numel"]) * 2 == int(e["padded"]), sc


@pytest.mark.full
def test_hybrid_on_four_ranks_matches_torch(tmp_path_factory):
    pytest.importorskip("torch")
    ours = results("fsdp_ext_worker.py", CI_WORLD, CI_SCENARIOS, tmp_path_factory, env=CI_ENV)
    theirs = results("torch_fsdp_ext_ref.py", 4, "hybrid", tmp_path_factory)
    for rank in range(4):
        want = _params(theirs[("hybrid", rank)])
        for sc in ("hybrid", "hybrid_zero2", "fsdp2_hsdp"):
            _assert_same(_params(ours[(sc, rank)]), want, f"{sc} vs torch, rank {rank}")


@pytest.mark.usefixtures("pg1")
class TestOneRank:
    def test_a_one_by_one_mesh_trains_as_full_shard(self):
        mesh = init_device_mesh("cpu", (1, 1))
        ref = FSDP(make_model())
        hyb = FSDP(make_model(), sharding_strategy=HYBRID, device_mesh=mesh)
        assert hyb.sharding_strategy is HYBRID
        for m in (ref, hyb):
            opt = ember.optim.SGD(m.parameters(), lr=0.1)
            m(ember.ones(3, 5)).square().sum().backward()
            opt.step()
        want, got = ref.state_dict(), hyb.state_dict()
        for k in want:
            np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), atol=1e-7, err_msg=k)

    def test_hybrid_needs_a_two_dim_mesh(self):
        mesh = init_device_mesh("cpu", (1,))
        with pytest.raises(ValueError, match=r"HYBRID_SHARD\) needs a 2-D device_mesh.*1-D"):
            FSDP(make_model(), sharding_strategy=HYBRID, device_mesh=mesh)

    def test_full_shard_takes_a_one_dim_mesh(self):
        mesh = init_device_mesh("cpu", (1, 1))
        with pytest.raises(ValueError, match=r"FULL_SHARD\) takes a 1-D device_mesh.*\(1, 1\)"):
            FSDP(make_model(), device_mesh=mesh)

    def test_hybrid_without_hosts(self, monkeypatch):
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        with pytest.raises(ValueError, match="cannot tell which ranks share a host"):
            FSDP(make_model(), sharding_strategy=HYBRID)
        with pytest.raises(ValueError, match=r"must be a \(shard_group, replicate_group\) tuple"):
            import ember.distributed as dist

            FSDP(make_model(), sharding_strategy=HYBRID, process_group=dist.group.WORLD)

    def test_group_tuple_is_for_hybrid_only(self):
        import ember.distributed as dist

        pg = (dist.group.WORLD, dist.group.WORLD)
        with pytest.raises(ValueError, match="tuple as process_group is for HYBRID_SHARD"):
            FSDP(make_model(), process_group=pg)
        with pytest.raises(ValueError, match="pair, got 3 groups"):
            FSDP(make_model(), sharding_strategy=HYBRID, process_group=pg + pg[:1])
        with pytest.raises(ValueError, match="either process_group or device_mesh"):
            FSDP(make_model(), process_group=pg[0], device_mesh=init_device_mesh("cpu", (1,)))

    def test_fully_shard_rejects_a_three_dim_mesh(self):
        mesh = init_device_mesh("cpu", (1, 1, 1))
        with pytest.raises(ValueError, match=r"1-d \(FSDP\) or 2-d \(HSDP.*\(1, 1, 1\)"):
            fully_shard(make_model(), mesh=mesh)
