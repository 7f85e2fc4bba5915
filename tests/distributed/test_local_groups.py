"""``new_group(..., use_local_synchronization=True)``: only the members call it."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from dist_harness import run_ranks  # noqa: E402


def _body(rank):
    import ember
    import ember.distributed as dist

    dist.init_process_group("auto")
    out = {}
    # ranks 0 and 1 make a group of their own; rank 2 never calls for it
    if rank in (0, 1):
        pair = dist.new_group([0, 1], use_local_synchronization=True)
        t = ember.tensor([float(rank + 1)])
        dist.all_reduce(t, group=pair)
        out["pair"] = t.item()
    # ranks 1 and 2, in a different order relative to the pair on rank 1
    if rank in (1, 2):
        tail = dist.new_group([1, 2], use_local_synchronization=True)
        t = ember.tensor([float(10 * rank)])
        dist.all_reduce(t, group=tail)
        out["tail"] = t.item()
        # DDP on a group without global rank 0 broadcasts from the group's first rank
        ember.manual_seed(rank)
        model = ember.nn.Linear(2, 1)
        ember.nn.parallel.DistributedDataParallel(model, process_group=tail)
        out["ddp_weight"] = model.weight.detach().tolist()
    # a second group over [0, 1]; rank 2 may call too, and gets NON_GROUP_MEMBER at once
    again = dist.new_group([0, 1], use_local_synchronization=True)
    if rank == 2:
        assert again is dist.GroupMember.NON_GROUP_MEMBER
    else:
        t = ember.tensor([1.0])
        dist.all_reduce(t, group=again)
        out["again"] = t.item()
    # the usual, globally synchronised groups are unaffected
    evens = dist.new_group([0, 2])
    if rank in (0, 2):
        t = ember.tensor([1.0])
        dist.all_reduce(t, group=evens)
        out["evens"] = t.item()
    dist.barrier()
    dist.destroy_process_group()
    return out


def test_groups_synchronised_among_their_members_only():
    res = run_ranks(_body, 3, timeout=60)
    got = {r: res[r].value for r in range(3)}
    assert all(res[r].ok for r in range(3)), [res[r].traceback for r in range(3) if not res[r].ok]
    assert got[1].pop("ddp_weight") == got[2].pop("ddp_weight")
    assert got[0] == {"pair": 3.0, "again": 2.0, "evens": 2.0}
    assert got[1] == {"pair": 3.0, "tail": 30.0, "again": 2.0}
    assert got[2] == {"tail": 30.0, "evens": 2.0}
