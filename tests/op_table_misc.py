"""Op-table records of the misc family (assembled into tests/op_table.py's OPS)."""

from __future__ import annotations

import numpy as np  # noqa: F401
from op_support import OpSpec, S, T  # noqa: F401


# ---- issue 23's compiled kernels (ops/_numba_act.py, _numba_group_norm.py, _numba_depthwise.py):
# float32 samples run the compiled kernels (numba installed), float64 gradcheck runs them for
# group / batch norm and depthwise convolution (the activations' float64 path is NumPy; the
# compiled float64 kernels are gradchecked in tests/test_kernels_act_numba.py)
def _np_gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    from scipy.special import ndtr

    return x * ndtr(x)


def _np_log_softmax(x, dim):
    z = x - x.max(dim, keepdims=True)
    return z - np.log(np.exp(z).sum(dim, keepdims=True))


def _np_group_norm(x, groups, eps=1e-5):
    r = x.reshape(x.shape[0], groups, -1)
    r = (r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + eps)
    return r.reshape(x.shape)


def _np_batch_norm(x, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)


def _np_depthwise2d(x, w, stride=1, padding=1):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = w.shape[-1]
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[
        :, :, ::stride, ::stride
    ]
    return np.einsum("nchwij,cij->nchw", win, w[:, 0])


def _fn(name):
    return lambda m, *a, **kw: getattr(m.nn.functional, name)(*a, **kw)


OPS: list[OpSpec] = [
    OpSpec("gelu", _fn("gelu"), _np_gelu, [S(T(3, 4)), S(T(2, 1, 5), approximate="tanh")]),
    OpSpec("silu", _fn("silu"), lambda x: x / (1 + np.exp(-x)), [S(T(3, 4)), S(T(2, 3, 2))]),
    OpSpec(
        "softmax_last",
        lambda m, x, dim: m.softmax(x, dim),
        lambda x, dim: np.exp(_np_log_softmax(x, dim)),
        [S(T(3, 5), -1), S(T(2, 3, 4), 2)],
    ),
    OpSpec(
        "log_softmax_last",
        lambda m, x, dim: m.log_softmax(x, dim),
        _np_log_softmax,
        [S(T(3, 5), -1), S(T(2, 3, 4), 2)],
    ),
    OpSpec("group_norm", _fn("group_norm"), _np_group_norm, [S(T(2, 4, 3), 2), S(T(3, 6), 3)]),
    OpSpec(
        "batch_norm_train",
        lambda m, x: m.nn.functional.batch_norm(x, None, None, training=True),
        _np_batch_norm,
        [S(T(4, 3, 2)), S(T(5, 2))],
        rtol=1e-5,
    ),
    OpSpec(
        "conv2d_depthwise",
        lambda m, x, w, stride=1: m.nn.functional.conv2d(x, w, stride=stride, padding=1, groups=3),
        _np_depthwise2d,
        [S(T(2, 3, 5, 4), T(3, 1, 3, 3)), S(T(1, 3, 5, 5), T(3, 1, 3, 3), stride=2)],
        rtol=1e-5,
    ),
]
