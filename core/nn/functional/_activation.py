"""Functional activations (``ember.nn.functional``), PyTorch's names and defaults."""

from __future__ import annotations

import warnings

from ... import ops
from ..._torch_function import torch_function_dispatch
from ...amp._state import autocast_op
from ...backend.dtype import to_dtype
from ...ops import activation_ops as A
from ...ops import nn_ops
from ...ops.convert import nhwc_elementwise
from ...ops.inplace import make_inplace
from ...ops.shape import chunk
from ...overrides import _tensor_like, handle_torch_function
from ...tensor import Tensor

__all__ = [
    "relu",
    "relu_",
    "relu6",
    "leaky_relu",
    "leaky_relu_",
    "prelu",
    "rrelu",
    "elu",
    "elu_",
    "selu",
    "selu_",
    "celu",
    "celu_",
    "gelu",
    "silu",
    "mish",
    "sigmoid",
    "tanh",
    "hardtanh",
    "hardtanh_",
    "hardsigmoid",
    "hardswish",
    "softplus",
    "softsign",
    "softmax",
    "log_softmax",
    "softmin",
    "threshold",
    "threshold_",
    "tanhshrink",
    "hardshrink",
    "softshrink",
    "logsigmoid",
    "glu",
]


def _maybe_inplace(fn, name, input, inplace, *args):
    if inplace:
        # The Functions save their input for backward; they run on a copy so that writing the
        # result into ``input`` does not invalidate what backward needs.
        return make_inplace(lambda x, *a: fn(ops.clone(x), *a), name)(input, *args)
    return fn(input, *args)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`\max(0, x)`."""
    if type(input) is not Tensor and _tensor_like(input):  # (DTensor: __torch_function__)
        return handle_torch_function(relu, (input,), input, inplace=inplace)
    if input.is_quantized:  # ember.quantized.QTensor: max(code, zero_point)
        return input.relu()
    if inplace:  # relu saves its output, so it can overwrite its input directly
        return make_inplace(ops.relu, "relu_")(input)
    return ops.relu(input)


def relu_(input: Tensor) -> Tensor:
    """In-place :func:`relu`."""
    return relu(input, inplace=True)


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    r"""Clamp to ``[min_val, max_val]`` (zero gradient outside and at the bounds)."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(hardtanh, (input,), input, min_val, max_val, inplace)
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _maybe_inplace(A.Hardtanh.apply, "hardtanh_", input, inplace, min_val, max_val)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """In-place :func:`hardtanh`."""
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`\min(\max(0, x), 6)`."""
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    r""":math:`x` for :math:`x > 0`, else :math:`\text{negative\_slope} \cdot x`."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(leaky_relu, (input,), input, negative_slope, inplace)
    return _maybe_inplace(A.LeakyRelu.apply, "leaky_relu_", input, inplace, negative_slope)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """In-place :func:`leaky_relu`."""
    return leaky_relu(input, negative_slope, inplace=True)


@autocast_op("prelu")
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    r"""Leaky ReLU with a learned slope per channel (dim 1) or one shared slope."""
    if weight.numel() != 1:
        if input.dim() == 0:
            raise RuntimeError("Not allow zero-dim input tensor.")
        channels = input.shape[1] if input.dim() >= 2 else 1
        if weight.numel() != channels:
            raise RuntimeError(
                "Mismatch of parameter numbers and input channel size. Found parameter numbers "
                f"= {weight.numel()} and channel size = {channels}."
            )
        if input.dim() >= 2:
            weight = weight.reshape((channels,) + (1,) * (input.dim() - 2))
    return ops.where(input > 0, input, weight * input)


def rrelu(
    input: Tensor,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
) -> Tensor:
    r"""Randomized leaky ReLU: a random slope in ``[lower, upper]`` while training, their mean
    otherwise."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    from ...creation import rand

    slope = rand(input.shape, dtype=input.dtype, device=input.device) * (upper - lower) + lower
    out = ops.where(input >= 0, input, input * slope)
    if inplace:
        return make_inplace(lambda x: out, "rrelu_")(input)
    return out


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    r""":math:`x` for :math:`x > 0`, else :math:`\alpha (e^x - 1)`."""
    return _maybe_inplace(A.Elu.apply, "elu_", input, inplace, alpha, 1.0, 1.0)


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """In-place :func:`elu`."""
    return elu(input, alpha, inplace=True)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`\text{scale} \cdot \text{elu}(x, \alpha)` with SELU's fixed constants."""
    return _maybe_inplace(A.Elu.apply, "selu_", input, inplace, A.SELU_ALPHA, A.SELU_SCALE, 1.0)


