"""Convolution, session 24 round 2 (issue 23, h7): the channels-last direct path's layout copies
by compiled tiles (core/ops/_numba_conv_layout.py, ``conv_direct_cl.LAYOUT``), g's channels-last
rows made once for the input and weight gradients (``conv_direct_cl.SHARE_G``), the fused
direct forward's wide rows one sample at a time and the direct weight gradient's g widened a
chunk of samples at a time (``conv_direct.WGRAD_CHUNK_BYTES``): bit for bit the NumPy copies'
and the unchunked results, against torch, gradcheck, two threads."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.backend.threads import set_num_threads
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as DCL
from ember.ops import conv_direct_fused as DF

torch = pytest.importorskip("torch")
KL = pytest.importorskip("ember.ops._numba_conv_layout")
pytestmark = pytest.mark.skipif(not KL.AVAILABLE, reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)


@pytest.fixture(autouse=True)
def restore_switches():
    yield
    DCL.LAYOUT = DCL.SHARE_G = True
    D.WGRAD_CHUNK_BYTES = 1 << 20
    DF.CHUNKS_PER_THREAD = 4


def _run(xa, wa, ba, pad, grads=(True, True, True)):
    """(y, dx, dw, db) of conv(x, w, b) with a fixed g (None where not asked)."""
    x = ember.tensor(xa, requires_grad=grads[0])
    w = ember.tensor(wa, requires_grad=grads[1])
    b = None if ba is None else ember.tensor(ba, requires_grad=grads[2])
    conv = F.conv2d if xa.ndim == 4 else F.conv3d
    y = conv(x, w, b, padding=pad)
    g = np.cos(np.arange(y.numel(), dtype=np.float64)).reshape(y.shape).astype(xa.dtype)
    y.backward(ember.tensor(g))
    out = [y.detach().numpy().copy()]
    for t in (x, w, b):
        out.append(None if t is None or t.grad is None else t.grad.numpy().copy())
    return out, g


def _data(xs, ws, dtype, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal(xs).astype(dtype)
    wa = (rng.standard_normal(ws) * 0.1).astype(dtype)
    ba = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    return xa, wa, ba


# (x shape, w shape, padding): shapes the channels-last direct kernel takes at one thread,
# tiles whole and ragged (channels or a row's positions not a multiple of 16), a tail of
# output channels (96, 40), 3-D
CL = [
    ((2, 64, 16, 16), (64, 64, 3, 3), 1),
    ((2, 64, 9, 13), (96, 64, 3, 3), 1),
    ((2, 40, 7, 7), (64, 40, 3, 3), 1),
    ((1, 40, 6, 19), (40, 40, 3, 3), (2, 1)),
    ((1, 32, 5, 6, 7), (64, 32, 3, 3, 3), 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, pad", CL)
def test_layout_bitwise_and_torch(xs, ws, pad, dtype):
    xa, wa, ba = _data(xs, ws, dtype)
    geom_pad = (pad,) * (len(xs) - 2) if isinstance(pad, int) else pad
    assert DCL.use_direct_cl(np, xa, ws, _geom(xs, ws, geom_pad))
    DCL.LAYOUT = DCL.SHARE_G = False
    ref, g = _run(xa, wa, ba, pad)
    DCL.LAYOUT = DCL.SHARE_G = True
    got, _ = _run(xa, wa, ba, pad)
    for a, b in zip(ref, got):
        assert a.tobytes() == b.tobytes()
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (xa, wa, ba))
    conv = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv3d
    ty = conv(tx, tw, tb, padding=pad)
    ty.backward(torch.tensor(g))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, t in zip(got, (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(a, t.detach().numpy(), **tol)


def _geom(xs, ws, pad):
    from ember.ops.conv import ConvGeom

    nd = len(xs) - 2
    return ConvGeom((1,) * nd, tuple((p, p) for p in pad), (1,) * nd, 1, ws[2:], xs[2:])


def test_no_bias_and_weight_grad_only():
    """No bias (the back copy without an add: -0.0 stays -0.0); x without a gradient, so g's
    rows are not shared and the weight gradient transposes g itself."""
    xa, wa, _ = _data((2, 32, 8, 8), (64, 32, 3, 3), np.float32)
    xa[0, :, 0, 0] = 0.0
    wa[:, :, 1, 1] = -0.0
    for grads in ((True, True, False), (False, True, False), (True, False, False)):
        DCL.LAYOUT = DCL.SHARE_G = False
        ref, _ = _run(xa, wa, None, 1, grads)
        DCL.LAYOUT = DCL.SHARE_G = True
        got, _ = _run(xa, wa, None, 1, grads)
        for a, b in zip(ref, got):
            assert (a is None and b is None) or a.tobytes() == b.tobytes()


def test_layout_kernels_direct():
    """to_channels_last with the compact rows, and from_cl with and without a bias, against
    NumPy's copies."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 20, 5, 18)).astype(np.float32)
    pad = ((2, 1), (1, 3))
    ps = (8, 22)
    comp = np.full((3 * 5 * 18, 32), np.nan, np.float32)
    DCL.LAYOUT = False
    f0, _ = DCL.to_channels_last(x, ps, pad)
    DCL.LAYOUT = True
    f1, xh = DCL.to_channels_last(x, ps, pad, comp)
    assert f0.tobytes() == f1.tobytes()
    np.testing.assert_array_equal(xh[:, 2:7, 1:19], x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(comp[:, :20], x.transpose(0, 2, 3, 1).reshape(-1, 20))
    assert np.isnan(comp[:, 20:]).all()  # past the channels: untouched
    y = rng.standard_normal((3 * 37 + 6, 48)).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32)
    out = np.empty((3, 40, 37), np.float32)
    KL.from_cl(y.reshape(-1), 48, True, bias, out)
    ref = y[: 3 * 37, :40].reshape(3, 37, 40).transpose(0, 2, 1) + bias[:, None]
    assert out.tobytes() == np.ascontiguousarray(ref).tobytes()
    KL.from_cl(y.reshape(-1), 48, False, bias, out)
    ref = np.ascontiguousarray(y[: 3 * 37, :40].reshape(3, 37, 40).transpose(0, 2, 1))
    assert out.tobytes() == ref.tobytes()


