"""DataParallel and its pieces (replicate, scatter, parallel_apply, gather, data_parallel).

The machinery takes ``ember.device`` objects, the CPU included, so every rule is checked here on
[cpu, cpu, cpu] "devices": outputs and parameter gradients equal the plain module's on the whole
batch (float32, atol 1e-5), chunking follows ``torch.Tensor.chunk``, buffers follow PyTorch (the
first replica shares them). The ``gpu`` tests run DataParallel on two GPUs.
"""

from __future__ import annotations

import collections
import pathlib
import re

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.distributed.parallel.data_parallel import _replica_shell
from ember.nn.parallel import (
    DataParallel,
    data_parallel,
    gather,
    parallel_apply,
    replicate,
    scatter,
    scatter_kwargs,
)

CPU = ember.device("cpu")
CPUS = [CPU, CPU, CPU]
ATOL = 1e-5


def _np(t):
    return t.detach().cpu().numpy()


def _grads(module):
    return [_np(p.grad) for p in module.parameters()]


def _mlp(seed=0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _assert_close_lists(a, b, atol=ATOL):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5)


def _plain_and_parallel(module, x, run_parallel):
    """Outputs and gradients (of a loss over the whole output) for the plain call and
    ``run_parallel(module, x)``; x requires grad so the input gradient is compared too."""
    results = []
    for run in (lambda m, v: m(v), run_parallel):
        module.zero_grad()
        xi = x.detach().requires_grad_(True)
        out = run(module, xi)
        (out * out).mean().backward()
        results.append((_np(out), _grads(module), _np(xi.grad)))
    return results


# ---- outputs and gradients ----------------------------------------------------------------------
@pytest.mark.parametrize("batch", [9, 10, 12])  # uneven (4, 4, 1) and (4, 4, 2) chunks, even
def test_outputs_and_gradients_equal_the_plain_module(batch):
    m = _mlp()
    x = ember.randn(batch, 6)
    (o1, g1, xg1), (o2, g2, xg2) = _plain_and_parallel(
        m, x, lambda m, v: data_parallel(m, v, device_ids=CPUS)
    )
    np.testing.assert_allclose(o2, o1, atol=ATOL)
    _assert_close_lists(g2, g1)
    np.testing.assert_allclose(xg2, xg1, atol=ATOL)


