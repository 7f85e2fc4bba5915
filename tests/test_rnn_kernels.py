"""Compiled recurrent kernels (ops/_numba_rnn*.py): the per-step LSTM / GRU cells and the
whole-sequence LSTM loop (MKL products from compiled code).

float64 is added to the compiled dtypes so that the gradchecks run the kernels' formulas at full
precision; float32 is compared with PyTorch and with the NumPy cells, at hidden sizes with and
without a vector-length remainder, packed and reversed, and with saturated gates.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd.gradcheck import gradcheck
from ember.backend import mkl_gemm
from ember.nn.utils import rnn as rnn_utils
from ember.ops import rnn_support
from ember.ops.rnn import GRULayer, LSTMLayer

torch = pytest.importorskip("torch")

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


@pytest.fixture(params=["cells", "sequence"])
def compiled(request, monkeypatch):
    """The compiled cells (Python loop), or the compiled whole-sequence loop, for f32 and f64."""
    monkeypatch.setattr(rnn_support, "_COMPILED_DTYPES", (_F32, _F64))
    monkeypatch.setattr(rnn_support, "_numba", None)
    if rnn_support.cell_kernels(np, _F64)[0] is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0) or numba missing")
    if request.param == "cells":
        monkeypatch.setattr(rnn_support, "_seq", False)
        monkeypatch.setattr(rnn_support, "_rows", False)  # the Python loop (test_rnn_s24.py)
        yield request.param
        return
    prev = mkl_gemm.enabled()
    if not mkl_gemm.set_enabled(True) and not mkl_gemm.enabled():
        mkl_gemm.set_enabled(prev)
        pytest.skip("MKL not installed: no compiled sequence loop")
    monkeypatch.setattr(rnn_support, "_seq", None)
    assert rnn_support.sequence_kernels(np, _F64, 1 << 10)[0] is not None
    yield request.param
    mkl_gemm.set_enabled(prev)


def _rand(rng, *shape, scale=1.0):
    t = ember.tensor(rng.standard_normal(shape) * scale)
    t.requires_grad = True
    return t


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck_lstm(compiled, reverse, packed):
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 3, 2, 3
    x, h0, c0 = _rand(rng, T, B, I), _rand(rng, B, H), _rand(rng, B, H)
    w_ih, w_hh = _rand(rng, 4 * H, I), _rand(rng, 4 * H, H)
    b_ih, b_hh = _rand(rng, 4 * H), _rand(rng, 4 * H)
    bs = [3, 2, 2, 1] if packed else None
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    assert gradcheck(lambda *a: LSTMLayer.apply(*a, None, bs, reverse), args)


@pytest.mark.parametrize(
    "reverse, packed, bias", [(False, False, True), (True, True, True), (False, True, False)]
)
def test_gradcheck_gru(compiled, reverse, packed, bias):
    if compiled == "sequence":
        pytest.skip("the GRU has no whole-sequence loop")
    rng = np.random.default_rng(1)
    T, B, I, H = 3, 3, 2, 3
    b = (_rand(rng, 3 * H), _rand(rng, 3 * H)) if bias else (None, None)
    args = (_rand(rng, T, B, I), _rand(rng, B, H), _rand(rng, 3 * H, I), _rand(rng, 3 * H, H))
    bs = [3, 3, 1] if packed else None
    assert gradcheck(lambda *a: GRULayer.apply(*a, *b, bs, reverse), args)


def _copy(src, dst):
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)


def _run(lib, mod, x, lengths, gout):
    xt = lib.tensor(x, requires_grad=True)
    if lengths is None:
        out = mod(xt)[0]
    else:
        packed = lib.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=True)
        out, _ = lib.nn.utils.rnn.pad_packed_sequence(mod(packed)[0], batch_first=True)
    out.backward(lib.tensor(gout))
    grads = [p.grad.numpy() for p in mod.parameters()]
    return out.detach().numpy(), xt.grad.numpy(), grads


@pytest.mark.parametrize(
    "kind, hidden, packed",
    [("LSTM", 16, False), ("LSTM", 13, True), ("GRU", 13, False), ("GRU", 16, True)],
)
def test_parity_with_torch(compiled, kind, hidden, packed):
    """float32 modules (2 layers, bidirectional) against PyTorch; weights scaled up so that
    some gates saturate (pre-activations beyond +-20)."""
    if kind == "GRU" and compiled == "sequence":
        pytest.skip("the GRU has no whole-sequence loop")
    rng = np.random.default_rng(2)
    B, T, I = 5, 7, 6
    tm = getattr(torch.nn, kind)(I, hidden, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        tm.weight_ih_l0.mul_(8.0)
    em = getattr(ember.nn, kind)(I, hidden, num_layers=2, bidirectional=True, batch_first=True)
    _copy(tm, em)
    x = (rng.standard_normal((B, T, I)) * 2).astype(np.float32)
    lengths = [7, 7, 5, 3, 1] if packed else None
    gout = rng.standard_normal((B, T, 2 * hidden)).astype(np.float32)
    e_out, e_dx, e_dw = _run(ember, em, x, lengths, gout)
    t_out, t_dx, t_dw = _run(torch, tm, x, lengths, gout)
    assert np.isfinite(e_out).all()
    np.testing.assert_allclose(e_out, t_out, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(e_dx, t_dx, atol=1e-4, rtol=1e-4)
    for a, b in zip(e_dw, t_dw):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_compiled_matches_numpy_cells(monkeypatch, kind):
    """The compiled paths against the NumPy cells in one process (float32)."""
    if rnn_support.cell_kernels(np, _F32)[0] is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0) or numba missing")
    rng = np.random.default_rng(3)
    mod = getattr(ember.nn, kind)(8, 24, batch_first=True)
    x = rng.standard_normal((6, 9, 8)).astype(np.float32)
    gout = rng.standard_normal((6, 9, 24)).astype(np.float32)
    ref = _run(ember, mod, x, None, gout)
    for p in mod.parameters():
        p.grad = None
    monkeypatch.setattr(rnn_support, "_numba", False)
    plain = _run(ember, mod, x, None, gout)
    for a, b in zip([ref[0], ref[1], *ref[2]], [plain[0], plain[1], *plain[2]]):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_sequence_loop_with_packed_empty_tail(compiled):
    """Packed batches whose last steps hold one row: finished rows keep their final state."""
    rng = np.random.default_rng(4)
    tm = torch.nn.LSTM(3, 5)
    em = ember.nn.LSTM(3, 5)
    _copy(tm, em)
    seqs = [rng.standard_normal((n, 3)).astype(np.float32) for n in (6, 2, 1)]
    e = em(rnn_utils.pack_sequence([ember.tensor(s) for s in seqs]))
    t = tm(torch.nn.utils.rnn.pack_sequence([torch.tensor(s) for s in seqs]))
    for a, b in zip((e[1][0], e[1][1]), (t[1][0], t[1][1])):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=2e-5)
