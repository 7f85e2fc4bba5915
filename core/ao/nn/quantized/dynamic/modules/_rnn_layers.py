"""The time loops of the dynamic quantized LSTM / GRU, one layer and direction at a time.

Each step quantizes the hidden state by its own range (torch's dynamic rule, 7-bit with
``reduce_range``), multiplies the codes by the int8 recurrent weight (an exact float GEMM, see
``_kernels``) and dequantizes. Everything that does not change over the sequence is made once
per layer: the weight operand and its exactness check, the buffers the quantization writes
into, the per-gate multipliers; the bias of the recurrent projection is added to the input
projection of the whole sequence up front (LSTM). A step is then ~20 NumPy calls on
preallocated arrays and no Python objects beyond the two quantization parameters.
"""

from __future__ import annotations

import numpy as np

from ...... import quantized as _q
from ... import _kernels as K
from ...modules.utils import weight_bound, weight_codes

__all__ = ["dynamic_qparams", "lstm_layer", "gru_layer"]

_SMALLEST_SCALE = 6.1e-5


def dynamic_qparams(lo: float, hi: float, qmax: int) -> tuple[float, int]:
    """``choose_qparams(lo, hi, 0, qmax)`` for float32 ``lo`` / ``hi`` in plain Python floats:
    the same arithmetic (float64, zero point nudged, half to even) without NumPy scalars
    (~12 us there, once per time step). Ranges narrower than ``qmax * 6.1e-5`` take the
    general rule."""
    xmin, xmax = min(lo, 0.0), max(hi, 0.0)
    scale = (xmax - xmin) / qmax
    if not scale >= _SMALLEST_SCALE:  # tiny (or NaN) range: torch's special cases
        return _q.choose_qparams(lo, hi, 0, qmax)
    zp_min = 0 - xmin / scale
    zp_max = qmax - xmax / scale
    init = zp_min if -abs(xmin / scale) < qmax - abs(xmax / scale) else zp_max
    if init < 0:
        return scale, 0
    if init > qmax:
        return scale, qmax
    return scale, round(init)  # Python's round: half to even, as np.rint


class _Recurrent:
    """``h -> (codes(h) @ W_hh^T as float32, scale)``: the integer part of the recurrent
    projection, with its buffers and exactness check made once per layer."""

    def __init__(self, xp, w, n: int, reduce_range: bool):
        self.xp = xp
        self.wc, ws = weight_codes(w, transpose=True)  # (H, G) centered float32 codes
        self.ws32 = np.float32(ws) if np.ndim(ws) == 0 else xp.asarray(ws, dtype=xp.float32)
        self.qmax = 127 if reduce_range else 255
        self.wmax = weight_bound(w)
        k = self.wc.shape[0]
        # centered codes are at most qmax in size: one float32 GEMM is exact when either bound
        # holds (else int_linear sums exact chunks in float64)
        self.exact = (
            k * self.qmax * self.wmax < K._F32_EXACT or self.qmax * K.weight_l1(w) < K._F32_EXACT
        )
        self.b64 = xp.empty((n, k), xp.float64)
        self.a = xp.empty((n, k), xp.float32)
        self.hi32 = np.float32(self.qmax)

    def __call__(self, h):
        xp, a = self.xp, self.a
        scale, zp = dynamic_qparams(float(h.min()), float(h.max()), self.qmax)
        inv = float(np.float32(1.0) / np.float32(scale))
        # dynamic_linear's quantization, into the layer's buffers: one float64 multiply-add
        # rounded once to float32 (fbgemm's FMA), clamp, round half to even, center
        xp.multiply(h, inv, out=self.b64, dtype=xp.float64)
        xp.add(self.b64, zp, out=a, casting="unsafe")
        if xp is np:
            K._clip(a, np.float32(0), self.hi32, out=a)
        else:
            xp.clip(a, 0, self.qmax, out=a)
        xp.rint(a, out=a)
        if zp:
            xp.subtract(a, xp.float32(zp), out=a)
        if self.exact:
            return a @ self.wc, scale
        acc = K.int_linear(a, self.wc, max(zp, self.qmax - zp), self.wmax)
        return acc.astype(xp.float32), scale


def _state(xp, s, n: int, hs: int):
    """A float32 state we may overwrite: zeros, or a copy of the caller's."""
    if s is None:
        return xp.zeros((n, hs), xp.float32)
    return s.astype(xp.float32, copy=True)


def lstm_layer(xp, gi, w_hh, b_hh, h0, c0, reverse: bool, reduce_range: bool):
    """One LSTM layer / direction. ``gi`` (T, N, 4H): the input projection including
    ``b_ih`` (float32, overwritten). Returns (out (T, N, H), h_T, c_T)."""
    steps, n, g4 = gi.shape
    hs = g4 // 4
    # sigmoid(v) = 0.5 * tanh(v / 2) + 0.5, as ember's float LSTM: halving the i, f, o
    # pre-activations (exact: a power of two) lets one tanh serve all four gates
    s = xp.full((g4,), 0.5, xp.float32)
    s[2 * hs : 3 * hs] = 1
    shift = (1 - s).astype(xp.float32)
    gi *= s
    if b_hh is not None:  # the recurrent bias joins the input projection once
        gi += b_hh.astype(xp.float32) * s
    rec = _Recurrent(xp, w_hh, n, reduce_range)
    sw = rec.ws32 * s
    out = xp.empty((steps, n, hs), xp.float32)
    h = _state(xp, h0, n, hs)
    c = _state(xp, c0, n, hs)
    tc = xp.empty((n, hs), xp.float32)
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        acc, scale = rec(h)
        xp.multiply(acc, xp.float32(scale) * sw, out=acc)  # dequantize, halved i / f / o
        acc += gi[t]
        xp.tanh(acc, out=acc)
        acc *= s
        acc += shift
        i, f, g, o = acc[:, :hs], acc[:, hs : 2 * hs], acc[:, 2 * hs : 3 * hs], acc[:, 3 * hs :]
        c *= f
        i *= g
        c += i
        xp.tanh(c, out=tc)
        h = xp.multiply(o, tc, out=out[t])
    return out, h, c


def gru_layer(xp, gi, w_hh, b_hh, h0, reverse: bool, reduce_range: bool):
    """One GRU layer / direction (gates r, z, n as torch). ``gi`` (T, N, 3H) includes
    ``b_ih``. Returns (out (T, N, H), h_T)."""
    steps, n, g3 = gi.shape
    hs = g3 // 3
    rec = _Recurrent(xp, w_hh, n, reduce_range)
    bh = None if b_hh is None else b_hh.astype(xp.float32)
    out = xp.empty((steps, n, hs), xp.float32)
    h = _state(xp, h0, n, hs)
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        gh, scale = rec(h)
        gh *= xp.float32(scale) * rec.ws32
        if bh is not None:
            gh += bh
        ir, iz, inn = gi[t, :, :hs], gi[t, :, hs : 2 * hs], gi[t, :, 2 * hs :]
        hr, hz, hn = gh[:, :hs], gh[:, hs : 2 * hs], gh[:, 2 * hs :]
        r = _sigmoid(xp, ir + hr)
        z = _sigmoid(xp, iz + hz)
        nn_ = xp.tanh(inn + r * hn)
        h = (1 - z) * nn_ + z * h
        out[t] = h
    return out, h


def _sigmoid(xp, x):
    return 1.0 / (1.0 + xp.exp(-x))
