"""DDP with uneven inputs (``Join``) against torch's DDP + Join. Two processes, each one rank of
a torch (gloo) group and then of an ember group (one interpreter start-up per rank for both):
the ranks train on different numbers of batches inside the join context; both must finish,
agree on the final parameters and match torch's losses and parameters."""

from __future__ import annotations

import os
import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distributed"))
from dist_harness import free_port, run_ranks  # noqa: E402

WORLD = 2
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "distributed.md"
CASES = {
    # name: (batches per rank, join kwargs, model with BatchNorm, bucket_cap_mb,
    #        step the longer rank runs under no_sync, ember's bucket overlap, comm hook)
    "join_3_vs_5": ((3, 5), None, False, 25, None, "0", False),
    "ddp_join_per_active_5_vs_3": (
        (5, 3),
        dict(divide_by_initial_world_size=False),
        False,
        25,
        None,
        "0",
        False,
    ),
    # several buckets, each all-reduced on its own while backward runs
    "buffers_buckets_no_sync": ((3, 5), None, True, 0.0005, 3, "1", False),
    "comm_hook": ((3, 5), None, False, 0.0005, None, "1", True),
}


def _train(rank: int, lib: str, case: str) -> dict:
    nb, join_kwargs, batchnorm, cap, no_sync_step, overlap, comm_hook = CASES[case]
    if lib == "torch":
        import torch
        import torch.nn.functional as F
        from torch import nn
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        from torch.distributed.algorithms.join import Join
        from torch.nn.parallel import DistributedDataParallel as DDP
    else:
        import ember as torch
        import ember.nn as nn
        import ember.nn.functional as F
        from ember.distributed.algorithms import Join
        from ember.distributed.algorithms.ddp_comm_hooks import default_hooks
        from ember.nn.parallel import DistributedDataParallel as DDP
    rng = np.random.default_rng(5)
    layers = (
        [nn.Linear(6, 16)]
        + ([nn.BatchNorm1d(16)] if batchnorm else [])
        + [nn.Tanh(), nn.Linear(16, 3)]
    )
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor((rng.standard_normal(tuple(p.shape)) * 0.4).astype(np.float32)))
    os.environ["EMBER_DDP_OVERLAP"] = overlap  # (read when the DDP is built)
    ddp = DDP(model, bucket_cap_mb=cap)
    del os.environ["EMBER_DDP_OVERLAP"]
    if comm_hook:
        ddp.register_comm_hook(None, default_hooks.allreduce_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = np.random.default_rng(10 + rank).standard_normal((nb[rank], 4, 9)).astype(np.float32)
    losses = []
    join = ddp.join(**join_kwargs) if join_kwargs is not None else Join([ddp])
    with join:
        for step, b in enumerate(data):
            x, y = torch.tensor(b[:, :6]), torch.tensor(b[:, 6:])
            if step == no_sync_step:  # accumulate locally; the next step synchronizes
                with ddp.no_sync():
                    F.mse_loss(ddp(x), y).backward()
                continue
            loss = F.mse_loss(ddp(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.item()))
    return {
        "losses": losses,
        "state": {k: v.detach().numpy().copy() for k, v in model.state_dict().items()},
    }


def _ember_throw(rank: int) -> str:
    """``throw_on_early_termination``: every rank raises once one runs out of inputs."""
    import ember
    from ember.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(ember.nn.Linear(3, 2))
    try:
        with ddp.join(throw_on_early_termination=True):
            for _ in range(2 + 2 * rank):
                ddp(ember.ones(2, 3)).sum().backward()
    except RuntimeError as e:
        return str(e)
    return "no error"


def _rank(rank: int, torch_port: int, ember_port: int, doc_port: int) -> dict:
    import torch
    import torch.distributed as tdist

    torch.set_num_threads(1)
    os.environ["MASTER_PORT"] = str(torch_port)
    tdist.init_process_group("gloo")
    want = {case: _train(rank, "torch", case) for case in CASES}
    tdist.destroy_process_group()

    import ember.distributed as dist

    os.environ["MASTER_PORT"] = str(ember_port)
    dist.init_process_group("gloo")
    got = {case: _train(rank, "ember", case) for case in CASES}
    got["throw"] = _ember_throw(rank)
    dist.destroy_process_group()
    # docs/distributed.md's Join snippet as written (its asserts included), in its own group
    os.environ["MASTER_PORT"] = str(doc_port)
    namespace: dict = {}
    exec(compile(_doc_snippet(), str(DOC), "exec"), namespace)
    got["doc_weight"] = namespace["model"].module.weight.detach().numpy().copy()
    return {"ember": got, "torch": want}


def _doc_snippet() -> str:
    section = DOC.read_text().split("## Uneven inputs: Join\n", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    assert len(code) == 1, "the Join section of docs/distributed.md lost its snippet"
    return code[0]


@pytest.fixture(scope="module")
def runs():
    pytest.importorskip("torch")
    outcomes = run_ranks(_rank, WORLD, free_port(), free_port(), free_port(), timeout=240)
    for r in range(WORLD):
        assert outcomes[r] is not None and outcomes[r].ok, outcomes[r] and outcomes[r].traceback
    return {lib: [outcomes[r].value[lib] for r in range(WORLD)] for lib in ("ember", "torch")}


@pytest.mark.parametrize("case", list(CASES))
def test_uneven_inputs_match_torch(runs, case):
    nb, no_sync_step = CASES[case][0], CASES[case][4]
    for rank in range(WORLD):
        got, want = runs["ember"][rank][case], runs["torch"][rank][case]
        assert len(got["losses"]) == nb[rank] - (
            no_sync_step is not None and nb[rank] > no_sync_step
        )
        np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-5, atol=1e-6)
        assert got["state"].keys() == want["state"].keys()
        for k in want["state"]:
            np.testing.assert_allclose(
                got["state"][k], want["state"][k], rtol=1e-5, atol=1e-6, err_msg=f"rank {rank} {k}"
            )
    # the last rank to join broadcast its model: the replicas end equal
    a, b = runs["ember"][0][case]["state"], runs["ember"][1][case]["state"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_throw_on_early_termination_raises_on_every_rank(runs):
    assert runs["ember"][0]["throw"] == "Rank 0 exhausted all inputs."
    assert runs["ember"][1]["throw"] == (
        "Detected at least one rank that exhausted inputs. Throwing across all ranks."
    )


def test_doc_snippet_runs_on_two_ranks(runs):
    np.testing.assert_array_equal(runs["ember"][0]["doc_weight"], runs["ember"][1]["doc_weight"])


def test_bad_input():
    from ember.distributed.algorithms import Join

    with pytest.raises(ValueError, match="at least one joinable"):
        Join([])
    with pytest.raises(TypeError, match="Joinable objects, got int"):
        Join([3])
    with pytest.raises(RuntimeError, match="Joinable"):
        Join.notify_join_context(object())
