"""FSDP2 (``fully_shard``) on 2 real ranks against a one-process reference: an MLP (uneven
shards) and a transformer block with nested ``fully_shard`` per layer + root, 3 steps, in
float64 (SGD and Adam: equal to the last bit); reshard_after_forward True/False,
CPUOffloadPolicy, gradient accumulation with set_requires_gradient_sync(False);
MixedPrecisionPolicy(float16/bfloat16) against a reference doing the same casts; parameter
memory per rank = 1/world of the model (tracemalloc). CI runs one 2-rank launch (the cases
without ``full``); EMBER_FULL_TESTS=1 adds the rest."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from sharding_procs import launch_ranks

import ember
from ember.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fsdp2_worker.py")
FULL = os.environ.get("EMBER_FULL_TESTS") == "1"
CI_PARITY = ["mlp-True", "mlp-False", "mlp-offload", "mlp-accum", "block-True"]
FULL_PARITY = ["block-False"]
CI_MP, FULL_MP = ["float16"], ["bfloat16"]


def _launch(jobs: str, out, world: int = 2, timeout: float = 150) -> None:
    failures = launch_ranks(WORKER, world, [jobs, out], timeout)
    if failures:
        pytest.fail(f"{jobs} failed:\n{failures}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-rank launch for every scenario of this module; returns (folder, suffixes)."""
    out = tmp_path_factory.mktemp("fsdp2")
    parity = CI_PARITY + (FULL_PARITY if FULL else [])
    mp = CI_MP + (FULL_MP if FULL else [])
    jobs = f"parity:{'+'.join(parity)},mixed_precision:{'+'.join(mp)},memory"
    _launch(jobs, out)

    def load(scenario: str, rank: int):
        names = {"parity": parity, "mixed_precision": mp, "memory": ["all"]}[scenario]
        return dict(np.load(out / f"{scenario}-{'-'.join(names)}-rank{rank}.npz"))

    return load


def _cases(ci, full):
    return ci + [pytest.param(c, marks=pytest.mark.full) for c in full]


def _pairs(arrays: dict, case: str):
    got = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{case}/fsdp/")}
    ref = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{case}/ref/")}
    assert got and sorted(got) == sorted(ref)
    return got, ref


@pytest.mark.parametrize("case", _cases(CI_PARITY, FULL_PARITY))
def test_training_matches_one_process(runs, case):
    for rank in range(2):
        arrays = runs("parity", rank)
        got, ref = _pairs(arrays, case)
        for name in ref:
            if case.startswith("mlp"):  # SGD: bitwise
                np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
            else:  # Adam
                np.testing.assert_allclose(got[name], ref[name], rtol=1e-12, atol=1e-14)
        keys = sorted(got)
        assert list(arrays[f"{case}/sd-keys"]) == keys  # the original names, Shard(0) DTensors
        assert bool(arrays[f"{case}/sd-loaded"])
    # the ranks hold the same model
    for name, a in _pairs(runs("parity", 0), case)[0].items():
        np.testing.assert_array_equal(a, _pairs(runs("parity", 1), case)[0][name])


@pytest.mark.parametrize("dtype", _cases(CI_MP, FULL_MP))
def test_mixed_precision_matches_reference(runs, dtype):
    for rank in range(2):
        arrays = runs("mixed_precision", rank)
        got, ref = _pairs(arrays, dtype)
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        # unsharded weight and output in param_dtype; the shard and its gradient float32
        expect = [f"ember.{dtype}", f"ember.{dtype}", "ember.float32", "ember.float32"]
        assert list(arrays[f"{dtype}/dtypes"]) == expect


def test_parameter_memory_is_one_over_world(runs):
    full_params = 4 * (256 * 256 + 256) * 4  # 4 x Linear(256, 256), float32
    for rank in range(2):
        m = runs("memory", rank)
        assert int(m["local_param_bytes"]) == full_params // 2
        # traced NumPy + Python allocations: the full model, then its half (+ hooks, groups)
        assert full_params <= m["full"] < full_params * 1.03
        assert full_params // 2 <= m["sharded"] < full_params // 2 + 48 * 1024
        # after a step the unsharded parameters are handed back; what remains beyond the
        # shards is the collective layer's reused scratch buffer (one layer's gradients)
        assert m["after_step"] - m["sharded"] <= 256 * 256 * 4 + 32 * 1024
        # 4 groups with parameters (the root has none): gathered in forward, again in
        # backward (resharded after forward), one reduce-scatter each
        assert (int(m["all_gathers"]), int(m["reduce_scatters"])) == (8, 4)


