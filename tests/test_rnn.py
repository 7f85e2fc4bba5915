"""Recurrent layers: fused-op gradchecks, PyTorch parity of RNN/LSTM/GRU and their cells, packing.

Parity tolerances (float32): outputs and states atol 2e-5 / rtol 1e-4; gradients atol 5e-5 /
rtol 1e-4 (sums over up to 8 steps x 4 rows of float32 products).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from ember import nn
from ember.autograd.gradcheck import gradcheck
from ember.nn.utils import rnn as rnn_utils
from ember.ops.rnn import GRULayer, LSTMLayer, RNNLayer

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

OUT_TOL = {"atol": 2e-5, "rtol": 1e-4}
GRAD_TOL = {"atol": 5e-5, "rtol": 1e-4}


def _e(a, requires_grad=False):
    t = ember.tensor(np.asarray(a))
    t.requires_grad = requires_grad
    return t


def _np(t):
    return t.detach().numpy()


def _copy_weights(src, dst):
    """torch module -> ember module through the state dict (names must match exactly)."""
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys


def _close(a, b, tol, what):
    np.testing.assert_allclose(a, b, err_msg=what, **tol)


# ---- gradcheck of the fused ops (float64) ------------------------------------------------------
def _rand(rng, *shape):
    return _e(rng.standard_normal(shape), True)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("proj", [False, True])
def test_gradcheck_lstm_layer(reverse, packed, proj):
    rng = np.random.default_rng(0)
    T, B, I, H, P = 3, 3, 2, 3, 2
    Ph = P if proj else H
    x, h0, c0 = _rand(rng, T, B, I), _rand(rng, B, Ph), _rand(rng, B, H)
    w_ih, w_hh = _rand(rng, 4 * H, I), _rand(rng, 4 * H, Ph)
    b_ih, b_hh = _rand(rng, 4 * H), _rand(rng, 4 * H)
    w_hr = _rand(rng, P, H) if proj else None
    bs = [3, 2, 1] if packed else None

    def fn(*args):
        return LSTMLayer.apply(*args, w_hr, bs, reverse)

    assert gradcheck(fn, (x, h0, c0, w_ih, w_hh, b_ih, b_hh))
    if proj:
        assert gradcheck(
            lambda w: LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w, bs, reverse), (w_hr,)
        )


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck_gru_layer(reverse, packed):
    rng = np.random.default_rng(1)
    T, B, I, H = 3, 3, 2, 3
    args = (
        _rand(rng, T, B, I),
        _rand(rng, B, H),
        _rand(rng, 3 * H, I),
        _rand(rng, 3 * H, H),
        _rand(rng, 3 * H),
        _rand(rng, 3 * H),
    )
    bs = [3, 3, 1] if packed else None
    assert gradcheck(lambda *a: GRULayer.apply(*a, bs, reverse), args)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_rnn_layer(relu, reverse):
    rng = np.random.default_rng(2)
    T, B, I, H = 4, 2, 2, 3
    args = (
        _rand(rng, T, B, I),
        _rand(rng, B, H),
        _rand(rng, H, I),
        _rand(rng, H, H),
        _rand(rng, H),
        _rand(rng, H),
    )
    assert gradcheck(lambda *a: RNNLayer.apply(*a, [2, 2, 1, 1], reverse, relu), args)
    assert gradcheck(lambda *a: RNNLayer.apply(*a, None, reverse, relu), args)


def test_gradcheck_without_bias_or_initial_state():
    rng = np.random.default_rng(3)
    x, w_ih, w_hh = _rand(rng, 3, 2, 2), _rand(rng, 8, 2), _rand(rng, 8, 2)
    assert gradcheck(
        lambda *a: LSTMLayer.apply(a[0], None, None, a[1], a[2], None, None, None, None, False),
        (x, w_ih, w_hh),
    )
    assert gradcheck(
        lambda *a: GRULayer.apply(a[0], None, a[1], a[2], None, None, None, True),
        (x, _rand(rng, 6, 2), _rand(rng, 6, 2)),
    )


# ---- module parity ----------------------------------------------------------------------------
MODES = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


def _pair(mode, I, H, **kw):
    if mode.startswith("rnn"):
        kw["nonlinearity"] = mode[4:]
        return torch.nn.RNN(I, H, **kw), nn.RNN(I, H, **kw)
    if mode.startswith("lstm"):
        if mode == "lstm_proj":
            kw["proj_size"] = 2
        return torch.nn.LSTM(I, H, **kw), nn.LSTM(I, H, **kw)
    return torch.nn.GRU(I, H, **kw), nn.GRU(I, H, **kw)


def _states(mode, tm, B, rng, unbatched=False):
    D = 2 if tm.bidirectional else 1
    Hout = tm.proj_size if getattr(tm, "proj_size", 0) else tm.hidden_size
    shape = (tm.num_layers * D,) + (() if unbatched else (B,))
    h = rng.standard_normal(shape + (Hout,)).astype(np.float32)
    if mode.startswith("lstm"):
        return h, rng.standard_normal(shape + (tm.hidden_size,)).astype(np.float32)
    return (h,)


def _run_pair(mode, tm, em, x, states):
    """Forward + backward of a random linear loss on both; returns both sides' tensors."""
    xt, xe = torch.tensor(x, requires_grad=True), _e(x, True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    se = [_e(s, True) for s in states]
    is_lstm = mode.startswith("lstm")
    hx_t = None if not states else (tuple(st) if is_lstm else st[0])
    hx_e = None if not states else (tuple(se) if is_lstm else se[0])
    out_t, hn_t = tm(xt, hx_t)
    out_e, hn_e = em(xe, hx_e)
    hn_t = list(hn_t) if is_lstm else [hn_t]
    hn_e = list(hn_e) if is_lstm else [hn_e]
    rng = np.random.default_rng(7)
    loss_t, loss_e = 0, 0
    for a, b in zip([out_t] + hn_t, [out_e] + hn_e):
        w = rng.standard_normal(tuple(a.shape)).astype(np.float32)
        loss_t = loss_t + (a * torch.tensor(w)).sum()
        loss_e = loss_e + (b * _e(w)).sum()
    loss_t.backward()
    loss_e.backward()
    return (xt, st, out_t, hn_t), (xe, se, out_e, hn_e)


def _compare(tm, em, t_side, e_side):
    xt, st, out_t, hn_t = t_side
    xe, se, out_e, hn_e = e_side
    _close(_np(out_e), _np(out_t), OUT_TOL, "output")
    for a, b in zip(hn_e, hn_t):
        _close(_np(a), _np(b), OUT_TOL, "final state")
    _close(xe.grad.numpy(), xt.grad.numpy(), GRAD_TOL, "input grad")
    for a, b in zip(se, st):
        _close(a.grad.numpy(), b.grad.numpy(), GRAD_TOL, "initial state grad")
    tp = dict(tm.named_parameters())
    names = [n for n, _ in em.named_parameters()]
    assert names == list(tp)
    for n, p in em.named_parameters():
        _close(p.grad.numpy(), tp[n].grad.numpy(), GRAD_TOL, f"grad of {n}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "num_layers,bidirectional,batch_first,bias,with_state",
    [
        (1, False, False, True, False),
        (1, True, True, True, True),
        (2, False, True, False, True),
        (2, True, False, True, True),
    ],
)
def test_module_parity(mode, num_layers, bidirectional, batch_first, bias, with_state):
    rng = np.random.default_rng(abs(hash((mode, num_layers, bidirectional))) % 1000)
    T, B, I, H = 6, 4, 5, 3
    tm, em = _pair(
        mode,
        I,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        bias=bias,
    )
    _copy_weights(tm, em)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    states = _states(mode, tm, B, rng) if with_state else ()
    t_side, e_side = _run_pair(mode, tm, em, x, states)
    _compare(tm, em, t_side, e_side)


@pytest.mark.parametrize("mode", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_module_unbatched_input(mode):
    rng = np.random.default_rng(5)
    tm, em = _pair(mode, 3, 4, num_layers=2, bidirectional=True)
    _copy_weights(tm, em)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t_side, e_side = _run_pair(mode, tm, em, x, _states(mode, tm, 1, rng, unbatched=True))
    _compare(tm, em, t_side, e_side)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dropout_between_layers(mode):
    rng = np.random.default_rng(6)
    tm, em = _pair(mode, 4, 5, num_layers=3, dropout=0.5)
    _copy_weights(tm, em)
    x = rng.standard_normal((7, 2, 4)).astype(np.float32)
    # eval: dropout is off, outputs match torch exactly
    tm.eval()
    em.eval()
    t_side, e_side = _run_pair(mode, tm, em, x, ())
    _compare(tm, em, t_side, e_side)
    # train: the layers' outputs are dropped at random, differently on each call
    em.train()
    ember.manual_seed(0)
    a = _np(em(_e(x))[0])
    b = _np(em(_e(x))[0])
    assert not np.allclose(a, b)
    assert not np.allclose(a, _np(t_side[2]), atol=1e-3)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_relu", "lstm_proj"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequence_parity(mode, batch_first):
    rng = np.random.default_rng(8)
    T, B, I, H = 6, 4, 3, 4
    lengths = [3, 6, 1, 4]  # unsorted: exercises sorted/unsorted indices
    tm, em = _pair(mode, I, H, num_layers=2, bidirectional=True, batch_first=batch_first)
    _copy_weights(tm, em)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    states = _states(mode, tm, B, rng)
    xt, xe = torch.tensor(x, requires_grad=True), _e(x, True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    se = [_e(s, True) for s in states]
    pt = torch.nn.utils.rnn.pack_padded_sequence(
        xt, lengths, batch_first=batch_first, enforce_sorted=False
    )
    pe = rnn_utils.pack_padded_sequence(xe, lengths, batch_first=batch_first, enforce_sorted=False)
    np.testing.assert_array_equal(pe.batch_sizes.numpy(), pt.batch_sizes.numpy())
    np.testing.assert_array_equal(pe.sorted_indices.numpy(), pt.sorted_indices.numpy())
    is_lstm = mode.startswith("lstm")
    out_t, hn_t = tm(pt, tuple(st) if is_lstm else st[0])
    out_e, hn_e = em(pe, tuple(se) if is_lstm else se[0])
    assert isinstance(out_e, rnn_utils.PackedSequence)
    pad_t, len_t = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=batch_first)
    pad_e, len_e = rnn_utils.pad_packed_sequence(out_e, batch_first=batch_first)
    np.testing.assert_array_equal(len_e.numpy(), len_t.numpy())
    hn_t = list(hn_t) if is_lstm else [hn_t]
    hn_e = list(hn_e) if is_lstm else [hn_e]
    w = [rng.standard_normal(tuple(a.shape)).astype(np.float32) for a in [pad_t] + hn_t]
    sum(((a * torch.tensor(c)).sum() for a, c in zip([pad_t] + hn_t, w))).backward()
    sum(((a * _e(c)).sum() for a, c in zip([pad_e] + hn_e, w))).backward()
    _compare(tm, em, (xt, st, pad_t, hn_t), (xe, se, pad_e, hn_e))


# ---- cells ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_cell_parity(kind, unbatched, with_state):
    rng = np.random.default_rng(9)
    B, I, H = 3, 4, 5
    if kind.startswith("rnn"):
        tm = torch.nn.RNNCell(I, H, nonlinearity=kind[4:])
        em = nn.RNNCell(I, H, nonlinearity=kind[4:])
    elif kind == "lstm":
        tm, em = torch.nn.LSTMCell(I, H), nn.LSTMCell(I, H)
    else:
        tm, em = torch.nn.GRUCell(I, H), nn.GRUCell(I, H)
    _copy_weights(tm, em)
    shape = (I,) if unbatched else (B, I)
    hshape = (H,) if unbatched else (B, H)
    x = rng.standard_normal(shape).astype(np.float32)
    n_states = 2 if kind == "lstm" else 1
    states = [rng.standard_normal(hshape).astype(np.float32) for _ in range(n_states)]
    xt, xe = torch.tensor(x, requires_grad=True), _e(x, True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    se = [_e(s, True) for s in states]
    if not with_state:
        out_t, out_e = tm(xt), em(xe)
    elif kind == "lstm":
        out_t, out_e = tm(xt, tuple(st)), em(xe, tuple(se))
    else:
        out_t, out_e = tm(xt, st[0]), em(xe, se[0])
    out_t = list(out_t) if kind == "lstm" else [out_t]
    out_e = list(out_e) if kind == "lstm" else [out_e]
    w = [rng.standard_normal(tuple(a.shape)).astype(np.float32) for a in out_t]
    sum(((a * torch.tensor(c)).sum() for a, c in zip(out_t, w))).backward()
    sum(((a * _e(c)).sum() for a, c in zip(out_e, w))).backward()
    for a, b in zip(out_e, out_t):
        _close(_np(a), _np(b), OUT_TOL, "cell output")
    _close(xe.grad.numpy(), xt.grad.numpy(), GRAD_TOL, "input grad")
    if with_state:
        for a, b in zip(se, st):
            _close(a.grad.numpy(), b.grad.numpy(), GRAD_TOL, "state grad")
    tp = dict(tm.named_parameters())
    for n, p in em.named_parameters():
        _close(p.grad.numpy(), tp[n].grad.numpy(), GRAD_TOL, f"grad of {n}")


# ---- packing utilities ------------------------------------------------------------------------
def test_pack_pad_roundtrip_and_pack_sequence():
    rng = np.random.default_rng(10)
    seqs = [rng.standard_normal((n, 2)).astype(np.float32) for n in (2, 5, 3)]
    et = [_e(s, True) for s in seqs]
    tt = [torch.tensor(s, requires_grad=True) for s in seqs]
    pe = rnn_utils.pack_sequence(et, enforce_sorted=False)
    pt = torch.nn.utils.rnn.pack_sequence(tt, enforce_sorted=False)
    np.testing.assert_allclose(_np(pe.data), _np(pt.data))
    np.testing.assert_array_equal(pe.batch_sizes.numpy(), pt.batch_sizes.numpy())
    np.testing.assert_array_equal(pe.unsorted_indices.numpy(), pt.unsorted_indices.numpy())
    pad_e, len_e = rnn_utils.pad_packed_sequence(
        pe, batch_first=True, padding_value=-1.0, total_length=7
    )
    pad_t, len_t = torch.nn.utils.rnn.pad_packed_sequence(
        pt, batch_first=True, padding_value=-1.0, total_length=7
    )
    np.testing.assert_allclose(_np(pad_e), _np(pad_t))
    np.testing.assert_array_equal(len_e.numpy(), len_t.numpy())
    w = rng.standard_normal(pad_e.shape).astype(np.float32)
    (pad_e * _e(w)).sum().backward()
    (pad_t * torch.tensor(w)).sum().backward()
    for a, b in zip(et, tt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy())
    back = rnn_utils.unpack_sequence(pe)
    for a, s in zip(back, seqs):
        np.testing.assert_allclose(_np(a), s)
    sorted_pack = rnn_utils.pack_sequence([et[1], et[2], et[0]])
    assert sorted_pack.sorted_indices is None


def test_packing_errors():
    x = _e(np.zeros((4, 3, 2), np.float32))
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        rnn_utils.pack_padded_sequence(x, [2, 4, 1])
    with pytest.raises(RuntimeError, match="to be equal to batch_size, but got 2"):
        rnn_utils.pack_padded_sequence(x, [4, 2])
    with pytest.raises(RuntimeError, match="has to be greater than 0"):
        rnn_utils.pack_padded_sequence(x, [4, 2, 0])
    packed = rnn_utils.pack_padded_sequence(x, [4, 2, 1])
    with pytest.raises(ValueError, match="total_length=2 and max sequence length being 4"):
        rnn_utils.pad_packed_sequence(packed, total_length=2)


# ---- module mechanics -------------------------------------------------------------------------
def test_state_dict_names_repr_and_init():
    tm = torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, batch_first=True)
    em = nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, batch_first=True)
    assert list(em.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(em.state_dict()[k].shape) == tuple(v.shape)
    assert repr(em) == repr(tm)
    for args, kw in [
        ((4, 6), {"nonlinearity": "relu", "bias": False}),
        ((4, 6, 3), {"dropout": 0.2}),
    ]:
        assert repr(nn.RNN(*args, **kw)) == repr(torch.nn.RNN(*args, **kw))
    assert repr(nn.GRUCell(3, 4, bias=False)) == repr(torch.nn.GRUCell(3, 4, bias=False))
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == repr(
        torch.nn.RNNCell(3, 4, nonlinearity="relu")
    )
    # PyTorch's init: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias
    big = nn.GRU(50, 64)
    bound = 1 / np.sqrt(64)
    w = big.weight_ih_l0.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.mean()) < 0.01 and abs(w.var() - bound**2 / 3) < 0.1 * bound**2 / 3


def test_input_errors():
    m = nn.LSTM(3, 4)
    with pytest.raises(
        RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 5"
    ):
        m(_e(np.zeros((2, 1, 5), np.float32)))
    with pytest.raises(
        RuntimeError,
        match=r"Expected hidden\[0\] size \(1, 2, 4\), got "
        r"\[1, 3, 4\]",
    ):
        z = _e(np.zeros((1, 3, 4), np.float32))
        m(_e(np.zeros((5, 2, 3), np.float32)), (z, z))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        m(_e(np.zeros((1, 2, 3, 3), np.float32)))
    with pytest.raises(RuntimeError, match="Expected hidden size \\(1, 2, 4\\), got"):
        nn.GRU(3, 4)(_e(np.zeros((5, 2, 3), np.float32)), _e(np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 2"):
        nn.GRUCell(3, 4)(_e(np.zeros((2, 2), np.float32)))


def test_float64_module():
    tm = torch.nn.GRU(3, 4, bidirectional=True).double()
    em = nn.GRU(3, 4, bidirectional=True).double()
    _copy_weights(tm, em)
    x = np.random.default_rng(11).standard_normal((5, 2, 3))
    t_side, e_side = _run_pair("gru", tm, em, x, ())
    _compare(tm, em, t_side, e_side)
    assert e_side[2].dtype == ember.float64


def test_long_sequences_backward_without_recursion():
    """10,000 steps: the fused layer and a 10,000-node graph of cell steps both backprop."""
    rng = np.random.default_rng(12)
    layer = nn.RNN(2, 3)
    x = _e(rng.standard_normal((10_000, 1, 2)).astype(np.float32), True)
    out, h = layer(x)
    (out.sum() + h.sum()).backward()
    assert np.isfinite(x.grad.numpy()).all() and x.grad.numpy().shape == (10_000, 1, 2)
    cell = nn.RNNCell(2, 3)
    xs = _e(rng.standard_normal((10_000, 1, 2)).astype(np.float32), True)
    h = None
    for t in range(10_000):
        h = cell(xs[t], h)
    h.sum().backward()
    assert cell.weight_hh.grad is not None and np.isfinite(cell.weight_hh.grad.numpy()).all()
    assert np.abs(xs.grad.numpy()[-1]).sum() > 0


# ---- a real task ------------------------------------------------------------------------------
_SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def test_char_lstm_learns_tinyshakespeare():
    """A character LSTM's loss falls well below the unigram entropy of the text (~3.3 nats)."""
    if not _SHAKESPEARE.exists():
        pytest.skip(f"{_SHAKESPEARE} not found (the text ships with CI, not with ember)")
    text = _SHAKESPEARE.read_text()[:200_000]
    chars = sorted(set(text))
    data = np.searchsorted(np.array(chars), np.array(list(text)))
    counts = np.bincount(data, minlength=len(chars)) / data.size
    unigram = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())

    class CharLSTM(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.emb = nn.Embedding(vocab, 32)
            self.lstm = nn.LSTM(32, 128, batch_first=True)
            self.head = nn.Linear(128, vocab)

        def forward(self, x):
            return self.head(self.lstm(self.emb(x))[0])

    ember.manual_seed(0)
    model = CharLSTM(len(chars))
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    T, B = 64, 32
    losses = []
    for _ in range(100):
        starts = rng.integers(0, data.size - T - 1, B)
        idx = starts[:, None] + np.arange(T + 1)
        batch = data[idx]
        x, y = ember.tensor(batch[:, :-1]), ember.tensor(batch[:, 1:])
        loss = loss_fn(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    final = float(np.mean(losses[-20:]))
    assert final < 0.7 * unigram, (final, unigram)  # typically ~0.6 after 100 steps


# ---- GPU (CuPy): the same fused ops on CUDA match the CPU ---------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["lstm_proj", "gru", "rnn_tanh"])
def test_gpu_matches_cpu(mode):
    rng = np.random.default_rng(13)
    _, cpu = _pair(mode, 3, 5, num_layers=2, bidirectional=True)
    _, gpu = _pair(mode, 3, 5, num_layers=2, bidirectional=True)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    lengths = [6, 4, 4, 1]
    outs = []
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        xt = _e(x).to(dev)
        xt.requires_grad = True
        packed = rnn_utils.pack_padded_sequence(xt, lengths)
        out, _ = model(packed)
        padded, _ = rnn_utils.pad_packed_sequence(out)
        padded.sum().backward()
        outs.append(
            (
                padded.detach().cpu().numpy(),
                xt.grad.cpu().numpy(),
                [p.grad.cpu().numpy() for p in model.parameters()],
            )
        )
    (o1, g1, p1), (o2, g2, p2) = outs
    np.testing.assert_allclose(o2, o1, **OUT_TOL)
    np.testing.assert_allclose(g2, g1, **GRAD_TOL)
    for a, b in zip(p2, p1):
        np.testing.assert_allclose(a, b, **GRAD_TOL)


@pytest.mark.parametrize("mode", ["lstm_proj", "lstm", "gru", "rnn_tanh"])
def test_packed_gradients_ignore_fresh_memory(mode, monkeypatch):
    """Rows of finished sequences are never written in a packed batch; whatever fresh memory
    holds there (here: NaN) must not reach the gradients. (An LSTM with projections once
    multiplied its unwritten rows by zero, and NaN * 0 is NaN.)"""
    real_empty = np.empty

    def nan_empty(shape, dtype=float, *args, **kwargs):
        out = real_empty(shape, dtype, *args, **kwargs)
        if out.dtype.kind == "f":
            out.fill(np.nan)
        return out

    _, model = _pair(mode, 3, 5, num_layers=2, bidirectional=True)
    xt = _e(np.random.default_rng(13).standard_normal((6, 4, 3)).astype(np.float32), True)
    monkeypatch.setattr(np, "empty", nan_empty)
    out, _ = model(rnn_utils.pack_padded_sequence(xt, [6, 4, 4, 1]))
    padded, _ = rnn_utils.pad_packed_sequence(out)
    padded.sum().backward()
    monkeypatch.undo()
    bad = [n for n, p in model.named_parameters() if not np.isfinite(p.grad.numpy()).all()]
    assert not bad and np.isfinite(xt.grad.numpy()).all()
