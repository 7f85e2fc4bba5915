"""The slow paths that the models users bring found (issue 23, ``benchmarks/models.py``), and
the results of the paths that replaced them, against PyTorch.

1. At more than one BLAS thread, medium matrix products (those OpenBLAS splits across its
   threads, below ``mkl_gemm.MULTI_FLOPS``) load MKL after 16 of them instead of after
   ``LOAD_AFTER`` multiply-adds: OpenBLAS's spinning threads made each one cost a scheduler
   slice on a busy machine (efficientnet_v2_s, batch 2 at 48x48 px: 1.3-2.5 s a forward).
2. Grouped convolutions with small groups (RegNet's 8-channel ones) run the groups' products
   as one stacked NumPy matmul, not a Python loop of 2-D products (``conv.STACKED_MAX_FLOPS``).
3. ``scatter_add_`` (the gradient of ``x[rows]``) adds rows picked without repeats with one
   fancy-indexed add instead of ``add.at`` (Faster R-CNN's pooled regions: 300 -> 70 ms).
4. ``vision.ops.nms`` on many boxes runs a compiled greedy loop (``_nms_compiled``).
5. A 1x1 convolution of a 1x1 input (squeeze-excite) runs as a linear layer over the batch:
   NumPy ran its per-sample single-column products in its naive loop (2.7 -> 0.75 ms a step).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ember
from ember.backend import mkl_gemm, threads

needs_mkl = pytest.mark.skipif(
    not mkl_gemm.enabled(), reason="the mkl wheel or numba is not installed (or EMBER_MKL=0)"
)

_LOAD_CODE = """
import numpy as np
import ember
from ember.backend import mkl_gemm as M
ember.set_num_threads({threads})
a = np.ones((64, 256), np.float32)  # 64*256*256 = 4.2M multiply-adds a product
b = np.ones((256, 256), np.float32)
for _ in range(15):
    M.matmul(a, b)
first = M._enabled
assert (M.matmul(a, b) == 256).all()
print(first, M._enabled)
"""


def _run(code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "EMBER_MKL"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@needs_mkl
def test_medium_products_at_two_threads_load_mkl_after_sixteen():
    assert _run(_LOAD_CODE.format(threads=2)) == ["None", "True"]


@needs_mkl
def test_one_thread_keeps_the_deferred_load():
    # 16 products of 4.7M multiply-adds are far below LOAD_AFTER: a short script pays nothing
    assert _run(_LOAD_CODE.format(threads=1)) == ["None", "None"]


def test_ready_weights_only_the_products_openblas_would_thread(monkeypatch):
    monkeypatch.setattr(mkl_gemm, "_enabled", None)
    monkeypatch.setattr(mkl_gemm, "_seen", 0)
    monkeypatch.setattr(mkl_gemm, "LOAD_AFTER", 1 << 40)  # never reached: no load here
    monkeypatch.delenv("EMBER_MKL", raising=False)
    monkeypatch.setattr(threads, "_cached", 2)
    weight = mkl_gemm.LOAD_AFTER >> mkl_gemm.SMP_LOAD_SHIFT
    for flops, counted in [
        (mkl_gemm.SMP_FLOPS - 1, mkl_gemm.SMP_FLOPS - 1),  # OpenBLAS runs it on one thread
        (mkl_gemm.SMP_FLOPS, weight),
        (mkl_gemm.MULTI_FLOPS - 1, weight),
        (mkl_gemm.MULTI_FLOPS, mkl_gemm.MULTI_FLOPS),  # stays with OpenBLAS's threads anyway
    ]:
        before = mkl_gemm._seen
        assert mkl_gemm._ready(flops) is False
        assert mkl_gemm._seen - before == counted, flops
    monkeypatch.setattr(threads, "_cached", 1)
    before = mkl_gemm._seen
    mkl_gemm._ready(mkl_gemm.SMP_FLOPS)
    assert mkl_gemm._seen - before == mkl_gemm.SMP_FLOPS


def _mbconv(lib, seed=0):
    """An MBConv block with squeeze-excite, as efficientnet's (expand, depthwise, SE, project)."""
    nn = lib.nn
    lib.manual_seed(seed)

    class SE(nn.Module):
        def __init__(self, c, s):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)

        def forward(self, x):
            w = nn.functional.adaptive_avg_pool2d(x, 1)
            return x * lib.sigmoid(self.fc2(nn.functional.silu(self.fc1(w))))

    return nn.Sequential(
        nn.Conv2d(24, 96, 1, bias=False),
        nn.BatchNorm2d(96),
        nn.SiLU(),
        nn.Conv2d(96, 96, 3, stride=2, padding=1, groups=96, bias=False),
        nn.BatchNorm2d(96),
        nn.SiLU(),
        SE(96, 6),
        nn.Conv2d(96, 40, 1, bias=False),
        nn.BatchNorm2d(40),
    )


@pytest.mark.parametrize("nthreads", [1, 2])
def test_mbconv_block_matches_torch_through_the_mkl_path(nthreads):
    """Forward and gradients of an efficientnet block with MKL on (the path the fix routes
    medium products to at two threads) equal torch's."""
    prev_threads, prev_mkl = threads.num_threads(), mkl_gemm._enabled
    ember.set_num_threads(nthreads)
    mkl_gemm.set_enabled(True)
    try:
        e, t = _mbconv(ember), _mbconv(torch)
        t.load_state_dict(
            {k: torch.from_numpy(v.numpy().copy()) for k, v in e.state_dict().items()}
        )
        x = np.random.default_rng(1).standard_normal((2, 24, 24, 24)).astype(np.float32)
        ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ey, ty = e(ex), t(tx)
        np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
        ey.square().mean().backward()
        ty.square().mean().backward()
        np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-5)
        for (name, ep), tp in zip(e.named_parameters(), t.parameters()):
            np.testing.assert_allclose(
                ep.grad.numpy(), tp.grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=name
            )
    finally:
        ember.set_num_threads(prev_threads)
        mkl_gemm._enabled = prev_mkl


