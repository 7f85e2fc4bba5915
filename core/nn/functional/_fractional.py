"""Fractional max pooling (Graham, 2014): max over pseudo-random, overlapping windows whose
start positions follow ``floor((i + u) * alpha) - floor(u * alpha)`` for a sample ``u`` per
(batch, channel, dimension)."""

from __future__ import annotations

import numpy as np

from ... import ops
from ...backend.device import get_array_module
from ...creation import rand
from ...tensor import Tensor
from ._pooling import _tuple

__all__ = [
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d",
    "fractional_max_pool3d_with_indices",
]


def _starts(u, in_size: int, out_size: int, k: int):
    """Window starts (..., out_size) from samples ``u`` (...,), PyTorch's interval rule."""
    xp = get_array_module(u)
    if out_size == 1:
        return xp.full(u.shape + (1,), in_size - k, dtype=np.int64)
    alpha = (in_size - k) / (out_size - 1)
    i = xp.arange(out_size - 1, dtype=u.dtype)
    seq = (xp.floor((i + u[..., None]) * alpha) - xp.floor(u[..., None] * alpha)).astype(np.int64)
    last = xp.full(u.shape + (1,), in_size - k, dtype=np.int64)
    return xp.concatenate([seq, last], -1)


def _fractional(nd, input, kernel_size, output_size, output_ratio, _random_samples):
    fn = f"fractional_max_pool{nd}d"
    if output_size is None and output_ratio is None:
        raise ValueError(f"{fn} requires specifying either an output_size or an output_ratio")
    kernel = _tuple(kernel_size, nd, fn, "kernel_size")
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    n, c = x.shape[0], x.shape[1]
    spatial = tuple(x.shape[2:])
    if output_size is None:
        ratio = output_ratio if isinstance(output_ratio, (list, tuple)) else (output_ratio,) * nd
        output_size = [int(s * r) for s, r in zip(spatial, ratio)]
    out = _tuple(output_size, nd, fn, "output_size")
    for s, o, k in zip(spatial, out, kernel):
        if o + k - 1 > s:
            raise RuntimeError(
                f"{fn}(): pool size {k} and output size {o} are too large for input size {s}"
            )
    if _random_samples is None:
        samples = rand((n, c, nd), dtype=x.dtype, device=x.device)
    else:
        samples = _random_samples.reshape(n, c, nd) if unbatched else _random_samples
    u = samples._data
    xp = get_array_module(x._data)
    # PyTorch's sample order: (W, H) in 2D but (T, H, W) in 3D
    order = [1, 0] if nd == 2 else [0, 1, 2]
    starts = [_starts(u[..., order[d]], spatial[d], out[d], kernel[d]) for d in range(nd)]
    # linear input index of every (output position, window offset): (N, C, *out, *kernel)
    lin = xp.zeros((n, c) + out + kernel, dtype=np.int64)
    stride = 1
    for d in range(nd - 1, -1, -1):
        pos_shape = [n, c] + [1] * (2 * nd)
        pos_shape[2 + d] = out[d]
        off_shape = [1, 1] + [1] * (2 * nd)
        off_shape[2 + nd + d] = kernel[d]
        pos = starts[d].reshape(pos_shape) + xp.arange(kernel[d]).reshape(off_shape)
        lin = lin + pos * stride
        stride *= spatial[d]
    flat_idx = lin.reshape(n, c, -1)
    vals = ops.gather(x.reshape(n, c, -1), 2, Tensor._wrap(flat_idx))
    vals = vals.reshape((n, c) + out + (-1,))
    values, arg = ops.max(vals, -1)
    indices = xp.take_along_axis(lin.reshape((n, c) + out + (-1,)), arg._data[..., None], -1)
    indices = Tensor._wrap(indices[..., 0])
    if unbatched:
        values, indices = values.squeeze(0), indices.squeeze(0)
    return values, indices


def fractional_max_pool2d_with_indices(
    input: Tensor,
    kernel_size,
    output_size=None,
    output_ratio=None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """2D fractional max pooling: ``(output, indices)``."""
    return _fractional(2, input, kernel_size, output_size, output_ratio, _random_samples)


def fractional_max_pool2d(
    input: Tensor,
    kernel_size,
    output_size=None,
    output_ratio=None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """2D fractional max pooling over (N, C, H, W) or (C, H, W); ``output_size`` or
    ``output_ratio`` sets the output's spatial size."""
    out = _fractional(2, input, kernel_size, output_size, output_ratio, _random_samples)
    return out if return_indices else out[0]


def fractional_max_pool3d_with_indices(
    input: Tensor,
    kernel_size,
    output_size=None,
    output_ratio=None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """3D fractional max pooling: ``(output, indices)``."""
    return _fractional(3, input, kernel_size, output_size, output_ratio, _random_samples)


def fractional_max_pool3d(
    input: Tensor,
    kernel_size,
    output_size=None,
    output_ratio=None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """3D fractional max pooling over (N, C, D, H, W) or (C, D, H, W)."""
    out = _fractional(3, input, kernel_size, output_size, output_ratio, _random_samples)
    return out if return_indices else out[0]
