"""``F.max_pool*``, ``F.avg_pool*``, ``F.adaptive_*_pool*``: argument checks, then ops.pooling."""

from __future__ import annotations

from ...backend.device import get_array_module
from ...ops.adaptive_pool import AdaptiveAvgPool, AdaptiveMaxPool
from ...ops.pooling import (
    AvgPool,
    MaxPool,
    PoolGeom,
    avg_divisor,
    pooling_output_size,
)
from ...overrides import _tensor_like, handle_torch_function
from ...tensor import Tensor


def _tuple(value, nd: int, fn: str, name: str) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return (int(value[0]),) * nd
        if len(value) != nd:
            words = {1: "one int", 2: "a tuple of two ints", 3: "a tuple of three ints"}
            raise RuntimeError(
                f"{fn}: {name} must either be a single int, or "
                f"{words.get(nd, f'a tuple of {nd} ints')}"
            )
        return tuple(int(v) for v in value)
    return (int(value),) * nd


def _batched(fn: str, input: Tensor, nd: int) -> tuple[Tensor, bool]:
    if input.dim() not in (nd + 1, nd + 2) or input.numel() == 0 and input.dim() == nd + 1:
        raise RuntimeError(
            f"{fn}: non-empty {nd + 1}D or {nd + 2}D (batch mode) tensor expected "
            f"for input, but got input of size: {list(input.shape)}"
        )
    if input.dim() == nd + 1:
        return input.unsqueeze(0), True
    return input, False


