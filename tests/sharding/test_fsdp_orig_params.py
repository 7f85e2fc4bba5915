"""FSDP(use_orig_params=True): the original parameters as views of the flat shard, per-parameter
optimizer groups, equality with DDP on 4 ranks (CI) and parity with PyTorch's
FSDP(use_orig_params=True) on 2 gloo ranks, shard shapes included (``full``)."""

from __future__ import annotations

import numpy as np
import pytest
from fsdp_ext_worker import CI_ENV, CI_SCENARIOS, CI_WORLD, results
from sharding_worker import Block, make_model

import ember
from ember import _interop, nn
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
from ember.distributed.fsdp import ModuleWrapPolicy, ShardingStrategy


def _step(model, opt, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()


@pytest.mark.usefixtures("pg1")
class TestOneRank:
    def test_names_shapes_and_views_of_the_shard(self):
        ref = make_model()
        f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True)
        names = [n for n, _ in f.named_parameters()]
        # PyTorch's names: the wrapper levels stay in named_parameters(), not in state_dict()
        assert names == [
            "_fsdp_wrapped_module."
            + n.replace("1.", "1._fsdp_wrapped_module.", 1).replace(
                "2.", "2._fsdp_wrapped_module.", 1
            )
            for n, _ in ref.named_parameters()
        ]
        assert list(f.state_dict()) == list(ref.state_dict())
        unit = f.module[1]  # a nested unit: its parameters are 1-D views of its flat shard
        flat = _interop.array_of(unit._flat_param)
        w = unit.module.fc.weight
        assert isinstance(w, nn.Parameter) and tuple(w.shape) == (49,)
        assert np.shares_memory(_interop.array_of(w), flat)
        # 16-byte alignment of every original (PyTorch's layout): 49 floats -> bias at 52
        assert unit._handles[0].entries[1].offset == 52

    def test_per_parameter_groups_match_an_unwrapped_model(self):
        def groups(model):
            decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
            rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
            return [{"params": decay, "weight_decay": 0.5}, {"params": rest, "lr": 0.05}]

        ref = make_model()
        f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True)
        ro = ember.optim.AdamW(groups(ref), lr=0.01, weight_decay=0.0)
        fo = ember.optim.AdamW(groups(f), lr=0.01, weight_decay=0.0)
        for s in range(3):
            _step(ref, ro, s)
            _step(f, fo, s)
        got, want = f.state_dict(), ref.state_dict()
        for k in want:
            np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), atol=1e-6, err_msg=k)
        # gradients are views of the flat gradient, with the parameters' shapes
        p = next(f.parameters())
        assert tuple(p.grad.shape) == tuple(p.shape)
        assert np.shares_memory(_interop.array_of(p.grad), _interop.array_of(f._flat_param.grad))

    @pytest.mark.parametrize("strategy", ["FULL_SHARD", "NO_SHARD"])
    def test_data_replaced_in_place_of_the_view_is_written_back(self, strategy):
        f = FSDP(make_model(), sharding_strategy=ShardingStrategy[strategy], use_orig_params=True)
        p = next(f.parameters())
        p.data = ember.full(tuple(p.shape), 0.25)  # new storage: copied into the shard
        f(ember.ones(2, 5))
        with FSDP.summon_full_params(f):
            np.testing.assert_array_equal(f.module[0].weight.numpy(), np.full((7, 5), 0.25))
        assert np.shares_memory(_interop.array_of(p), _interop.array_of(f._flat_param))

    def test_replacing_a_parameter_object_is_an_error(self):
        f = FSDP(make_model(), use_orig_params=True)
        f.module[0].weight = nn.Parameter(ember.zeros(35))
        with pytest.raises(RuntimeError, match="'weight' of Linear was replaced after wrapping"):
            f(ember.ones(2, 5))

    def test_wrong_shape_written_back_is_an_error(self):
        f = FSDP(make_model(), use_orig_params=True)
        p = next(f.parameters())
        _interop.set_array(p, np.zeros((7, 5), np.float32))
        with pytest.raises(RuntimeError, match=r"data of shape \(7, 5\).*view of it has shape"):
            f(ember.ones(2, 5))


def test_four_ranks_match_ddp_with_the_same_groups(tmp_path_factory):
    runs = results("fsdp_ext_worker.py", CI_WORLD, CI_SCENARIOS, tmp_path_factory, env=CI_ENV)
    for rank in range(CI_WORLD):
        e, want = runs[("orig", rank)], runs[("ddp_groups", rank)]
        for k in (k for k in want if k.startswith("param/")):
            np.testing.assert_allclose(e[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    shapes = [s for r in range(CI_WORLD) for s in runs[("orig", r)]["shapes"]]
    assert any(s.endswith(":(0,)") for s in shapes)  # parameters with no elements on a rank


@pytest.mark.full
def test_parity_with_torch_on_two_ranks(tmp_path_factory):
    pytest.importorskip("torch")
    ours = results("fsdp_ext_worker.py", 2, "orig,offload", tmp_path_factory)
    theirs = results("torch_fsdp_ext_ref.py", 2, "orig,offload", tmp_path_factory)
    for rank in range(2):
        e, t = ours[("orig", rank)], theirs[("orig", rank)]
        # the same names, and the same 1-D shard shapes (numel 0 where the shard has none)
        assert list(e["shapes"]) == list(t["shapes"])
        keys = [k for k in t if k.startswith("param/")]
        assert sorted(keys) == sorted(k for k in e if k.startswith("param/"))
        for k in keys:
            np.testing.assert_allclose(e[k], t[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert any(s.endswith(":(0,)") for s in ours[("orig", 0)]["shapes"])


def test_docs_example_runs(tmp_path):
    import pathlib
    import re
    import subprocess
    import sys

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "sharding.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    code = next(b for b in blocks if "use_orig_params=True" in b and "HYBRID_SHARD" in b)
    script = tmp_path / "hsdp_example.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "_fsdp_wrapped_module.0.weight (512,) cpu (512,)"
    assert len(lines) == 4
