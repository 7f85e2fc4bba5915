"""Fused CUDA kernels for the hot elementwise chains that NumPy runs as several passes.

On the GPU each CuPy call is a kernel launch costing ~10 µs of host time, and ember's small
training steps are bound by that host time (the device idles). Where one update or one
recurrent step takes many launches, one ``cupy.ElementwiseKernel`` does the same arithmetic:

- ``adam_``: Adam's whole update of one parameter (moments, optional AMSGrad maximum, step),
  one launch instead of ~10;
- ``lstm_cell_forward`` / ``lstm_cell_backward``: the gate activations and cell update of one
  LSTM time step (after the recurrent matrix product), one launch instead of ~9 and ~12.

Each kernel follows the operation order of the NumPy code it replaces (``core/optim/adam.py``,
``core/ops/rnn.py``), so the GPU agrees with the CPU to rounding. Kernels compile on first use
(NVRTC); importing this module needs no CuPy.
"""

from __future__ import annotations

import functools

from ._cupy import require_cupy


def _kernel(in_params: str, out_params: str, body: str, name: str):
    """A ``cupy.ElementwiseKernel`` (compiled at its first call); callers cache it."""
    return require_cupy().ElementwiseKernel(in_params, out_params, body, name)


@functools.cache
def _adam_kernel(amsgrad: bool):
    # NumPy's maximum propagates NaN; CUDA's max() would drop it.
    second = (
        "vmax = (vmax != vmax || v != v) ? vmax + v : (vmax > v ? vmax : v);\nT denom = sqrt(vmax);"
        if amsgrad
        else "T denom = sqrt(v);"
    )
    return _kernel(
        "T g, T w1, T w1c, T beta2, T w2, T neg_step, T bc2_sqrt, T eps",
        "T param, T m, T v" + (", T vmax" if amsgrad else ""),
        f"""
        T diff = g - m;                       // exp_avg.lerp_(g, w1), PyTorch's two sides
        if (w1 < (T)0.5) {{ m = m + diff * w1; }} else {{ m = g - diff * w1c; }}
        v = v * beta2;                         // exp_avg_sq.mul_(beta2).addcmul_(g, g, w2)
        v = v + (g * w2) * g;
        {second}
        denom = denom / bc2_sqrt + eps;
        param = param + (m * neg_step) / denom;
        """,
        "ember_adam_amsgrad" if amsgrad else "ember_adam",
    )


def adam_(
    param,
    g,
    exp_avg,
    exp_avg_sq,
    max_sq=None,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    step_size: float,
    bias_correction2_sqrt: float,
) -> None:
    """``_adam_update`` of ``core/optim/adam.py`` in one launch (CuPy arrays, in place)."""
    w1 = 1 - beta1
    args = (
        g,
        w1,
        1.0 - w1,
        beta2,
        1 - beta2,
        -step_size,
        bias_correction2_sqrt,
        eps,
        param,
        exp_avg,
        exp_avg_sq,
    )
    _adam_kernel(max_sq is not None)(*args, *(() if max_sq is None else (max_sq,)))


# Gates are stored [i | f | g | o] along the last axis, H columns each; the weights were scaled
# so that one tanh serves all four (sigmoid(v) = 0.5 * tanh(v / 2) + 0.5: see LSTMLayer).
_GATES = """
    const ptrdiff_t r = i / H, j = i % H, base = r * 4 * H + j;
"""


@functools.cache
def _lstm_forward_kernel():
    return _kernel(
        "T c_prev, int32 H",
        "raw T a, T c_new, T tanh_c, T h",
        _GATES
        + """
        T gi = (T)0.5 * tanh(a[base]) + (T)0.5;
        T gf = (T)0.5 * tanh(a[base + H]) + (T)0.5;
        T gg = tanh(a[base + 2 * H]);
        T go = (T)0.5 * tanh(a[base + 3 * H]) + (T)0.5;
        a[base] = gi; a[base + H] = gf; a[base + 2 * H] = gg; a[base + 3 * H] = go;
        T c = gf * c_prev;
        c = c + gi * gg;
        c_new = c;
        T tc = tanh(c);
        tanh_c = tc;
        h = go * tc;
        """,
        "ember_lstm_cell_forward",
    )


def lstm_cell_forward(a, c_prev, c_new, tanh_c, h) -> None:
    """One LSTM step's cell on contiguous (n, 4H) pre-activations ``a`` (recurrent product
    included): activates ``a`` in place and writes ``c_new``, ``tanh(c_new)`` and ``h``."""
    _lstm_forward_kernel()(c_prev, c_prev.shape[1], a, c_new, tanh_c, h)


@functools.cache
def _lstm_backward_kernel():
    return _kernel(
        "T dhp, T tanh_c, T c_prev, raw T a, int32 H",
        "T dc, raw T dgates",
        _GATES
        + """
        const T gi = a[base], gf = a[base + H], gg = a[base + 2 * H], go = a[base + 3 * H];
        T t = dhp * go;
        t = t * ((T)1 - tanh_c * tanh_c);
        const T dcn = dc + t;
        // d act / d pre-activation: a - a*a for the sigmoid gates, 1 - a*a for g
        dgates[base] = (dcn * gg) * (gi - gi * gi);
        dgates[base + H] = (dcn * c_prev) * (gf - gf * gf);
        dgates[base + 2 * H] = (dcn * gi) * ((T)1 - gg * gg);
        dgates[base + 3 * H] = (dhp * tanh_c) * (go - go * go);
        dc = dcn * gf;
        """,
        "ember_lstm_cell_backward",
    )


def lstm_cell_backward(dhp, tanh_c, c_prev, a, dc, dgates) -> None:
    """The backward of ``lstm_cell_forward`` for one step: from the gradient ``dhp`` of ``h``
    and the running cell gradient ``dc`` (updated in place to the previous step's), writes the
    pre-activation gradients ``dgates`` (n, 4H)."""
    _lstm_backward_kernel()(dhp, tanh_c, c_prev, a, dhp.shape[1], dc, dgates)