def test_gradients_match_torch_on_the_whole_batch():
    torch = pytest.importorskip("torch")
    m = _mlp(1)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    tm.load_state_dict({k: torch.tensor(_np(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((11, 6)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 11)
    out = data_parallel(m, ember.tensor(x), device_ids=CPUS)
    F.cross_entropy(out, ember.tensor(y)).backward()
    tout = tm(torch.tensor(x))
    torch.nn.functional.cross_entropy(tout, torch.tensor(y)).backward()
    np.testing.assert_allclose(_np(out), tout.detach().numpy(), atol=ATOL)
    _assert_close_lists(_grads(m), [p.grad.numpy() for p in tm.parameters()])


def test_training_steps_follow_the_plain_module():
    a, b = _mlp(2), _mlp(2)
    opt_a = ember.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = ember.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x, y = ember.randn(10, 6), ember.randint(0, 3, (10,))
        for opt, run in (
            (opt_a, lambda v: a(v)),
            (opt_b, lambda v: data_parallel(b, v, device_ids=CPUS)),
        ):
            opt.zero_grad()
            F.cross_entropy(run(x), y).backward()
            opt.step()
    _assert_close_lists([_np(p) for p in b.parameters()], [_np(p) for p in a.parameters()])


def test_tied_parameters_and_a_shared_submodule():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(5, 5)
            self.again = self.inner  # the same module twice
            self.scale = nn.Parameter(ember.ones(5))

        def forward(self, x):
            return self.again(self.inner(x) * self.scale) * self.scale

    ember.manual_seed(3)
    m = Tied()
    (o1, g1, _), (o2, g2, _) = _plain_and_parallel(
        m, ember.randn(7, 5), lambda m, v: data_parallel(m, v, device_ids=CPUS)
    )
    np.testing.assert_allclose(o2, o1, atol=ATOL)
    _assert_close_lists(g2, g1)
    r = replicate(m, CPUS)[1]
    assert r.inner is r.again and r.inner is not m.inner


def test_dim_1_scatters_and_gathers_along_that_dim():
    ember.manual_seed(4)
    m = nn.Linear(4, 2)
    seen = []
    m.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    (o1, g1, _), (o2, g2, _) = _plain_and_parallel(
        m, ember.randn(3, 7, 4), lambda m, v: data_parallel(m, v, device_ids=CPUS, dim=1)
    )
    np.testing.assert_allclose(o2, o1, atol=ATOL)
    _assert_close_lists(g2, g1)
    assert sorted(seen[1:]) == sorted([(3, 3, 4), (3, 3, 4), (3, 1, 4)])


class _LastStates(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]  # (h, c) have the batch in dim 1: gathering them needs dim=1


def test_an_lstm_runs_on_replicas():
    """Replicas keep their parameter copies in ``_parameters``, which the RNNs read."""
    ember.manual_seed(5)
    m = _LastStates()
    (o1, g1, x1), (o2, g2, x2) = _plain_and_parallel(
        m, ember.randn(5, 4, 3), lambda m, v: data_parallel(m, v, device_ids=CPUS)
    )
    np.testing.assert_allclose(o2, o1, atol=ATOL)
    _assert_close_lists(g2, g1)
    np.testing.assert_allclose(x2, x1, atol=ATOL)


# ---- scatter ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k", [(10, 3), (9, 3), (5, 4), (2, 4), (1, 3), (7, 7), (8, 3)])
def test_scatter_chunks_as_torch_chunk(n, k):
    torch = pytest.importorskip("torch")
    x = ember.arange(n * 2).reshape(n, 2)
    pieces = scatter(x, [CPU] * k)
    expected = torch.arange(n * 2).reshape(n, 2).chunk(k)
    assert [tuple(p.shape) for p in pieces] == [tuple(e.shape) for e in expected]
    for p, e in zip(pieces, expected):
        np.testing.assert_array_equal(_np(p), e.numpy())


def test_nested_inputs_and_kwargs_scatter_per_replica():
    Pair = collections.namedtuple("Pair", "left right")
    x = ember.arange(12.0).reshape(6, 2)
    inputs = (x, [x * 2, (x * 3, "tag")], Pair(x, 7), {"d": x * 4})
    kwargs = {"mask": ember.arange(6.0), "scale": 2.5, "opts": {"flag": True}}
    ins, kws = scatter_kwargs(inputs, kwargs, CPUS)
    assert len(ins) == len(kws) == 3
    rows = [slice(0, 2), slice(2, 4), slice(4, 6)]
    for (a, (b, (c, tag)), pair, d), kw, r in zip(ins, kws, rows):
        ref = _np(x)[r]
        np.testing.assert_array_equal(_np(a), ref)
        np.testing.assert_array_equal(_np(b), ref * 2)
        np.testing.assert_array_equal(_np(c), ref * 3)
        assert tag == "tag" and pair.right == 7 and isinstance(pair, Pair)
        np.testing.assert_array_equal(_np(pair.left), ref)
        np.testing.assert_array_equal(_np(d["d"]), ref * 4)
        np.testing.assert_array_equal(_np(kw["mask"]), np.arange(6.0)[r])
        assert kw["scale"] == 2.5 and kw["opts"] == {"flag": True}


def test_kwargs_only_and_no_arguments():
    ins, kws = scatter_kwargs((), {"x": ember.ones(4, 1)}, CPUS)  # chunks of 2: two replicas
    assert ins == ((), ()) and [tuple(k["x"].shape) for k in kws] == [(2, 1), (2, 1)]
    ins, kws = scatter_kwargs((ember.ones(3, 1),), None, CPUS)
    assert kws == ({}, {}, {})

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ember.ones(2))

        def forward(self, x=None):
            return self.w * 2 if x is None else self.w * x

    m = Constant()
    np.testing.assert_array_equal(_np(data_parallel(m, None, device_ids=CPUS)), [2.0, 2.0])
    out = data_parallel(m, (), device_ids=CPUS, module_kwargs={"x": ember.ones(3, 2)})
    assert tuple(out.shape) == (3, 2)


def test_kwargs_reach_the_module_and_match_the_plain_call():
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x, extra, *, mask, scale=1.0):
            return (self.fc(x) + extra["bias"]) * mask.unsqueeze(1) * scale

    ember.manual_seed(6)
    m = Masked()
    x, bias, mask = ember.randn(8, 4), ember.randn(8, 4), (ember.arange(8) % 2).float()
    ref = m(x, {"bias": bias}, mask=mask, scale=3.0)
    out = data_parallel(
        m, (x, {"bias": bias}), device_ids=CPUS, module_kwargs={"mask": mask, "scale": 3.0}
    )
    np.testing.assert_allclose(_np(out), _np(ref), atol=ATOL)


# ---- small batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,chunks", [(2, [1, 1]), (5, [2, 2, 1]), (1, [1])])
def test_a_batch_smaller_than_the_devices_runs_fewer_replicas(batch, chunks):
    m = _mlp(7)
    calls = []
    m.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[0]))
    x = ember.randn(batch, 6)
    out = data_parallel(m, x, device_ids=[CPU] * 4)
    assert sorted(calls, reverse=True) == chunks
    np.testing.assert_allclose(_np(out), _np(m(x)), atol=ATOL)


