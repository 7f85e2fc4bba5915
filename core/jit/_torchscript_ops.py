"""The aten operators of TorchScript code as ember functions, in the aten schemas' argument
order (``torch.conv2d(x, w, b, [1, 1], [0, 0], [1, 1], 1)``, ``torch.batch_norm(x, w, b, rm,
rv, training, momentum, eps, cudnn_enabled)``, ``torch.softmax(x, dim, None)``).

``OPS`` is the explicit table: an op missing from it raises NotImplementedError naming the
op and the archive's code file and line (``_torchscript_prim.TorchNamespace``). Ops that also
have a meaning on numbers, lists or strings (``add``, ``eq``, ``len``, ``slice``...) take it
when no argument is a Tensor. Every op runs through ember's autograd.
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import ember
import ember.nn.functional as F
from ember.tensor import Tensor

from ._torchscript_fused import native_multi_head_attention, rnn, transformer_encoder_layer_fwd
from ._torchscript_prim import SCALAR_OPS, dtype_of, poly

__all__ = ["OPS"]

_INT64_MAX = 9223372036854775807


def _slice(x, dim=0, start=None, end=None, step=1):
    if not isinstance(x, Tensor):  # aten::slice.t(t[] l, int? start, int? end, int step)
        return x[dim : start : 1 if end is None else end]
    if end is not None and end >= _INT64_MAX:
        end = None
    index = [builtins.slice(None)] * x.dim()
    index[dim] = builtins.slice(start, end, step)
    return x[tuple(index)]


def _size(x, dim=None):
    return list(x.shape) if dim is None else x.shape[dim]


def _factory(fn):
    """``torch.zeros(size, dtype, layout, device, pin_memory)`` and its keyword form."""

    def make(size, *args, dtype=None, layout=None, device=None, pin_memory=None, **kw):
        if args:
            dtype, *rest = args
            device = rest[1] if len(rest) > 1 else device
        return fn(list(size), dtype=dtype_of(dtype), device=device)

    return make


def _like(fn):
    def make(x, *args, dtype=None, layout=None, device=None, pin_memory=None, **kw):
        if args:
            dtype, *rest = args
            device = rest[1] if len(rest) > 1 else device
        return fn(x, dtype=dtype_of(dtype), device=device)

    return make


def _full(size, fill_value, dtype=None, layout=None, device=None, pin_memory=None):
    return ember.full(list(size), fill_value, dtype=dtype_of(dtype), device=device)


def _full_like(x, fill_value, dtype=None, layout=None, device=None, pin_memory=None, **kw):
    return ember.full_like(x, fill_value, dtype=dtype_of(dtype), device=device)


def _arange(*args, dtype=None, layout=None, device=None, pin_memory=None):
    nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return ember.arange(*nums, dtype=dtype_of(dtype), device=device)


def _tensor(data, dtype=None, device=None, requires_grad=False):
    return ember.tensor(data, dtype=dtype_of(dtype), device=device, requires_grad=requires_grad)


def _to(x, *args, dtype=None, device=None, non_blocking=False, copy=False, **kw):
    for a in args:
        if isinstance(a, Tensor):
            return x.to(a)
        if isinstance(a, int) and not isinstance(a, bool):
            dtype = a if dtype is None else dtype
        elif isinstance(a, (str, ember.device)):
            device = a
    out = x
    if device is not None:
        out = out.to(device)
    if dtype is not None:
        out = out.to(dtype_of(dtype))
    return out.clone() if copy and out is x else out


def _reduce(fn):
    """``sum``/``mean``: ``(x, dtype=None)`` or ``(x, dim, keepdim=False, dtype=None)``."""

    def reduce(x, dim=None, keepdim=False, dtype=None):
        if not isinstance(x, Tensor):
            return builtins.sum(x) if fn is ember.sum else builtins.sum(x) / builtins.len(x)
        if dim is not None and not isinstance(dim, (list, tuple, int)):
            dim, dtype = None, dim  # sum(x, dtype) overload
        if isinstance(dim, (list, tuple)) and not dim:
            dim = None
        out = fn(x) if dim is None else fn(x, tuple(dim) if isinstance(dim, list) else dim, keepdim)
        return out if dtype is None else out.to(dtype_of(dtype))

    return reduce


def _minmax(fn, scalar):
    def op(x, *args):
        if not isinstance(x, Tensor):
            return scalar(x, *args) if args else scalar(x)
        if args and isinstance(args[0], Tensor):
            return (ember.maximum if fn is ember.max else ember.minimum)(x, args[0])
        return fn(x, *args)

    return op


def _squeeze(x, dim=None):
    if isinstance(dim, (list, tuple)):
        for d in sorted((d % x.dim() for d in dim), reverse=True):
            x = ember.squeeze(x, d)
        return x
    return ember.squeeze(x) if dim is None else ember.squeeze(x, dim)


def _convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups, *_):
    n = w.dim() - 2
    if transposed:
        fn = getattr(F, f"conv_transpose{n}d")
        return fn(x, w, b, stride, padding, output_padding, groups, dilation)
    return getattr(F, f"conv{n}d")(x, w, b, stride, padding, dilation, groups)


def _batch_norm(x, w, b, rm, rv, training, momentum, eps, cudnn_enabled=True):
    return F.batch_norm(x, rm, rv, w, b, training, momentum, eps)


def _instance_norm(x, w, b, rm, rv, use_input_stats, momentum, eps, cudnn_enabled=True):
    return F.instance_norm(x, rm, rv, w, b, use_input_stats, momentum, eps)


def _upsample(mode):
    def up(x, output_size=None, *rest, **kw):
        align = None
        scales = kw.get("scale_factors")
        if mode != "nearest" and rest and isinstance(rest[0], bool):
            align, rest = rest[0], rest[1:]
        align = kw.get("align_corners", align)
        if rest and isinstance(rest[0], (list, tuple)):
            scales = rest[0]
        elif rest and rest[0] is not None and output_size is None:
            scales = [r for r in rest if r is not None]
        size = list(output_size) if output_size is not None else None
        return F.interpolate(x, size=size, scale_factor=None if size else scales, mode=mode,
                             align_corners=align)  # fmt: skip

    return up


def _method(name: str):
    """An aten op whose schema is the Tensor method's (``view(self, size)``)."""
    return lambda x, *a, **k: getattr(x, name)(*a, **k)


