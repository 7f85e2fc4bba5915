"""FSDP2 over tensor parallelism (``fully_shard`` on ``parallelize_module``'s DTensor
parameters) on 4 real ranks as a 2x2 (dp, tp) mesh, the idiom of PyTorch's
``fsdp_tp_example``: the TP plan on ``mesh["tp"]``, then ``fully_shard(..., mesh=mesh["dp"])``.

Checked: the sharded parameters' placements are PyTorch's (measured with torch 2.13, gloo, 4
CPU processes: ``(_StridedShard(dim=0, sf=2), Shard(dim=0))`` for a TP ``Shard(0)``
parameter, ``(Shard(dim=0), <tp placement>)`` otherwise); the unsharded parameters are the TP
DTensors again; three AdamW steps give the single-process model's losses, gradients and
parameters (float64), also with sequence parallelism and as HSDP x TP; DCP saves and loads
such a model with its optimizer; docs/sharding.md's fsdp_tp program matches one process. The
rank-side scenarios are in fsdp_tp_cases.py.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import tp_models  # noqa: E402
from fsdp_tp_cases import (  # noqa: E402
    _torch_gpt,
    case_dcp,
    case_dcp_state_dict,
    case_ddp_tp,
    case_docs_example,
    case_layouts,
    case_mixed_precision,
    case_train,
)

WORLD = 4
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "sharding.md"

# torch 2.13's placements for the same plan (see the module docstring); "tp" Shard(0)
# parameters get the strided dp shard
TORCH_PLACEMENTS = {
    "tok.weight": "(_StridedShard(dim=0, sf=2), Shard(dim=0))",
    "block.attn.q.weight": "(_StridedShard(dim=0, sf=2), Shard(dim=0))",
    "block.attn.q.bias": "(_StridedShard(dim=0, sf=2), Shard(dim=0))",
    "block.attn.o.weight": "(Shard(dim=0), Shard(dim=1))",
    "block.attn.o.bias": "(Shard(dim=0), Replicate())",
    "head.weight": "(_StridedShard(dim=0, sf=2), Shard(dim=0))",
}
# a norm: with sequence parallelism a replicated TP DTensor, without it a plain parameter
LN_PLACEMENTS = {True: "(Shard(dim=0), Replicate())", False: "(Shard(dim=0),)"}


@pytest.fixture(scope="module")
def train_results(pools):
    return pools(WORLD, "shm").run(case_train, False, timeout=120)


def test_strided_shard_layout_and_errors(pools):
    for r in pools(WORLD, "shm").run(case_layouts, timeout=120):
        assert r["local_ok"] and r["full_ok"] and r["from_local_ok"] and r["redistribute_ok"]
        assert r["eq"] == (False, False)
        err = r["errors"]
        assert set(err) == {"split_factor", "two_meshes", "unnamed", "tp_first"}, err
        assert "total size 3" in err["split_factor"]
        assert "named slices of one DeviceMesh" in err["two_meshes"]
        assert "named slices of one DeviceMesh" in err["unnamed"]
        assert "must come before" in err["tp_first"]


def test_dcp_round_trip(pools, tmp_path):
    for r in pools(WORLD, "shm").run(case_dcp, str(tmp_path / "ckpt"), timeout=120):
        assert r["n"] == 20
        assert r["sharded_err"] == 0.0 and r["plain_err"] == 0.0, r


def test_sharded_parameters_have_torch_placements(train_results):
    for r in train_results:
        assert r["kinds"] == {"DTensorParameter"}
        for name, want in TORCH_PLACEMENTS.items():
            assert r["placements"][name] == want, (name, r["placements"][name])
        assert r["unsharded"]["block.attn.q.weight"] == "(Shard(dim=0),)"
        assert r["unsharded"]["block.attn.o.weight"] == "(Shard(dim=1),)"
        assert r["unsharded"]["block.ln1.weight"] == "None"  # a plain parameter
        assert r["sd_is_dtensor"]
        assert r["state_dict"]["head.weight"][1] == TORCH_PLACEMENTS["head.weight"]


def _check_training(results, hsdp: bool = False):
    for r in results:
        want = "(Replicate(), Shard(dim=0))" if hsdp else LN_PLACEMENTS[r["sp"]]
        assert r["placements"]["block.ln1.weight"] == want
        np.testing.assert_allclose(r["losses"], r["ref_losses"], rtol=0, atol=1e-12)
        # clip_grad_norm_ over the pieces: the whole model's norm (inf, 2, then clipped at half)
        np.testing.assert_allclose(r["norms"], r["ref_norms"], rtol=1e-12)
        assert r["grad_err"] < 1e-12, r["grad_err"]
        # AdamW divides by sqrt(v): rounding-level gradient differences grow a little
        assert r["param_err"] < 1e-8, r["param_err"]
        # the steps really trained: the loss moved
        assert abs(r["losses"][-1] - r["losses"][0]) > 1e-3


def test_fsdp_tp_training_matches_single_process(train_results):
    _check_training(train_results)


def test_fsdp_tp_sequence_parallel_training_matches_single_process(pools):
    _check_training(pools(WORLD, "shm").run(case_train, True, timeout=120))


def test_hsdp_tp_training_matches_single_process(pools):
    """HSDP (replicate 2 x shard 1) over TP 2: a 3-d mesh (rep, shard, tp)."""
    results = pools(WORLD, "shm").run(case_train, False, True, timeout=120)
    _check_training(results, hsdp=True)
    for r in results:
        assert r["placements"]["block.attn.q.weight"] == (
            "(Replicate(), _StridedShard(dim=0, sf=2), Shard(dim=0))"
        )
        assert r["placements"]["block.attn.o.weight"] == "(Replicate(), Shard(dim=0), Shard(dim=1))"


def test_single_process_reference_matches_torch():
    """The reference trajectory itself: the single-process ember GPT's first loss and
    gradients against torch's on the same weights."""
    torch = pytest.importorskip("torch")
    import ember
    import ember.nn.functional as F

    ref = tp_models.ember_gpt()
    tmodel = _torch_gpt(torch, ref)
    toks = tp_models.tokens()
    loss = F.cross_entropy(
        ref(ember.tensor(toks[:, :-1])).reshape(-1, tp_models.VOCAB),
        ember.tensor(toks[:, 1:].reshape(-1)),
    )
    loss.backward()
    idx = torch.from_numpy(toks[:, :-1])
    tloss = torch.nn.functional.cross_entropy(
        tmodel(idx).reshape(-1, tp_models.VOCAB), torch.from_numpy(toks[:, 1:].reshape(-1))
    )
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-12
    tgrads = dict(tmodel.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tgrads[name].grad.numpy(), atol=1e-12)


