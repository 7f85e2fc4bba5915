"""FSDP / ZeRO mechanics in one process (a one-rank group): state dicts, summon_full_params,
freeing after forward, units used twice, tied weights, no_sync, wrap policies, ZeRO-1 state,
mixed precision (also against PyTorch's FSDP)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from sharding_worker import Block, make_model

import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import (
    FullyShardedDataParallel as FSDP,
)
from ember.distributed.fsdp import (
    MixedPrecision,
    ModuleWrapPolicy,
    ShardingStrategy,
    StateDictType,
    checkpoint,
    size_based_auto_wrap_policy,
)
from ember.distributed.optim import ZeroDataParallel, ZeroRedundancyOptimizer

pytestmark = pytest.mark.usefixtures("pg1")


def _units(model):
    return [m for m in model.modules() if isinstance(m, FSDP)]


def _step(model, opt, x, y):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _data(n=6):
    rng = np.random.default_rng(0)
    return (
        ember.tensor(rng.standard_normal((n, 5)).astype(np.float32)),
        ember.tensor(rng.integers(0, 3, n)),
    )


def test_full_state_dict_is_the_unwrapped_models():
    plain = make_model()
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    assert len(_units(f)) == 3
    sd, ref = f.state_dict(), plain.state_dict()
    assert list(sd) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(sd[k].numpy(), ref[k].numpy())
    # flat parameters are what the optimizer sees
    assert [n for n, _ in f.named_parameters()][0] == "_flat_param"
    assert sum(p.numel() for p in f.parameters()) == sum(p.numel() for p in plain.parameters())


def test_training_matches_plain_model_and_frees_after_forward():
    x, y = _data()
    plain = make_model()
    popt = ember.optim.Adam(plain.parameters(), lr=0.01)
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    opt = ember.optim.Adam(f.parameters(), lr=0.01)
    for _ in range(3):
        _step(plain, popt, x, y)
        _step(f, opt, x, y)
    sd = f.state_dict()
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(sd[k].numpy(), v.numpy(), atol=1e-6)
    out = f(x)  # after forward: nested units freed, the root kept for backward
    root, *nested = _units(f)
    assert all(not h.storage.resident for u in nested for h in u._handles)
    assert all(h.storage.resident for h in root._handles)
    out.sum().backward()
    assert not any(h.storage.resident for u in _units(f) for h in u._handles)


def test_unit_called_twice_in_one_forward():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(5, 7)
            self.block = Block(7)
            self.out = nn.Linear(7, 3)

        def forward(self, x):
            return self.out(self.block(self.block(self.inp(x))))

    x, y = _data()
    ember.manual_seed(1)
    plain = Twice()
    ember.manual_seed(1)
    f = FSDP(Twice(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    nn.functional.cross_entropy(plain(x), y).backward()
    nn.functional.cross_entropy(f(x), y).backward()
    flat = _units(f)[1]._flat_param.grad.numpy()
    ref = np.concatenate([p.grad.numpy().reshape(-1) for p in plain.block.parameters()])
    np.testing.assert_allclose(flat[: ref.size], ref, atol=1e-6)


def test_tied_weights_in_one_unit():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 4)
            self.head = nn.Linear(4, 11, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, t):
            return self.head(self.emb(t))

    t = ember.tensor(np.arange(6) % 11)
    ember.manual_seed(2)
    plain = Tied()
    ember.manual_seed(2)
    f = FSDP(Tied())
    assert f._flat_param.numel() == 44  # the shared weight is flattened once
    popt, opt = ember.optim.SGD(plain.parameters(), lr=0.1), ember.optim.SGD(f.parameters(), lr=0.1)
    for _ in range(2):
        _step(plain, popt, t, t)
        _step(f, opt, t, t)
    sd = f.state_dict()
    assert sorted(sd) == ["emb.weight", "head.weight"]
    np.testing.assert_allclose(
        sd["head.weight"].numpy(), plain.head.weight.detach().numpy(), atol=1e-6
    )


def test_summon_full_params_writeback():
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    with FSDP.summon_full_params(f):
        w = f.module[1].fc.weight
        assert tuple(w.shape) == (7, 7)
        w._data[...] = 3.0
    assert not any(h.storage.resident for u in _units(f) for h in u._handles)
    assert np.all(f.state_dict()["1.fc.weight"].numpy() == 3.0)
    with FSDP.summon_full_params(f, writeback=False):
        f.module[1].fc.weight._data[...] = 5.0
    assert np.all(f.state_dict()["1.fc.weight"].numpy() == 3.0)


def test_no_sync_accumulates_like_the_plain_model():
    x, y = _data(8)
    plain = make_model()
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    for model in (plain, f):
        with model.no_sync() if model is f else _nothing():
            nn.functional.cross_entropy(model(x[:4]), y[:4]).backward()
        nn.functional.cross_entropy(model(x[4:]), y[4:]).backward()
    got = np.concatenate([p.grad.numpy() for p in f.parameters()])
    assert np.abs(got).sum() > 0
    with FSDP.summon_full_params(f):  # compare unit by unit through the flat layout
        for u in _units(f):
            for h in u._handles:
                names = h.names({(id(m), n): n for e in h.entries for m, n in e.aliases})
                assert len(names) == len(h.entries)
    ref = sum(float(np.abs(p.grad.numpy()).sum()) for p in plain.parameters())
    np.testing.assert_allclose(float(np.abs(got).sum()), ref, rtol=1e-5)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_eval_under_no_grad_frees_everything():
    f = FSDP(
        make_model(),
        sharding_strategy=ShardingStrategy.SHARD_GRAD_OP,
        auto_wrap_policy=ModuleWrapPolicy({Block}),
    )
    with ember.no_grad():
        out = f(ember.randn(3, 5))
    assert tuple(out.shape) == (3, 3)
    assert not any(h.storage.resident for u in _units(f) for h in u._handles)


def test_wrap_policies():
    sized = FSDP(
        make_model(),
        auto_wrap_policy=functools.partial(size_based_auto_wrap_policy, min_num_params=60),
    )
    assert [type(u.module).__name__ for u in _units(sized)] == ["Sequential", "Block", "Block"]
    by_set = FSDP(make_model(), auto_wrap_policy={nn.Linear})
    assert len(_units(by_set)) == 1 + 4  # the root and every Linear
    assert len(_units(FSDP(make_model()))) == 1


def test_sharded_state_dict_round_trip(tmp_path):
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    with FSDP.state_dict_type(f, StateDictType.SHARDED_STATE_DICT):
        sd = f.state_dict()
    assert sd["1.fc.weight"]["kind"] == "ember.shard"
    full = checkpoint.consolidate_state_dicts([sd])
    ref = make_model().state_dict()
    for k in ref:
        np.testing.assert_array_equal(full[k].numpy(), ref[k].numpy())
    g = FSDP(
        nn.Sequential(nn.Linear(5, 7), Block(7), Block(7), nn.Linear(7, 3)),
        auto_wrap_policy=ModuleWrapPolicy({Block}),
    )
    g.load_state_dict(sd)
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k].numpy())


def test_zero_data_parallel_state_dict_and_memory():
    x, y = _data()
    z = ZeroDataParallel(make_model(), stage=2)
    opt = ember.optim.Adam(z.parameters(), lr=0.01)
    _step(z, opt, x, y)
    assert list(z.state_dict()) == list(make_model().state_dict())
    text = dist.memory_summary(z, opt)
    for word in ("parameters", "gradients", "optimizer state", "communication buffers"):
        assert word in text


def test_zero_optimizer_consolidates_into_a_plain_layout():
    x, y = _data()
    plain = make_model()
    popt = ember.optim.Adam(plain.parameters(), lr=0.01)
    m = make_model()
    zopt = ZeroRedundancyOptimizer(m.parameters(), ember.optim.Adam, lr=0.01)
    sched = ember.optim.lr_scheduler.StepLR(zopt, step_size=1, gamma=0.5)
    psched = ember.optim.lr_scheduler.StepLR(popt, step_size=1, gamma=0.5)
    for _ in range(3):
        _step(plain, popt, x, y)
        _step(m, zopt, x, y)
        sched.step()
        psched.step()
    # the scheduler sets the global groups; the local optimizer follows at each step
    assert zopt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)
    assert zopt.optim.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)
    for a, b in zip(m.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6)
    zopt.consolidate_state_dict(to=0)
    sd, ref = zopt.state_dict(), popt.state_dict()
    assert sorted(sd["state"]) == sorted(ref["state"])
    for i in ref["state"]:
        for k in ref["state"][i]:
            np.testing.assert_allclose(
                sd["state"][i][k].numpy(), ref["state"][i][k].numpy(), atol=1e-6
            )
    fresh = ZeroRedundancyOptimizer(make_model().parameters(), ember.optim.Adam, lr=0.01)
    fresh.load_state_dict(ref)  # a plain optimizer's state loads too
    st = fresh.optim.state[fresh.optim.param_groups[0]["params"][0]]
    assert float(st["step"]) == 3.0


def test_two_forwards_one_backward_and_clip_grad_norm():
    x, y = _data(8)
    plain = make_model()
    f = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    for model in (plain, f):
        loss = nn.functional.cross_entropy(model(x[:4]), y[:4]) + nn.functional.cross_entropy(
            model(x[4:]), y[4:]
        )
        loss.backward()
    ref = np.sqrt(
        sum(float((p.grad.numpy().astype(np.float64) ** 2).sum()) for p in plain.parameters())
    )
    norm = f.clip_grad_norm_(ref / 2)
    assert float(norm) == pytest.approx(ref, rel=1e-5)
    clipped = np.sqrt(
        sum(float((p.grad.numpy().astype(np.float64) ** 2).sum()) for p in f.parameters())
    )
    assert clipped == pytest.approx(ref / 2, rel=1e-4)


def test_zero_optimizer_param_groups_and_default_memory_report():
    x, y = _data()
    plain, m = make_model(), make_model()

    def groups(model):
        return [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": [p for i in (1, 2, 3) for p in model[i].parameters()]},
        ]

    popt = ember.optim.SGD(groups(plain), lr=0.01, momentum=0.9)
    zopt = ZeroRedundancyOptimizer(groups(m), ember.optim.SGD, lr=0.01, momentum=0.9)
    assert [g["lr"] for g in zopt.optim.param_groups] == [0.1, 0.01]
    for _ in range(2):
        _step(plain, popt, x, y)
        _step(m, zopt, x, y)
    for a, b in zip(m.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6)
    everything = dist.memory_report()  # every live module and optimizer
    mine = dist.memory_report(m, zopt)
    assert everything["parameters"] >= mine["parameters"] > 0
    assert mine["optimizer_state"] == 4 * sum(p.numel() for p in m.parameters())


# ---- mixed precision on one rank --------------------------------------------------------
def _bf16(**kw):
    return MixedPrecision(param_dtype=ember.bfloat16, **kw)


def test_mixed_precision_summon_eval_and_no_sync():
    f = FSDP(make_model(), mixed_precision=_bf16(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    plain = make_model()
    with FSDP.summon_full_params(f):  # the fp32 values, not the bf16 compute copy
        w = f.module[1].fc.weight
        assert w.dtype == ember.float32
        np.testing.assert_array_equal(w.numpy(), plain[1].fc.weight.detach().numpy())
    with ember.no_grad():
        assert f(ember.randn(3, 5)).dtype == ember.bfloat16
    assert not any(
        h.storage.resident or h.mp_storage.resident for u in _units(f) for h in u._handles
    )
    ns = FSDP(make_model(), mixed_precision=_bf16(), sharding_strategy=ShardingStrategy.NO_SHARD)
    assert np.abs(ns(ember.randn(3, 5)).float().detach().numpy()).sum() > 0
    with FSDP.summon_full_params(ns):  # edits reach the bf16 copy NO_SHARD keeps
        ns.module[3].weight._data[...] = 0
        ns.module[3].bias._data[...] = 0
    assert not np.any(ns(ember.randn(3, 5)).float().detach().numpy())
    # no_sync: bf16 gradients accumulate as a bf16 model's do, then reach .grad as fp32
    x, y = _data(8)
    low = make_model().to(ember.bfloat16)
    with f.no_sync():
        nn.functional.cross_entropy(f(x[:4]), y[:4]).backward()
    nn.functional.cross_entropy(f(x[4:]), y[4:]).backward()
    for part in (slice(0, 4), slice(4, 8)):
        nn.functional.cross_entropy(low(x[part].to(ember.bfloat16)), y[part]).backward()
    assert {p.grad.dtype for p in f.parameters()} == {ember.float32}
    got = np.sort(np.concatenate([p.grad.numpy() for p in f.parameters()]))
    want = np.sort(np.concatenate([p.grad.float().numpy().ravel() for p in low.parameters()]))
    np.testing.assert_array_equal(got, want)


def test_mixed_precision_casts_forward_inputs():
    from ember.distributed.fsdp._mixed_precision import cast_inputs

    x, idx = ember.randn(2, 7), ember.tensor([1, 0])
    args, kwargs = cast_inputs(ember.bfloat16, (x, idx), {"h": x.double()})
    assert (args[0].dtype, args[1].dtype, kwargs["h"].dtype) == (
        ember.bfloat16,
        idx.dtype,
        ember.bfloat16,
    )  # only floating-point tensors are cast
    policy = ModuleWrapPolicy({Block})
    # the root has no parameters of its own: the blocks cast their inputs themselves
    f = FSDP(
        nn.Sequential(Block(7), Block(7)),
        auto_wrap_policy=policy,
        mixed_precision=_bf16(cast_root_forward_inputs=False, cast_forward_inputs=True),
    )
    assert f(x).dtype == ember.bfloat16
    buffers = FSDP(
        nn.Sequential(nn.BatchNorm1d(7)), mixed_precision=MixedPrecision(buffer_dtype=ember.float16)
    )
    buffers(x)
    bn = buffers.module[0]
    assert bn.running_mean.dtype == ember.float16  # cast at the first forward
    assert bn.weight.dtype == ember.float32  # parameters untouched without param_dtype
    sd = buffers.state_dict()
    assert sd["0.running_mean"].dtype == ember.float32
    assert sd["0.num_batches_tracked"].dtype == ember.int64


def test_mixed_precision_matches_torch_fsdp(tmp_path):
    """The same weights and input through PyTorch's FSDP and ember's, both with
    MixedPrecision(bfloat16, reduce_dtype=float32, buffer_dtype=bfloat16): dtypes, output,
    the parameters after one SGD step, and the buffer round trip."""
    pytest.importorskip("torch")
    out = tmp_path / "torch_mp.npz"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_mp_ref.py")
    proc = subprocess.run(
        [sys.executable, script, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = dict(np.load(out))
    m = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    m.register_buffer("stat", ember.full((3,), 1.1))
    m.load_state_dict({k[5:]: ember.tensor(v) for k, v in ref.items() if k.startswith("init/")})
    mp = MixedPrecision(ember.bfloat16, reduce_dtype=ember.float32, buffer_dtype=ember.bfloat16)
    f = FSDP(m, mixed_precision=mp)
    opt = ember.optim.SGD(f.parameters(), lr=1.0)
    y = f(ember.tensor(ref["x"]))
    y.float().square().sum().backward()
    meta = [str(y.dtype), str(m.stat.dtype), *sorted({str(p.grad.dtype) for p in f.parameters()})]
    assert [s.replace("ember.", "torch.") for s in meta] == list(ref["meta"])
    np.testing.assert_allclose(y.float().detach().numpy(), ref["y"], rtol=2**-7, atol=1e-2)
    opt.step()
    sd = f.state_dict()
    assert sorted(sd) == sorted(k[6:] for k in ref if k.startswith("after/"))
    for k, v in sd.items():
        assert v.dtype == ember.float32, k
        np.testing.assert_allclose(v.numpy(), ref["after/" + k], rtol=2**-7, atol=2e-2, err_msg=k)
    np.testing.assert_array_equal(sd["stat"].numpy(), ref["after/stat"])  # 1.1 via bf16
