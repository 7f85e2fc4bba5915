"""Session 24 (issue 23, h2): SiLU's recomputing backward hands the engine a gradient that owns
its buffer; compiled 2x2 tiled max and average pooling (forward and backward, planes split over
the threads), checked bit for bit against the NumPy paths and torch, and by float64 gradcheck."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.ops import _kernel_split, act_kernels, activation_ops, pooling

torch = pytest.importorskip("torch")
numba = pytest.importorskip("numba")


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads, and slices small enough that the test shapes split."""
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 64)
    prev = ember.get_num_threads()
    ember.set_num_threads(2)
    yield
    ember.set_num_threads(prev)


def _owns(a: np.ndarray) -> bool:
    return a.base is None or a.base.nbytes == a.nbytes


# ---- SiLU at 2+ threads: the recomputing backward -------------------------------------------
@pytest.mark.parametrize("broadcast", [False, True])
def test_silu_recompute_grad_owns_buffer(two_threads, monkeypatch, broadcast):
    # the backward's result used to be fresh_output's shifted view whenever the heap placed it
    # near x, and the engine then copied it (a 16 MB copy a step at 64x128x512)
    monkeypatch.setattr(activation_ops, "SILU_RECOMPUTE_MIN", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 33)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    kern = act_kernels.compiled(np, x)
    for _ in range(8):  # several heap placements
        res = act_kernels.saved_grad(kern, "silu_backward", g, x)
        assert _owns(res)
    xe = ember.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    if broadcast:
        F.silu(xe).sum().backward()
        torch.nn.functional.silu(xt).sum().backward()
    else:
        F.silu(xe).backward(ember.tensor(g))
        torch.nn.functional.silu(xt).backward(torch.tensor(g))
    assert _owns(xe.grad.numpy())
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=2e-6, atol=2e-6)


# ---- 2x2 tiled max pooling ------------------------------------------------------------------
def _pool_input(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    f = x.reshape(-1)
    f[1::5] = f[0::5][: f[1::5].size]  # ties inside windows: the first one wins
    f[:4] = [0.0, -0.0, -0.0, 0.0]  # signed zeros tie: the first one's sign
    return x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 1, 2, 2), (3, 5, 10, 4)])