def test_docs_fsdp_tp_example_matches_single_process(pools):
    text = DOC.read_text()
    section = text[text.index("### FSDP2 over tensor parallelism") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    for losses, ref_losses in pools(WORLD, "shm").run(case_docs_example, code, timeout=120):
        # float32: summed logits of magnitude ~10, so the tolerance is absolute too (a sum
        # that cancels to 0.4 keeps the terms' rounding: 5e-6 apart once the example's weights
        # became torch's float32 normals)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-4)
        assert losses[0] != losses[-1]


def test_dcp_state_dict_with_optimizer(pools, tmp_path):
    path = str(tmp_path / "ckpt")
    for r in pools(WORLD, "shm").run(case_dcp_state_dict, path, timeout=120):
        assert r["model_kind"] == {"DTensor"} and r["whole_kind"] == {"Tensor"}, r
        assert r["exp_avg"] == TORCH_PLACEMENTS["block.attn.q.weight"]
        assert r["resumed_err"] == 0.0 and r["plain_err"] == 0.0 and r["full_err"] == 0.0, r


@pytest.mark.full
def test_mixed_precision_over_tp(pools):
    for r in pools(WORLD, "shm").run(case_mixed_precision, timeout=120):
        assert r["grad_dtypes"] == {"ember.float64"}
        assert 1e-9 < r["grad_err"] < 1e-5, r  # float32 rounding, not float64's


@pytest.mark.full
def test_matches_torch_fsdp_tp(pools, tmp_path):
    """The same run in PyTorch (FSDP2 over TP, gloo, 4 processes; about 20 s)."""
    torch = pytest.importorskip("torch")
    from dist_harness import free_port
    from fsdp_tp_cases import torch_fsdp_tp_rank

    out = str(tmp_path / "torch.npz")
    torch.multiprocessing.spawn(torch_fsdp_tp_rank, args=(free_port(), out), nprocs=WORLD)
    want = np.load(out)
    for r in pools(WORLD, "shm").run(case_train, False, timeout=120):
        np.testing.assert_allclose(r["losses"], want["losses"], rtol=0, atol=1e-12)
        for name, value in r["params"].items():
            # AdamW's sqrt(v) again: measured 1.1e-9
            np.testing.assert_allclose(value, want[name], rtol=0, atol=1e-8, err_msg=name)


def test_ddp_over_tensor_parallel_on_the_dp_mesh_matches_single_process(pools):
    for err, errors in pools(WORLD, "shm").run(case_ddp_tp, timeout=120):
        assert err < 1e-8, err  # AdamW divides by sqrt(v): rounding-level differences grow
        assert "Only 1D device mesh is supported" in errors[0]
        assert errors[1] == "Cannot specify both process_group and device_mesh arguments."
