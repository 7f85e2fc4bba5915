"""``convert_conv2d_weight_memory_format`` / ``convert_conv3d_weight_memory_format``.

ember's arrays are dense and C-ordered; a memory format (``channels_last``) is a layout hint
for NHWC kernels that NumPy and CuPy convolutions here do not have. The functions keep
PyTorch's signature and walk the module tree as PyTorch's do, leaving each weight's values and
shape unchanged (``contiguous_format`` and ``channels_last`` give the same result).
"""

from __future__ import annotations

from typing import TypeVar

from ..module import Module

__all__ = ["convert_conv2d_weight_memory_format", "convert_conv3d_weight_memory_format"]

_M = TypeVar("_M", bound=Module)


def _convert(module: _M, memory_format, kinds: tuple) -> _M:
    if isinstance(module, kinds):
        # a contiguous copy: what the conversion leaves for a dense array
        module.weight.data = module.weight.detach().contiguous()
    for child in module.children():
        _convert(child, memory_format, kinds)
    return module


def convert_conv2d_weight_memory_format(module: _M, memory_format) -> _M:
    r"""Convert the ``memory_format`` of every ``nn.Conv2d`` / ``nn.ConvTranspose2d`` weight
    in ``module`` (recursively).

    On ember's dense arrays every format is the contiguous one: the weights keep their
    values and shapes.

    Args:
        module (nn.Module): ``nn.Conv2d`` & ``nn.ConvTranspose2d`` or container module.
        memory_format: e.g. ``ember.channels_last`` or ``ember.contiguous_format``.

    Returns:
        The original module.
    """
    from ..modules.conv import Conv2d, ConvTranspose2d

    return _convert(module, memory_format, (Conv2d, ConvTranspose2d))


def convert_conv3d_weight_memory_format(module: _M, memory_format) -> _M:
    r"""Convert the ``memory_format`` of every ``nn.Conv3d`` / ``nn.ConvTranspose3d`` weight
    in ``module`` (recursively); see :func:`convert_conv2d_weight_memory_format`.

    Returns:
        The original module.
    """
    from ..modules.conv import Conv3d, ConvTranspose3d

    return _convert(module, memory_format, (Conv3d, ConvTranspose3d))
