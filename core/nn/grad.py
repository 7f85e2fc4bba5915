"""``nn.grad``: gradients of a convolution with respect to its input or its weight, given the
output gradient (what a conv layer's backward computes), e.g. for custom autograd Functions."""

from __future__ import annotations

from ..autograd import grad as _autograd_grad
from ..autograd.grad_mode import enable_grad
from ..creation import zeros
from ..tensor import Tensor
from .functional import _conv

__all__ = [
    "conv1d_input",
    "conv1d_weight",
    "conv2d_input",
    "conv2d_weight",
    "conv3d_input",
    "conv3d_weight",
]

_FNS = {1: _conv.conv1d, 2: _conv.conv2d, 3: _conv.conv3d}


def _input_grad(nd, input_size, weight, grad_output, stride, padding, dilation, groups):
    # the convolution is linear in its input: differentiate it at zero (the value is unused)
    with enable_grad():
        x = zeros(
            tuple(input_size),
            dtype=grad_output.dtype,
            device=grad_output.device,
            requires_grad=True,
        )
        out = _FNS[nd](x, weight.detach(), None, stride, padding, dilation, groups)
        return _autograd_grad(out, x, grad_output)[0]


def _weight_grad(nd, input, weight_size, grad_output, stride, padding, dilation, groups):
    with enable_grad():
        w = zeros(
            tuple(weight_size),
            dtype=grad_output.dtype,
            device=grad_output.device,
            requires_grad=True,
        )
        out = _FNS[nd](input.detach(), w, None, stride, padding, dilation, groups)
        return _autograd_grad(out, w, grad_output)[0]


def conv1d_input(
    input_size, weight: Tensor, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv1d`` with respect to an input of shape ``input_size``."""
    return _input_grad(1, input_size, weight, grad_output, stride, padding, dilation, groups)


def conv1d_weight(
    input: Tensor, weight_size, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv1d`` with respect to a weight of shape ``weight_size``."""
    return _weight_grad(1, input, weight_size, grad_output, stride, padding, dilation, groups)


def conv2d_input(
    input_size, weight: Tensor, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv2d`` with respect to an input of shape ``input_size``."""
    return _input_grad(2, input_size, weight, grad_output, stride, padding, dilation, groups)


def conv2d_weight(
    input: Tensor, weight_size, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv2d`` with respect to a weight of shape ``weight_size``."""
    return _weight_grad(2, input, weight_size, grad_output, stride, padding, dilation, groups)


def conv3d_input(
    input_size, weight: Tensor, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv3d`` with respect to an input of shape ``input_size``."""
    return _input_grad(3, input_size, weight, grad_output, stride, padding, dilation, groups)


def conv3d_weight(
    input: Tensor, weight_size, grad_output: Tensor, stride=1, padding=0, dilation=1, groups=1
) -> Tensor:
    r"""Gradient of ``conv3d`` with respect to a weight of shape ``weight_size``."""
    return _weight_grad(3, input, weight_size, grad_output, stride, padding, dilation, groups)
