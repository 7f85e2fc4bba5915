"""Session 24 (issue 23, h4): causal attention's blocks over groups of matrices (one stacked
product a block for several (batch, head) matrices), bitwise equal to one matrix at a time, at
one thread and over the workers, against float64 gradcheck and torch; the step memory of
benchmarks/engine.py; ReLU's backward written into its mask."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.backend import mkl_gemm, threads
from ember.ops import attention_causal

_ENGINE = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


def _sdpa(lib, arrays, grad_out):
    q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays)
    out = lib.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(lib.tensor(grad_out))
    return [t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)]


def _arrays(shapes, dtype, seed):
    r = np.random.default_rng(seed)
    return [r.standard_normal(s).astype(dtype) for s in shapes]


# (q/v shape, k shape): 7 matrices in groups of 3 (the last one short); k broadcast over heads
_CASES = [((1, 7, 40, 8), (1, 7, 40, 8)), ((2, 3, 40, 8), (2, 1, 40, 8))]


@pytest.mark.parametrize("qshape,kshape", _CASES)
@pytest.mark.parametrize("unnormalised", [True, False])
def test_groups_bitwise_equal_one_matrix_at_a_time(monkeypatch, qshape, kshape, unnormalised):
    monkeypatch.setattr(attention_causal, "BLOCK", 16)
    monkeypatch.setattr(attention_causal, "UNNORMALISED", unnormalised)
    q, k, v, g = _arrays([qshape, kshape, kshape, qshape], np.float32, 1)
    monkeypatch.setattr(attention_causal, "GROUP_BYTES", 3 * 16 * 40 * 4)
    assert attention_causal._groups(7, 40, 4) == [(0, 3), (3, 6), (6, 7)]
    grouped = _sdpa(ember, [q, k, v], g)
    monkeypatch.setattr(attention_causal, "GROUP_BYTES", 0)  # one matrix a group: the old path
    single = _sdpa(ember, [q, k, v], g)
    # the groups over two workers (the row kernels unsplit)
    monkeypatch.setattr(attention_causal, "GROUP_BYTES", 3 * 16 * 40 * 4)
    monkeypatch.setattr(attention_causal, "SPLIT_MIN_SCORES", 0)
    monkeypatch.setattr(threads, "_cached", 2)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    split = _sdpa(ember, [q, k, v], g)
    assert calls, "the groups were not shared out over the workers"
    for a, b, c in zip(grouped, single, split):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_groups_with_mkl_match_one_matrix_at_a_time(monkeypatch):
    """MKL active (Intel): ``dk`` / ``dv`` add per matrix with ``beta = 1`` (``addmm_``)."""
    prev = mkl_gemm.set_enabled(True)
    try:
        if not mkl_gemm.active():
            pytest.skip("MKL is not installed")
        monkeypatch.setattr(attention_causal, "BLOCK", 64)
        monkeypatch.setattr(mkl_gemm, "MIN_FLOPS", 0)
        q, k, v, g = _arrays([(1, 5, 128, 32)] * 4, np.float32, 2)
        monkeypatch.setattr(attention_causal, "GROUP_BYTES", 2 * 64 * 128 * 4)
        grouped = _sdpa(ember, [q, k, v], g)
        monkeypatch.setattr(attention_causal, "GROUP_BYTES", 0)
        single = _sdpa(ember, [q, k, v], g)
    finally:
        mkl_gemm.set_enabled(prev)
    for a, b in zip(grouped, single):
        np.testing.assert_array_equal(a, b)


def test_groups_gradcheck_float64(monkeypatch):
    monkeypatch.setattr(attention_causal, "BLOCK", 4)
    monkeypatch.setattr(attention_causal, "GROUP_BYTES", 2 * 4 * 9 * 8)  # 2 matrices a group
    q, k, v = (
        ember.tensor(a, requires_grad=True) for a in _arrays([(1, 3, 9, 3)] * 3, np.float64, 3)
    )

    def f(q, k, v):
        return ember.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    assert ember.autograd.gradcheck(f, (q, k, v))


@pytest.mark.parametrize("shape", [(2, 8, 256, 64), (1, 3, 384, 16)])
def test_groups_match_torch(shape):
    torch = pytest.importorskip("torch")
    arrays = _arrays([shape] * 4, np.float32, 4)
    ours = _sdpa(ember, arrays[:3], arrays[3])
    theirs = _sdpa(torch, arrays[:3], arrays[3])
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_relu_backward_into_its_mask_matches_where():
    x = np.random.default_rng(5).standard_normal((4, 8, 9, 9)).astype(np.float32)
    g = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    g[0, 0, 0, :3] = [np.nan, -np.inf, -0.0]
    t = ember.tensor(x, requires_grad=True)
    ember.relu(t).backward(ember.tensor(g))
    want = np.where(x <= 0, 0, g).astype(np.float32)
    np.testing.assert_array_equal(t.grad.numpy().view(np.int32), want.view(np.int32))


def test_engine_step_memory_positive_and_finite():
    spec = importlib.util.spec_from_file_location("bench_engine", _ENGINE)
    engine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine)
    out = engine.run_child("ember", 1, ["tiny"], 1, memory=True)
    assert out["tiny"] > 0
    mib = out["tiny/step_mib"]
    assert np.isnan(mib) or 0 <= mib < 64
    mlp = engine.build(ember, "mlp", 256)
    model, x, y, loss_fn = mlp
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    mib = engine.step_memory_mib(step, opt, repeat=1)
    # at least the first layer's weight gradient (784 x 512 float32, freed before the baseline)
    assert np.isnan(mib) or mib >= 784 * 512 * 4 / 2**20


# ---- Adam: one compiled pass, bitwise NumPy's update -----------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,threads_", [(1000, 1), (1_100_001, 2)])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.3, 0.5)])  # lerp's two branches
def test_adam_kernel_bitwise_numpy_update(monkeypatch, dtype, n, threads_, betas):
    from ember.optim import _adam_kernel

    if not _adam_kernel.AVAILABLE:
        pytest.skip("numba not installed or switched off")
    monkeypatch.setattr(threads, "_cached", threads_)
    r = np.random.default_rng(7)
    p0 = r.standard_normal(n).astype(dtype)
    grads = [(r.standard_normal(n) * 10.0 ** r.integers(-6, 1)).astype(dtype) for _ in range(3)]
    grads[0][:4] = [0.0, -0.0, 1e-30, np.inf]
    results = []
    for fused in (False, True):
        monkeypatch.setattr(_adam_kernel, "_kernel", _adam_kernel._kernel if fused else None)
        p = ember.nn.Parameter(ember.tensor(p0.copy()))
        opt = ember.optim.Adam([p], lr=1e-2, betas=betas, weight_decay=0.01)
        for g in grads:
            p.grad = ember.tensor(g.copy())
            opt.step()
        st = opt.state[p]
        results.append([a.detach().numpy() for a in (p, st["exp_avg"], st["exp_avg_sq"])])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_adam_kernel_matches_torch():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(8)
    p0 = r.standard_normal((300, 257)).astype(np.float32)
    grads = [r.standard_normal(p0.shape).astype(np.float32) for _ in range(3)]
    ours = ember.nn.Parameter(ember.tensor(p0.copy()))
    theirs = torch.nn.Parameter(torch.tensor(p0.copy()))
    opts = [ember.optim.Adam([ours], lr=1e-2), torch.optim.Adam([theirs], lr=1e-2)]
    for g in grads:
        ours.grad, theirs.grad = ember.tensor(g), torch.tensor(g)
        for o in opts:
            o.step()
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7)