def _binary(name: str, scalar):
    return poly(getattr(ember, name), scalar)


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)


def _embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return F.embedding(indices, weight, None if padding_idx == -1 else padding_idx)


def _where(cond, x=None, y=None):
    return ember.where(cond) if x is None else ember.where(cond, x, y)


def _dropout(x, p, train):
    return F.dropout(x, p, training=train)


def _dropout_(x, p, train):
    return F.dropout(x, p, training=train, inplace=True)


def _alias(x, *a, **k):
    return x


def _add_(x, other, alpha=1):
    return x.add_(other, alpha=alpha) if alpha != 1 else x.add_(other)


def _logic(name: str, scalar):
    def op(*args):
        if builtins.any(isinstance(a, Tensor) for a in args):
            return getattr(ember, name)(*args)
        return scalar(*args)

    return op


def _all_any(fn, scalar):
    def op(x, *args):
        return fn(x, *args) if isinstance(x, Tensor) else scalar(x)

    return op


_S = SCALAR_OPS

OPS: dict[str, Any] = {
    # arithmetic and comparisons on tensors, numbers, lists and strings
    "add": poly(ember.add, _S["_scalar_add"]),
    "sub": poly(ember.sub, _S["_scalar_sub"]),
    "mul": _binary("mul", operator.mul),
    "div": poly(ember.div, _S["_scalar_div"]),
    "floordiv": poly(ember.floor_divide, _S["floordiv"]),
    "floor_divide": ember.floor_divide,
    "remainder": _binary("remainder", operator.mod),
    "fmod": poly(ember.fmod, lambda a, b: a % b),
    "pow": _binary("pow", operator.pow),
    "neg": poly(ember.neg, operator.neg),
    "abs": poly(ember.abs, builtins.abs),
    "eq": _binary("eq", operator.eq),
    "ne": _binary("ne", operator.ne),
    "lt": _binary("lt", operator.lt),
    "le": _binary("le", operator.le),
    "gt": _binary("gt", operator.gt),
    "ge": _binary("ge", operator.ge),
    "max": _minmax(ember.max, builtins.max),
    "min": _minmax(ember.min, builtins.min),
    "maximum": ember.maximum,
    "minimum": ember.minimum,
    "rsub": ember.rsub,
    "sqrt": poly(ember.sqrt, _S["sqrt"]),
    "exp": poly(ember.exp, _S["exp"]),
    "log": poly(ember.log, _S["log"]),
    "floor": poly(ember.floor, _S["floor"]),
    "ceil": poly(ember.ceil, _S["ceil"]),
    "sum": _reduce(ember.sum),
    "mean": _reduce(ember.mean),
    "all": _all_any(ember.all, builtins.all),
    "any": _all_any(ember.any, builtins.any),
    "logical_not": _logic("logical_not", operator.not_),
    "logical_and": ember.logical_and,
    "logical_or": ember.logical_or,
    "bitwise_not": ember.bitwise_not,
    # size / shape / indexing
    "size": _size,
    "dim": lambda x: x.dim(),
    "numel": lambda x: x.numel(),
    "len": lambda x: x.shape[0] if isinstance(x, Tensor) else builtins.len(x),
    "select": poly(ember.select, lambda xs, i: xs[i]),
    "slice": _slice,
    "narrow": ember.narrow,
    "index_select": ember.index_select,
    "gather": ember.gather,
    "view": _method("view"),
    "reshape": _method("reshape"),
    "view_as": _method("view_as"),
    "reshape_as": _method("reshape_as"),
    "permute": _method("permute"),
    "transpose": ember.transpose,
    "t": ember.t,
    "contiguous": lambda x, memory_format=0: x.contiguous(),
    "expand": lambda x, size, implicit=False: x.expand(list(size)),
    "expand_as": ember.expand_as,
    "repeat": _method("repeat"),
    "unsqueeze": ember.unsqueeze,
    "squeeze": _squeeze,
    "flatten": ember.flatten,
    "unflatten": lambda x, dim, sizes: x.unflatten(dim, list(sizes)),
    "chunk": ember.chunk,
    "split": ember.split,
    "split_with_sizes": ember.split,
    "unbind": ember.unbind,
    "cat": lambda xs, dim=0: ember.cat(list(xs), dim),
    "concat": lambda xs, dim=0: ember.cat(list(xs), dim),
    "stack": lambda xs, dim=0: ember.stack(list(xs), dim),
    "flip": ember.flip,
    "roll": ember.roll,
    "where": _where,
    "masked_fill": ember.masked_fill,
    "masked_fill_": _method("masked_fill_"),
    "clamp": ember.clamp,
    "clamp_min": lambda x, m: ember.clamp(x, min=m),
    "clamp_max": lambda x, m: ember.clamp(x, max=m),
    "argmax": ember.argmax,
    "topk": ember.topk,
    "sort": ember.sort,
    "cumsum": lambda x, dim, dtype=None: ember.cumsum(x, dim, dtype=dtype_of(dtype)),
    "einsum": lambda eq, xs, path=None: ember.einsum(eq, *xs),
    # creation and conversion
    "zeros": _factory(ember.zeros),
    "ones": _factory(ember.ones),
    "empty": _factory(ember.zeros),
    "full": _full,
    "zeros_like": _like(ember.zeros_like),
    "ones_like": _like(ember.ones_like),
    "empty_like": _like(ember.zeros_like),
    "full_like": _full_like,
    "arange": _arange,
    "tensor": _tensor,
    "to": _to,
    "type_as": lambda x, other: x.to(other.dtype),
    "detach": lambda x: x.detach(),
    "clone": lambda x, memory_format=None: x.clone(),
    "is_floating_point": lambda x: x.is_floating_point(),
    "Float": float,
    "Int": int,
    "Bool": bool,
    "item": lambda x: x.item(),
    # in-place updates (BatchNorm's num_batches_tracked.add_(1))
    "add_": _add_,
    "mul_": _method("mul_"),
    "sub_": _method("sub_"),
    "div_": _method("div_"),
    "copy_": lambda x, src, non_blocking=False: x.copy_(src),
    "zero_": _method("zero_"),
    "fill_": _method("fill_"),
    # linear algebra
    "matmul": ember.matmul,
    "mm": ember.mm,
    "bmm": ember.bmm,
    "baddbmm": lambda x, b1, b2, beta=1, alpha=1: ember.baddbmm(x, b1, b2, beta=beta, alpha=alpha),
    "addmm": lambda x, m1, m2, beta=1, alpha=1: ember.addmm(x, m1, m2, beta=beta, alpha=alpha),
    "linear": F.linear,
    # activations
    "relu": ember.relu,
    "relu_": lambda x: F.relu(x, inplace=True),
    "sigmoid": ember.sigmoid,
    "tanh": ember.tanh,
    "gelu": lambda x, approximate="none": F.gelu(x, approximate=approximate),
    "silu": F.silu,
    "silu_": lambda x: F.silu(x, inplace=True),
    "leaky_relu": lambda x, slope=0.01: F.leaky_relu(x, slope),
    "leaky_relu_": lambda x, slope=0.01: F.leaky_relu(x, slope, inplace=True),
    "hardtanh": lambda x, lo=-1.0, hi=1.0: F.hardtanh(x, lo, hi),
    "hardtanh_": lambda x, lo=-1.0, hi=1.0: F.hardtanh(x, lo, hi, inplace=True),
    "hardswish": F.hardswish,
    "hardswish_": lambda x: F.hardswish(x, inplace=True),
    "hardsigmoid": F.hardsigmoid,
    "hardsigmoid_": lambda x: F.hardsigmoid(x, inplace=True),
    "elu": lambda x, alpha=1.0, scale=1.0, input_scale=1.0: F.elu(x, alpha),
    "softplus": lambda x, beta=1.0, threshold=20.0: F.softplus(x, beta, threshold),
    "mish": F.mish,
    "softmax": lambda x, dim, dtype=None: F.softmax(x, dim, dtype=dtype_of(dtype)),
    "log_softmax": lambda x, dim, dtype=None: F.log_softmax(x, dim, dtype=dtype_of(dtype)),
    "dropout": _dropout,
    "dropout_": _dropout_,
    "feature_dropout": lambda x, p, train: F.dropout2d(x, p, training=train),
    "alpha_dropout": lambda x, p, train: F.alpha_dropout(x, p, training=train),
    # layers
    "conv1d": F.conv1d,
    "conv2d": F.conv2d,
    "conv3d": F.conv3d,
    "conv_transpose1d": F.conv_transpose1d,
    "conv_transpose2d": F.conv_transpose2d,
    "conv_transpose3d": F.conv_transpose3d,
    "_convolution": _convolution,
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "layer_norm": lambda x, shape, w=None, b=None, eps=1e-5, cudnn=True: F.layer_norm(
        x, list(shape), w, b, eps
    ),
    "group_norm": lambda x, g, w=None, b=None, eps=1e-5, cudnn=True: F.group_norm(x, g, w, b, eps),
    "max_pool1d": F.max_pool1d,
    "max_pool2d": F.max_pool2d,
    "max_pool3d": F.max_pool3d,
    "avg_pool1d": F.avg_pool1d,
    "avg_pool2d": F.avg_pool2d,
    "avg_pool3d": F.avg_pool3d,
    "adaptive_avg_pool1d": F.adaptive_avg_pool1d,
    "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "adaptive_avg_pool3d": F.adaptive_avg_pool3d,
    "adaptive_max_pool2d": F.adaptive_max_pool2d,
    "upsample_nearest2d": _upsample("nearest"),
    "upsample_bilinear2d": _upsample("bilinear"),
    "pad": lambda x, pad, mode="constant", value=None: F.pad(x, list(pad), mode, value),
    "constant_pad_nd": lambda x, pad, value=0: F.pad(x, list(pad), "constant", value),
    "embedding": _embedding,
    "scaled_dot_product_attention": _sdpa,
    "pixel_shuffle": F.pixel_shuffle,
    "lstm": rnn("LSTM"),
    "gru": rnn("GRU"),
    "rnn_tanh": rnn("RNN_TANH"),
    "rnn_relu": rnn("RNN_RELU"),
    "_alias": _alias,
    "_native_multi_head_attention": native_multi_head_attention,
    "_transformer_encoder_layer_fwd": transformer_encoder_layer_fwd,
}

# ops only on numbers, lists and strings (len, append, format, __is__, ...)
for _name, _fn in SCALAR_OPS.items():
    if _name not in OPS and not _name.startswith(("_scalar", "_slice")):
        OPS[_name] = _fn