# ---- gather -------------------------------------------------------------------------------------
def test_structured_outputs_gather_like_the_plain_call():
    Out = collections.namedtuple("Out", "y z")

    class Multi(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            y = self.fc(x)
            return {"out": Out(y, y.sum(1, keepdim=True)), "pair": [y * 2, None]}

    ember.manual_seed(8)
    m = Multi()
    x = ember.randn(7, 3)
    ref, got = m(x), data_parallel(m, x, device_ids=CPUS)
    assert isinstance(got["out"], Out) and got["pair"][1] is None
    np.testing.assert_allclose(_np(got["out"].y), _np(ref["out"].y), atol=ATOL)
    np.testing.assert_allclose(_np(got["out"].z), _np(ref["out"].z), atol=ATOL)
    np.testing.assert_allclose(_np(got["pair"][0]), _np(ref["pair"][0]), atol=ATOL)
    with pytest.raises(ValueError, match="All dicts must have the same number of keys"):
        gather([{"a": ember.ones(1)}, {"a": ember.ones(1), "b": ember.ones(1)}], CPU)


class _Sum(nn.Module):
    def forward(self, x):
        return x.sum()


def test_scalar_outputs_become_one_entry_per_replica():
    m = _mlp(9)
    x = ember.randn(9, 6)
    with pytest.warns(UserWarning, match="all input tensors were scalars"):
        out = data_parallel(nn.Sequential(m, _Sum()), x, device_ids=CPUS)
    expected = [_np(m(x[i : i + 3]).sum()) for i in (0, 3, 6)]
    np.testing.assert_allclose(_np(out), expected, atol=1e-4)
    out.sum().backward()  # differentiable through the unsqueeze
    grads = _grads(m)
    m.zero_grad()
    m(x).sum().backward()
    _assert_close_lists(grads, _grads(m), atol=1e-4)


# ---- replicate and buffers ----------------------------------------------------------------------
def test_replicas_copy_parameters_differentiably_and_the_first_shares_memory():
    m = _mlp(10)
    reps = replicate(m, CPUS)
    w = m[0].weight
    r0, r1 = reps[0][0].weight, reps[1][0].weight
    assert not r0.is_leaf and not r1.is_leaf and r0.requires_grad
    assert np.shares_memory(r0._data, w._data) and not np.shares_memory(r1._data, w._data)
    originals = {id(p) for p in m.parameters()}
    assert not any(id(p) in originals for r in reps for p in r.parameters())
    np.testing.assert_array_equal(_np(r1), _np(w))
    assert all(not p.requires_grad for p in replicate(m, CPUS, detach=True)[1].parameters())
    with ember.no_grad():
        out = data_parallel(m, ember.randn(6, 6), device_ids=CPUS)
    assert not out.requires_grad


def test_buffers_as_pytorch_the_first_replica_shares_them():
    def make():
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))

    ember.manual_seed(11)
    m, per_chunk, first_chunk = make(), make(), make()
    per_chunk.load_state_dict(m.state_dict())
    first_chunk.load_state_dict(m.state_dict())
    bn = m[1]
    reps = replicate(m, CPUS)
    assert reps[0][1].running_mean is bn.running_mean
    assert reps[1][1].running_mean is not bn.running_mean
    x = ember.randn(12, 4)
    out = data_parallel(m, x, device_ids=CPUS)
    # training-mode BatchNorm normalises each chunk with its own statistics ...
    chunks = [_np(per_chunk(x[i : i + 4])) for i in (0, 4, 8)]
    np.testing.assert_allclose(_np(out), np.concatenate(chunks), atol=ATOL)
    # ... and only the first replica's running-statistics update is kept (its chunk is x[:4])
    first_chunk(x[:4])
    np.testing.assert_allclose(_np(bn.running_mean), _np(first_chunk[1].running_mean), atol=ATOL)
    np.testing.assert_allclose(_np(bn.running_var), _np(first_chunk[1].running_var), atol=ATOL)
    assert int(bn.num_batches_tracked.item()) == 1