@pytest.mark.parametrize("groups,size", [(55, 2), (26, 4), (13, 8), (4, 16)])
def test_grouped_conv_stacked_products_match_the_loop_and_torch(groups, size, monkeypatch):
    """RegNet-like 8-channel groups: forward, input and weight gradients bitwise as the old
    per-group loop, and equal to torch's."""
    from ember.ops import conv

    rng = np.random.default_rng(groups)
    c = 8 * groups
    x = rng.standard_normal((2, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((c, 8, 3, 3)) * 0.1).astype(np.float32)
    g = rng.standard_normal((2, c, size, size)).astype(np.float32)

    def run(lib):
        xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        y = lib.nn.functional.conv2d(xt, wt, padding=1, groups=groups)
        y.backward(lib.tensor(g))
        return [a.detach().numpy() for a in (y, xt.grad, wt.grad)]

    new = run(ember)
    monkeypatch.setattr(conv, "STACKED_MAX_FLOPS", 0)  # the per-group loop
    old = run(ember)
    ref = run(torch)
    for a, b, r in zip(new, old, ref):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_scatter_add_rows_without_repeats_is_add_at_bitwise():
    from ember.ops.indexing_getitem import scatter_add_

    rng = np.random.default_rng(3)
    base = rng.standard_normal((50, 6, 7)).astype(np.float32)
    vals = rng.standard_normal((20, 6, 7)).astype(np.float32)
    cases = [
        rng.permutation(50)[:20],  # unique: the fast path
        (rng.permutation(50)[:20],),  # the same as a 1-tuple
        rng.integers(0, 50, 20),  # repeats: add.at
        np.concatenate([np.arange(10), -np.arange(1, 11)]),  # negative: add.at
    ]
    for idx in cases:
        got, ref = base.copy(), base.copy()
        scatter_add_(np, got, idx, vals)
        np.add.at(ref, idx, vals)
        np.testing.assert_array_equal(got, ref)
    got, ref = base.copy(), base.copy()  # broadcast values
    scatter_add_(np, got, np.arange(0, 50, 5), 1.5)
    np.add.at(ref, np.arange(0, 50, 5), 1.5)
    np.testing.assert_array_equal(got, ref)


def test_row_index_gradient_matches_torch():
    """The MultiScaleRoIAlign idiom: rows of a result filled per level, back-propagated."""
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((12, 4, 3, 3)).astype(np.float32)
    order = rng.permutation(12)
    grads = []
    for lib in (ember, torch):
        f = lib.tensor(feats, requires_grad=True)
        idx = lib.from_numpy(order.copy())
        picked = f[idx]
        repeated = f[lib.tensor([0, 0, 3])]  # repeated rows still accumulate
        (picked * lib.arange(12.0)[:, None, None, None]).sum().add(repeated.sum()).backward()
        grads.append(f.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)


def test_compiled_nms_keeps_the_same_boxes(monkeypatch):
    from ember.vision.ops import _nms_compiled, boxes, nms

    if not _nms_compiled.AVAILABLE:
        pytest.skip("numba is not installed (or EMBER_NUMBA=0)")
    rng = np.random.default_rng(7)
    n = _nms_compiled.MIN_BOXES + 88
    xy = rng.random((n, 2)) * 100
    b = np.concatenate([xy, xy + rng.random((n, 2)) * 30 + 1], 1).astype(np.float32)
    s = rng.random(n).astype(np.float32)
    s[::5] = s[0]  # ties keep the input order
    got = nms(ember.from_numpy(b), ember.from_numpy(s), 0.5).numpy()
    monkeypatch.setattr(_nms_compiled, "AVAILABLE", False)
    ref = boxes._nms_kept(b.astype(np.float64), s.astype(np.float64), 0.5)
    assert 0 < got.size < n
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cin,cout,n", [(96, 24, 2), (24, 96, 3), (5, 7, 1)])
def test_one_pixel_pointwise_conv_matches_torch(cin, cout, n, bias):
    rng = np.random.default_rng(cin + cout)
    x = rng.standard_normal((n, cin, 1, 1)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 1, 1)) * 0.2).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    g = rng.standard_normal((n, cout, 1, 1)).astype(np.float32)
    res = []
    for lib in (ember, torch):
        xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        bt = None if b is None else lib.tensor(b, requires_grad=True)
        y = lib.nn.functional.conv2d(xt, wt, bt)
        y.backward(lib.tensor(g))
        # the transposed convolution runs the input-gradient kernel as its forward
        yt = lib.nn.functional.conv_transpose2d(lib.tensor(g), wt.detach())
        out = [y.detach(), xt.grad, wt.grad, yt] + ([bt.grad] if bias else [])
        res.append([a.numpy() for a in out])
    for a, r in zip(*res):
        assert a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_one_pixel_pointwise_conv_double_backward_matches_torch():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 1, 1))
    w = rng.standard_normal((4, 6, 1, 1))
    res = []
    for lib in (ember, torch):
        xt = lib.tensor(x, requires_grad=True)
        wt = lib.tensor(w, requires_grad=True)
        y = lib.nn.functional.conv2d(xt, wt)
        (gx,) = lib.autograd.grad(y.square().sum(), xt, create_graph=True)
        gx.sum().backward()
        res.append([gx.detach().numpy(), wt.grad.numpy()])
    for a, r in zip(*res):
        np.testing.assert_allclose(a, r, rtol=1e-10)
