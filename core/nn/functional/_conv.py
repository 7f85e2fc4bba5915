"""``F.conv1d/2d/3d`` and ``F.conv_transpose1d/2d/3d``: argument checks, then ``ops.conv``."""

from __future__ import annotations

from ...amp._state import autocast_op
from ...ops._util import cpp_type_name
from ...ops.conv import Conv, ConvGeom, ConvTranspose
from ...tensor import Tensor

# PyTorch's scalar type names, used in its dtype error messages.
_SCALAR_NAMES = {
    "float32": "Float",
    "float64": "Double",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def scalar_name(t: Tensor) -> str:
    return _SCALAR_NAMES.get(t.dtype.name, t.dtype.name)


def ntuple(value, n: int, name: str, what: str = "convolution") -> tuple[int, ...]:
    """An int or a sequence of 1 or n ints -> a tuple of n ints (PyTorch's expand_param)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return (int(value[0]),) * n
        if len(value) != n:
            raise RuntimeError(
                f"expected {name} to be a single integer value or a list of {n} values to match "
                f"the {what} dimensions, but got {name}={list(value)}"
            )
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _sizes(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_common(name, input, weight, bias, nd, stride, dilation, groups, padding):
    if input.dim() not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
            f"{name}, but got input of size: {_sizes(input.shape)}"
        )
    if weight.dim() != nd + 2:
        raise RuntimeError(
            f"Expected {nd + 2}D weight for {name}, but got weight of size: {_sizes(weight.shape)}"
        )
    if input.dtype != weight.dtype:
        raise RuntimeError(
            f"expected scalar type {scalar_name(input)} but found {scalar_name(weight)}"
        )
    if bias is not None and bias.dtype != input.dtype:
        raise RuntimeError(
            f"Input type ({cpp_type_name(input)}) and bias type "
            f"({cpp_type_name(bias)}) should be the same"
        )
    if not (input.dtype.is_floating_point or input.dtype.is_complex):
        raise RuntimeError(f"\"{name}\" not implemented for '{scalar_name(input)}'")
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("non-positive dilation is not supported")
    if any(p < 0 for p in padding):
        raise RuntimeError("negative padding is not supported")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")


def _conv_padding(padding, nd, kernel, stride, dilation):
    """int / tuple / "same" / "valid" -> ((lo, hi), ...) per spatial dim."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            # PyTorch puts the odd extra element of the total padding on the high side.
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    return tuple((p, p) for p in ntuple(padding, nd, "padding"))


def _conv(name, nd, input, weight, bias, stride, padding, dilation, groups):
    stride = ntuple(stride, nd, "stride")
    dilation = ntuple(dilation, nd, "dilation")
    groups = int(groups)
    if not isinstance(padding, str):
        _check_common(
            name, input, weight, bias, nd, stride, dilation, groups, ntuple(padding, nd, "padding")
        )
    else:
        _check_common(name, input, weight, bias, nd, stride, dilation, groups, ())
    kernel = tuple(weight.shape[2:])
    pad = _conv_padding(padding, nd, kernel, stride, dilation)
    unbatched = input.dim() == nd + 1
    if unbatched:
        input = input.unsqueeze(0)
    out_ch, in_ch = weight.shape[0], weight.shape[1] * groups
    if out_ch % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} "
            f"at dimension 0, but got weight of size {_sizes(weight.shape)} "
            "instead"
        )
    if input.shape[1] != in_ch:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {_sizes(weight.shape)}, "
            f"expected input{_sizes(input.shape)} to have {in_ch} channels, but "
            f"got {input.shape[1]} channels instead"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_ch):
        raise RuntimeError(
            f"Given weight of size {_sizes(weight.shape)}, expected bias to be "
            f"1-dimensional with {out_ch} elements, but got bias of size "
            f"{_sizes(bias.shape)} instead"
        )
    in_size = tuple(input.shape[2:])
    padded = [n + lo + hi for n, (lo, hi) in zip(in_size, pad)]
    effective = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    if any(p < e for p, e in zip(padded, effective)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
            f"Kernel size: ({' x '.join(map(str, effective))}). Kernel size can't be greater "
            "than actual input size"
        )
    geom = ConvGeom(stride, pad, dilation, groups, kernel, in_size)
    out = Conv.apply(input, weight, bias, geom)
    return out.squeeze(0) if unbatched else out


