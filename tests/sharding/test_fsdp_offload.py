"""FSDP(cpu_offload=CPUOffload(offload_params=True)): the shards, their gradients and the
optimizer's step on the host. On a CPU-only model the copies are no-ops; these tests check the
semantics (values, devices, where the optimizer steps), equality with DDP on 4 ranks (CI) and
parity with PyTorch's FSDP on 2 gloo ranks (``full``). PyTorch's own CPUOffload pins memory,
which needs an accelerator, so its reference run is FSDP without offload (offloading changes
no value). The CuPy branch (shard copied up for the all-gather, gradient copied down after the
reduce-scatter) does not run here."""

from __future__ import annotations

import numpy as np
import pytest
from fsdp_ext_worker import CI_ENV, CI_SCENARIOS, CI_WORLD, results
from sharding_worker import Block, make_model

import ember
from ember import _interop
from ember.distributed.fsdp import CPUOffload, ModuleWrapPolicy, ShardingStrategy
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP


def _train(model, steps: int = 3) -> ember.optim.Optimizer:
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = ember.tensor(rng.standard_normal((4, 5)).astype(np.float32))
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return opt


@pytest.mark.usefixtures("pg1")
@pytest.mark.parametrize("strategy", ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD"])
def test_offload_trains_as_without_it_on_the_host(strategy):
    kw = dict(
        auto_wrap_policy=ModuleWrapPolicy({Block}), sharding_strategy=ShardingStrategy[strategy]
    )
    ref = FSDP(make_model(), **kw)
    off = FSDP(make_model(), cpu_offload=CPUOffload(offload_params=True), **kw)
    _train(ref)
    opt = _train(off)
    want, got = ref.state_dict(), off.state_dict()
    for k in want:
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy(), err_msg=k)
    for p in off.parameters():  # the shards, their gradients and the optimizer state: host
        assert p.device.type == "cpu" and p.grad.device.type == "cpu"
        assert isinstance(_interop.array_of(p), np.ndarray)
        assert all(v.device.type == "cpu" for v in opt.state[p].values() if hasattr(v, "device"))
    # the optimizer stepped on the flat shards the unit gathers from
    handles = [h for m in off.modules() for h in getattr(m, "_handles", [])]
    assert {id(h.flat_param) for h in handles} == {id(p) for p in off.parameters()}
    assert all(h.config.offload_params and not h.offload for h in handles)  # CPU: no copies


@pytest.mark.usefixtures("pg1")
def test_bad_cpu_offload_argument():
    with pytest.raises(TypeError, match="cpu_offload must be an ember.distributed.fsdp.CPUOffload"):
        FSDP(make_model(), cpu_offload=True)


def test_four_ranks_match_ddp(tmp_path_factory):
    runs = results("fsdp_ext_worker.py", CI_WORLD, CI_SCENARIOS, tmp_path_factory, env=CI_ENV)
    for rank in range(CI_WORLD):
        e, want = runs[("offload", rank)], runs[("ddp", rank)]
        for k in (k for k in want if k.startswith("param/")):
            np.testing.assert_allclose(e[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert int(e["shard_numel"]) * CI_WORLD == int(e["padded"])


@pytest.mark.full
def test_parity_with_torch_on_two_ranks(tmp_path_factory):
    pytest.importorskip("torch")
    ours = results("fsdp_ext_worker.py", 2, "orig,offload", tmp_path_factory)
    theirs = results("torch_fsdp_ext_ref.py", 2, "orig,offload", tmp_path_factory)
    for rank in range(2):
        e, t = ours[("offload", rank)], theirs[("offload", rank)]
        keys = [k for k in t if k.startswith("param/")]
        assert keys and sorted(keys) == sorted(k for k in e if k.startswith("param/"))
        for k in keys:
            np.testing.assert_allclose(e[k], t[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert int(e["shard_numel"]) * 2 == int(e["padded"])  # sharded over both ranks
