"""``ember.distributed.tensor``: DTensor on a real 2x2 mesh of 4 ranks.

Every rank's local shard is compared with torch's DTensor (its ``distribute_tensor`` on the
single-process "fake" backend, looped over the 4 ranks in the test process); gathers, reductions
and redistributions run over ember's real collectives.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

WORLD = 4
SHAPE = (5, 6)  # 5 rows split 2 ways is uneven: torch.chunk gives 3 + 2
# placements by name, so the workers (no torch) and the torch side build the same ones
LAYOUTS = [("S0", "S1"), ("S0", "S0"), ("R", "S1"), ("S1", "R"), ("R", "R"), ("S1", "S0")]


def _placements(names, mod):
    return [mod.Replicate() if n == "R" else mod.Shard(int(n[1])) for n in names]


def _global():
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def case_dtensor():
    import ember
    import ember.distributed as dist
    import ember.distributed.tensor as dt_mod
    from ember.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    mesh = dt_mod.init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rank = dist.get_rank()
    x = _global()
    # every rank passes different data: src_data_rank=0 must make rank 0's win
    mine = ember.tensor(x + 1000.0 * rank)
    out = {"local": {}, "full_ok": {}, "redist_ok": {}, "from_local_ok": {}}
    for names in LAYOUTS:
        pl = _placements(names, dt_mod)
        d = distribute_tensor(mine, mesh, pl)
        out["local"][names] = d.to_local().tolist()
        out["full_ok"][names] = d.full_tensor().tolist() == x.tolist()
        assert tuple(d.shape) == SHAPE and d.placements == tuple(pl)
        again = DTensor.from_local(d.to_local(), mesh, pl, shape=SHAPE)
        out["from_local_ok"][names] = again.full_tensor().tolist() == x.tolist()
        for other in LAYOUTS:
            moved = d.redistribute(mesh, _placements(other, dt_mod))
            ref = distribute_tensor(ember.tensor(x), mesh, _placements(other, dt_mod))
            out["redist_ok"][names, other] = moved.to_local().tolist() == ref.to_local().tolist()
    # Partial: each rank holds rank + 1; the sum runs over its dp group ([0, 2] or [1, 3])
    part = DTensor.from_local(ember.full((2, 4), float(rank + 1)), mesh, [Partial(), Replicate()])
    out["partial_full"] = part.full_tensor().tolist()
    out["partial_to_shard"] = part.redistribute(mesh, [Shard(1), Replicate()]).to_local().tolist()
    out["from_local_even_shape"] = tuple(
        DTensor.from_local(ember.zeros(2, 3), mesh, [Shard(0), Shard(1)]).shape
    )
    # run_check=True: the replicated pieces become the first rank's (rank 0 holds 0.0)
    checked = DTensor.from_local(
        ember.full((2,), float(rank)), mesh, [Replicate(), Replicate()], run_check=True
    )
    out["run_check"] = checked.to_local().tolist()
    # no mesh: PyTorch's default 1-d mesh over the world; 5 rows in 4 chunks is 2, 2, 1, 0
    flat = distribute_tensor(mine, placements=[Shard(0)])
    out["default_mesh"] = (
        flat.device_mesh.shape,
        tuple(flat.to_local().shape),
        flat.full_tensor().tolist() == x.tolist(),
    )
    errors = {}
    for key, fn in {
        "count": lambda: distribute_tensor(mine, mesh, [Shard(0)]),
        "dim": lambda: distribute_tensor(mine, mesh, [Shard(2), Replicate()]),
        "partial": lambda: distribute_tensor(mine, mesh, [Partial(), Replicate()]),
        "local_shape": lambda: DTensor.from_local(
            ember.zeros(2, 2), mesh, [Shard(0), Replicate()], shape=SHAPE
        ),
    }.items():
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - compared below
            errors[key] = (type(e).__name__, str(e))
    out["errors"] = errors
    return out


def case_dtensor_grad():
    import ember
    import ember.distributed as dist
    from ember.distributed.tensor import (
        DTensor,
        Partial,
        Replicate,
        Shard,
        distribute_tensor,
        init_device_mesh,
    )

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rank = dist.get_rank()
    x, w = _global(), _global()[::-1].copy() * 0.5
    out = {}
    # Shard -> Replicate: every rank computes the same loss on the full tensor; each shard's
    # gradient is its slice of d(loss)/d(x) = w (PyTorch's semantics: no sum over ranks)
    shard = distribute_tensor(ember.tensor(x), mesh, [Shard(0), Shard(1)]).to_local()
    leaf = shard.detach().requires_grad_(True)
    full = DTensor.from_local(leaf, mesh, [Shard(0), Shard(1)], shape=SHAPE).full_tensor()
    (full * ember.tensor(w)).sum().backward()
    want = distribute_tensor(ember.tensor(w), mesh, [Shard(0), Shard(1)]).to_local()
    out["s_to_r"] = leaf.grad.tolist() == want.tolist()
    # Replicate -> Shard: the per-rank losses sum to (x * w).sum(), so the replicated input's
    # gradient is all of w, gathered from the shards
    rep = ember.tensor(x, requires_grad=True)
    d = DTensor.from_local(rep, mesh, [Replicate(), Replicate()]).redistribute(
        mesh, [Shard(0), Shard(1)]
    )
    (d.to_local() * want).sum().backward()
    out["r_to_s"] = rep.grad.tolist() == w.tolist()
    # Partial -> Replicate: each partial's gradient is the whole's
    part = ember.full(SHAPE, float(rank), requires_grad=True)
    total = DTensor.from_local(part, mesh, [Partial(), Replicate()]).full_tensor()
    (total * ember.tensor(w)).sum().backward()
    out["p_to_r"] = part.grad.tolist() == w.tolist()
    # distribute_tensor of a tensor that requires grad gives a leaf piece
    out["leaf"] = (
        distribute_tensor(ember.tensor(x, requires_grad=True), mesh, [Shard(0), Replicate()])
        .to_local()
        .requires_grad
    )
    return out


@pytest.fixture(scope="module")
def results(pools):
    # "shm" is what "gloo" ("auto") picks on one host; the pool is shared with other tests
    return pools(WORLD, "shm").run(case_dtensor, timeout=120)


@pytest.fixture(scope="module")
def torch_locals():
    torch = pytest.importorskip("torch")
    tdist = torch.distributed
    import torch.distributed.tensor as ttensor
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    per_rank = []
    for r in range(WORLD):
        tdist.init_process_group("fake", store=FakeStore(), rank=r, world_size=WORLD)
        try:
            mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
            x = torch.from_numpy(_global())
            per_rank.append(
                {
                    names: ttensor.distribute_tensor(
                        x, mesh, _placements(names, ttensor), src_data_rank=None
                    )
                    .to_local()
                    .tolist()
                    for names in LAYOUTS
                }
            )
        finally:
            tdist.destroy_process_group()
    return per_rank


def test_local_shards_match_torch(results, torch_locals):
    for rank in range(WORLD):
        for names in LAYOUTS:
            assert results[rank]["local"][names] == torch_locals[rank][names], (rank, names)


def test_full_tensor_and_from_local_round_trip(results):
    for res in results:
        assert all(res["full_ok"].values()), res["full_ok"]
        assert all(res["from_local_ok"].values()), res["from_local_ok"]
        assert res["from_local_even_shape"] == (4, 6)


def test_every_redistribution_between_shard_and_replicate(results):
    for res in results:
        bad = [k for k, ok in res["redist_ok"].items() if not ok]
        assert not bad, bad
        assert len(res["redist_ok"]) == len(LAYOUTS) ** 2


def test_partial_reduces_over_its_mesh_dimension(results):
    # dp groups are [0, 2] (1 + 3 = 4) and [1, 3] (2 + 4 = 6)
    for rank, res in enumerate(results):
        total = 4.0 if rank % 2 == 0 else 6.0
        assert res["partial_full"] == [[total] * 4] * 2
        # Shard(1) over dp: 2 columns each
        assert res["partial_to_shard"] == [[total] * 2] * 2


def test_from_local_run_check_replicates_the_first_rank(results):
    assert [res["run_check"] for res in results] == [[0.0, 0.0]] * WORLD


def test_default_mesh_and_empty_shards(results):
    rows = [2, 2, 1, 0]
    for rank, res in enumerate(results):
        assert res["default_mesh"] == ((WORLD,), (rows[rank], SHAPE[1]), True)


def test_bad_placements_name_what_is_wrong(results):
    errs = results[0]["errors"]
    assert errs["count"][0] == "ValueError" and "1 placements" in errs["count"][1]
    assert "(2, 2)" in errs["count"][1]
    assert errs["dim"][0] == "IndexError" and "Shard(dim=2)" in errs["dim"][1]
    assert errs["partial"][0] == "ValueError" and "Partial" in errs["partial"][1]
    assert errs["local_shape"][0] == "ValueError" and "(3, 6)" in errs["local_shape"][1]


def test_gradients_flow_back_through_redistribution(pools):
    got = pools(WORLD, "shm").run(case_dtensor_grad, timeout=120)
    for res in got:
        assert res == {"s_to_r": True, "r_to_s": True, "p_to_r": True, "leaf": True}, res
