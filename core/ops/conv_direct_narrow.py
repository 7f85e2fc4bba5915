"""The input gradient of a few-channel convolution whose input channels are not a multiple of 8.

At stride 1 the input gradient is the forward of g with the flipped, transposed weight
(``conv._direct_transpose_geom``); the direct kernels (``conv_direct``) compute 8 output
channels a call, so a first layer's 3 input channels kept GEMM + col2im: 3->16 on 8 x 32^2,
1 thread, ~0.12 ms of GEMM and ~0.3 of col2im's nine strided passes, which also stay on one
thread at two threads. Here the transpose's output channels are padded with zero weights to
the next multiple of 8 and the extra outputs dropped: the kernel computes up to
``MAX_PAD_RATIO`` times the multiply-adds, but no columns and no col2im, and at two threads
it runs on numba's threads (``conv_direct_fused``). ``ENABLED = False``: GEMM + col2im
(A/B).
"""

from __future__ import annotations

import math

import numpy as np

from . import conv_direct as _cd

ENABLED = True
# padded / real input channels, at most (3 -> 8: 2.67)
MAX_PAD_RATIO = 3.0


def _tgeom(w_shape, geom):
    """The transposed convolution's geometry as a direct one (``conv._direct_transpose_geom``,
    whose channel-ratio rule is about im2col's copy of g, which this path does not make)."""
    from .conv import _direct_transpose_geom  # (conv imports this module)

    square = (w_shape[1], w_shape[1]) + tuple(w_shape[2:])
    return _direct_transpose_geom(square, geom)


def use_padded_input_grad(xp, g, w_shape, geom) -> bool:
    """Whether ``padded_input_grad`` takes d conv / dx: NumPy float32/float64, groups 1,
    stride 1, input channels not a multiple of 8 with at most ``MAX_PAD_RATIO`` padding, and
    the direct kernel's rules (``conv_direct.use_direct``) for the padded transpose."""
    if not ENABLED or xp is not np or geom.groups != 1 or any(s != 1 for s in geom.stride):
        return False
    o, c = w_shape[0], w_shape[1]
    cp = -(-c // _cd.OB) * _cd.OB
    if c % _cd.OB == 0 or cp > MAX_PAD_RATIO * c or o > _cd.MAX_IN:
        return False
    tgeom = _tgeom(w_shape, geom)
    if tgeom is None:
        return False
    return _cd.use_direct(xp, g, (cp, o) + tuple(w_shape[2:]), tgeom, g.shape)


def padded_input_grad(g, w, geom):
    """d conv(x, w) / dx applied to g: the direct forward of g with the flipped, transposed
    weight, its output channels padded to a multiple of 8 (``use_padded_input_grad``)."""
    o, c = w.shape[:2]
    cp = -(-c // _cd.OB) * _cd.OB
    nd = len(geom.kernel)
    flip = (slice(None),) * 2 + (slice(None, None, -1),) * nd
    wt = np.zeros((cp, o) + tuple(w.shape[2:]), dtype=g.dtype)
    wt[:c] = w.swapaxes(0, 1)[flip]
    dx = _cd.direct_forward(g, wt, None, _tgeom(w.shape, geom))[0]
    return np.ascontiguousarray(dx[:, :c]) if math.prod(dx.shape) else dx[:, :c]
