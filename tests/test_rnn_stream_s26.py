"""Issue 23, session 26: LSTM step products that stream a large recurrent weight through the
channels-last convolution kernel (``ember.ops.rnn_stream``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck
from ember.backend.threads import set_num_threads
from ember.ops import rnn_stream as RS

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from _parity import restoring  # noqa: E402

restore = restoring(RS, "MIN_WEIGHT", "STREAM")


@pytest.fixture
def calls(monkeypatch):
    """How many step products streamed."""
    seen = []
    real = RS.StreamProduct.__call__

    def spy(self, a):
        seen.append(a.shape[0])
        return real(self, a)

    monkeypatch.setattr(RS.StreamProduct, "__call__", spy)
    return seen


def test_plan_rules():
    w = np.zeros((4096, 1024), np.float32)  # 16 MiB
    set_num_threads(1)
    assert RS.stream_plan(np, np.float32, 8, w)
    assert not RS.stream_plan(np, np.float32, RS.MAX_ROWS + 1, w)  # many rows: sgemm
    small = np.zeros((2048, 512), np.float32)  # 4 MiB: the small-matrix kernels at 1 thread
    assert not RS.stream_plan(np, np.float32, 8, small)
    set_num_threads(2)
    assert RS.stream_plan(np, np.float32, 8, small)  # past ROWS_SPLIT_WEIGHT at 2 threads
    assert not RS.stream_plan(np, np.float32, 8, np.zeros((1024, 256), np.float32))  # 1 MiB
    assert not RS.stream_plan(np, np.float32, 8, np.zeros((1000, 250), np.float32))  # lanes
    assert not RS.stream_plan(np, np.int32, 8, w.astype(np.int32))
    RS.STREAM = False
    assert not RS.stream_plan(np, np.float32, 8, w)


def _pair(lib, seed, **kw):
    lib.manual_seed(seed)
    return lib.nn.LSTM(**kw)


def _run(lib, m, x, g):
    xt = lib.tensor(x, requires_grad=True)
    y, (h, c) = m(xt)
    (y * lib.tensor(g)).sum().backward()
    grads = [p.grad.detach().numpy().copy() for p in m.parameters()]
    return [y.detach().numpy(), h.detach().numpy(), c.detach().numpy(), xt.grad.numpy()] + grads


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_against_torch(threads, bidirectional, calls):
    RS.MIN_WEIGHT = (-1, -1)  # every layer streams (H64: 64 KiB)
    set_num_threads(threads)
    kw = dict(input_size=24, hidden_size=64, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 24)).astype(np.float32)
    g = rng.standard_normal((7, 5, 64 * (2 if bidirectional else 1))).astype(np.float32)
    me = _pair(ember, 0, **kw)
    mt = _pair(torch, 0, **kw)
    mt.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in me.state_dict().items()})
    got = _run(ember, me, x, g)
    assert len(calls) == 2 * 7 * 2 * (2 if bidirectional else 1)  # forward + backward steps
    for a, e in zip(got, _run(torch, mt, x, g)):
        np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-5)


def test_one_and_two_threads_bitwise(calls):
    RS.MIN_WEIGHT = (-1, -1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 9, 16)).astype(np.float32)
    g = rng.standard_normal((6, 9, 128)).astype(np.float32)
    res = []
    for th in (1, 2):
        set_num_threads(th)
        res.append(_run(ember, _pair(ember, 1, input_size=16, hidden_size=128), x, g))
    assert calls
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_packed_sequences(calls):
    RS.MIN_WEIGHT = (-1, -1)
    rng = np.random.default_rng(2)
    lengths = [6, 4, 4, 1]
    x = rng.standard_normal((6, 4, 8)).astype(np.float32)
    me = _pair(ember, 2, input_size=8, hidden_size=64)
    mt = _pair(torch, 2, input_size=8, hidden_size=64)
    mt.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in me.state_dict().items()})
    outs = []
    for lib, m in ((ember, me), (torch, mt)):
        xt = lib.tensor(x, requires_grad=True)
        packed = lib.nn.utils.rnn.pack_padded_sequence(xt, lengths)
        y, (h, c) = m(packed)
        pad, _ = lib.nn.utils.rnn.pad_packed_sequence(y)
        (pad.sum() + h.sum() * 2).backward()
        outs.append([pad.detach().numpy(), h.detach().numpy(), xt.grad.numpy()])
    assert calls and min(calls) < 4  # steps with fewer active rows
    for a, e in zip(*outs):
        np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-5)


def test_gradcheck_float64(calls):
    RS.MIN_WEIGHT = (-1, -1)  # float64 vectors hold 32 values: H32 is one vector
    rng = np.random.default_rng(3)
    m = ember.nn.LSTM(3, 32).double()
    names = [name for name, _ in m.named_parameters()]
    x = ember.tensor(rng.standard_normal((3, 2, 3)), requires_grad=True)
    ps = [ember.tensor(p.detach().numpy() * 0.5, requires_grad=True) for p in m.parameters()]

    def fn(x, *ps):
        return ember.func.functional_call(m, dict(zip(names, ps)), (x,))[0]

    assert gradcheck(fn, (x, *ps))
    assert calls
