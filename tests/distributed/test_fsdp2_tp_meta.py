"""FSDP2 over tensor parallelism on a model built on the meta device (PyTorch's recipe:
``with torch.device("meta")``, ``parallelize_module``, ``fully_shard``, ``to_empty``, then
``reset_parameters()`` or a full state dict load) on 4 real ranks as a 2x2 (dp, tp) mesh: the
parameters and the training steps equal those of the same model built eagerly (float64)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import tp_models  # noqa: E402
from fsdp_tp_cases import _mesh, _plan  # noqa: E402

WORLD, STEPS, SEED = 4, 2, 7


def _reset(model) -> None:
    """Every module's ``reset_parameters()`` in ``modules()`` order, from one seed (what the
    constructors did when the model was built eagerly)."""
    import ember

    ember.manual_seed(SEED)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _steps(model, opt, idx, target) -> list[float]:
    import ember
    import ember.nn.functional as F

    losses = []
    for _ in range(STEPS):
        logits = model(ember.tensor(idx)).reshape(-1, tp_models.VOCAB)
        loss = F.cross_entropy(logits, ember.tensor(target))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach().clone())
    return losses


def case_meta_init(init: str):
    """Build on meta, TP on ``mesh["tp"]``, FSDP2 on ``mesh["dp"]``, ``to_empty("cpu")``, then
    ``init``: "reset" (``reset_parameters()``), "whole" (``set_model_state_dict`` of the whole
    tensors on every rank) or "broadcast" (the whole tensors on rank 0 only,
    ``broadcast_from_rank0=True``); STEPS AdamW steps next to the eager model."""
    import ember
    import ember.distributed as dist
    from ember.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from ember.distributed.fsdp import fully_shard
    from ember.distributed.tensor.parallel import parallelize_module

    mesh, dp_mesh, dp_group = _mesh(False)
    ref = tp_models.ember_gpt()  # eager, on the CPU
    if init == "reset":
        _reset(ref)
    with ember.device("meta"):
        model = tp_models.ember_gpt()
    meta_before = all(p.is_meta for p in model.parameters())
    parallelize_module(model, mesh["tp"], _plan(False))
    fully_shard(model.block, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)
    meta_sharded = all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    if init == "reset":
        _reset(model)
    else:
        full = {k: v.detach().clone() for k, v in ref.state_dict().items()}
        if init == "broadcast" and dist.get_rank() != 0:
            full = {}
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=init == "broadcast")
        set_model_state_dict(model, full, options=options)
    init_err = max(
        float((p.full_tensor() - r).abs().max().item())
        for p, r in zip(model.parameters(), ref.parameters())
    )
    # train: each dp rank on its half of the batch, the eager model on the whole batch
    toks = tp_models.tokens()
    dp = mesh.get_coordinate()[0]
    opt = ember.optim.AdamW(model.parameters(), lr=0.05)
    losses = _steps(model, opt, toks[dp : dp + 1, :-1], toks[dp : dp + 1, 1:].reshape(-1))
    for loss in losses:
        dist.all_reduce(loss, op=dist.ReduceOp.AVG, group=dp_group)
    ref_opt = ember.optim.AdamW(ref.parameters(), lr=0.05)
    ref_losses = _steps(ref, ref_opt, toks[:, :-1], toks[:, 1:].reshape(-1))
    param_err = max(
        float((p.full_tensor() - r).abs().max().item())
        for p, r in zip(model.parameters(), ref.parameters())
    )
    return {
        "meta": (meta_before, meta_sharded),
        "placement": str(model.block.attn.q.weight.placements),
        "init_err": init_err,
        "losses": [float(v.item()) for v in losses],
        "ref_losses": [float(v.item()) for v in ref_losses],
        "param_err": param_err,
    }


# ("full" would be taken for the marker of long tests: the whole-state-dict case is "whole")
@pytest.mark.parametrize("init", ["reset", "whole", "broadcast"])
def test_meta_built_fsdp_tp_matches_eager(pools, init):
    for r in pools(WORLD, "shm").run(case_meta_init, init, timeout=120):
        assert r["meta"] == (True, True)  # nothing real until to_empty
        assert r["placement"] == "(_StridedShard(dim=0, sf=2), Shard(dim=0))"
        assert r["init_err"] == 0.0, r["init_err"]  # the same values, bit for bit
        assert max(abs(a - b) for a, b in zip(r["losses"], r["ref_losses"])) < 1e-12, r
        assert r["losses"][0] != r["losses"][-1]
        assert r["param_err"] < 1e-8, r["param_err"]  # AdamW's sqrt(v), as test_fsdp2_tp


def test_broadcast_from_rank0_needs_full_state_dict():
    from ember import nn
    from ember.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        set_model_state_dict,
    )

    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="full_state_dict must be True when broadcast_from_rank0"):
        set_model_state_dict(model, {}, options=StateDictOptions(broadcast_from_rank0=True))
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    with pytest.raises(NotImplementedError, match="set_model_state_dict only"):
        get_model_state_dict(model, options=opts)