def selu_(input: Tensor) -> Tensor:
    """In-place :func:`selu`."""
    return selu(input, inplace=True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    r""":math:`\max(0, x) + \min(0, \alpha (e^{x/\alpha} - 1))`."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    return _maybe_inplace(A.Elu.apply, "celu_", input, inplace, alpha, 1.0, 1.0 / alpha)


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """In-place :func:`celu`."""
    return celu(input, alpha, inplace=True)


@torch_function_dispatch()
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    r""":math:`x \Phi(x)` (exact, with erf) or its tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    # channels_last in, channels_last out (torch's), computed on the row-major NHWC view
    return nhwc_elementwise(nn_ops.Gelu.apply, input, approximate)


@torch_function_dispatch()
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`x \sigma(x)`."""
    if not inplace:  # channels_last in, channels_last out (torch's), on the NHWC view
        return nhwc_elementwise(A.Silu.apply, input)
    return _maybe_inplace(A.Silu.apply, "silu_", input, inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`x \tanh(\text{softplus}(x))`."""
    return _maybe_inplace(A.Mish.apply, "mish_", input, inplace)


def sigmoid(input: Tensor) -> Tensor:
    """Elementwise logistic sigmoid, ``1 / (1 + exp(-x))``."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(sigmoid, (input,), input)
    return ops.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    """Elementwise hyperbolic tangent."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(tanh, (input,), input)
    return ops.tanh(input)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`\text{relu6}(x + 3) / 6`."""
    return _maybe_inplace(A.Hardsigmoid.apply, "hardsigmoid_", input, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    r""":math:`x \cdot \text{relu6}(x + 3) / 6`."""
    return _maybe_inplace(A.Hardswish.apply, "hardswish_", input, inplace)


@autocast_op("softplus")
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    r""":math:`\frac{1}{\beta} \log(1 + e^{\beta x})`, linear where :math:`\beta x >
    \text{threshold}`."""
    return A.Softplus.apply(input, beta, threshold)


def softsign(input: Tensor) -> Tensor:
    r""":math:`x / (1 + |x|)`."""
    return A.Softsign.apply(input)


def _softmax_dim(name: str, ndim: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call "
        "to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_prep(input: Tensor, dim, dtype, name: str):
    if not isinstance(input, Tensor):
        # e.g. `self.softmax(1)` for `self.softmax(x)`: name the argument, as torch does
        raise TypeError(
            f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}"
        )
    if dim is None:
        dim = _softmax_dim(name, input.dim())
    if dtype is not None:
        input = input.to(to_dtype(dtype))
    elif input._data.dtype.kind not in "fcV":
        raise RuntimeError(f"\"{name}_lastdim_kernel_impl\" not implemented for '{_scalar(input)}'")
    nd = max(input.dim(), 1)
    if not -nd <= dim < nd:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got {dim})"
        )
    return input, dim % nd if input.dim() else 0


def _scalar(t: Tensor) -> str:
    from ._linear import scalar_name

    return scalar_name(t)


@torch_function_dispatch()
@autocast_op("softmax")
def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    r""":math:`e^{x_i} / \sum_j e^{x_j}` along ``dim``."""
    input, dim = _softmax_prep(input, dim, dtype, "softmax")
    return nn_ops.Softmax.apply(input, dim)


@autocast_op("log_softmax")
def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    r""":math:`x_i - \log \sum_j e^{x_j}` along ``dim``."""
    input, dim = _softmax_prep(input, dim, dtype, "log_softmax")
    return nn_ops.LogSoftmax.apply(input, dim)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    r"""``softmax(-input)``."""
    input, dim = _softmax_prep(input, dim, dtype, "softmin")
    return nn_ops.Softmax.apply(-input, dim)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    r""":math:`x` where :math:`x > \text{threshold}`, else ``value``."""
    return _maybe_inplace(A.Threshold.apply, "threshold_", input, inplace, threshold, value)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    """In-place :func:`threshold`."""
    return _maybe_inplace(A.Threshold.apply, "threshold_", input, True, threshold, value)


def tanhshrink(input: Tensor) -> Tensor:
    r""":math:`x - \tanh(x)`."""
    return input - ops.tanh(input)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    r""":math:`x` where :math:`|x| > \lambda`, else 0."""
    return A.Hardshrink.apply(input, lambd)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    r""":math:`x - \lambda` above :math:`\lambda`, :math:`x + \lambda` below
    :math:`-\lambda`, else 0."""
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    return A.Softshrink.apply(input, lambd)


def logsigmoid(input: Tensor) -> Tensor:
    r""":math:`\log \sigma(x)`, computed stably."""
    return A.LogSigmoid.apply(input)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    r"""Gated linear unit: :math:`a \otimes \sigma(b)` for the two halves of ``input``."""
    if input.dim() == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    if input.shape[dim] % 2:
        raise RuntimeError(
            f"Halving dimension must be even, but dimension {dim % input.dim()} "
            f"is size {input.shape[dim]}"
        )
    a, b = chunk(input, 2, dim)
    return a * ops.sigmoid(b)
