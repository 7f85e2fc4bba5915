"""ember.compile's conv + 2x2 max pool + ReLU fusion (core/_compile/_fuse_conv.py)."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember._compile._fuse_conv import (
    _chunked_nn,
    _chunked_tn,
    conv2d_pool_relu,
    fuse_conv_pool_relu,
)


@pytest.fixture(autouse=True)
def _gemm_paths(monkeypatch):
    # the fused kernel repeats eager's GEMM paths bitwise; eager's direct kernel for few
    # channels (ops/conv_direct.py) and the channels-last one for small planes
    # (ops/conv_direct_cl.py) sum in another order, so they are off here
    from ember.ops import conv_direct, conv_direct_cl

    monkeypatch.setattr(conv_direct, "ENABLED", False)
    monkeypatch.setattr(conv_direct_cl, "ENABLED", False)


def _grads(out, inputs, g):
    return [t.numpy() for t in ember.autograd.grad(out, inputs, g)]


def _inputs(cin=32, cout=40, hw=6, bias=True, seed=0):
    ember.manual_seed(seed)
    x = ember.randn(2, cin, hw, hw, dtype=ember.float64, requires_grad=True)
    w = ember.randn(cout, cin, 3, 3, dtype=ember.float64, requires_grad=True)
    b = ember.randn(cout, dtype=ember.float64, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize(
    "padding, bias, relu",
    [(1, True, True), ("same", False, True), ((1, 1), True, False), (0, True, True)],
)
def test_fused_equals_eager(padding, bias, relu):
    hw = 6 if padding != 0 else 8
    x, w, b = _inputs(hw=hw, bias=bias)
    ref = F.max_pool2d(F.conv2d(x, w, b, 1, padding), 2)
    ref = F.relu(ref) if relu else ref
    out = conv2d_pool_relu(x, w, b, 1, padding, 1, 1, relu)
    assert out.grad_fn is not None and "ConvPool2x2" in type(out.grad_fn).__name__
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    g = ember.randn(*ref.shape, dtype=ember.float64)
    inputs = [t for t in (x, w, b) if t is not None]
    got, want = _grads(out, inputs, g), _grads(ref, inputs, g)
    np.testing.assert_array_equal(got[0], want[0])  # the input gradient: bitwise
    for a, e in zip(got[1:], want[1:]):  # weight and bias: the same sums, another order
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_fused_matches_torch_float32():
    torch = pytest.importorskip("torch")
    x, w, b = _inputs(cin=32, cout=64, hw=14)
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, w, b))
    out = conv2d_pool_relu(x32, w32, b32, 1, 1, 1, 1, True)
    tx, tw, tb = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (x32, w32, b32))
    tout = torch.relu(
        torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(tx, tw, tb, 1, 1), 2)
    )
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = np.random.default_rng(1).standard_normal(tout.shape).astype(np.float32)
    got = _grads(out, (x32, w32, b32), ember.tensor(g))
    want = torch.autograd.grad(tout, (tx, tw, tb), torch.tensor(g))
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-3, atol=1e-3)


def test_nan_routes_like_eager():
    x, w, b = _inputs(hw=6)
    with ember.no_grad():
        w[0, 0, 1, 1] = float("nan")
        x[0, 0, 2, 3] = float("nan")  # NaNs in some windows of channel 0 of sample 0
    ref = F.relu(F.max_pool2d(F.conv2d(x, w, b, 1, 1), 2))
    out = conv2d_pool_relu(x, w, b, 1, 1, 1, 1, True)
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    g = ember.ones(*ref.shape, dtype=ember.float64)
    for a, e in zip(_grads(out, (x, w, b), g), _grads(ref, (x, w, b), g)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cin, hw, stride, dtype",
    [(4, 6, 1, None), (32, 7, 1, None), (32, 8, 2, None), (32, 6, 1, "float16")],
)
def test_uncovered_calls_run_eagerly(cin, hw, stride, dtype):
    x, w, b = _inputs(cin=cin, hw=hw)
    if dtype is not None:  # eager pools rounded values (other ties): not fused
        x, w, b = (t.detach().to(getattr(ember, dtype)) for t in (x, w, b))
    out = conv2d_pool_relu(x, w, b, stride, 1, 1, 1, True)
    ref = F.relu(F.max_pool2d(F.conv2d(x, w, b, stride, 1), 2))
    assert "ConvPool2x2" not in type(out.grad_fn).__name__
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())


def test_rewrite_on_the_cnn_workload_and_training_matches_eager():
    nn = ember.nn

    def train(compiled):
        ember.manual_seed(3)
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(48 * 16, 5),
        ).double()
        opt = ember.optim.Adam(model.parameters(), lr=1e-2)
        f = ember.compile(model) if compiled else model
        x, y = ember.randn(4, 1, 16, 16, dtype=ember.float64), ember.randint(0, 5, (4,))
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(f(x), y).backward()
            opt.step()
        if compiled:  # only the second convolution has channels the fused path takes
            graph = f._compiled.entries[0].graph
            assert [n.target for n in graph.nodes].count(conv2d_pool_relu) == 1
        return [p.detach().numpy().copy() for p in model.parameters()]

    for a, e in zip(train(True), train(False)):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12)


def test_rewrite_leaves_other_graphs_alone():
    from ember.fx import symbolic_trace

    class Net(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = ember.nn.Conv2d(32, 8, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return F.max_pool2d(y, 2) + y.sum()  # the conv has two users: not fused

    gm = symbolic_trace(Net())
    assert fuse_conv_pool_relu(gm.graph, gm) == 0


def test_blocked_gemms_equal_one_gemm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3000, 40)), rng.standard_normal((3000, 24))
    np.testing.assert_allclose(_chunked_tn(np, a, b), a.T @ b, rtol=1e-10, atol=1e-10)
    c = rng.standard_normal((40, 7))
    big = rng.standard_normal((20000, 40))
    np.testing.assert_array_equal(_chunked_nn(np, big, c), big @ c)
