"""ONNX conversions of the normalization functions (batch / instance / layer / group / RMS /
local-response norm, ``normalize``), embedding lookups and dropout.

Importing this module registers them (``_registry.fn``); ``_ops_nn`` imports it, and re-exports
its names, so the registry's ``_load`` reaches it through ``_ops_nn``.
"""

from __future__ import annotations

import numpy as np

from ..backend.finfo import np_finfo
from . import OnnxExporterError
from ._context import _np_of
from ._ops_basic import _c, dtype_of, rank, typed
from ._registry import fn


# ---- normalization -----------------------------------------------------------------------
def _chan(ctx, v, r):
    """A per-channel vector shaped to broadcast over (N, C, *spatial)."""
    a = _const_np(v)
    if a is not None:
        return ctx.const(a.reshape((-1,) + (1,) * (r - 2)))
    return ctx.op("Reshape", [v, ctx.ints([-1] + [1] * (r - 2))])


@fn("batch_norm")
def batch_norm(
    ctx,
    x,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    r = rank(x)
    c = x.shape[1]
    dt = dtype_of(x)
    if training or running_mean is None:
        # batch statistics: normalize over every axis but the channel axis
        axes = [0] + list(range(2, r))
        mean = ctx.reduce("ReduceMean", x, axes, True)
        d = ctx.op("Sub", [x, mean])
        var = ctx.reduce("ReduceMean", ctx.op("Mul", [d, d]), axes, True)
        y = ctx.op("Div", [d, ctx.op("Sqrt", [ctx.op("Add", [var, _c(ctx, eps, x)])])])
        if weight is not None:
            y = ctx.op("Mul", [y, _chan(ctx, weight, r)])
        if bias is not None:
            y = ctx.op("Add", [y, _chan(ctx, bias, r)])
        return y
    w = weight if weight is not None else np.ones(c, dt)
    b = bias if bias is not None else np.zeros(c, dt)
    if r == 2 or r > 2:
        return ctx.op(
            "BatchNormalization",
            [
                x,
                ctx.name_of(w),
                ctx.name_of(b),
                ctx.name_of(running_mean),
                ctx.name_of(running_var),
            ],
            epsilon=float(eps),
        )


@fn("instance_norm")
def instance_norm(
    ctx,
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
):
    if not use_input_stats:
        return batch_norm(ctx, x, running_mean, running_var, weight, bias, False, momentum, eps)
    c = x.shape[1]
    dt = dtype_of(x)
    w = weight if weight is not None else np.ones(c, dt)
    b = bias if bias is not None else np.zeros(c, dt)
    return ctx.op("InstanceNormalization", [x, ctx.name_of(w), ctx.name_of(b)], epsilon=float(eps))


@fn("layer_norm")
def layer_norm(ctx, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    ns = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    dt = dtype_of(x)
    if ctx.opset < 17:  # LayerNormalization arrived in opset 17
        axes = list(range(-len(ns), 0))
        d = ctx.op("Sub", [x, ctx.reduce("ReduceMean", x, axes, True)])
        var = ctx.reduce("ReduceMean", ctx.op("Mul", [d, d]), axes, True)
        y = ctx.op("Div", [d, ctx.op("Sqrt", [ctx.op("Add", [var, _c(ctx, eps, x)])])])
        y = ctx.op("Mul", [y, weight]) if weight is not None else y
        return ctx.op("Add", [y, bias]) if bias is not None else y
    w = weight if weight is not None else np.ones(ns, dt)
    inputs = [x, ctx.name_of(w)] + ([ctx.name_of(bias)] if bias is not None else [])
    return ctx.op("LayerNormalization", inputs, axis=-len(ns), epsilon=float(eps))


@fn("group_norm")
def group_norm(ctx, x, num_groups, weight=None, bias=None, eps=1e-5):
    r = rank(x)
    g = ctx.op("Reshape", [x, ctx.ints([0, int(num_groups), -1])])
    mean = ctx.reduce("ReduceMean", g, [2], True)
    d = ctx.op("Sub", [g, mean])
    var = ctx.reduce("ReduceMean", ctx.op("Mul", [d, d]), [2], True)
    y = ctx.op("Div", [d, ctx.op("Sqrt", [ctx.op("Add", [var, _c(ctx, eps, x)])])])
    y = ctx.op("Reshape", [y, ctx.shape_of(x)])
    if weight is not None:
        y = ctx.op("Mul", [y, _chan(ctx, weight, r)])
    if bias is not None:
        y = ctx.op("Add", [y, _chan(ctx, bias, r)])
    return y


@fn("rms_norm")
def rms_norm(ctx, x, normalized_shape, weight=None, eps=None):
    ns = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    if eps is None:
        eps = float(np_finfo(dtype_of(x)).eps)
    axes = list(range(-len(ns), 0))
    ms = ctx.reduce("ReduceMean", ctx.op("Mul", [x, x]), axes, True)
    y = ctx.op(
        "Mul", [x, ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [ms, _c(ctx, eps, x)])])])]
    )
    return ctx.op("Mul", [y, weight]) if weight is not None else y


