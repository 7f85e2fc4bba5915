"""Functional normalisation layers (``ember.nn.functional``): batch, layer, group, instance and
RMS norm. Batch and layer norm are fused Functions; group and instance norm reuse them."""

from __future__ import annotations

import math

from ... import ops
from ..._dispatch_decomp import as_one_op
from ...amp._state import autocast_op
from ...backend.device import get_array_module
from ...backend.finfo import np_finfo
from ...ops import norm_group_rms, norm_ops
from ...overrides import _tensor_like, handle_torch_function
from ...tensor import Tensor

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"]


def _data(t: Tensor | None):
    return None if t is None else t._data


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Normalise over every dim but 1 (batch statistics when ``training``, else the running
    ones); running statistics are updated in place while training."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(
            batch_norm, (input,), input, running_mean, running_var, weight, bias, training,
            momentum, eps,
        )  # fmt: skip
    if input.dim() < 2:
        raise ValueError(f"Expected 2D or more input (got {input.dim()}D input)")
    if training:
        size = 1
        for i, s in enumerate(input.shape):
            if i != 1:
                size *= s
        if size == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input "
                f"size {input.shape}"
            )
    elif running_mean is None or running_var is None:
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
    c = input.shape[1]
    for name, t in (
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        if t is not None and t.numel() != c:
            raise RuntimeError(f"{name} should contain {c} elements not {t.numel()}")
    out = norm_ops.BatchNorm.apply(
        input, weight, bias, _data(running_mean), _data(running_var), training, momentum, eps
    )
    if training:
        for t in (running_mean, running_var):
            if t is not None:
                t._version_counter[0] += 1
    return out


@autocast_op("layer_norm")
def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    nd = len(shape)
    # the arrays' shapes (plain tuples): building ``Size`` objects cost ~2 us a call here
    in_shape = input._data.shape
    if len(in_shape) < nd or in_shape[len(in_shape) - nd :] != shape:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(str(s) for s in shape)}], but got input of size{input.shape}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t._data.shape != shape:
            raise RuntimeError(
                f"Expected {name} to be of same shape as normalized_shape, but "
                f"got {name} of shape {t.shape} and normalized_shape = "
                f"{list(shape)}"
            )
    return norm_ops.LayerNorm.apply(input, weight, bias, nd, eps)


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    return t.reshape((1, -1) + (1,) * (ndim - 2))


@autocast_op("group_norm")
def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Normalise each group of ``C / num_groups`` channels (with their spatial dims)."""
    # the arrays' shapes and sizes (plain tuples and ints: ``Size`` objects and ``numel()``
    # calls were ~2 us of a small group norm's call)
    in_shape = input._data.shape
    if len(in_shape) < 2:
        raise RuntimeError(
            f"Expected at least 2 dimensions for input tensor but received {len(in_shape)}"
        )
    n, c = in_shape[0], in_shape[1]
    if c % num_groups != 0:
        raise RuntimeError(
            f"Expected number of channels in input to be divisible by "
            f"num_groups, but got input of shape {list(in_shape)} and "
            f"num_groups={num_groups}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        # torch's test and words: a vector of C elements (a (2, 2) weight for C = 4 is refused)
        if t is not None and (len(t._data.shape) != 1 or t._data.shape[0] != c):
            raise RuntimeError(
                f"Expected {name} to be a vector of size equal to the number of channels in "
                f"input, but got {name} of shape {list(t._data.shape)} and input of shape "
                f"{list(in_shape)}"
            )
    if input._data.size == 0:  # (the fused op's row reshape needs at least one element)
        # (no -1: an empty batch leaves it undetermined, torch returns the empty result)
        x = input.reshape(n, num_groups, math.prod(in_shape[1:]) // num_groups)
        out = norm_ops.LayerNorm.apply(x, None, None, 1, eps).reshape(input.shape)
        if weight is not None:
            out = out * _channel_view(weight, input.dim())
        if bias is not None:
            out = out + _channel_view(bias, input.dim())
        return out
    return norm_group_rms.GroupNorm.apply(input, weight, bias, num_groups, eps)


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Normalise each (sample, channel) over its spatial dims; with running statistics, they
    track the batch average of the per-instance statistics."""
    if use_input_stats:
        spatial = 1
        for s in input.shape[2:]:
            spatial *= s
        if spatial == 1:
            raise ValueError(
                f"Expected more than 1 spatial element when training, got input size {input.shape}"
            )
    if not use_input_stats and (running_mean is None or running_var is None):
        raise RuntimeError(
            "Expected running_mean and running_var to be defined when use_input_stats is false"
        )
    # one op in torch (what jit._get_trace_graph records: fvcore counts aten::instance_norm)
    args = [input, weight, bias, running_mean, running_var, use_input_stats, momentum, eps, True]

    def run():
        return _instance_norm(input, running_mean, running_var, weight, bias, *args[5:8])

    return as_one_op("aten::instance_norm", args, run)