def test_share_g_rows_taken():
    """Within one backward the input gradient writes g's rows and the weight gradient takes
    them; the slot is empty afterwards."""
    xa, wa, ba = _data((2, 64, 8, 8), (64, 64, 3, 3), np.float32)
    seen = []
    orig = DCL.direct_cl_weight_grad

    def spy(cols, g, w_shape, geom):
        seen.append(getattr(DCL._shared, "rows", None) is not None)
        return orig(cols, g, w_shape, geom)

    DCL.direct_cl_weight_grad = spy
    try:
        import ember.ops.conv as C

        prev = C._dcl.direct_cl_weight_grad
        _run(xa, wa, ba, 1)
    finally:
        DCL.direct_cl_weight_grad = orig
    assert prev is spy and seen == [True]
    assert getattr(DCL._shared, "g", None) is None and getattr(DCL._shared, "rows", None) is None


def test_gradcheck_cl():
    # a 1 x 2 kernel, 32 output channels (one float64 vector): few weights to perturb
    xa, wa, ba = _data((1, 16, 2, 3), (32, 16, 1, 2), np.float64)
    assert DCL.use_direct_cl(np, xa, wa.shape, _geom(xa.shape, wa.shape, (0, 1)))
    x, w, b = (ember.tensor(a, requires_grad=True) for a in (xa, wa, ba))
    assert ember.autograd.gradcheck(
        lambda x, w, b: F.conv2d(x, w, b, padding=(0, 1)), (x, w, b), eps=1e-6, atol=1e-6
    )


# the direct kernels with the fused forward (few input channels: the cnn workload's first
# convolution, a strided one) and the chunked weight gradient
DIRECT = [
    ((9, 1, 28, 28), (32, 1, 3, 3), 1, 1),
    ((5, 16, 20, 20), (32, 16, 3, 3), 1, 1),
    ((5, 16, 32, 32), (32, 16, 3, 3), 1, 2),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs, ws, pad, stride", DIRECT)
def test_fused_forward_and_chunked_weight_grad(xs, ws, pad, stride, threads):
    set_num_threads(threads)
    xa, wa, ba = _data(xs, ws, np.float32)
    assert threads > 1 or D.use_direct(np, xa, ws, _geom_s(xs, ws, pad, stride))

    def run():
        x, w, b = (ember.tensor(a, requires_grad=True) for a in (xa, wa, ba))
        y = F.conv2d(x, w, b, padding=pad, stride=stride)
        g = np.sin(np.arange(y.numel(), dtype=np.float32)).reshape(y.shape)
        y.backward(ember.tensor(g))
        return [t.detach().numpy().copy() for t in (y, x.grad, w.grad, b.grad)], g, y

    D.WGRAD_CHUNK_BYTES, DF.ENABLED = 0, False  # the NumPy passes, g widened at once
    ref, g, _ = run()
    DF.ENABLED = True
    for chunk, cpt in ((0, 4), (1 << 14, 1), (1 << 20, 4), (1 << 30, 100)):
        D.WGRAD_CHUNK_BYTES, DF.CHUNKS_PER_THREAD = chunk, cpt
        got, _, _ = run()
        for a, b in zip(ref, got):
            assert a.tobytes() == b.tobytes(), (chunk, cpt)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (xa, wa, ba))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=pad, stride=stride)
    ty.backward(torch.tensor(g))
    for a, t in zip(got, (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-4, atol=1e-4)


def _geom_s(xs, ws, pad, stride):
    from ember.ops.conv import ConvGeom

    return ConvGeom((stride,) * 2, ((pad, pad),) * 2, (1, 1), 1, ws[2:], xs[2:])