@fn("local_response_norm")
def local_response_norm(ctx, x, size, alpha=1e-4, beta=0.75, k=1.0):
    return ctx.op("LRN", [x], size=int(size), alpha=float(alpha), beta=float(beta), bias=float(k))


@fn("normalize")
def normalize(ctx, x, p=2.0, dim=1, eps=1e-12, out=None):
    if p not in (2, 2.0, 1, 1.0):
        raise OnnxExporterError(f"normalize with p={p} is not converted")
    n = ctx.reduce("ReduceL2" if p in (2, 2.0) else "ReduceL1", x, [dim], True)
    return ctx.op("Div", [x, ctx.op("Max", [n, _c(ctx, eps, x)])])


# ---- embedding and dropout ---------------------------------------------------------------
@fn("embedding")
def embedding(
    ctx,
    x,
    weight,
    padding_idx=None,
    max_norm=None,
    norm_type=2.0,
    scale_grad_by_freq=False,
    sparse=False,
):
    if max_norm is not None:
        raise OnnxExporterError(
            "embedding with max_norm (renormalizes weights in place) is not converted"
        )
    return ctx.op("Gather", [weight, typed(ctx, x, np.int64)], axis=0)


@fn("embedding_bag")
def embedding_bag(
    ctx,
    x,
    weight,
    offsets=None,
    max_norm=None,
    norm_type=2,
    scale_grad_by_freq=False,
    mode="mean",
    sparse=False,
    per_sample_weights=None,
    include_last_offset=False,
    padding_idx=None,
):
    red = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[mode]
    if padding_idx is not None or max_norm is not None:
        raise OnnxExporterError("embedding_bag with padding_idx/max_norm is not converted")
    g = ctx.op("Gather", [weight, typed(ctx, x, np.int64)], axis=0)
    if per_sample_weights is not None:
        g = ctx.op("Mul", [g, ctx.unsqueeze(per_sample_weights, [-1])])
    if rank(x) == 2:
        return ctx.reduce(red, g, [1], False)
    offs = _const_np(offsets)
    if offs is None:
        offs = _np_of(offsets.ex)
        if x.dyn:
            raise OnnxExporterError(
                "embedding_bag with run-time offsets over a dynamic input is not converted"
            )
    n = x.shape[0]
    offs = [int(o) for o in offs] + ([] if include_last_offset else [n])
    bags = []
    for lo, hi in zip(offs[:-1], offs[1:]):
        if hi <= lo:
            raise OnnxExporterError("embedding_bag with an empty bag is not converted")
        sl = ctx.op("Slice", [g, ctx.ints([lo]), ctx.ints([hi]), ctx.ints([0])])
        bags.append(ctx.reduce(red, sl, [0], True))
    return ctx.op("Concat", bags, axis=0)


def _dropout(ctx, x, p=0.5, training=True, inplace=False):
    if not training or p == 0:
        return ctx.op("Identity", [x])
    raise OnnxExporterError(
        "dropout in training mode is random; export with training=TrainingMode.EVAL"
    )


for _n in (
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
):
    fn(_n)(_dropout)


# Imported last (``_ops_nn`` imports this module at its end), so either module may be imported
# first without meeting a half-initialised other.
from ._ops_nn import _const_np  # noqa: E402