@pytest.mark.full
def test_docs_example_runs(tmp_path):
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "sharding.md").read_text()
    code = next(
        c for c in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "fully_shard(" in c
    )
    script = tmp_path / "fully_shard_example.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for r in range(2):
        line = f"{r} FSDPSequential (15, 16) (Shard(dim=0),) ember.float32"
        assert line in lines, proc.stdout


def test_bad_input():
    with pytest.raises(TypeError, match="expected an nn.Module"):
        fully_shard("not a module")
    with pytest.raises(TypeError, match="mp_policy must be a MixedPrecisionPolicy"):
        fully_shard(ember.nn.Linear(2, 2), mp_policy="bf16")
    with pytest.raises(TypeError, match="param_dtype must be an ember dtype"):
        MixedPrecisionPolicy(param_dtype="float16")
    with pytest.raises(ValueError, match="reduce_dtype must be a floating dtype"):
        MixedPrecisionPolicy(reduce_dtype=ember.int32)
    with pytest.raises(NotImplementedError, match="reshard_after_forward must be a bool"):
        fully_shard(ember.nn.Linear(2, 2), reshard_after_forward=2)
    with pytest.raises(TypeError, match="mesh must be a DeviceMesh"):
        fully_shard(ember.nn.Linear(2, 2), mesh="cpu")


def test_one_rank_methods(pg1):
    """In-process on a one-rank group: unshard/reshard swap the registered parameters,
    ignored_params stay plain, set_gradient_divide_factor scales the reduced gradients."""
    from ember.distributed.tensor.parallel import DTensorParameter

    ember.manual_seed(0)
    model = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.Linear(4, 2)).double()
    plain = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.Linear(4, 2)).double()
    plain.load_state_dict(model.state_dict())
    fully_shard(model[0])
    fully_shard(model, ignored_params={model[1].bias})
    assert type(model).__name__ == "FSDPSequential" and isinstance(model, FSDPModule)
    assert isinstance(model[0].weight, DTensorParameter)
    assert type(model[1].bias) is ember.nn.Parameter  # ignored
    model[0].unshard()
    assert type(model[0].weight) is ember.nn.Parameter
    model[0].reshard()
    assert isinstance(model[0].weight, DTensorParameter)
    model.set_gradient_divide_factor(2.0)
    x = ember.randn(5, 3, dtype=ember.float64)
    model(x).sum().backward()
    plain(x).sum().backward()
    for name in ("0.weight", "0.bias", "1.weight"):
        got = dict(model.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(got, dict(plain.named_parameters())[name].grad.numpy() / 2)
    np.testing.assert_array_equal(model[1].bias.grad.numpy(), plain[1].bias.grad.numpy())


def test_parameter_shared_between_groups_is_an_error(pg1):
    emb = ember.nn.Embedding(6, 4)
    head = ember.nn.Linear(4, 6, bias=False)
    head.weight = emb.weight  # tied
    model = ember.nn.Sequential(emb, head)
    fully_shard(model[0])
    with pytest.raises(ValueError, match="parameter 'weight' is already managed by another"):
        fully_shard(model[1])


def test_one_rank_input_and_output_casts(pg1):
    ember.manual_seed(0)
    model = ember.nn.Linear(3, 2)  # float32
    mp = MixedPrecisionPolicy(param_dtype=ember.float16, output_dtype=ember.float64)
    fully_shard(model, mp_policy=mp)
    x = ember.randn(4, 3, dtype=ember.float64)  # cast to float16 on the way in
    w, b = (t.full_tensor().detach().to(ember.float16) for t in (model.weight, model.bias))
    out = model(x)
    assert out.dtype is ember.float64
    # the root keeps its gathered (float16) parameters after forward, as PyTorch
    assert model.weight.dtype is ember.float16
    ref = ember.nn.functional.linear(x.to(ember.float16), w, b).to(ember.float64)
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    out.sum().backward()
    assert model.weight.grad.dtype is ember.float32