def _instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps):
    n, c = input.shape[0], input.shape[1]
    if use_input_stats and running_mean is None:
        x = input.reshape(n * c, -1)
        out = norm_ops.LayerNorm.apply(x, None, None, 1, eps).reshape(input.shape)
    else:
        # PyTorch's formulation: batch norm of (1, N*C, *) with the running stats repeated N
        # times, then the repeated statistics averaged back.
        x = input.reshape((1, n * c) + tuple(input.shape[2:]))
        xp = get_array_module(input._data)
        rep_mean = None if running_mean is None else xp.tile(running_mean._data, n)
        rep_var = None if running_var is None else xp.tile(running_var._data, n)
        out = norm_ops.BatchNorm.apply(
            x, None, None, rep_mean, rep_var, use_input_stats, momentum, eps
        ).reshape(input.shape)
        if use_input_stats:
            for t, rep in ((running_mean, rep_mean), (running_var, rep_var)):
                if t is not None:
                    t._data[...] = rep.reshape(n, c).mean(0)
                    t._version_counter[0] += 1
    if weight is not None:
        out = out * _channel_view(weight, input.dim())
    if bias is not None:
        out = out + _channel_view(bias, input.dim())
    return out


_EPS: dict = {}  # rms_norm's default eps by array dtype (np_finfo is ~1.5 us a call)


def _default_eps(npd) -> float:
    eps = _EPS.get(npd)
    if eps is None:
        eps = _EPS[npd] = float(np_finfo(npd).eps)
    return eps


def rms_norm(
    input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None
) -> Tensor:
    r""":math:`x / \sqrt{\text{mean}(x^2) + \epsilon}` over the trailing dims, times weight;
    ``eps`` defaults to the dtype's machine epsilon."""
    if type(input) is not Tensor and _tensor_like(input):  # DTensor
        return handle_torch_function(rms_norm, (input,), input, normalized_shape, weight, eps)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    nd = len(shape)
    # the arrays' shapes (plain tuples), as layer_norm: no Size objects, no dim() calls
    in_shape = input._data.shape
    if len(in_shape) < nd or in_shape[len(in_shape) - nd :] != shape:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(str(s) for s in shape)}], but got input of size{input.shape}"
        )
    if eps is None:
        eps = _default_eps(input._data.dtype)
    if weight is not None and weight._data.shape != shape:
        raise RuntimeError(
            f"Expected weight to be of same shape as normalized_shape, but got "
            f"weight of shape {weight.shape} and normalized_shape = {list(shape)}"
        )
    if 0 in in_shape:  # (not ``_data.size``: a nested tensor's array has no size)
        dims = tuple(range(input.dim() - nd, input.dim()))
        out = input * ops.rsqrt((input * input).mean(dims, keepdim=True) + eps)
        return out * weight if weight is not None else out
    return norm_group_rms.RmsNorm.apply(input, weight, nd, eps)
