"""Fold an eval-mode batch norm into the convolution or linear layer before it (inference
speed-ups), PyTorch's ``torch.nn.utils.fusion``."""

from __future__ import annotations

import copy
from typing import TypeVar

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from ..module import Module
from ..parameter import Parameter

__all__ = [
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "fuse_linear_bn_eval",
    "fuse_linear_bn_weights",
]

ConvT = TypeVar("ConvT", bound=Module)
LinearT = TypeVar("LinearT", bound=Module)


def _ones_like(t: Tensor) -> Tensor:
    from ... import ones_like

    return ones_like(t)


def _zeros_like(t: Tensor) -> Tensor:
    from ... import zeros_like

    return zeros_like(t)


def fuse_conv_bn_eval(conv: ConvT, bn: Module, transpose: bool = False) -> ConvT:
    r"""Fuse a convolutional module and a BatchNorm module into a single, new convolutional
    module (both must be in eval mode).

    Args:
        conv (nn.modules.conv._ConvNd): a convolutional module.
        bn (nn.modules.batchnorm._BatchNorm): a BatchNorm module.
        transpose (bool, optional): the convolution is transposed (``ConvTranspose*d``).

    Returns:
        The fused convolutional module (a deep copy of ``conv``).
    """
    if conv.training or bn.training:
        raise AssertionError("Fusion only for eval!")
    fused_conv = copy.deepcopy(conv)
    if bn.running_mean is None or bn.running_var is None:
        raise AssertionError("bn.running_mean and bn.running_var must not be None")
    fused_conv.weight, fused_conv.bias = fuse_conv_bn_weights(
        fused_conv.weight,
        fused_conv.bias,
        bn.running_mean,
        bn.running_var,
        bn.eps,
        bn.weight,
        bn.bias,
        transpose,
    )
    return fused_conv


def fuse_conv_bn_weights(
    conv_w: Tensor,
    conv_b: Tensor | None,
    bn_rm: Tensor,
    bn_rv: Tensor,
    bn_eps: float,
    bn_w: Tensor | None,
    bn_b: Tensor | None,
    transpose: bool = False,
) -> tuple[Parameter, Parameter]:
    r"""Fuse convolutional module parameters and BatchNorm module parameters into new
    convolutional module parameters.

    ``w' = w * gamma / sqrt(var + eps)`` (per output channel) and
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.

    Returns:
        Tuple[Parameter, Parameter]: the fused weight and bias.
    """
    w_dtype = conv_w.dtype
    b_dtype = conv_b.dtype if conv_b is not None else w_dtype
    if conv_b is None:
        conv_b = _zeros_like(bn_rm)
    if bn_w is None:
        bn_w = _ones_like(bn_rm)
    if bn_b is None:
        bn_b = _zeros_like(bn_rm)
    with no_grad():
        var_rsqrt = (bn_rv + bn_eps).rsqrt()
        # the output channels are dim 0 of a convolution's weight, dim 1 of a transposed one
        shape = ([1, -1] if transpose else [-1, 1]) + [1] * (conv_w.ndim - 2)
        fused_w = (conv_w * (bn_w * var_rsqrt).reshape(shape)).to(dtype=w_dtype)
        fused_b = ((conv_b - bn_rm) * var_rsqrt * bn_w + bn_b).to(dtype=b_dtype)
    return Parameter(fused_w, conv_w.requires_grad), Parameter(fused_b, conv_b.requires_grad)


def fuse_linear_bn_eval(linear: LinearT, bn: Module) -> LinearT:
    r"""Fuse a linear module and a BatchNorm module into a single, new linear module (both
    must be in eval mode; the BatchNorm follows the linear layer).

    Returns:
        The fused linear module (a deep copy of ``linear``).
    """
    if linear.training or bn.training:
        raise AssertionError("Fusion only for eval!")
    fused_linear = copy.deepcopy(linear)
    if linear.out_features != bn.num_features and bn.num_features != 1:
        raise AssertionError(
            "To fuse, linear.out_features == bn.num_features or bn.num_features == 1, got "
            f"linear.out_features={linear.out_features} and bn.num_features={bn.num_features}"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise AssertionError("bn.running_mean and bn.running_var must not be None")
    fused_linear.weight, fused_linear.bias = fuse_linear_bn_weights(
        fused_linear.weight,
        fused_linear.bias,
        bn.running_mean,
        bn.running_var,
        bn.eps,
        bn.weight,
        bn.bias,
    )
    return fused_linear


def fuse_linear_bn_weights(
    linear_w: Tensor,
    linear_b: Tensor | None,
    bn_rm: Tensor,
    bn_rv: Tensor,
    bn_eps: float,
    bn_w: Tensor,
    bn_b: Tensor,
) -> tuple[Parameter, Parameter]:
    r"""Fuse linear module parameters and BatchNorm module parameters into new linear module
    parameters.

    Returns:
        Tuple[Parameter, Parameter]: the fused weight and bias.
    """
    w_dtype = linear_w.dtype
    b_dtype = linear_b.dtype if linear_b is not None else w_dtype
    if linear_b is None:
        linear_b = _zeros_like(bn_rm)
    with no_grad():
        bn_scale = bn_w * (bn_rv + bn_eps).rsqrt()
        fused_w = linear_w * bn_scale.unsqueeze(-1).to(dtype=w_dtype)
        fused_b = ((linear_b - bn_rm) * bn_scale + bn_b).to(dtype=b_dtype)
    return Parameter(fused_w, linear_w.requires_grad), Parameter(fused_b, linear_b.requires_grad)