def _geometry(fn, input, nd, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _tuple(kernel_size, nd, fn, "kernel_size")
    stride = (
        kernel
        if stride is None or (isinstance(stride, (list, tuple)) and not stride)
        else _tuple(stride, nd, fn, "stride")
    )
    pad = _tuple(padding, nd, fn, "padding")
    dil = _tuple(dilation, nd, fn, "dilation")
    if any(k <= 0 for k in kernel):
        raise RuntimeError(
            f"{fn}: kernel size should be greater than zero, but got kernel_size={list(kernel)}"
        )
    if any(s <= 0 for s in stride):
        raise RuntimeError(
            "stride should not be zero"
            if 0 in stride
            else f"{fn}: stride should be greater than zero, but got stride={list(stride)}"
        )
    if any(d <= 0 for d in dil):
        raise RuntimeError(
            f"{fn}: dilation should be greater than zero, but got dilation={list(dil)}"
        )
    for k, p, d in zip(kernel, pad, dil):
        if p < 0:
            raise RuntimeError(f"{fn}: pad must be non-negative, but got pad: {p}")
        if p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(
                "pad should be at most half of effective kernel size, but got "
                f"pad={p}, kernel_size={k} and dilation={d}"
            )
    in_size = tuple(input.shape[2:])
    out = [
        pooling_output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(in_size, kernel, stride, pad, dil)
    ]
    if any(o < 1 for o in out):
        c = input.shape[1]
        raise RuntimeError(
            f"Given input size: ({'x'.join(map(str, (c,) + in_size))}). "
            f"Calculated output size: ({'x'.join(map(str, [c] + out))}). Output "
            "size is too small"
        )
    return PoolGeom(kernel, stride, pad, dil, in_size, ceil_mode)


def _max_pool(nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    fn = f"max_pool{nd}d"
    if input.is_quantized and not return_indices:  # max commutes with dequantize: pool the codes
        from ..._quantized_ops import tiled_max_pool

        out = tiled_max_pool(nd, input, kernel_size, stride, padding, dilation)
        if out is not None:
            return out
        return input._code_op(
            lambda t: _max_pool(nd, t, kernel_size, stride, padding, dilation, ceil_mode, False)
        )
    x, unbatched = _batched(fn, input, nd)
    geom = _geometry(fn, x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    out = MaxPool.apply(x, geom, bool(return_indices))
    if unbatched:
        out = tuple(o.squeeze(0) for o in out) if return_indices else out.squeeze(0)
    return out


def max_pool1d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """1D max pooling over an input of shape (N, C, L) or (C, L).

    See :class:`~ember.nn.MaxPool1d`."""
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """2D max pooling over (N, C, H, W) or (C, H, W); see :class:`~ember.nn.MaxPool2d`."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(
            max_pool2d, (input,), input, kernel_size, stride, padding, dilation, ceil_mode,
            return_indices,
        )  # fmt: skip
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """3D max pooling over (N, C, D, H, W) or (C, D, H, W); see :class:`~ember.nn.MaxPool3d`."""
    return _max_pool(3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool1d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True
):
    """:func:`max_pool1d` returning ``(output, indices)``."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True
):
    """:func:`max_pool2d` returning ``(output, indices)``."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True
):
    """:func:`max_pool3d` returning ``(output, indices)``."""
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _avg_pool(
    nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    fn = f"avg_pool{nd}d"
    if input.is_quantized:  # torch averages the codes (same scale and zero point); 1d in float
        run = input._float_op if nd == 1 else input._value_space_op
        return run(
            lambda t: _avg_pool(
                nd, t, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
            )
        )
    x, unbatched = _batched(fn, input, nd)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"\"{fn}\" not implemented for '{x.dtype.name}'")
    geom = _geometry(fn, x, nd, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    divisor = avg_divisor(
        get_array_module(x._data), geom, count_include_pad, divisor_override, x._data.dtype
    )
    out = AvgPool.apply(x, geom, divisor)
    return out.squeeze(0) if unbatched else out


def avg_pool1d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """1D average pooling over (N, C, L) or (C, L); see :class:`~ember.nn.AvgPool1d`."""
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2D average pooling over (N, C, H, W) or (C, H, W); see :class:`~ember.nn.AvgPool2d`."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(
            avg_pool2d, (input,), input, kernel_size, stride, padding, ceil_mode, count_include_pad,
            divisor_override,
        )  # fmt: skip
    return _avg_pool(
        2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def avg_pool3d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """3D average pooling over (N, C, D, H, W) or (C, D, H, W); see :class:`~ember.nn.AvgPool3d`."""
    return _avg_pool(
        3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def _adaptive_size(fn, input, nd, output_size):
    if input.dim() not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"{fn}(): Expected {nd + 1}D or {nd + 2}D tensor, but got {list(input.shape)}"
        )
    if isinstance(output_size, (list, tuple)):
        if len(output_size) == 1:
            output_size = tuple(output_size) * nd
        elif len(output_size) != nd:
            raise RuntimeError(f"{fn}: output_size must be {nd}")
    else:
        output_size = (output_size,) * nd
    in_size = tuple(input.shape[-nd:])
    out = tuple(n if o is None else int(o) for o, n in zip(output_size, in_size))
    if any(o < 0 for o in out):
        raise RuntimeError(
            f"{fn}: elements of output_size must be greater than or equal to 0 "
            f"but received {list(out)}"
        )
    for i, n in enumerate(in_size):
        if n == 0:
            raise RuntimeError(
                f"{fn}(): Expected input to have non-zero size for non-batch "
                f"dimensions, but input has sizes {list(input.shape)} with "
                f"dimension {input.dim() - nd + i} being empty"
            )
    return out


def _adaptive_avg(nd, input, output_size):
    fn = f"adaptive_avg_pool{nd}d"
    out = _adaptive_size(fn, input, nd, output_size)
    return AdaptiveAvgPool.apply(input, out)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """1D adaptive average pooling to ``output_size`` over (N, C, L) or (C, L)."""
    return _adaptive_avg(1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """2D adaptive average pooling to ``output_size`` (an int, a pair, None keeps a size)."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(adaptive_avg_pool2d, (input,), input, output_size)
    return _adaptive_avg(2, input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """3D adaptive average pooling to ``output_size`` (an int, a triple, None keeps a size)."""
    return _adaptive_avg(3, input, output_size)


def _adaptive_max(nd, input, output_size, return_indices):
    fn = f"adaptive_max_pool{nd}d"
    out = _adaptive_size(fn, input, nd, output_size)
    return AdaptiveMaxPool.apply(input, out, bool(return_indices))


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """1D adaptive max pooling to ``output_size``, optionally with the argmax indices."""
    return _adaptive_max(1, input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """2D adaptive max pooling to ``output_size``, optionally with the argmax indices."""
    return _adaptive_max(2, input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """3D adaptive max pooling to ``output_size``, optionally with the argmax indices."""
    return _adaptive_max(3, input, output_size, return_indices)
