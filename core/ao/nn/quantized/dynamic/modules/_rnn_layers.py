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
from ......ops._blas import step_blas
from ... import _kernels as K
from ...modules.utils import weight_bound, weight_codes

__all__ = ["dynamic_qparams", "lstm_layer", "gru_layer", "numba_rows_kernel", "numba_passes"]

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
        # few rows on CPU: the compiled int8 GEMV reads the int8 weight (1 byte per weight
        # against 4 for the float32 operand) and fuses the quantization; same accumulators
        self.kernel = numba_rows_kernel(w, n, k, self.qmax, self.wmax)
        # more rows: the float GEMM, with the passes around it compiled (one each)
        self.nb = numba_passes() if xp is np else None
        if self.kernel is not None:
            self.wd, self.wzp = w._data, weight_zero_points(w)
            self.acc = np.empty((n, w._data.shape[0]), np.float32)

    def gates(self, h, sw, add):
        """``codes(h) @ W_hh^T * (scale * sw) + add`` as float32 (a new array, or the layer's
        buffer on the compiled path: the caller is done with the previous step's)."""
        nb = self.nb
        if self.kernel is None:
            acc, scale = self(h)
            if nb is not None:
                nb.scale_add(acc, np.float32(scale), sw, add)
                return acc
            self.xp.multiply(acc, self.xp.float32(scale) * sw, out=acc)
            acc += add
            return acc
        lo, hi = nb.min_max(h)
        scale, zp = dynamic_qparams(float(lo), float(hi), self.qmax)
        inv = float(np.float32(1.0) / np.float32(scale))
        acc = self.acc
        nb.dynamic_gates(h, inv, zp, self.qmax, self.wd, self.wzp, np.float32(scale), sw, add, acc)
        return acc

    def __call__(self, h):
        xp, a, nb = self.xp, self.a, self.nb
        if nb is not None:  # the same quantization in two compiled passes instead of seven
            lo, hi = nb.min_max(h)
            scale, zp = dynamic_qparams(float(lo), float(hi), self.qmax)
            inv = float(np.float32(1.0) / np.float32(scale))
            nb.quantize_centered(h, inv, zp, self.qmax, a)
            if self.exact:
                return a @ self.wc, scale
            acc = K.int_linear(a, self.wc, max(zp, self.qmax - zp), self.wmax)
            return acc.astype(np.float32), scale
        scale, zp = dynamic_qparams(float(h.min()), float(h.max()), self.qmax)
        inv = float(np.float32(1.0) / np.float32(scale))
        if self.kernel is not None:  # the caller is done with the previous step's acc
            self.kernel(h, inv, zp, self.qmax, self.wd, self.wzp, self.acc)
            return self.acc, scale
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


def weight_zero_points(w) -> np.ndarray:
    """The weight's zero point per output row, int32 (the compiled kernels' operand)."""
    n = w._data.shape[0]
    return np.broadcast_to(np.asarray(w._zero_point, np.int32).reshape(-1), (n,)).copy()


def numba_rows_kernel(w, rows: int, k: int, amax: int, wmax: int):
    """``_numba_int.dynamic_acc`` where it applies (numba on, a NumPy int8 weight, at most
    ``ROWS_MAX`` rows, an exact int32 accumulator), else None."""
    wd = w._data
    if type(wd) is not np.ndarray or wd.ndim != 2 or not wd.flags.c_contiguous:
        return None
    from ... import _numba_int as nbi  # imports numba: only for a CPU layer

    if not nbi.enabled() or rows > nbi.ROWS_MAX or not nbi.fits_int32(k, amax, wmax):
        return None
    return nbi.dynamic_acc


def numba_passes():
    """The ``_numba_int`` module when numba is on, else None."""
    from ... import _numba_int as nbi

    return nbi if nbi.enabled() else None


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
    nb = numba_passes() if xp is np and gi.flags.c_contiguous else None
    if nb is not None:  # the two passes in one (the same roundings)
        bs = np.zeros(g4, np.float32) if b_hh is None else b_hh.astype(np.float32) * s
        nb.mul_add(gi.reshape(-1, g4), s, bs)
    else:
        gi *= s
        if b_hh is not None:  # the recurrent bias joins the input projection once
            gi += b_hh.astype(xp.float32) * s
    rec = _Recurrent(xp, w_hh, n, reduce_range)
    sw = rec.ws32 * s
    out = xp.empty((steps, n, hs), xp.float32)
    h = _state(xp, h0, n, hs)
    c = _state(xp, c0, n, hs)
    tc = xp.empty((n, hs), xp.float32)
    with _step_blas(xp, rec, g4, "qlstm-dyn") as clock:
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            acc = rec.gates(h, sw, gi[t])  # dequantized, halved i / f / o, plus the input part
            xp.tanh(acc, out=acc)
            acc *= s
            acc += shift
            i, f, g = acc[:, :hs], acc[:, hs : 2 * hs], acc[:, 2 * hs : 3 * hs]
            c *= f
            i *= g
            c += i
            xp.tanh(c, out=tc)
            h = xp.multiply(acc[:, 3 * hs :], tc, out=out[t])
            clock.tick()
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
    with _step_blas(xp, rec, g3, "qgru-dyn") as clock:
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
            clock.tick()
    return out, h


def _step_blas(xp, rec: _Recurrent, gates: int, kind: str):
    """The BLAS thread mode for the loop's per-step GEMM (``ops._blas.step_blas``): on a busy
    machine a multithreaded BLAS waits for its threads at every small product (20x256x1024:
    5-13 ms against 0.2 ms on one thread, measured here), so the loop measures both modes. The
    compiled int8 GEMV path uses no BLAS: nothing to choose there."""
    if rec.kernel is not None:
        return _NO_CLOCK
    rows, k = rec.a.shape
    return step_blas(xp, 2 * rows * k * gates, kind)


class _NoClock:
    """The loop's clock where the BLAS threading is left alone."""

    def __enter__(self) -> _NoClock:
        return self

    def tick(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


_NO_CLOCK = _NoClock()


def _sigmoid(xp, x):
    return 1.0 / (1.0 + xp.exp(-x))
