"""Issue 23, session 26: the recurrent layers' whole-sequence products by the channels-last
convolution kernel with one tap (``ember.ops.gemm_cl``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend.threads import set_num_threads
from ember.ops import gemm_cl as G

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from _parity import restoring  # noqa: E402

restore = restoring(G, "ENABLED", "MIN_MACS")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_w", [True, False])
@pytest.mark.parametrize("m, k, n, stride", [(50, 40, 128, 40), (7, 130, 64, 200), (1, 3, 64, 3)])
def test_against_numpy(m, k, n, stride, transpose_w, dtype):
    # rows at a wider stride (a view of a wider buffer), row counts not a multiple of CL_P
    G.MIN_MACS = 0
    rng = np.random.default_rng(0)
    buf = rng.standard_normal((m, stride)).astype(dtype)
    a = buf[:, :k]
    w = rng.standard_normal((n, k) if transpose_w else (k, n)).astype(dtype)
    got = G.matmul_cl(a, w, transpose_w)
    assert got is not None and got.shape == (m, n) and got.flags.c_contiguous
    want = a.astype(np.float64) @ (w.T if transpose_w else w).astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_one_and_two_threads_bitwise():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1000, 128)).astype(np.float32)
    w = rng.standard_normal((512, 128)).astype(np.float32)
    res = []
    for th in (1, 2):
        set_num_threads(th)
        res.append(G.matmul_cl(a, w, True))
    np.testing.assert_array_equal(res[0], res[1])


def test_does_not_apply():
    a = np.ones((4, 8), np.float32)
    assert G.matmul_cl(a, np.ones((64, 8), np.float32), True) is None  # under MIN_MACS
    G.MIN_MACS = 0
    assert G.matmul_cl(a, np.ones((60, 8), np.float32), True) is None  # not whole vectors
    assert G.matmul_cl(a, np.ones((64, 8), np.float64), True) is None  # dtypes differ
    assert G.matmul_cl(a.astype(np.int32), np.ones((64, 8), np.int32), True) is None
    strided = np.ones((4, 8), np.float32)[:, ::2]  # values not contiguous in a row
    assert G.matmul_cl(strided, np.ones((64, 4), np.float32), True) is None
    G.ENABLED = False
    assert G.matmul_cl(a, np.ones((64, 8), np.float32), True) is None


@pytest.mark.parametrize("threads", [1, 2])
def test_lstm_layer_against_torch(threads, monkeypatch):
    # the lstm workload's layer shape (B32 T64 128 -> 256): projection and input gradient here
    # (the all-steps projection: on the small-matrix kernels it runs inside the steps instead)
    monkeypatch.setattr("ember.ops.rnn_support.JOINT_STEPS", False)
    seen = []
    real = G.matmul_cl
    monkeypatch.setattr(
        "ember.ops.rnn_support.matmul_cl", lambda *a: (seen.append(a[2]), real(*a))[1]
    )
    set_num_threads(threads)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 64, 128)).astype(np.float32)
    ember.manual_seed(0)
    me = ember.nn.LSTM(128, 256, batch_first=True)
    mt = torch.nn.LSTM(128, 256, batch_first=True)
    mt.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in me.state_dict().items()})
    outs = []
    for lib, m in ((ember, me), (torch, mt)):
        xt = lib.tensor(x, requires_grad=True)
        y, _ = m(xt)
        (y * y).sum().backward()
        outs.append([y.detach().numpy(), xt.grad.numpy(), m.weight_ih_l0.grad.numpy()])
    assert True in seen and False in seen  # the projection and the input gradient
    for a, e in zip(*outs):
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=1e-4)
