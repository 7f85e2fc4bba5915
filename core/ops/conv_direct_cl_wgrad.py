"""The channels-last direct convolution's weight gradient (``conv_direct_cl``; split from it
in session 26): dw from the forward's padded channels-last input (``ClCols``) and g's compact
channels-last rows, which the stride-1 input gradient of the same backward writes in its own
pass where both run this kernel (``share_g``).

The switches (``CL_WGRAD``, ``WGRAD_MAX_IN``, ``SHARE_G``) and the helpers stay in
``conv_direct_cl`` and are read from it at call time, so A/B runs and tests set them there;
every name here is importable from ``conv_direct_cl`` too.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np


@contextlib.contextmanager
def share_g(g, cols, both: bool):
    """Within: where the stride-1 input gradient of g runs this kernel (``flip``) and the
    weight gradient from ``cols`` does too, the first writes g's compact channels-last rows
    in the same pass as its padded copy and the second takes them instead of transposing g
    again (``SHARE_G``; one backward's g, on this thread; ``both``: both are asked for)."""
    shared = _cl._shared
    if _cl.SHARE_G and both and use_direct_cl_weight_grad(cols) and _cl._layout_kernels():
        shared.g, shared.rows = g, None
    try:
        yield
    finally:
        shared.g = shared.rows = None


def use_direct_cl_weight_grad(cols) -> bool:
    """Whether the weight gradient from ``ClCols`` takes the kernel (``CL_WGRAD``, at most
    ``WGRAD_MAX_IN`` input channels), else conv_cl's columns from the kept input and a GEMM.
    1 thread, ms, GEMM path -> kernel: 128->128 on 8 x 8^2 1.14 -> 1.12 (the columns were
    free from the old forward; gathered from ClCols 1.27); the whole step's since session 26
    at ``WGRAD_MAX_IN``."""
    return _cl.CL_WGRAD and isinstance(cols, _cl.ClCols) and cols.xh.shape[-1] <= _cl.WGRAD_MAX_IN


def direct_cl_weight_grad(cols, g, w_shape, geom):
    """d conv(x, w) / dw applied to g by the channels-last kernel, from the forward's padded
    channels-last input xh (``ClCols``): dw[o, c, t] = sum over positions j of
    ``xh[pos[j] + offs[t] + c] * g[j, o]``, vectors along o, CL_P input channels a call."""
    xh = cols.xh
    n, c, dt = xh.shape[0], xh.shape[-1], xh.dtype
    o = w_shape[0]
    _, offs, pos = _cl._geom_plan(n, c, dt.itemsize, geom)
    j = n * math.prod(geom.out_size)
    full, r = _cl._split_out(o, dt.itemsize)
    sd = full + r if r else o  # dw's rows: the tail's extra lanes are dropped
    shared = _cl._shared
    gcl = getattr(shared, "rows", None) if getattr(shared, "g", None) is g else None
    shared.g = shared.rows = None
    if gcl is None:  # (else the input gradient's pass wrote them: ``share_g``)
        gcl = _cl._g_rows(j, o, dt)
        gcl[:, :o].reshape(n, -1, o)[...] = g.reshape(n, o, -1).transpose(0, 2, 1)
    t = len(offs)
    cl_p = _cl.CL_P
    dwt = _cl._aligned((-(-c // cl_p) * cl_p, t, sd), dt)
    if full:
        _cl._call("weight_grad_cl", full * c * t * j, cols.flat, gcl, offs, pos, j, full, dwt)
    for o0, ri in _cl._tail_pieces(full, r, dt.itemsize):
        args = (cols.flat, gcl, o0, ri, offs, pos, j, dwt, o0)
        _cl._call("weight_grad_cl_tail", ri * c * t * j, *args, mod=_cl._tail_kernels())
    dw = np.empty((sd, c * t), dtype=dt)
    _cl._call("transpose2d", (full + r) * c * t * j, dwt[:c].reshape(c * t, sd), dw)
    return dw[:o].reshape(w_shape)


# last: conv_direct_cl imports this module at its end, so either may be imported first (the
# names above are used at call time only)
from . import conv_direct_cl as _cl  # noqa: E402
