"""Convolution, session 24 (issue 23): the depthwise 3x3 stride-1 kernels on the unpadded
input with the padding, the bias and the bias gradient inside (core/ops/_numba_depthwise_k3f.py,
``conv_depthwise.FUSED``): forward and all gradients against torch in float32 and float64, bit
for bit the padded kernels' results, gradcheck, the selection rule, two threads."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_depthwise as DW
from ember.ops import conv_direct as D

torch = pytest.importorskip("torch")
K3F = pytest.importorskip("ember.ops._numba_depthwise_k3f")
pytestmark = pytest.mark.skipif(not K3F.AVAILABLE, reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)

# (x shape, padding (h, w), dilation (h, w), bias?): the width padding equals the width
# dilation (the fused kernels' rule); the height padding anything
FUSED = [
    ((2, 8, 16, 16), (1, 1), (1, 1), True),
    ((2, 4, 9, 13), (0, 1), (1, 1), True),  # no height padding
    ((3, 4, 12, 11), (2, 2), (2, 2), False),  # dilation 2, no bias
    ((2, 4, 10, 7), (3, 1), (1, 1), True),  # height padding past the kernel
    ((2, 3, 11, 10), (1, 3), (2, 3), True),  # dilations differ
    ((1, 2, 5, 2), (1, 1), (1, 1), True),  # 2 columns: every column an edge
]


def _step(lib, x, w, b, g, pad, dil):
    xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
    bt = None if b is None else lib.tensor(b, requires_grad=True)
    y = lib.nn.functional.conv2d(xt, wt, bt, padding=pad, dilation=dil, groups=x.shape[1])
    y.backward(lib.tensor(g))
    out = [y.detach(), xt.grad, wt.grad] + ([] if bt is None else [bt.grad])
    return [np.asarray(t.numpy()) for t in out]


def _case(x_shape, pad, dil, bias, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((x_shape[1], 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(x_shape[1]).astype(dtype) if bias else None
    out = tuple(n + 2 * p - 2 * d for n, p, d in zip(x_shape[2:], pad, dil))
    g = rng.standard_normal(x_shape[:2] + out).astype(dtype)
    return x, w, b, g


def _spy(monkeypatch, names):
    calls = []
    for name in names:
        real = getattr(K3F, name)
        monkeypatch.setattr(K3F, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FUSED, ids=lambda c: "x".join(map(str, c[0])) + f"-p{c[1][0]}")
def test_fused_depthwise_against_torch(case, dtype, monkeypatch):
    x_shape, pad, dil, bias = case
    x, w, b, g = _case(x_shape, pad, dil, bias, dtype)
    DW._use_fused(C.ConvGeom((1, 1), ((0, 0),) * 2, (1, 1), 1, (3, 3), (4, 4)), 4)  # (loads)
    calls = _spy(monkeypatch, ("forward", "weight_grad"))
    got = _step(ember, x, w, b, g, pad, dil)
    # the input gradient as the flipped kernel's forward where its padding is >= 0
    via_forward = all(p <= 2 * d for p, d in zip(pad, dil))
    assert sorted(calls) == ["forward"] * (1 + via_forward) + ["weight_grad"]
    want = _step(torch, x, w, b, g, pad, dil)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    # the padded kernels: the same nine products a sum, which fastmath lets LLVM add in its
    # own order (float32 came out bit for bit here, float64 within its last bits)
    monkeypatch.setattr(DW, "FUSED", False)
    tight = 1e-6 if dtype == np.float32 else 1e-14
    for a, e in zip(got, _step(ember, x, w, b, g, pad, dil)):
        np.testing.assert_allclose(a, e, rtol=tight, atol=tight * np.abs(e).max())


def test_fused_selection():
    geom = lambda pad, dil, k=(3, 3), s=1: C.ConvGeom(  # noqa: E731
        (s, s), pad, dil, 4, k, (8, 8)
    )
    assert DW._use_fused(geom(((1, 1), (1, 1)), (1, 1)), 8)
    assert DW._use_fused(geom(((0, 3), (2, 2)), (1, 2)), 8)  # any height padding
    assert not DW._use_fused(geom(((1, 1), (1, 0)), (1, 1)), 8)  # width padding not "same"
    assert not DW._use_fused(geom(((1, 1), (2, 2)), (1, 1)), 8)
    assert not DW._use_fused(geom(((1, 1), (1, 1)), (1, 1)), 1)  # dilation >= width
    assert not DW._use_fused(geom(((1, 1), (1, 1)), (1, 1), s=2), 8)  # strided
    assert not DW._use_fused(geom(((2, 2), (2, 2)), (1, 1), k=(5, 5)), 8)


def test_unfused_geometries_against_torch():
    # the width padding not the dilation: the padded kernels, still right
    for pad in ((1, 0), (0, 2)):
        x, w, b, g = _case((2, 4, 9, 10), pad, (1, 1), True, np.float32)
        for a, e in zip(
            _step(ember, x, w, b, g, pad, (1, 1)), _step(torch, x, w, b, g, pad, (1, 1))
        ):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_fused_gradcheck():
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((2, 3, 6, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(3), requires_grad=True)
    fn = lambda x, w, b: ember.nn.functional.conv2d(x, w, b, padding=1, groups=3)  # noqa: E731
    assert ember.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6)


def test_fused_two_threads(monkeypatch):
    # at two threads through conv_direct._call (serial variants here: no compile of the
    # parallel ones); the same results as one thread
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    monkeypatch.setattr(DW, "K3_MIN_PAR", 1)
    x, w, b, g = _case((4, 8, 16, 16), (1, 1), (1, 1), True, np.float32)
    one = _step(ember, x, w, b, g, (1, 1), (1, 1))
    set_num_threads(2)
    two = _step(ember, x, w, b, g, (1, 1), (1, 1))
    for a, e in zip(one, two):
        np.testing.assert_array_equal(a, e)


@pytest.mark.full  # compiling the parallel variants takes several seconds on a cold cache
def test_fused_parallel_kernels(monkeypatch):
    monkeypatch.setattr(DW, "K3_MIN_PAR", 1)
    x, w, b, g = _case((4, 8, 16, 16), (1, 1), (1, 1), True, np.float32)
    one = _step(ember, x, w, b, g, (1, 1), (1, 1))
    calls = _spy(monkeypatch, ("forward_par", "weight_grad_par"))
    set_num_threads(2)
    two = _step(ember, x, w, b, g, (1, 1), (1, 1))
    assert sorted(calls) == ["forward_par"] * 2 + ["weight_grad_par"]
    for a, e in zip(one, two):
        np.testing.assert_array_equal(a, e)  # the same sums, plane by plane


def test_docs_snippet_runs():
    """The snippet of docs/kernels.md's session 24 convolution section."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    section = text[text.index("## Session 24: convolution (issue 23, h1)") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/kernels.md", "exec"), {})
    assert DW.FUSED
