"""Session 24 (issue 23, h9): a bidirectional LSTM layer's two directions on two threads
(``ops/rnn_bidir.py``).

Each direction runs ``LSTMLayer``'s own single-threaded code on its thread, so at two threads
the results must equal, bitwise, those of the direction-by-direction path at one thread; and
they are compared with PyTorch (plain, stacked, packed, with ``proj_size``), gradchecked in
float64 (float64 joins the compiled dtypes so that ``applies`` admits it), and the graph must
survive a second backward with ``retain_graph``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd.gradcheck import gradcheck
from ember.backend import threads
from ember.nn.modules import rnn as rnn_module
from ember.ops import rnn_bidir, rnn_support
from ember.ops.rnn_bidir import BiLSTMLayer

torch = pytest.importorskip("torch")

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


@pytest.fixture
def two_threads():
    """Two threads for the test (BLAS's pool and ember's count), the previous count after."""
    before = ember.get_num_threads()
    ember.set_num_threads(2)
    if rnn_support.cell_kernels(np, _F32)[0] is None:
        ember.set_num_threads(before)
        pytest.skip("numba unavailable: no compiled cells, the bidirectional split is off")
    yield
    ember.set_num_threads(before)


@pytest.fixture
def calls(monkeypatch):
    """The number of ``BiLSTMLayer`` layers applied."""
    seen = []
    real = BiLSTMLayer.apply
    monkeypatch.setattr(BiLSTMLayer, "apply", lambda *a: seen.append(1) or real(*a))
    return seen


def _run(lib, mod, x, lengths, hx=None):
    xt = lib.tensor(x, requires_grad=True)
    inp = xt
    if lengths is not None:
        inp = lib.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=True)
    out, (h, c) = mod(inp, hx)
    if lengths is not None:
        out = lib.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]
    (out.square().sum() + h.sum() + 2 * c.sum()).backward()
    grads = [xt.grad] + [p.grad for p in mod.parameters()]
    return [a.detach().numpy().copy() for a in (out, h, c, *grads)]


CASES = {
    "bi": (dict(input_size=6, hidden_size=16, bidirectional=True), (5, 9, 6), None),
    "bi_3layer": (dict(input_size=8, hidden_size=12, num_layers=3, bidirectional=True), (4, 7, 8), None),  # noqa: E501
    "packed": (dict(input_size=6, hidden_size=16, bidirectional=True), (5, 6, 6), [6, 5, 3, 3, 1]),  # noqa: E501
    "proj": (dict(input_size=6, hidden_size=16, num_layers=2, bidirectional=True, proj_size=5), (3, 4, 6), None),  # noqa: E501
}  # fmt: skip


def _pair(kwargs):
    torch.manual_seed(0)
    tm = torch.nn.LSTM(batch_first=True, **kwargs)
    em = ember.nn.LSTM(batch_first=True, **kwargs)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, em


@pytest.mark.parametrize("case", list(CASES))
def test_two_threads_match_torch_and_one_thread_bitwise(two_threads, calls, case):
    kwargs, shape, lengths = CASES[case]
    tm, em = _pair(kwargs)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    got = _run(ember, em, x, lengths)
    assert len(calls) == kwargs.get("num_layers", 1)
    for e, t in zip(got, _run(torch, tm, x, lengths)):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    # one thread: the directions one after the other, the same code on each
    em.zero_grad()
    ember.set_num_threads(1)
    calls.clear()
    one = _run(ember, em, x, lengths)
    assert not calls
    for a, b in zip(got, one):
        np.testing.assert_array_equal(a, b)


def test_initial_states_and_retain_graph(two_threads, calls):
    tm, em = _pair(dict(input_size=5, hidden_size=8, num_layers=2, bidirectional=True))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    h0, c0 = (rng.standard_normal((4, 3, 8)).astype(np.float32) for _ in range(2))
    res = []
    for lib, mod in ((ember, em), (torch, tm)):
        hx = tuple(lib.tensor(a, requires_grad=True) for a in (h0, c0))
        out, (h, c) = mod(lib.tensor(x), hx)
        loss = out.square().sum() + (h * c).sum()
        loss.backward(retain_graph=True)
        loss.backward()  # the node keeps its saved arrays for a second pass
        res.append([a.detach().numpy() for a in (out, h, c, hx[0].grad, hx[1].grad)])
    assert len(calls) == 2  # a node a layer
    for e, t in zip(*res):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck_float64(two_threads, monkeypatch, packed):
    monkeypatch.setattr(rnn_support, "_COMPILED_DTYPES", (_F32, _F64))
    monkeypatch.setattr(rnn_support, "_numba", None)
    monkeypatch.setattr(rnn_support, "_rows", None)
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 3, 2, 3

    def rand(*shape):
        return ember.tensor(rng.standard_normal(shape), requires_grad=True)

    def weights():
        return [rand(4 * H, I), rand(4 * H, H), rand(4 * H), rand(4 * H), None]

    x = rand(T, B, I)
    states = [rand(B, H) for _ in range(4)]
    args = (x, *states, *weights()[:4])
    more = weights()[:4]
    bs = [3, 2, 2, 1] if packed else None

    def fn(x, h0f, c0f, h0b, c0b, wif, whf, bif, bhf, wib, whb, bib, bhb):
        return BiLSTMLayer.apply(
            x, h0f, c0f, h0b, c0b, wif, whf, bif, bhf, None, wib, whb, bib, bhb, None, bs
        )  # noqa: E501

    assert gradcheck(fn, args + tuple(more))


def test_applies_rule(two_threads, monkeypatch):
    x32, w = ember.zeros(2, 3, 4), ember.zeros(16, 4)
    assert rnn_bidir.applies(x32, w)
    assert rnn_bidir.applies(x32.half(), w)  # run in float32
    assert not rnn_bidir.applies(x32.double(), w)  # no compiled cells: a Python loop a thread
    big = ember.zeros(4, rnn_bidir.MAX_WEIGHT // 16 + 1)  # over MAX_WEIGHT bytes as float32
    assert not rnn_bidir.applies(x32, big)
    monkeypatch.setattr(threads, "_cached", 1)
    assert not rnn_bidir.applies(x32, w)
    monkeypatch.setattr(threads, "_cached", 4)  # not measured: the per-direction path
    assert not rnn_bidir.applies(x32, w)
    assert rnn_module.bidir_applies is rnn_bidir.applies