@autocast_op("conv1d")
def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    r"""Applies a 1D convolution over an input signal composed of several input planes.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, L)` or :math:`(C_{in}, L)`.
        weight: filters of shape :math:`(C_{out}, C_{in} / groups, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, dilation, groups: as in :class:`~ember.nn.Conv1d`; padding may also be
            ``"valid"`` or ``"same"``.
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


@autocast_op("conv2d")
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    r"""Applies a 2D convolution over an input image composed of several input planes.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, H, W)` or :math:`(C_{in}, H, W)`.
        weight: filters of shape :math:`(C_{out}, C_{in} / groups, kH, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, dilation, groups: as in :class:`~ember.nn.Conv2d`; padding may also be
            ``"valid"`` or ``"same"``.
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


@autocast_op("conv3d")
def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    r"""Applies a 3D convolution over an input image composed of several input planes.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, D, H, W)` or :math:`(C_{in}, D, H, W)`.
        weight: filters of shape :math:`(C_{out}, C_{in} / groups, kD, kH, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, dilation, groups: as in :class:`~ember.nn.Conv3d`; padding may also be
            ``"valid"`` or ``"same"``.
    """
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(
    name, nd, input, weight, bias, stride, padding, output_padding, groups, dilation
):
    stride = ntuple(stride, nd, "stride")
    dilation = ntuple(dilation, nd, "dilation")
    pads = ntuple(padding, nd, "padding")
    out_pad = ntuple(output_padding, nd, "output_padding")
    groups = int(groups)
    _check_common(name, input, weight, bias, nd, stride, dilation, groups, pads)
    if any(p < 0 for p in out_pad):
        raise RuntimeError("negative output_padding is not supported")
    for op, s, d in zip(out_pad, stride, dilation):
        if op >= s and op >= d:
            raise RuntimeError(
                "output padding must be smaller than either stride or dilation, but got "
                f"output_padding={list(out_pad)}, stride={list(stride)}, "
                f"dilation={list(dilation)}"
            )
    unbatched = input.dim() == nd + 1
    if unbatched:
        input = input.unsqueeze(0)
    if input.shape[1] != weight.shape[0]:
        raise RuntimeError(
            f"Given transposed=1, weight of size {_sizes(weight.shape)}, "
            f"expected input{_sizes(input.shape)} to have {weight.shape[0]} "
            f"channels, but got {input.shape[1]} channels instead"
        )
    if weight.shape[0] % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} "
            f"at dimension 0, but got weight of size {_sizes(weight.shape)} "
            "instead"
        )
    out_ch = weight.shape[1] * groups
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_ch):
        raise RuntimeError(
            f"Given transposed=1, weight of size {_sizes(weight.shape)}, "
            f"expected bias to be 1-dimensional with {out_ch} elements, but got "
            f"bias of size {_sizes(bias.shape)} instead"
        )
    kernel = tuple(weight.shape[2:])
    in_size = tuple(input.shape[2:])
    out_size = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(in_size, stride, pads, dilation, kernel, out_pad)
    )
    if any(o <= 0 for o in out_size):
        raise RuntimeError(
            f"Given input size per channel: ({' x '.join(map(str, in_size))}). "
            f"Calculated output size per channel: "
            f"({' x '.join(map(str, out_size))}). Output size is too small"
        )
    # Seen from the convolution whose input gradient this is: its input is our output.
    geom = ConvGeom(
        stride, tuple((p, p) for p in pads), dilation, groups, kernel, out_size, in_size
    )
    out = ConvTranspose.apply(input, weight, bias, geom)
    return out.squeeze(0) if unbatched else out


@autocast_op("conv_transpose1d")
def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    r"""Applies a 1D transposed convolution ("deconvolution") over an input signal.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, L)` or :math:`(C_{in}, L)`.
        weight: filters of shape :math:`(C_{in}, C_{out} / groups, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, output_padding, groups, dilation: as in
            :class:`~ember.nn.ConvTranspose1d`.
    """
    return _conv_transpose(
        "conv_transpose1d",
        1,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


@autocast_op("conv_transpose2d")
def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    r"""Applies a 2D transposed convolution ("deconvolution") over an input image.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, H, W)` or :math:`(C_{in}, H, W)`.
        weight: filters of shape :math:`(C_{in}, C_{out} / groups, kH, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, output_padding, groups, dilation: as in
            :class:`~ember.nn.ConvTranspose2d`.
    """
    return _conv_transpose(
        "conv_transpose2d",
        2,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


@autocast_op("conv_transpose3d")
def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    r"""Applies a 3D transposed convolution ("deconvolution") over an input volume.

    Args:
        input: input tensor of shape :math:`(N, C_{in}, D, H, W)` or :math:`(C_{in}, D, H, W)`.
        weight: filters of shape :math:`(C_{in}, C_{out} / groups, kD, kH, kW)`.
        bias: optional bias of shape :math:`(C_{out})`.
        stride, padding, output_padding, groups, dilation: as in
            :class:`~ember.nn.ConvTranspose3d`.
    """
    return _conv_transpose(
        "conv_transpose3d",
        3,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )
