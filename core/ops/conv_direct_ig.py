"""The direct convolution's input gradient at stride > 1 (``conv_direct``): per stride phase
of the padded input, a stride-1 correlation of g with that phase's taps, by the same compiled
kernels as the forward. Its tunables (``STRIDED_INPUT_GRAD``, ``MAX_WASTE`` ...) and kernel calls
stay in ``conv_direct`` and are read from it at call time, so switching them there (A/B, tests)
switches them here."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np


def _input_grad_plan(w_shape, geom, itemsize: int):
    """The strided input gradient's layout: per dim the phase size M and the largest tap
    offset Q (g is padded to M + Q with g at Q), and per output phase its taps' indices and
    offsets (cached, as ``_plan``)."""
    key = (geom.stride, tuple(tuple(p) for p in geom.pad), geom.dilation, geom.kernel)
    return _input_grad_plan_of(key + (geom.in_size, geom.out_size), itemsize)


@functools.lru_cache(maxsize=256)
def _input_grad_plan_of(key, itemsize: int):
    stride, pad, dilation, kernel, in_size, out_size = key
    geom = SimpleNamespace(
        stride=stride, pad=pad, dilation=dilation, kernel=kernel, in_size=in_size
    )
    nd = len(geom.kernel)
    ps = tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_size, geom.pad))
    m = _cd._phase_sizes(ps, geom.stride)
    qmax = tuple((k - 1) * d // s for k, d, s in zip(geom.kernel, geom.dilation, geom.stride))
    gs = tuple(a + b for a, b in zip(m, qmax))  # padded g's sizes
    npl = m[0] if nd == 3 else 1
    step = gs[-2] * gs[-1] if nd == 3 else 0
    q = m[-2] * gs[-1]
    jb = _cd.VEC_BYTES // itemsize
    qpad = -(-q // jb) * jb
    strides = [math.prod(gs[i + 1 :]) for i in range(nd)]
    phases = {r: [] for r in np.ndindex(*geom.stride)}
    for t, idx in enumerate(np.ndindex(*geom.kernel)):
        r = tuple(i * d % s for i, d, s in zip(idx, geom.dilation, geom.stride))
        off = sum(
            (qm - i * d // s) * st
            for i, d, s, qm, st in zip(idx, geom.dilation, geom.stride, qmax, strides)
        )
        phases[r].append((t, off))
    phases = {
        r: (
            np.array([t for t, _ in taps], dtype=np.int64),
            np.array([o for _, o in taps], dtype=np.int64),
        )
        for r, taps in phases.items()
        if taps
    }
    return m, qmax, gs, npl, step, q, qpad, phases


def use_direct_input_grad(xp, g, w_shape, geom) -> bool:
    """Whether the direct kernel takes a strided convolution's input gradient: ``use_direct``
    of the forward, with the input channels (the transpose's outputs) a multiple of 8 up to
    ``MAX_OUT`` and at most ``MAX_WASTE`` computed positions per input position."""
    if not _cd.STRIDED_INPUT_GRAD or max(geom.stride) == 1:
        return False
    c = w_shape[1]
    if c % _cd.OB or c > _cd.MAX_OUT or w_shape[0] > _cd.MAX_IN:
        return False
    x_shape = (g.shape[0], c) + tuple(geom.in_size)
    if not _cd.use_direct(xp, g, w_shape, geom, x_shape):
        return False
    m, _, _, npl, _, _, qpad, phases = _input_grad_plan(w_shape, geom, g.dtype.itemsize)
    ps = [n + lo + hi for n, (lo, hi) in zip(geom.in_size, geom.pad)]
    return len(phases) * npl * qpad <= _cd.MAX_WASTE * math.prod(ps)


def direct_input_grad(g, w, geom):
    """d conv(x, w) / dx applied to g at stride > 1 by the direct kernel: per stride phase r
    of the padded input, ``dxpad[r::s] = sum over the taps d * k = s * q + r of g shifted by
    q``, a stride-1 correlation of g (padded by Q = max q) with those taps flipped; the phases'
    results are interleaved into dx (``use_direct_input_grad`` must hold)."""
    from . import conv_direct_fused as _fused  # (imports conv_direct)

    if _fused.use_fused_input_grad(g, w.shape, geom):  # layout, kernels, scatter in one pass
        return _fused.fused_input_grad(g, w, geom)
    n, o = g.shape[:2]
    c = w.shape[1]
    nd = len(geom.kernel)
    m, qmax, gs, npl, step, q, qpad, phases = _input_grad_plan(w.shape, geom, g.dtype.itemsize)
    need = (npl - 1) * step + qpad + sum(qmax[i] * math.prod(gs[i + 1 :]) for i in range(nd))
    gf = np.zeros((n, o, max(math.prod(gs), need)), dtype=g.dtype)
    inner = tuple(slice(qm, qm + s) for qm, s in zip(qmax, geom.out_size))
    gf[:, :, : math.prod(gs)].reshape((n, o) + gs)[(slice(None),) * 2 + inner] = g
    # (O, C, T) -> (C / 8, O, T, 8): the transpose's weights, 8 input channels side by side
    wt = w.astype(g.dtype, copy=False).reshape(o, c // _cd.OB, _cd.OB, -1).transpose(1, 0, 3, 2)
    full = len(phases) == math.prod(geom.stride)
    dx = (np.empty if full else np.zeros)((n, c) + tuple(geom.in_size), dtype=g.dtype)
    y = np.empty((n, c, npl, qpad), dtype=g.dtype)
    for r, (idx, offs) in phases.items():
        macs = n * o * c * len(idx) * npl * qpad
        _cd._call("forward", macs, gf, np.ascontiguousarray(wt[:, :, idx]), offs, step, y)
        ph = _cd._crop(y, npl, q, gs[-1], m)  # (N, C, *M): dxpad[r::s]
        sl = [
            _cd._phase_slices(a, pl, s, ri)
            for a, (pl, _), s, ri in zip(geom.in_size, geom.pad, geom.stride, r)
        ]
        dx[(slice(None),) * 2 + tuple(b for _, b in sl)] = ph[
            (slice(None),) * 2 + tuple(a for a, _ in sl)
        ]
    return dx


# last: conv_direct imports this module at its end, so either may be imported first (the
# names above are used at call time only)
from . import conv_direct as _cd  # noqa: E402
