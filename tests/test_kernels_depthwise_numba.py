"""The compiled 2-D depthwise convolution (``ops/_numba_depthwise.py``): forward, input and
weight gradients against torch on the flat-shift (stride 1) and the strided kernels, with
dilation, asymmetric padding and a split across threads; float64 gradcheck / gradgradcheck
through the same kernels, and the NumPy path on the same cases."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.ops import conv_depthwise

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
F, TF = ember.nn.functional, torch.nn.functional

# (N, C, H, W, k, stride, padding, dilation): stride 1 (flat shifts) and 2 (strided rows),
# "same" padding of an even kernel (asymmetric), dilation, no padding
_CASES = [
    (2, 3, 7, 9, 3, 1, 1, 1),
    (2, 4, 8, 8, 3, 2, 1, 1),
    (1, 2, 9, 7, 5, 1, 4, 2),
    (2, 3, 6, 6, 2, 1, "same", 1),
    (2, 3, 7, 6, 3, (2, 1), 0, (1, 2)),
]


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    monkeypatch.setattr(conv_depthwise, "_numba", None if request.param == "numba" else False)
    if request.param == "numba" and os.environ.get("EMBER_NUMBA", "1") == "0":
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")
    return request.param


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's, about its own copy
@pytest.mark.parametrize("case", _CASES)
def test_depthwise_matches_torch(path, case):
    n, c, h, w_, k, s, p, d = case
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal(sh).astype(np.float32) for sh in [(n, c, h, w_), (c, 1, k, k), (c,)]
    )
    kw = dict(stride=s, padding=p, dilation=d, groups=c)
    es = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ye, yt = F.conv2d(*es, **kw), TF.conv2d(*ts, **kw)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    for e, t in zip(es, ts):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_gradcheck_float64(path, stride):
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((2, 3, 5, 6)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(3), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=1, groups=3)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def test_depthwise_split_across_threads(monkeypatch):
    from ember.backend import threads
    from ember.ops import _kernel_split

    monkeypatch.setattr(conv_depthwise, "_numba", None)
    x = np.random.default_rng(2).standard_normal((5, 4, 6, 6)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((4, 1, 3, 3)).astype(np.float32)

    def run():
        xe, we = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
        y = F.conv2d(xe, we, padding=1, groups=4)
        y.backward(ember.ones_like(y))
        return y.detach().numpy(), xe.grad.numpy(), we.grad.numpy()

    monkeypatch.setattr(threads, "_cached", 1)
    one = run()
    monkeypatch.setattr(threads, "_cached", 2)
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    monkeypatch.setattr(conv_depthwise, "MIN_PER_THREAD", 1)  # the depthwise kernels' own
    two = run()
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert conv_depthwise._numba  # the compiled kernels ran
