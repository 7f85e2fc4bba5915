"""FSDP1 (``FullyShardedDataParallel(model_tp, device_mesh=dp_mesh, use_orig_params=True)``)
over a tensor-parallel model: the 2-D recipe of pytorch/tutorials' TP_tutorial, on a 2 x 2
(dp, tp) mesh, trained next to the same model in one process on the whole batch."""

from __future__ import annotations

import pytest

STEPS = 3


def _fsdp1_over_tp(sequence_parallel: bool, use_orig_params: bool) -> dict:
    import fsdp_tp_cases
    import tp_models

    import ember
    import ember.distributed as dist
    import ember.nn.functional as F
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.tensor import init_device_mesh
    from ember.distributed.tensor.parallel import parallelize_module

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    ref = tp_models.ember_gpt()
    model = parallelize_module(
        tp_models.ember_gpt(), mesh["tp"], fsdp_tp_cases._plan(sequence_parallel)
    )
    model = FSDP(model, device_mesh=mesh["dp"], use_orig_params=use_orig_params)
    opt = ember.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = ember.optim.AdamW(ref.parameters(), lr=0.05)
    toks = tp_models.tokens()
    dp = mesh.get_coordinate()[0]
    losses, ref_losses = [], []
    for _ in range(STEPS):
        idx, target = toks[dp : dp + 1, :-1], toks[dp : dp + 1, 1:].reshape(-1)
        logits = model(ember.tensor(idx)).reshape(-1, tp_models.VOCAB)
        loss = F.cross_entropy(logits, ember.tensor(target))
        loss.backward()
        ref_loss = F.cross_entropy(
            ref(ember.tensor(toks[:, :-1])).reshape(-1, tp_models.VOCAB),
            ember.tensor(toks[:, 1:].reshape(-1)),
        )
        ref_loss.backward()
        mean = loss.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.AVG, group=mesh.get_group("dp"))
        losses.append(mean.item())
        ref_losses.append(ref_loss.item())
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    return {"losses": losses, "ref_losses": ref_losses}


@pytest.mark.parametrize(
    "sequence_parallel, use_orig_params", [(True, True), (False, False)], ids=["sp-orig", "tp-flat"]
)
def test_fsdp1_over_tensor_parallel_trains_like_one_process(
    pools, sequence_parallel, use_orig_params
):
    for r in pools(4, "gloo").run(_fsdp1_over_tp, sequence_parallel, use_orig_params):
        assert r["losses"] == pytest.approx(r["ref_losses"], abs=1e-9)
        assert r["losses"][-1] < r["losses"][0]
