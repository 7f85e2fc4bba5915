"""The convolution's shape-chosen kernels (core/ops/conv*.py) agree with torch at each switch.

Paths: channels-last columns (32..128 input channels, 2-D/3-D), the transposed GEMM orientation
(<= 16 output channels, >= 1024 columns), the transposed weight-gradient GEMM (>= 1024 columns),
the stride-1 direct input gradient, and the stride-1 depthwise frame. Each is checked at a real
shape that selects it (float32, against torch) and, with the thresholds lowered so that a tiny
shape selects it, by float64 gradcheck and gradgradcheck.
"""

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.ops import conv, conv_cl

torch = pytest.importorskip("torch")

# (nd, N, C_in, C_out, size, kernel, stride, padding, dilation, groups)
REAL = [
    (2, 2, 16, 16, 32, 3, 1, 1, 1, 1),  # narrow output + wide columns, direct input grad
    (2, 2, 64, 48, 9, 3, 1, 1, 1, 1),  # channels-last columns
    (3, 1, 32, 8, 6, 3, 1, 1, 1, 1),  # channels-last, 3-D, narrow output
    (2, 2, 40, 24, 12, 3, 2, 1, 1, 1),  # channels-last, strided (col2im input grad)
    (2, 2, 32, 32, 8, 1, 1, 0, 1, 1),  # 1x1 kernel: im2col columns
    (2, 2, 24, 24, 17, 3, 1, 1, 1, 24),  # depthwise, stride 1
    (1, 2, 12, 12, 40, 5, 1, 4, 2, 12),  # depthwise 1-D, dilated
    (2, 2, 12, 12, 11, 3, 2, 1, 1, 12),  # depthwise, strided (per-tap loop)
    (2, 2, 8, 16, 33, 3, 1, 1, 1, 2),  # grouped, narrow output per group
    (1, 4, 6, 10, 300, 3, 1, 3, 1, 1),  # pad wider than d * (k - 1): col2im, narrow output
]


def _run(lib, nd, x, w, b, stride, padding, dilation, groups, g):
    xt = lib.tensor(x, requires_grad=True)
    wt = lib.tensor(w, requires_grad=True)
    bt = lib.tensor(b, requires_grad=True)
    f = getattr(lib.nn.functional, f"conv{nd}d")
    y = f(xt, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups)
    y.backward(lib.tensor(g))
    return [t.detach().numpy() for t in (y, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("case", REAL, ids=lambda c: "-".join(map(str, c)))
def test_parity_at_switch_shapes(case):
    nd, n, ci, co, size, k, stride, padding, dilation, groups = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, ci) + (size,) * nd).astype(np.float32)
    w = (rng.standard_normal((co, ci // groups) + (k,) * nd) * 0.2).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    ref_y = torch.nn.functional.__dict__[f"conv{nd}d"](
        torch.tensor(x),
        torch.tensor(w),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    g = rng.standard_normal(tuple(ref_y.shape)).astype(np.float32)
    ours = _run(ember, nd, x, w, b, stride, padding, dilation, groups, g)
    ref = _run(torch, nd, x, w, b, stride, padding, dilation, groups, g)
    for name, a, r in zip(("y", "dx", "dw", "db"), ours, ref):
        assert a.shape == r.shape, name
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=2e-5 * scale, err_msg=name)


@pytest.fixture
def low_thresholds(monkeypatch):
    """Make the tiny gradcheck shapes take the paths the real shapes take."""
    monkeypatch.setattr(conv_cl, "MIN_CHANNELS", 2)
    monkeypatch.setattr(conv, "WIDE_COLS", 8)
    monkeypatch.setattr(conv, "MIN_ROWS", 1)


@pytest.mark.parametrize(
    "path,case",
    [
        ("channels_last", (2, 2, 3, 2, 5, 3, 1, 1, 1, 1)),
        ("channels_last_strided", (2, 1, 3, 2, 6, 3, 2, 1, 1, 1)),
        ("narrow_out_direct_grad", (2, 2, 1, 2, 5, 3, 1, 1, 1, 1)),
        ("depthwise_frame", (2, 2, 3, 3, 5, 3, 1, 1, 1, 3)),
        ("depthwise_frame_3d_dilated", (3, 1, 2, 2, 5, 2, 1, 1, 2, 2)),
    ],
)
def test_gradcheck_on_each_path(low_thresholds, path, case):
    nd, n, ci, co, size, k, stride, padding, dilation, groups = case
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((n, ci) + (size,) * nd), requires_grad=True)
    w = ember.tensor(rng.standard_normal((co, ci // groups) + (k,) * nd), requires_grad=True)
    b = ember.tensor(rng.standard_normal(co), requires_grad=True)
    f = getattr(ember.nn.functional, f"conv{nd}d")

    def fn(x, w, b):
        return f(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def test_conv_transpose_stride1_direct_matches_torch():
    """ConvTranspose's forward is the input gradient: the direct path serves it too."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    ours = ember.nn.functional.conv_transpose2d(ember.tensor(x), ember.tensor(w), padding=1)
    ref = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), padding=1)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
