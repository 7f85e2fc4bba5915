"""Fake quantization (quantize then dequantize in float) with the straight-through gradient.

``fake_quantize_per_tensor_affine`` and ``fake_quantize_per_channel_affine`` follow PyTorch's CPU
kernel bit for bit: ``q = rint(fl32(x * fl32(1/scale))) + zero_point`` (round half to even),
``out = (clamp(q, quant_min, quant_max) - zero_point) * scale``; the gradient passes through where
``quant_min <= q <= quant_max`` and is zero outside the clamp range.
"""

from __future__ import annotations

from ..autograd.function import Function
from ..tensor import Tensor

__all__ = ["fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine"]


def _fq(xp, x, inv, scale, zp, qmin, qmax):
    q = xp.rint(x * inv) + zp
    mask = (q >= qmin) & (q <= qmax)
    out = ((xp.clip(q, qmin, qmax) - zp) * scale).astype(x.dtype, copy=False)
    return out, mask


class FakeQuantizePerTensor(Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        xp = ctx.xp
        s = xp.float32(scale)
        out, mask = _fq(xp, x, xp.float32(1.0) / s, s, xp.float32(zero_point), qmin, qmax)
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None


class FakeQuantizePerChannel(Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, axis, qmin, qmax):
        xp = ctx.xp
        shape = [1] * x.ndim
        shape[axis] = -1
        s = scale.astype(xp.float32).reshape(shape)
        zp = xp.rint(zero_point.astype(xp.float32)).reshape(shape)
        out, mask = _fq(xp, x, (xp.float32(1.0) / s), s, zp, qmin, qmax)
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None, None


def _scalar(v, name: str):
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise RuntimeError(
                f"fake_quantize_per_tensor_affine: {name} must hold one element, "
                f"got shape {tuple(v.shape)}"
            )
        return v.item()
    return v


def _check_range(fn: str, quant_min: int, quant_max: int) -> None:
    if quant_min > quant_max:
        raise RuntimeError(
            f"{fn}: `quant_min` should be less than or equal to `quant_max` "
            f"(got {quant_min} and {quant_max})"
        )


def fake_quantize_per_tensor_affine(
    input: Tensor, scale, zero_point, quant_min: int, quant_max: int
) -> Tensor:
    """Quantize and dequantize ``input`` with one scale / zero point; straight-through grad."""
    _check_range("fake_quantize_per_tensor_affine", quant_min, quant_max)
    scale = float(_scalar(scale, "scale"))
    zero_point = int(_scalar(zero_point, "zero_point"))
    if not quant_min <= zero_point <= quant_max:
        raise RuntimeError(
            "fake_quantize_per_tensor_affine: `zero_point` must be between "
            f"`quant_min` and `quant_max` (got {zero_point} not in "
            f"[{quant_min}, {quant_max}])"
        )
    return FakeQuantizePerTensor.apply(input, scale, zero_point, quant_min, quant_max)


def fake_quantize_per_channel_affine(
    input: Tensor, scale: Tensor, zero_point: Tensor, axis: int, quant_min: int, quant_max: int
) -> Tensor:
    """Per-channel fake quantization along ``axis``; straight-through gradient."""
    fn = "fake_quantize_per_channel_affine"
    _check_range(fn, quant_min, quant_max)
    nd = input.ndim
    if not -nd <= axis < nd:
        raise RuntimeError(f"{fn}: axis {axis} is out of range for a {nd}-d input")
    axis %= nd
    n = input.shape[axis]
    if scale.ndim != 1 or scale.shape[0] != n or zero_point.shape != scale.shape:
        raise RuntimeError(
            f"{fn}: expected scale and zero_point of shape ({n},) (dim {axis} of "
            f"the input), got {tuple(scale.shape)} and {tuple(zero_point.shape)}"
        )
    zp = zero_point._data
    if zp.size and (int(zp.min()) < quant_min or int(zp.max()) > quant_max):
        raise RuntimeError(f"{fn}: `zero_point` must be between `quant_min` and `quant_max`.")
    return FakeQuantizePerChannel.apply(input, scale._data, zp, axis, quant_min, quant_max)
