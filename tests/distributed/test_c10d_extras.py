"""torch.distributed's small helpers on ember, side by side with torch's where torch answers
without a process group (the collectives' versions run in test_collectives.py)."""

from __future__ import annotations

import pytest
import torch.distributed as tdist

import ember.distributed as dist


def test_backend_availability_matches_a_cpu_torch():
    for name in ("is_mpi_available", "is_ucc_available", "is_xccl_available"):
        assert getattr(dist, name)() is False
    assert dist.is_backend_available("gloo") and tdist.is_backend_available("gloo")
    assert dist.is_backend_available("nccl") == dist.is_nccl_available()
    assert not dist.is_backend_available("mpi")


def test_debug_level_from_the_environment(monkeypatch):
    monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "detail")
    dist.set_debug_level_from_env()
    assert dist.get_debug_level() is dist.DebugLevel.DETAIL
    dist.set_debug_level(dist.DebugLevel.OFF)
    assert dist.get_debug_level() is dist.DebugLevel.OFF
    monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "LOUD")
    with pytest.raises(ValueError, match="must be OFF, INFO, or DETAIL"):
        dist.set_debug_level_from_env()
    assert [m.name for m in dist.DebugLevel] == [
        m.name for m in tdist.DebugLevel.__members__.values()
    ]


def test_node_local_rank_and_complex_reductions(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for mod in (dist, tdist):
        assert mod.get_node_local_rank(fallback_rank=5) == 5
        with pytest.raises(RuntimeError, match="LOCAL_RANK is not in the environment"):
            mod.get_node_local_rank()
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert dist.get_node_local_rank(fallback_rank=5) == tdist.get_node_local_rank(5) == 3
    for op in ("SUM", "AVG", "MAX", "MIN", "PRODUCT", "BAND", "BOR", "BXOR"):
        ours = dist.supports_complex(getattr(dist.ReduceOp, op))
        assert ours == tdist.supports_complex(getattr(tdist.ReduceOp, op)), op


def test_subgroups_validate_before_any_group_is_made():
    with pytest.raises(ValueError, match="appeared in both subgroup 0 and subgroup 1"):
        dist.new_subgroups_by_enumeration([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="cannot be empty"):
        dist.new_subgroups_by_enumeration([])