def test_a_custom_replicate_hook_is_used():
    class Counter(nn.Linear):
        made = 0

        def _replicate_for_data_parallel(self):
            type(self).made += 1
            replica = self.__new__(type(self))
            replica.__dict__ = self.__dict__.copy()
            return replica

    m = Counter(2, 2)
    reps = replicate(m, CPUS)
    assert Counter.made == 3 and all(isinstance(r, Counter) for r in reps)
    assert _replica_shell(nn.Linear(1, 1))._is_replica


# ---- parallel_apply -----------------------------------------------------------------------------
def test_an_exception_in_a_replica_is_raised_with_its_index():
    class Picky(nn.Module):
        def forward(self, x):
            if x.shape[0] == 1:
                raise ValueError("chunk of one row")
            return x

    with pytest.raises(
        ValueError,
        match=r"Caught ValueError in replica 2 on device cpu"
        r"(.|\n)*chunk of one row",
    ):
        data_parallel(Picky(), ember.ones(5, 2), device_ids=CPUS)


def test_parallel_apply_directly():
    mods = [nn.Identity(), nn.Identity()]
    a, b = ember.ones(2), ember.zeros(3)
    outs = parallel_apply(mods, [a, (b,)])  # devices from the inputs; a bare input is one arg
    assert outs[0] is a and outs[1] is b
    with pytest.raises(RuntimeError, match="in replica 1(.|\n)*device cannot be resolved"):
        parallel_apply(mods, [(a,), ("no tensor",)])
    with pytest.raises(
        AssertionError, match="number of modules 2 is not equal to the number of inputs 1"
    ):
        parallel_apply(mods, [a])
    with ember.no_grad():  # grad mode reaches the worker threads
        out = parallel_apply([nn.Linear(2, 2)] * 2, [ember.ones(1, 2)] * 2)
    assert not any(o.requires_grad for o in out)


# ---- errors and the DataParallel module ---------------------------------------------------------
def test_parameters_off_device_ids_0_are_an_error():
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            "module must have its parameters and buffers on device cuda:0 (device_ids[0]) but "
            "found one of them on device: cpu"
        ),
    ):
        data_parallel(_mlp(), ember.ones(4, 6), device_ids=["cuda:0", "cuda:1"])


def _cpu_data_parallel(module, n=3, **kw):
    """DataParallel's multi-device path over n CPU "devices" (it takes that path only for
    several CUDA devices, so the attributes its constructor would set are set here)."""
    dp = DataParallel(module, **kw)
    dp.device_ids, dp.src_device_obj, dp.output_device = [CPU] * n, CPU, CPU
    dp.dim = kw.get("dim", 0)
    return dp


def test_the_module_on_its_multi_device_path():
    m = _mlp(12)
    dp = _cpu_data_parallel(m)
    calls = []
    m.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[0]))
    (o1, g1, _), (o2, g2, _) = _plain_and_parallel(m, ember.randn(8, 6), lambda _, v: dp(v))
    assert calls[0] == 8 and sorted(calls[1:]) == [2, 3, 3]  # the plain call, then replicas
    np.testing.assert_allclose(o2, o1, atol=ATOL)
    _assert_close_lists(g2, g1)
    with ember.no_grad():  # replicate(detach=True) under no_grad
        assert not dp(ember.randn(4, 6)).requires_grad


