"""More of ``torch.nn.functional``: channel shuffle, local response norm, Gumbel-softmax,
power-average (LP) pooling, max unpooling, ``adaptive_max_pool*_with_indices``, ``rrelu_``,
grouped matmul and the fused linear + cross-entropy.

Each is a composition of differentiable ember ops, so gradients (and double backward) come from
the ops' own backward formulas.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING  # noqa: F401  (re-exported: torch.nn.functional has it)

import numpy as np

from ... import ops
from ...creation import rand, zeros
from ...tensor import Tensor
from . import _activation, _linear, _loss, _pooling

__all__ = [
    "TYPE_CHECKING",
    "Tensor",
    "channel_shuffle",
    "native_channel_shuffle",
    "local_response_norm",
    "gumbel_softmax",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices",
    "rrelu_",
    "grouped_mm",
    "linear_cross_entropy",
]


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    r"""Split the C channels of (N, C, \*) into ``groups`` groups and interleave them:
    (N, g, C/g, \*) -> (N, C/g, g, \*) -> (N, C, \*)."""
    if groups <= 0:
        raise RuntimeError(
            f"Number of groups to divide channels in must be positive. Value of groups:{groups}"
        )
    if input.dim() < 3:
        raise RuntimeError(
            f"channel_shuffle expects input to have at least 3 dimensions, but "
            f"got input with sizes {list(input.shape)}"
        )
    n, c = input.shape[0], input.shape[1]
    if c % groups:
        raise RuntimeError(
            f"Number of channels must be divisible by groups. Got {c} channels and {groups} groups."
        )
    rest = tuple(input.shape[2:])
    x = input.reshape((n, groups, c // groups) + rest)
    return ops.transpose(x, 1, 2).reshape((n, c) + rest)


native_channel_shuffle = channel_shuffle


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    r"""Normalise each channel by its neighbours':
    :math:`b_c = a_c \left(k + \frac{\alpha}{n} \sum_{c'} a_{c'}^2\right)^{-\beta}`, the sum
    over the ``size`` channels centred on ``c`` (zero beyond the edges)."""
    dim = input.dim()
    if dim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {dim} dimensions)")
    if input.numel() == 0:
        return input
    c = input.shape[1]
    sq = input * input
    # zero-pad the channel axis by (size // 2, (size - 1) // 2), then a sliding sum of width size
    pad = [0, 0] * (dim - 2) + [size // 2, (size - 1) // 2]
    from ._vision import pad as _pad

    padded = _pad(sq, pad)
    window = padded.narrow(1, 0, c)
    for j in range(1, size):
        window = window + padded.narrow(1, j, c)
    div = (window * (alpha / size) + k) ** beta
    return input / div


def gumbel_softmax(
    logits: Tensor, tau: float = 1, hard: bool = False, eps: float = 1e-10, dim: int = -1
) -> Tensor:
    r"""Samples from the Gumbel-softmax distribution: ``softmax((logits + g) / tau)`` with
    :math:`g = -\log(E)`, :math:`E \sim \text{Exp}(1)`. ``hard`` returns the one-hot of the
    sample's argmax with the soft sample's gradient (straight-through)."""
    u = rand(logits.shape, dtype=logits.dtype, device=logits.device)
    # E = -log(U) is Exp(1); g = -log(E). Clamp U away from 0 and 1 so both logs stay finite.
    e = -ops.log(u.clamp(1e-20, 1.0 - 1e-7))
    gumbels = (logits + (-ops.log(e))) / tau
    y_soft = _activation.softmax(gumbels, dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = ops.scatter(
        zeros(logits.shape, dtype=logits.dtype, device=logits.device), dim, index, value=1.0
    )
    return y_hard - y_soft.detach() + y_soft


# ---- LP pooling and max unpooling ----------------------------------------------------------
def _lp_pool(nd: int, input: Tensor, norm_type: float, kernel_size, stride, ceil_mode: bool):
    kernel = _pooling._tuple(kernel_size, nd, f"lp_pool{nd}d", "kernel_size")
    avg = (_pooling.avg_pool1d, _pooling.avg_pool2d, _pooling.avg_pool3d)[nd - 1]
    if stride is not None:
        out = avg(input.pow(norm_type), kernel, stride, 0, ceil_mode)
    else:
        out = avg(input.pow(norm_type), kernel, padding=0, ceil_mode=ceil_mode)
    # sign(out) * relu(|out|) guards the power against tiny negative rounding; the window
    # mean times its size is the window sum
    out = ops.sign(out) * _activation.relu(ops.abs(out))
    return (out * math.prod(kernel)).pow(1.0 / norm_type)


def lp_pool1d(
    input: Tensor, norm_type: int | float, kernel_size: int, stride=None, ceil_mode: bool = False
) -> Tensor:
    r"""1D power-average pooling: :math:`(\sum_{x \in X} x^p)^{1/p}` over each window."""
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(
    input: Tensor, norm_type: int | float, kernel_size, stride=None, ceil_mode: bool = False
) -> Tensor:
    r"""2D power-average pooling: :math:`(\sum_{x \in X} x^p)^{1/p}` over each window."""
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(
    input: Tensor, norm_type: int | float, kernel_size, stride=None, ceil_mode: bool = False
) -> Tensor:
    r"""3D power-average pooling: :math:`(\sum_{x \in X} x^p)^{1/p}` over each window."""
    return _lp_pool(3, input, norm_type, kernel_size, stride, ceil_mode)


def _unpool_output_size(nd, input, kernel, stride, padding, output_size):
    default = [
        (input.shape[-nd + i] - 1) * stride[i] + kernel[i] - 2 * padding[i] for i in range(nd)
    ]
    if output_size is None:
        return default
    output_size = list(output_size)
    if len(output_size) == nd + 2:
        output_size = output_size[2:]
    elif len(output_size) == nd + 1:
        output_size = output_size[1:]
    if len(output_size) != nd:
        raise ValueError(
            f"output_size should be a sequence containing {nd} or {nd + 2} "
            f"elements, but it has a length of '{len(output_size)}'"
        )
    for i in range(nd):
        lo = default[i] - stride[i]
        hi = default[i] + stride[i]
        if not lo < output_size[i] < hi:
            raise ValueError(
                f'invalid output_size "{output_size}" (dim {i} must be between {lo} and {hi})'
            )
    return output_size


def _max_unpool(nd, input, indices, kernel_size, stride, padding, output_size):
    fn = f"max_unpool{nd}d"
    kernel = _pooling._tuple(kernel_size, nd, fn, "kernel_size")
    stride = kernel if stride is None else _pooling._tuple(stride, nd, fn, "stride")
    padding = _pooling._tuple(padding, nd, fn, "padding")
    size = _unpool_output_size(nd, input, kernel, stride, padding, output_size)
    if indices._data.dtype != np.int64:
        raise RuntimeError(
            f"elements in indices should be type int64 but got: {indices._data.dtype}"
        )
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    idx = indices.unsqueeze(0) if unbatched else indices
    n, c = x.shape[0], x.shape[1]
    flat = math.prod(size)
    bad = (idx._data < 0) | (idx._data >= flat)
    if bool(bad.any()):
        first = int(idx._data[bad].reshape(-1)[0])
        raise RuntimeError(
            f"Found an invalid max index: {first} (output volumes are of size "
            f"{'x'.join(str(s) for s in size)}"
        )
    out = zeros((n, c, flat), dtype=x.dtype, device=x.device)
    out = ops.scatter(out, 2, idx.reshape(n, c, -1), x.reshape(n, c, -1))
    out = out.reshape((n, c) + tuple(size))
    return out.squeeze(0) if unbatched else out


def max_unpool1d(
    input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None
) -> Tensor:
    r"""Partial inverse of ``max_pool1d``: each value goes back to its argmax position, zeros
    elsewhere."""
    return _max_unpool(1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(
    input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None
) -> Tensor:
    r"""Partial inverse of ``max_pool2d``: each value goes back to its argmax position, zeros
    elsewhere."""
    return _max_unpool(2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(
    input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None
) -> Tensor:
    r"""Partial inverse of ``max_pool3d``: each value goes back to its argmax position, zeros
    elsewhere."""
    return _max_unpool(3, input, indices, kernel_size, stride, padding, output_size)


def adaptive_max_pool1d_with_indices(
    input: Tensor, output_size, return_indices: bool = False
) -> tuple[Tensor, Tensor]:
    """``adaptive_max_pool1d`` returning ``(output, indices)`` always."""
    return _pooling.adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(
    input: Tensor, output_size, return_indices: bool = False
) -> tuple[Tensor, Tensor]:
    """``adaptive_max_pool2d`` returning ``(output, indices)`` always."""
    return _pooling.adaptive_max_pool2d(input, output_size, True)


def adaptive_max_pool3d_with_indices(
    input: Tensor, output_size, return_indices: bool = False
) -> tuple[Tensor, Tensor]:
    """``adaptive_max_pool3d`` returning ``(output, indices)`` always."""
    return _pooling.adaptive_max_pool3d(input, output_size, True)


def rrelu_(
    input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False
) -> Tensor:
    r"""In-place version of :func:`rrelu`."""
    return _activation.rrelu(input, lower, upper, training, inplace=True)


# ---- grouped matmul and linear + cross-entropy ---------------------------------------------
def grouped_mm(
    mat_a: Tensor,
    mat_b: Tensor,
    *,
    offs: Tensor | None = None,
    bias: Tensor | None = None,
    out_dtype=None,
) -> Tensor:
    r"""Matrix products of groups (mixture-of-experts layers).

    * 3D x 3D: a batched matmul (one group per batch entry).
    * 2D x 3D: rows of ``mat_a`` split at the cumulative ``offs`` into groups; group ``g``
      is multiplied by ``mat_b[g]``.
    * 3D x 2D: columns of ``mat_b`` split by ``offs``; ``mat_a[g]`` times group ``g``.
    * 2D x 2D: the shared dim split by ``offs``: one (M, N) product per group, stacked.
    """
    if bias is not None:
        raise RuntimeError("bias is not supported yet")
    a2, b2 = mat_a.dim() == 2, mat_b.dim() == 2
    if not a2 and not b2:
        out = ops.matmul(mat_a, mat_b)
    else:
        if offs is None:
            raise RuntimeError("offs must be defined for 2d inputs")
        ends = [int(v) for v in offs._data.tolist()]
        starts = [0] + ends[:-1]
        parts = []
        for g, (s, e) in enumerate(zip(starts, ends)):
            if a2 and b2:
                parts.append(ops.matmul(mat_a.narrow(1, s, e - s), mat_b.narrow(0, s, e - s)))
            elif a2:
                parts.append(ops.matmul(mat_a.narrow(0, s, e - s), mat_b[g]))
            else:
                parts.append(ops.matmul(mat_a[g], mat_b.narrow(1, s, e - s)))
        if a2 and b2:
            out = ops.stack(parts, 0)
        elif a2:
            out = ops.cat(parts, 0) if parts else mat_a[:0] @ mat_b[0]
        else:
            out = ops.cat(parts, 1)
    if out_dtype is not None and out.dtype != out_dtype:
        out = out.to(out_dtype)
    return out


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options=None,
) -> Tensor:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)``.

    ``options`` (chunking strategy) only changes how PyTorch tiles the computation; the result
    is the same, so it is accepted and ignored here."""
    if input.dim() not in (1, 2):
        raise RuntimeError(f"expected input with dimensionality 1 or 2, got {input.dim()}")
    if linear_weight.dim() < 2:
        raise RuntimeError(
            f"expected linear_weight with dimensionality at least 2, got {linear_weight.dim()}"
        )
    in_features = input.shape[-1]
    if in_features != linear_weight.shape[-1]:
        raise RuntimeError(
            "expected equal input and linear_weight last dimensions "
            f"(in_features), got {in_features} and {linear_weight.shape[-1]}, "
            "respectively"
        )
    # a (C, *out_features, in) weight gives K-dimensional logits (N, C, *out_features)
    head = tuple(linear_weight.shape[:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != head:
        raise RuntimeError(f"expected linear_bias shape {head}, got {tuple(linear_bias.shape)}")
    bias = None if linear_bias is None else linear_bias.reshape(-1)
    logits = _linear.linear(input, linear_weight.reshape(-1, in_features), bias)
    logits = logits.reshape(tuple(input.shape[:-1]) + head)
    return _loss.cross_entropy(
        logits,
        target,
        weight,
        ignore_index=(-100 if ignore_index is None else ignore_index),
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
