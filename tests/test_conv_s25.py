"""Convolution, session 25 (issue 23, h1): the channels-last direct path's layout copies on
numba's threads at two threads (``_numba_conv_layout.to_cl_par`` / ``from_cl_par``,
``conv_direct_cl.PAR_LAYOUT``): bit for bit the serial copies', the step against torch, and
the selection (parallel only with kernel threads and from ``conv_direct.MIN_KERNEL_MACS``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.backend.threads import get_num_threads, set_num_threads
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as DCL

torch = pytest.importorskip("torch")
KL = pytest.importorskip("ember.ops._numba_conv_layout")
KN = pytest.importorskip("ember.ops._numba_conv_cl_nchw")
pytestmark = pytest.mark.skipif(not KL.AVAILABLE, reason="numba is not installed")


@pytest.fixture(autouse=True)
def restore():
    prev = get_num_threads()
    yield
    set_num_threads(prev)
    DCL.PAR_LAYOUT = True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "c, h, w_, comp", [(32, 16, 16, True), (40, 5, 19, False), (48, 7, 7, True), (16, 8, 8, False)]
)
def test_to_cl_par_bitwise(c, h, w_, comp, dtype):
    # whole tiles, and ragged ones (channels and a row's positions not multiples of 16)
    rng = np.random.default_rng(0)
    n, pad = 3, 1
    x = rng.standard_normal((n, c, h * w_)).astype(dtype)
    x[0, 0, 0] = np.inf  # values are moved, never combined
    wp, hp = w_ + 2 * pad, h + 2 * pad
    crow = c + 8
    tab = DCL._frame_table((h, w_), (hp, wp), ((pad, pad), (pad, pad)), crow)
    outs = []
    for name in ("to_cl", "to_cl_par"):
        flat = np.zeros(n * hp * wp * crow + 6, dtype=dtype)
        cf = np.zeros(n * h * w_ * (c + 3), dtype=dtype) if comp else np.empty(0, dtype)
        getattr(KL, name)(x, tab, hp * wp, flat, crow, cf, c + 3 if comp else 0)
        outs.append((flat, cf))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    # against NumPy: x at the frame's inner positions, zeros around, the compact rows
    want = np.zeros((n, hp, wp, crow), dtype)
    want[:, pad : pad + h, pad : pad + w_, :c] = x.reshape(n, c, h, w_).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(outs[0][0][:-6].reshape(want.shape), want)
    if comp:
        rows = outs[0][1].reshape(n * h * w_, c + 3)
        np.testing.assert_array_equal(rows[:, :c], x.transpose(0, 2, 1).reshape(-1, c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("o, l_, bias", [(64, 256, True), (40, 49, True), (24, 20, False)])
def test_from_cl_par_bitwise(o, l_, bias, dtype):
    rng = np.random.default_rng(1)
    n, sy = 3, o + 8
    y = rng.standard_normal(n * l_ * sy).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else np.zeros(0, dtype)
    res = [np.empty((n, o, l_), dtype) for _ in range(2)]
    KL.from_cl(y, sy, bias, b, res[0])
    KL.from_cl_par(y, sy, bias, b, res[1])
    np.testing.assert_array_equal(res[0], res[1])


def _step(xa, wa, ba):
    x = ember.tensor(xa, requires_grad=True)
    w = ember.tensor(wa, requires_grad=True)
    b = ember.tensor(ba, requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    g = np.cos(np.arange(y.numel(), dtype=np.float64)).reshape(y.shape).astype(xa.dtype)
    y.backward(ember.tensor(g))
    return [t.numpy().copy() for t in (y.detach(), x.grad, w.grad, b.grad)], g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cout", [64, 96])  # 96: the tail kernels beside the whole vectors
def test_two_thread_step_bitwise_and_torch(cout, dtype, monkeypatch):
    # 64 -> cout on 8 x 16^2: the channels-last direct kernels, one part, kernel threads 2
    rng = np.random.default_rng(2)
    xa = rng.standard_normal((8, 64, 16, 16)).astype(dtype)
    wa = (rng.standard_normal((cout, 64, 3, 3)) * 0.1).astype(dtype)
    ba = rng.standard_normal(cout).astype(dtype)
    set_num_threads(2)
    calls = []
    for mod, name in ((KL, "to_cl_par"), (KL, "from_cl_par"), (KN, "forward_cl_nchw_par")):
        real = getattr(mod, name)

        def spy(*a, _real=real, _name=name):
            calls.append(_name)
            return _real(*a)

        monkeypatch.setattr(mod, name, spy)
    par, g = _step(xa, wa, ba)
    first = list(calls)  # (the serial step's kernel calls are parallel too: not counted)
    DCL.PAR_LAYOUT = False
    ser, _ = _step(xa, wa, ba)
    if D._parallel_ok():  # numba's TBB layer: the parallel copies ran (forward, input grad)
        # whole vectors of outputs come back from the kernel's own chunks (``NCHW_OUT``): the
        # forward's and the input gradient's, but a float32 forward to 96 has a tail (64 + 32)
        back = first.count("from_cl_par"), first.count("forward_cl_nchw_par")
        tail = cout % (256 // xa.itemsize) != 0
        assert first.count("to_cl_par") == 2 and back == ((1, 1) if tail else (0, 2))
    for a, b in zip(par, ser):
        np.testing.assert_array_equal(a, b)
    tx = torch.tensor(xa, requires_grad=True)
    tw = torch.tensor(wa, requires_grad=True)
    tb = torch.tensor(ba, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    ty.backward(torch.tensor(g))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for a, t in zip(par, (ty.detach(), tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(a, t.numpy(), rtol=tol, atol=tol)


def test_serial_below_threshold_and_one_thread(monkeypatch):
    # under MIN_KERNEL_MACS, or at one thread, the serial copies run
    seen = []
    monkeypatch.setattr(KL, "to_cl_par", lambda *a: seen.append("par"))
    monkeypatch.setattr(KL, "from_cl_par", lambda *a: seen.append("par"))
    rng = np.random.default_rng(3)
    xa = rng.standard_normal((1, 32, 8, 8)).astype(np.float32)  # 1.2 M multiply-adds
    wa = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np.float32)
    ba = np.zeros(64, np.float32)
    set_num_threads(2)
    _step(xa, wa, ba)
    set_num_threads(1)
    _step(np.repeat(xa, 8, axis=0), wa, ba)
    assert seen == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cin, cout", [(64, 64), (16, 64)])  # 3 and 18 channel blocks
def test_weight_grad_par_groups_bitwise(cin, cout, dtype):
    # the parallel weight gradient's groups of input-channel blocks: the serial kernel's bits
    K = pytest.importorskip("ember.ops._numba_conv_cl")
    rng = np.random.default_rng(4)
    n, h, t = 2, 12, 9
    v = DCL._vec_lanes(np.dtype(dtype).itemsize)
    cp = -(-cin // DCL.CL_P) * DCL.CL_P
    pos = (np.arange(n * h * h, dtype=np.int64) * cin) % (n * h * h * cin - 3 * cin)
    offs = np.arange(t, dtype=np.int64) * cin
    j = pos.shape[0]
    # (spare zeros past the last position: the last block of CL_P channels reads past cin, and
    # the taps past the table's positions; those sums are dropped, as the caller drops them)
    xh = np.zeros(n * h * h * cin + t * cin + 64, dtype)
    xh[: n * h * h * cin] = rng.standard_normal(n * h * h * cin)
    gcl = rng.standard_normal((j, max(cout, v))).astype(dtype)
    full = cout // v * v
    if not full:
        pytest.skip("no whole vector of output channels at this dtype")
    res = [np.zeros((cp, t, max(cout, v)), dtype) for _ in range(2)]
    K.weight_grad_cl(xh, gcl, offs, pos, j, full, res[0])
    K.weight_grad_cl_par(xh, gcl, offs, pos, j, full, res[1])
    np.testing.assert_array_equal(res[0][:cin], res[1][:cin])


@pytest.mark.parametrize("cout", [64, 96])
def test_one_and_two_threads_bitwise(cout):
    # the channels-last path's parallel kernels and copies split the work, not the sums
    rng = np.random.default_rng(5)
    xa = rng.standard_normal((8, 64, 16, 16)).astype(np.float32)
    wa = (rng.standard_normal((cout, 64, 3, 3)) * 0.1).astype(np.float32)
    ba = rng.standard_normal(cout).astype(np.float32)
    set_num_threads(1)
    one, _ = _step(xa, wa, ba)
    set_num_threads(2)
    two, _ = _step(xa, wa, ba)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "xs, ws, stride",
    [
        ((8, 16, 32, 32), (32, 16, 3, 3), 2),  # 9.4 M multiply-adds
        ((8, 64, 128), (64, 64, 3), 1),  # 12.6 M
        ((8, 3, 32, 32), (16, 3, 3, 3), 1),  # 3.5 M (session 26)
    ],
)
def test_threaded_small_bitwise(xs, ws, stride, monkeypatch):
    # 16->32 s2 and the 1-D 64->64 k3 take their kernels' parallel variants at two threads
    # since session 25 (conv_split.MIN_THREADED_MACS, conv_direct.MIN_KERNEL_MACS), 3->16
    # since session 26 (2^21), with the one-thread step's bits
    from ember.ops import conv_split as S

    assert S.MIN_THREADED_MACS == D.MIN_KERNEL_MACS == 1 << 21
    seen = []
    real = S.with_kernel_threads
    monkeypatch.setattr(S, "with_kernel_threads", lambda n, *a: (seen.append(n), real(n, *a))[1])
    rng = np.random.default_rng(6)
    xa = rng.standard_normal(xs).astype(np.float32)
    wa = (rng.standard_normal(ws) * 0.1).astype(np.float32)
    ba = rng.standard_normal(ws[0]).astype(np.float32)
    conv = F.conv2d if len(xs) == 4 else F.conv1d
    res = []
    for th in (1, 2):
        set_num_threads(th)
        x = ember.tensor(xa, requires_grad=True)
        w = ember.tensor(wa, requires_grad=True)
        b = ember.tensor(ba, requires_grad=True)
        y = conv(x, w, b, stride=stride, padding=1)
        y.backward(ember.tensor(np.cos(np.arange(y.numel())).reshape(y.shape).astype(np.float32)))
        res.append([t.numpy().copy() for t in (y.detach(), x.grad, w.grad, b.grad)])
    assert seen and set(seen) == {2}  # forward and backward, one part with kernel threads
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