@pytest.mark.skipif(ember.cuda.is_available(), reason="the CPU-only behaviour")
def test_without_cuda_it_calls_the_module_and_has_no_prefix_surprise():
    m = _mlp(13)
    dp = DataParallel(m, device_ids=[0, 1])
    assert dp.module is m and dp.device_ids == []
    x = ember.randn(3, 6)
    np.testing.assert_array_equal(_np(dp(x)), _np(m(x)))
    sd = dp.state_dict()
    assert list(sd) == list(m.state_dict()) and not any(k.startswith("module.") for k in sd)
    other = DataParallel(_mlp(14))
    other.load_state_dict({"module." + k: v for k, v in sd.items()})
    other.load_state_dict(sd)
    np.testing.assert_array_equal(_np(other.module[0].weight), _np(m[0].weight))


def test_old_and_pytorch_import_paths():
    from ember.distributed.parallel.data_parallel import DataParallel as a
    from ember.distributed.parallel.ddp import DataParallel as b

    assert a is b is DataParallel
    assert ember.nn.parallel.replicate is replicate


def test_the_docs_snippet_runs():
    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "distributed.md"
    section = doc.read_text().split("## DataParallel\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert code, "the DataParallel section lost its snippet"
    exec(compile(code[0], str(doc), "exec"), {})


# ---- GPUs ---------------------------------------------------------------------------------------
two_gpus = pytest.mark.skipif(ember.cuda.device_count() < 2, reason="needs 2 CUDA devices")


def _gpu_pair(seed=20, bn=False):
    """Two identical models on cuda:0: one runs plainly, the other under DataParallel."""

    def make():
        ember.manual_seed(seed)
        mid = [nn.BatchNorm1d(16)] if bn else []
        return nn.Sequential(nn.Linear(6, 16), *mid, nn.ReLU(), nn.Linear(16, 3)).to("cuda:0")

    return make(), make()


@pytest.mark.gpu
@two_gpus
@pytest.mark.parametrize("where", ["cpu", "cuda:0", "cuda:1"])
def test_gpu_two_devices_equal_one(where):
    one, two = _gpu_pair()
    dp = DataParallel(two, device_ids=[0, 1])
    x = ember.randn(11, 6).to(where)
    ref, out = one(x.to("cuda:0")), dp(x)
    assert out.device == ember.device("cuda:0")
    np.testing.assert_allclose(_np(out), _np(ref), atol=ATOL)
    (ref * ref).mean().backward()
    (out * out).mean().backward()
    for p in two.parameters():
        assert p.grad.device == ember.device("cuda:0")
    _assert_close_lists(_grads(two), _grads(one))


@pytest.mark.gpu
@two_gpus
def test_gpu_replicas_run_on_their_devices_and_output_device():
    one, two = _gpu_pair(21)
    seen = []
    two.register_forward_pre_hook(
        lambda mod, args: seen.append((ember.cuda.current_device(), str(args[0].device)))
    )
    dp = DataParallel(two, device_ids=[0, 1], output_device=1)
    out = dp(ember.randn(8, 6))
    assert sorted(seen) == [(0, "cuda:0"), (1, "cuda:1")]
    assert out.device == ember.device("cuda:1")
    cp = pytest.importorskip("cupy")
    with cp.cuda.Device(1):  # CuPy computes on the current device: make it the output's
        out.sum().backward()
    assert all(p.grad.device == ember.device("cuda:0") for p in two.parameters())


@pytest.mark.gpu
@two_gpus
def test_gpu_batchnorm_buffers_follow_the_first_replica():
    one, two = _gpu_pair(22, bn=True)
    x = ember.randn(8, 6).to("cuda:0")
    DataParallel(two, device_ids=[0, 1])(x)
    one(x[:4])
    np.testing.assert_allclose(_np(two[1].running_mean), _np(one[1].running_mean), atol=ATOL)
    assert int(two[1].num_batches_tracked.item()) == 1


@pytest.mark.gpu
@two_gpus
def test_gpu_module_off_device_ids_0():
    _, two = _gpu_pair(23)
    dp = DataParallel(two.to("cuda:1"), device_ids=[0, 1])
    with pytest.raises(
        RuntimeError,
        match=re.escape("on device cuda:0 (device_ids[0]) but found one of them on device: cuda:1"),
    ):
        dp(ember.randn(4, 6))


def test_torch_nn_path():
    import ember

    assert ember.nn.DataParallel is DataParallel  # torch.nn.DataParallel's path
