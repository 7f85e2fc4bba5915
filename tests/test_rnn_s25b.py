"""Session 25 (issue 23, h7): the LSTM layer's forward adds the bias inside the compiled row
loops (no pass over the whole projection), and the inputs and the states share one buffer
``[x_t, h_t]`` so that the backward gets both weight gradients from one product.

Both only reorganise work: the layer's outputs and gradients are compared bitwise with the
path they replace (bias added to the projection, two weight-gradient products), at one and
two threads (two row ranges), plain, packed and reversed, on the small-matrix kernels, the
``sgemm`` loops and the tall ``w @ h.T`` steps; float64 gradcheck and PyTorch parity cover
the new paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd.gradcheck import gradcheck
from ember.backend import threads
from ember.nn.modules import rnn as rnn_module
from ember.ops import rnn, rnn_support
from ember.ops.rnn import LSTMLayer

torch = pytest.importorskip("torch")

from test_rnn_s24 import _lstm_run, _rand, enable_row_loops, paired_lstm  # noqa: E402

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _loss(out, h, c):
    return out.square().sum() + h.sum() + 2 * c.sum()


@pytest.fixture
def calls(monkeypatch):
    """Compiled row loops for float32 and float64; returns the list of paths taken
    (``"joint"`` for each backward on the shared buffer, ``"bias"`` for each forward that
    added the bias in the loop)."""
    if enable_row_loops(monkeypatch) is None:
        pytest.skip("no compiled row loops here")
    monkeypatch.setattr(rnn_support, "ROWS_PER_PART", 1)
    monkeypatch.setattr(rnn_module, "bidir_applies", lambda *a: False)
    seen = []
    joint_wg, rows_fwd = rnn.joint_weight_grads, rnn.rows_forward

    def spy_joint(*a):
        seen.append("joint")
        return joint_wg(*a)

    def spy_rows(*a):
        if len(a) > 10 and a[10] is not None:
            seen.append("bias")
        return rows_fwd(*a)

    monkeypatch.setattr(rnn, "joint_weight_grads", spy_joint)
    monkeypatch.setattr(rnn, "rows_forward", spy_rows)
    return seen


def _old_paths(monkeypatch):
    """The paths this session replaced: the bias added to the whole projection, then the
    loop; the states in their own array and two weight-gradient products."""
    rows_fwd = rnn.rows_forward

    def bias_first(plan, acts, *a):
        if len(a) > 8 and a[8] is not None:  # a: hs, cs, tanh_c, w_hh, s, bs, reverse, kc, bias
            acts = acts + a[8]  # what _project did: (x @ w.T) + bias, then the loop
            a = a[:8]
        return rows_fwd(plan, acts, *a)

    monkeypatch.setattr(rnn, "rows_forward", bias_first)
    monkeypatch.setattr(rnn, "joint_inputs", lambda *a: None)


LOOPS = {  # H96 (144 KiB weight) takes the small kernels; H16 the sgemm or the tall steps
    "small": (96, {}),
    "sgemm_wide": (16, {}),
    "sgemm_tall": (16, {"WIDE_WEIGHT": 0}),
}
LAYERS = {
    "plain": (dict(input_size=12, batch_first=True), (6, 7, 12), None),
    "packed": (dict(input_size=6, batch_first=True), (5, 6, 6), [6, 5, 3, 3, 1]),
    "bi_nobias": (dict(input_size=5, bidirectional=True, bias=False), (4, 5, 5), None),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_bitwise_against_old_paths(calls, monkeypatch, loop, layer, n_threads):
    monkeypatch.setattr(threads, "_cached", n_threads)
    # the all-steps projection (session 28 moved it inside the steps: tests/test_rnn_s28.py)
    monkeypatch.setattr(rnn_support, "JOINT_STEPS", False)
    hidden, patches = LOOPS[loop]
    for name, value in patches.items():
        monkeypatch.setattr(rnn_support, name, value)
    kwargs, shape, lengths = LAYERS[layer]
    tm, em, x = paired_lstm(shape, hidden_size=hidden, **kwargs)
    got = _lstm_run(ember, em, x, lengths, _loss)
    assert "joint" in calls
    assert ("bias" in calls) == kwargs.get("bias", True)
    ref = _lstm_run(torch, tm, x, lengths, _loss)
    for e, t in zip(got, ref):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    em.zero_grad()
    _old_paths(monkeypatch)
    calls.clear()
    base = _lstm_run(ember, em, x, lengths, _loss)
    assert not calls
    for a, b in zip(got, base):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("packed, bias", [(False, True), (True, True), (False, False)])
def test_gradcheck_joint(calls, monkeypatch, n_threads, packed, bias):
    # the all-steps projection (tests/test_rnn_s28.py checks the projection inside the steps)
    monkeypatch.setattr(rnn_support, "JOINT_STEPS", False)
    assert gradcheck_small_layer(monkeypatch, n_threads, packed, bias)
    assert "joint" in calls


def gradcheck_small_layer(monkeypatch, n_threads: int, packed: bool, bias: bool) -> bool:
    """float64 gradcheck of ``LSTMLayer`` (4 steps, 3 rows, hidden 3) on the small-matrix
    kernels' paths, at ``n_threads`` (the compiled row loops enabled by the caller)."""
    monkeypatch.setattr(threads, "_cached", n_threads)
    monkeypatch.setattr(rnn_support, "SMALL_WEIGHT", (0, 1 << 40))  # the tiny weight's kernels
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 3, 2, 3
    x, h0, c0 = _rand(rng, T, B, I), _rand(rng, B, H), _rand(rng, B, H)
    w_ih, w_hh = _rand(rng, 4 * H, I), _rand(rng, 4 * H, H)
    b = (_rand(rng, 4 * H), _rand(rng, 4 * H)) if bias else (None, None)
    bs = [3, 2, 2, 1] if packed else None
    args = (x, h0, c0, w_ih, w_hh, *b)
    return gradcheck(
        lambda *a: LSTMLayer.apply(*a, *((None,) * (7 - len(a))), None, bs, False), args
    )


def test_joint_one_weight_needed(calls, monkeypatch):
    """Only ``w_hh`` needs its gradient: the two products' fallback on the shared buffer."""
    monkeypatch.setattr(threads, "_cached", 1)
    rng = np.random.default_rng(2)
    T, B, I, H = 5, 4, 3, 96
    x = ember.tensor(rng.standard_normal((T, B, I)).astype(np.float32))
    w_ih = ember.tensor(rng.standard_normal((4 * H, I)).astype(np.float32) * 0.1)
    w_hh = ember.tensor(rng.standard_normal((4 * H, H)).astype(np.float32) * 0.1)
    w_hh.requires_grad = True
    out, _, _ = LSTMLayer.apply(x, None, None, w_ih, w_hh, None, None, None, None, False)
    out.sum().backward()
    assert "joint" in calls and x.grad is None and w_ih.grad is None
    tw = torch.tensor(w_hh.detach().numpy(), requires_grad=True)
    tx = torch.tensor(x.numpy())
    h = c = torch.zeros(B, H)
    total = 0
    for t in range(T):
        i, f, g, o = (tx[t] @ torch.tensor(w_ih.numpy()).T + h @ tw.T).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        total = total + h.sum()
    total.backward()
    np.testing.assert_allclose(w_hh.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-5)
