"""Session 23 (issue 23, h2): the LSTM step product as ``w_hh @ h.T`` without MKL, and the
norm kernels kept on one thread below ``norm_rows.split_min()`` elements a thread."""

import numpy as np
import pytest

import ember
from ember.backend import threads
from ember.ops import _kernel_split, norm_rows, rnn_support
from ember.ops import rnn as ernn

torch = pytest.importorskip("torch")


def _lstm_run(mod_kwargs, shape, lengths=None, seed=0):
    """Output, final states and every gradient of an ember LSTM (weights from torch's)."""
    torch.manual_seed(seed)
    tm = torch.nn.LSTM(**mod_kwargs)
    em = ember.nn.LSTM(**mod_kwargs)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    res = []
    for lib, m in ((ember, em), (torch, tm)):
        xt = lib.tensor(x, requires_grad=True)
        inp = xt
        if lengths is not None:
            inp = lib.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=True)
        out, (h, c) = m(inp)
        if lengths is not None:
            out = lib.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]
        (out.square().sum() + h.sum() + 2 * c.sum()).backward()
        grads = [xt.grad] + [p.grad for p in m.parameters()]
        res.append([a.detach().numpy().copy() for a in (out, h, c, *grads)])
    return res


CASES = {
    "plain": (dict(input_size=12, hidden_size=16, batch_first=True), (5, 7, 12), None),
    "bi_2layer": (
        dict(input_size=8, hidden_size=24, num_layers=2, bidirectional=True, batch_first=True),
        (3, 6, 8),
        None,
    ),
    "proj": (dict(input_size=10, hidden_size=20, proj_size=6, batch_first=True), (4, 5, 10), None),
    "packed": (
        dict(input_size=6, hidden_size=16, bidirectional=True, batch_first=True),
        (4, 6, 6),
        [6, 5, 3, 1],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lstm_tall_step_matches_torch_and_the_wide_product(case, monkeypatch):
    kwargs, shape, lengths = CASES[case]
    if rnn_support.cell_kernels(np, np.float32)[0] is None:
        pytest.skip("needs numba (the compiled cells)")
    calls = []
    real = rnn_support._numba.lstm_forward_t
    monkeypatch.setattr(ernn, "mkl_active", lambda: False)
    monkeypatch.setattr(
        rnn_support._numba, "lstm_forward_t", lambda *a: calls.append(1) or real(*a)
    )
    # the whole-sequence loop (MKL only) would take the steps instead: keep it off
    monkeypatch.setattr(ernn, "sequence_kernels", lambda *a, **k: (None, None))
    monkeypatch.setattr(rnn_support, "_rows", False)  # and so would session 24's row loops
    tall, ref = _lstm_run(kwargs, shape, lengths)
    assert calls, "the w_hh @ h.T step did not run"
    for e, t in zip(tall, ref):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    # the h @ w_hh.T step (what runs when MKL takes the products): the same to rounding
    monkeypatch.setattr(ernn, "mkl_active", lambda: True)
    calls.clear()
    wide, _ = _lstm_run(kwargs, shape, lengths)
    assert not calls
    for a, b in zip(tall, wide):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lstm_forward_t_kernel_equals_add_then_cell():
    if rnn_support.cell_kernels(np, np.float32)[0] is None:
        pytest.skip("needs numba (the compiled cells)")
    kern, kc = rnn_support.cell_kernels(np, np.float32)
    rng = np.random.default_rng(1)
    n, H = 3, 5
    a = rng.standard_normal((n, 4 * H)).astype(np.float32)
    gt = rng.standard_normal((4 * H, n)).astype(np.float32)
    c0 = rng.standard_normal((n, H)).astype(np.float32)
    outs = [[np.empty((n, H), np.float32) for _ in range(3)] for _ in range(2)]
    a1, a2 = a.copy(), a + gt.T
    kern.lstm_forward_t(a1, gt, c0, *outs[0], kc)
    kern.lstm_forward(a2, c0, *outs[1], kc)
    np.testing.assert_array_equal(a1, a2)
    for x, y in zip(*outs):
        np.testing.assert_array_equal(x, y)


def _norm_step(kind, shape):
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    F = ember.nn.functional
    if kind == "group":
        y = F.group_norm(x, 8)
    elif kind == "batch":
        y = F.batch_norm(x, None, None, training=True)
    else:
        y = F.layer_norm(x, shape[-1:])
    y.square().sum().backward()


@pytest.mark.parametrize(
    "kind,shape,split",
    [
        ("layer", (256, 1024), False),
        ("group", (16, 64, 16, 16), False),
        ("batch", (32, 16, 32, 32), False),
        ("layer", (1024, 1024), True),
    ],
)
def test_norms_stay_on_one_thread_below_split_min(kind, shape, split, monkeypatch):
    assert norm_rows.split_min() == _kernel_split._MIN_PER_THREAD << norm_rows._SPLIT_SHIFT
    monkeypatch.setattr(threads, "_cached", 2)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    _norm_step(kind, shape)
    assert bool(calls) == split