def test_max_pool_2x2_matches_torch(monkeypatch, threads, dtype, shape):
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 16)
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        x = _pool_input(shape, dtype)
        rng = np.random.default_rng(1)
        g = rng.standard_normal(shape[:2] + (shape[2] // 2, shape[3] // 2)).astype(dtype)
        xe = ember.tensor(x, requires_grad=True)
        ye, ie = F.max_pool2d(xe, 2, 2, return_indices=True)
        ye.backward(ember.tensor(g))
        xt = torch.tensor(x, requires_grad=True)
        yt, it = torch.nn.functional.max_pool2d(xt, 2, 2, return_indices=True)
        yt.backward(torch.tensor(g))
    finally:
        ember.set_num_threads(prev)
    y = ye.detach().numpy()
    assert np.array_equal(y, yt.detach().numpy())
    assert np.array_equal(np.signbit(y), np.signbit(yt.detach().numpy()))
    assert np.array_equal(ie.numpy(), it.numpy())
    assert np.array_equal(xe.grad.numpy(), xt.grad.numpy())


def test_max_pool_2x2_compiled_equals_numpy_tree(monkeypatch):
    # the compiled kernels against the NumPy pairwise tree and scatter they replace (no ties
    # across signed zeros, where the tree's maximum may take either sign)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 8, 12)).astype(np.float32)
    x.reshape(-1)[1::3] = x.reshape(-1)[0::3][: x.reshape(-1)[1::3].size]
    geom = pooling.PoolGeom((2, 2), (2, 2), (0, 0), (1, 1), (8, 12), False)
    y, which = pooling.max_pool_forward(np, x, geom)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx = pooling.max_pool_scatter(np, g, which, geom)
    monkeypatch.setattr(pooling, "_compiled", lambda *a: None)
    y0, which0 = pooling.max_pool_forward(np, x, geom)
    gx0 = pooling.max_pool_scatter(np, g, which0, geom)
    assert np.array_equal(y, y0) and np.array_equal(which, which0)
    assert which.dtype == which0.dtype == np.uint8
    assert np.array_equal(gx, gx0)


def test_max_pool_2x2_nan_and_inf_match_torch():
    x = _pool_input((2, 2, 4, 6), np.float32, seed=3)
    x[0, 0, 0, 1] = np.nan  # a NaN plane: the NumPy path (torch's NaN positions)
    x[0, 1, 2, 2:4] = np.inf
    x[1, 0, 0:2, 0:2] = -np.inf
    g = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3) + 1
    xe = ember.tensor(x, requires_grad=True)
    ye, ie = F.max_pool2d(xe, 2, 2, return_indices=True)
    ye.backward(ember.tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, 2, 2, return_indices=True)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(ie.numpy(), it.numpy())
    np.testing.assert_array_equal(xe.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool_2x2_gradcheck_float64(op):
    rng = np.random.default_rng(4)
    x = ember.tensor(rng.standard_normal((2, 2, 4, 6)), requires_grad=True)
    fn = {"max": lambda t: F.max_pool2d(t, 2, 2), "avg": lambda t: F.avg_pool2d(t, 2, 2)}[op]
    assert ember.autograd.gradcheck(fn, (x,))
    assert ember.autograd.gradgradcheck(fn, (x,))


# ---- 2x2 tiled average pooling --------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divisor", [None, 3])
def test_avg_pool_2x2_bitwise_numpy_and_close_to_torch(monkeypatch, threads, dtype, divisor):
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 16)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 6, 10)).astype(dtype)
    g = rng.standard_normal((3, 4, 3, 5)).astype(dtype)
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:

        def run():
            xe = ember.tensor(x, requires_grad=True)
            ye = F.avg_pool2d(xe, 2, 2, divisor_override=divisor)
            ye.backward(ember.tensor(g))
            return ye.detach().numpy(), xe.grad.numpy()

        y, gx = run()
        with monkeypatch.context() as m:
            m.setattr(pooling, "_compiled", lambda *a: None)  # the NumPy tile sum and repeat
            y0, gx0 = run()
    finally:
        ember.set_num_threads(prev)
    assert np.array_equal(y, y0) and np.array_equal(gx, gx0)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, 2, 2, divisor_override=divisor)
    yt.backward(torch.tensor(g))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "kw", [dict(kernel_size=2, stride=2, ceil_mode=True), dict(kernel_size=2, padding=1)]
)
def test_avg_pool_2x2_untiled_keeps_numpy_path(kw):
    # odd sizes with ceil_mode, or padding: not tiled, the general path (per-window divisors)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    xe = ember.tensor(x, requires_grad=True)
    ye = F.avg_pool2d(xe, **kw)
    ye.sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, **kw)
    yt.sum().backward()
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


# ---- arrays above glibc's 32 MiB mmap threshold -----------------------------------------------
_BIG_PROBE = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import ember
x = np.ones(10 << 20, dtype=np.float32)  # 40 MiB: above any mmap threshold glibc allows
def step():
    a = x * 2.0
    return float((a + x)[0])
step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
# a worker thread's arena cannot hold 400 MiB: glibc maps it even with mmap off
big = ThreadPoolExecutor(1).submit(lambda: float(np.ones(100 << 20, np.float32).sum())).result()
print(faults, big)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's malloc")
def test_arrays_above_32mib_reuse_the_heap():
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _BIG_PROBE],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
        check=True,
    ).stdout.split()
    # with mmap: 2 x 10 x 10,240 pages (or a 64 KiB folio each: ~1,300) faulted again
    assert int(out[0]) < 100
    assert float(out[1]) == float(100 << 20)
