"""Quantized functions that FX graph mode's ``convert_fx`` writes into a graph where torch
calls ``torch.ops.quantized.*``: add / add_relu / mul / mul_relu with an output scale and zero
point, cat of same-qparams inputs, and average pooling on the codes.

They take and return ``QTensor`` (per-tensor affine). Arithmetic follows torch's x86 kernels:
dequantize as ``fma(q, scale, -zero_point * scale)`` in float32, add in float32, requantize with
``quantize_per_tensor``'s rule (docs/quantization.md, "Numerics").
"""

from __future__ import annotations

import numpy as np

from .... import quantized as _q
from ....tensor import Tensor
from ...nn.quantized._kernels import xp_of

__all__ = ["add", "add_relu", "mul", "mul_relu", "cat", "adaptive_avg_pool2d", "avg_pool2d"]


def _check(x, fn: str) -> _q.QTensor:
    if not isinstance(x, _q.QTensor):
        raise RuntimeError(
            f"quantized_ops.{fn}: expected a quantized tensor, got "
            f"{'a float tensor' if isinstance(x, Tensor) else type(x).__name__}"
        )
    if x._axis is not None:
        raise RuntimeError(f"quantized_ops.{fn}: expected a per-tensor quantized tensor")
    return x


def _dequant(x: _q.QTensor):
    # float32 fma of the codes with the scale and the premultiplied zero point (fbgemm's
    # Vectorized<quint8>::dequantize); the float64 product of two float32 values is exact
    xp = xp_of(x._data)
    s = np.float32(x._scale)
    pre = np.float32(s * np.float32(-int(x._zero_point)))
    return (x._data.astype(xp.float64) * float(s) + float(pre)).astype(xp.float32)


def _requant(r, like: _q.QTensor, scale, zero_point, relu: bool) -> _q.QTensor:
    out = _q.quantize_per_tensor(Tensor(r), float(scale), int(zero_point), like.dtype)
    if relu:  # clamp at the output zero point, as torch's fused kernels do
        xp = xp_of(out._data)
        out._data = xp.maximum(out._data, out._data.dtype.type(int(zero_point)))
    return out


def _binary(x, y, scale, zero_point, fn: str, op, relu: bool) -> _q.QTensor:
    x, y = _check(x, fn), _check(y, fn)
    return _requant(op(_dequant(x), _dequant(y)), x, scale, zero_point, relu)


def add(x, y, scale, zero_point) -> _q.QTensor:
    """``torch.ops.quantized.add``: ``x + y`` requantized to ``scale`` / ``zero_point``."""
    return _binary(x, y, scale, zero_point, "add", lambda a, b: a + b, False)


def add_relu(x, y, scale, zero_point) -> _q.QTensor:
    """``torch.ops.quantized.add_relu``: ``relu(x + y)`` requantized."""
    return _binary(x, y, scale, zero_point, "add_relu", lambda a, b: a + b, True)


def mul(x, y, scale, zero_point) -> _q.QTensor:
    """``torch.ops.quantized.mul``: ``x * y`` requantized."""
    return _binary(x, y, scale, zero_point, "mul", lambda a, b: a * b, False)


def mul_relu(x, y, scale, zero_point) -> _q.QTensor:
    """``torch.ops.quantized.mul_relu``: ``relu(x * y)`` requantized."""
    return _binary(x, y, scale, zero_point, "mul_relu", lambda a, b: a * b, True)


def cat(tensors, dim: int = 0) -> _q.QTensor:
    """Concatenate quantized tensors; inputs with other qparams than the first are requantized
    to the first's (FX mode makes a cat's inputs share one observer, so normally none is)."""
    ts = [_check(t, "cat") for t in tensors]
    if not ts:
        raise RuntimeError("quantized_ops.cat: expected a non-empty list of tensors")
    first = ts[0]
    s, z = float(first._scale), int(first._zero_point)
    parts = []
    for t in ts:
        if t.dtype != first.dtype:
            raise RuntimeError(f"quantized_ops.cat: dtypes differ ({first.dtype} and {t.dtype})")
        if float(t._scale) != s or int(t._zero_point) != z:
            t = _requant(_dequant(t), first, s, z, False)
        parts.append(t._data)
    xp = xp_of(first._data)
    return _q.QTensor._make(
        xp.concatenate(parts, axis=dim), first._qdtype, _q.per_tensor_affine, s, z
    )


def _pool_codes(x: _q.QTensor, sums, counts) -> _q.QTensor:
    # torch's quantized average pools: integer sum of the codes minus zero points, times
    # 1 / count in float32, rounded half to even, plus the zero point (same qparams out)
    xp = xp_of(x._data)
    zp = int(x._zero_point)
    lo, hi = _q.qrange(x._qdtype)
    acc = (sums - counts * zp).astype(xp.float32)
    inv = xp.float32(1.0) / counts.astype(xp.float32)
    codes = xp.clip(xp.rint(acc * inv) + zp, lo, hi).astype(x._qdtype.np)
    return _q.QTensor._make(codes, x._qdtype, _q.per_tensor_affine, float(x._scale), zp)


def _bounds(n_in: int, n_out: int):
    starts = [(i * n_in) // n_out for i in range(n_out)]
    ends = [-(-((i + 1) * n_in) // n_out) for i in range(n_out)]
    return starts, ends


def adaptive_avg_pool2d(x, output_size) -> _q.QTensor:
    """``F.adaptive_avg_pool2d`` on a quantized (N, C, H, W) or (C, H, W) tensor."""
    x = _check(x, "adaptive_avg_pool2d")
    if x.ndim not in (3, 4):
        raise ValueError(
            f"quantized_ops.adaptive_avg_pool2d: expected a 3-D or 4-D input, got "
            f"shape {tuple(x.shape)}"
        )
    h, w = x.shape[-2:]
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = h if oh is None else oh, w if ow is None else ow
    xp = xp_of(x._data)
    a = x._data.astype(xp.int64)
    hs, he = _bounds(h, oh)
    ws, we = _bounds(w, ow)
    sums = xp.empty(a.shape[:-2] + (oh, ow), dtype=xp.int64)
    counts = xp.empty((oh, ow), dtype=xp.int64)
    for i in range(oh):
        for j in range(ow):
            sums[..., i, j] = a[..., hs[i] : he[i], ws[j] : we[j]].sum(axis=(-2, -1))
            counts[i, j] = (he[i] - hs[i]) * (we[j] - ws[j])
    return _pool_codes(x, sums, counts)


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> _q.QTensor:
    """``F.avg_pool2d`` (count_include_pad, no ceil mode) on a quantized 4-D tensor."""
    x = _check(x, "avg_pool2d")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    stride = stride or (kh, kw)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xp = xp_of(x._data)
    zp = int(x._zero_point)
    a = x._data.astype(xp.int64)
    if ph or pw:  # padded positions count as zero-valued inputs (code = zero point)
        pad = [(0, 0)] * (a.ndim - 2) + [(ph, ph), (pw, pw)]
        a = xp.pad(a, pad, constant_values=zp)
    h, w = a.shape[-2:]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    sums = xp.zeros(a.shape[:-2] + (oh, ow), dtype=xp.int64)
    for i in range(kh):
        for j in range(kw):
            sums += a[..., i : i + sh * oh : sh, j : j + sw * ow : sw]
    counts = xp.full((oh, ow), kh * kw, dtype=xp.int64)
    return _pool_codes(x, sums, counts)
