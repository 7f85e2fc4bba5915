"""Functional linear layers, embeddings, dropout and distance helpers (``ember.nn.functional``)."""

from __future__ import annotations

import warnings

import numpy as np

from ... import ops
from ..._torch_function import torch_function_dispatch
from ...amp._state import autocast_op
from ...autograd import grad_mode
from ...backend.device import get_array_module
from ...ops import inplace as _inplace
from ...ops import nn_ops
from ...ops.embedding_ops import Embedding as _EmbeddingFn
from ...ops.embedding_ops import EmbeddingBag as _EmbeddingBagFn
from ...overrides import _tensor_like, handle_torch_function
from ...random import gen_for
from ...tensor import Tensor

__all__ = [
    "linear",
    "bilinear",
    "embedding",
    "embedding_bag",
    "one_hot",
    "normalize",
    "cosine_similarity",
    "pairwise_distance",
    "pdist",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
]

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
    """PyTorch's scalar-type name of a tensor's dtype (``Float``, ``Long``...)."""
    return _SCALAR_NAMES.get(t.dtype.name, t.dtype.name)  # quantized: quint8 ...


@autocast_op("linear")
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""Apply :math:`y = xA^T + b` (one matmul and an in-place bias add)."""
    x, w = input._data, weight._data
    if x.dtype != w.dtype or (bias is not None and bias._data.dtype != x.dtype):
        other = weight if x.dtype != w.dtype else bias
        raise RuntimeError(
            f"mat1 and mat2 must have the same dtype, but got {scalar_name(input)}"
            f" and {scalar_name(other)}"
        )
    if x.ndim == 0 or w.ndim not in (1, 2) or x.shape[-1] != w.shape[-1]:
        if x.ndim == 0:
            raise RuntimeError(
                f"both arguments to linear need to be at least 1D, but they are 0D and {w.ndim}D"
            )
        rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
        ws = w.shape if w.ndim == 2 else (1, w.shape[0])
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{x.shape[-1]} and {ws[1]}x{ws[0]})"
        )
    if w.ndim == 1:  # a vector weight gives one output without the feature dim
        out = ops.matmul(input, weight)
        return out + bias if bias is not None else out
    return nn_ops.Linear.apply(input, weight, bias)


@autocast_op("bilinear")
def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None):
    r"""Apply :math:`y = x_1^T A x_2 + b` with ``weight`` of shape (out, in1, in2)."""
    if input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(
            f"bilinear(): input batch dimensions do not match: got "
            f"{list(input1.shape[:-1])} and {list(input2.shape[:-1])}"
        )
    if (
        weight.dim() != 3
        or input1.shape[-1] != weight.shape[1]
        or input2.shape[-1] != weight.shape[2]
    ):
        raise RuntimeError(
            f"bilinear(): input sizes do not match weight: got input1 {list(input1.shape)}, "
            f"input2 {list(input2.shape)} and weight {list(weight.shape)}"
        )
    o, i, j = weight.shape
    lead = input1.shape[:-1]
    x1 = input1.reshape(-1, i)
    x2 = input2.reshape(-1, j)
    # (N, i) @ (i, o*j) -> (N, o, j), then contract j against x2
    t = ops.matmul(x1, weight.permute(1, 0, 2).reshape(i, o * j)).reshape(-1, o, j)
    out = ops.matmul(t, x2.unsqueeze(-1)).squeeze(-1)
    if bias is not None:
        out = out + bias
    return out.reshape(*lead, o)


def _renorm_rows_(weight: Tensor, indices: Tensor, max_norm: float, norm_type: float) -> None:
    """Rescale, in place, the looked-up rows whose norm exceeds ``max_norm`` (no grad)."""
    xp = get_array_module(weight._data)
    rows = xp.unique(indices._data.reshape(-1))
    w = weight._data
    norms = xp.linalg.norm(w[rows].astype(np.float64), ord=norm_type, axis=1)
    big = norms > max_norm
    if big.any():
        scale = (max_norm / (norms[big] + 1e-7)).astype(w.dtype)
        w[rows[big]] *= scale[:, None]
        weight._version_counter[0] += 1


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    r"""Look up rows of ``weight`` by the integer ``input`` indices."""
    # a DTensor (``__torch_function__``); ``weight`` is a Parameter (a subclass): isinstance
    if (type(input) is not Tensor and _tensor_like(input)) or (
        not isinstance(weight, Tensor) and _tensor_like(weight)
    ):
        return handle_torch_function(
            embedding, (input, weight), input, weight, padding_idx, max_norm, norm_type,
            scale_grad_by_freq, sparse,
        )  # fmt: skip
    if input._data.dtype.kind not in "iu":
        raise RuntimeError(
            "Expected tensor for argument #1 'indices' to have one of the "
            "following scalar types: Long, Int; but got "
            f"{input.type()} instead (while checking arguments for embedding)"
        )
    num = weight.shape[0]
    if padding_idx is not None:
        if padding_idx > 0:
            if padding_idx >= num:
                raise AssertionError("Padding_idx must be within num_embeddings")
        elif padding_idx < 0:
            if padding_idx < -num:
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx = num + padding_idx
    idx = input._data
    # (meta indices have no values to check)
    if idx.size and not input.is_meta and (int(idx.min()) < 0 or int(idx.max()) >= num):
        raise IndexError("index out of range in self")
    if max_norm is not None:
        with grad_mode.no_grad():
            _renorm_rows_(weight, input, max_norm, norm_type)
    return _EmbeddingFn.apply(weight, idx, padding_idx, scale_grad_by_freq)


def embedding_bag(
    input: Tensor,
    weight: Tensor,
    offsets: Tensor | None = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> Tensor:
    r"""Sums, means or maxes of bags of embeddings (bags given by rows of a 2-D ``input`` or by
    ``offsets`` into a 1-D ``input``)."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError("mode has to be one of sum, mean or max")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(
            "embedding_bag: per_sample_weights was not None. per_sample_weights is only "
            f"supported for mode='sum' (got mode='{mode}'). Please open a feature request on "
            "the PyTorch GitHub."
        )
    if per_sample_weights is not None and per_sample_weights.shape != input.shape:
        raise ValueError(
            f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) is "
            f"not None, then it must have the same shape as the input "
            f"({input.shape})"
        )
    xp = get_array_module(input._data)
    idx = input._data
    psw = per_sample_weights
    if idx.ndim == 2:
        if offsets is not None:
            raise ValueError(
                "if input is 2D, then offsets has to be None, as input is treated "
                "is a mini-batch of fixed length sequences. However, found offsets "
                f"of type {type(offsets)}"
            )
        b, length = idx.shape
        starts = xp.arange(0, b * length, length, dtype=np.int64)
        idx = idx.reshape(-1)
        if psw is not None:
            psw = psw.reshape(-1)
    elif idx.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.dim() != 1:
            raise ValueError("offsets has to be a 1D Tensor")
        starts = offsets._data.astype(np.int64)
        if include_last_offset:
            starts = starts[:-1]
        if starts.size and (
            int(starts[0]) != 0
            or bool((xp.diff(starts) < 0).any())
            or int(starts[-1]) > idx.shape[0]
        ):
            raise RuntimeError(
                "offsets must start at 0, be non-decreasing and not exceed the number of indices"
            )
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {idx.ndim}")
    num = weight.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num):
        raise IndexError("index out of range in self")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += num
    if max_norm is not None:
        with grad_mode.no_grad():
            _renorm_rows_(weight, Tensor._wrap(idx), max_norm, norm_type)
    return _EmbeddingBagFn.apply(weight, psw, idx, starts, int(starts.shape[0]), mode, padding_idx)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    r"""One-hot encode an int64 tensor: a new last dim of size ``num_classes``."""
    data = tensor._data
    if data.dtype != np.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    xp = get_array_module(data)
    if data.size and int(data.min()) < 0:
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        if data.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(data.max()) + 1
    elif data.size and int(data.max()) >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    out = (data[..., None] == xp.arange(num_classes)).astype(np.int64)
    return Tensor._wrap(out)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    r"""Divide by the :math:`L_p` norm over ``dim`` (at least ``eps``)."""
    denom = ops.vector_norm(input, p, dim, keepdim=True).clamp_min(eps)
    return input / denom


@autocast_op("cosine_similarity")
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    r"""Cosine similarity along ``dim``; each norm is clamped to at least ``eps``."""
    n1 = ops.vector_norm(x1, 2, dim, keepdim=True).clamp_min(eps)
    n2 = ops.vector_norm(x2, 2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(
    x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Tensor:
    r""":math:`\lVert x_1 - x_2 + \epsilon \rVert_p` over the last dim."""
    return ops.vector_norm(x1 - x2 + eps, p, -1, keepdim=keepdim)


@autocast_op("pdist")
def pdist(input: Tensor, p: float = 2.0) -> Tensor:
    r"""Distances between every pair of rows of a 2-D input (upper triangle, row major)."""
    n = input.shape[0]
    i, j = np.triu_indices(n, 1)
    return ops.vector_norm(input[i] - input[j], p, -1)


# ---- dropout -------------------------------------------------------------------------------
def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _keep_mask(x: Tensor, p: float, shape) -> np.ndarray:
    """Kept positions scaled by ``1/(1-p)`` (zeros everywhere when ``p == 1``)."""
    # (by device: a meta tensor's mask is a meta array, drawn from no generator)
    xp = get_array_module(x.device if x.is_meta else x._data)
    rng = gen_for(None, xp)
    dt = x._data.dtype if x._data.dtype in (np.float32, np.float64) else np.float32
    u = rng.random(shape, dtype=dt)
    if p >= 1.0:
        return xp.zeros(shape, dtype=x._data.dtype)
    mask = (u >= p).astype(x._data.dtype)
    mask *= 1.0 / (1.0 - p)
    return mask


def _apply_mask(input: Tensor, mask, inplace: bool) -> Tensor:
    if inplace:
        return _inplace.make_inplace(nn_ops.MaskMul.apply, "dropout_")(input, mask)
    return nn_ops.MaskMul.apply(input, mask)


@torch_function_dispatch()
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    r"""Zero each element with probability ``p`` and scale the rest by :math:`1/(1-p)`."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    return _apply_mask(input, _keep_mask(input, p, input._data.shape), inplace)


def _feature_dropout(
    input: Tensor, p: float, training: bool, inplace: bool, spatial: int, name: str
) -> Tensor:
    _check_p(p)
    nd = input.dim()
    if nd not in (spatial + 1, spatial + 2):
        raise RuntimeError(
            f"{name}: Expected {spatial + 1}D or {spatial + 2}D input, but "
            f"received a {nd}D input. Note that {name} exists to provide channel-"
            f"wise dropout on inputs with {spatial} spatial dimension, a channel "
            f"dimension, and an optional batch dimension (i.e. {spatial + 1}D or "
            f"{spatial + 2}D inputs)."
        )
    if not training or p == 0.0:
        return input
    lead = 2 if nd == spatial + 2 else 1
    shape = input._data.shape[:lead] + (1,) * (nd - lead)
    return _apply_mask(input, _keep_mask(input, p, shape), inplace)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    r"""Zero whole channels of (N, C, L) or (C, L) inputs."""
    return _feature_dropout(input, p, training, inplace, 1, "dropout1d")


_LEGACY_DIMS_MSG = (
    "{name}: Received a {nd}-D input to {name}, which is deprecated and will result in an "
    "error in a future release. To retain the behavior and silence this warning, please use "
    "dropout instead. Note that {name} exists to provide channel-wise dropout on inputs with "
    "{spatial} spatial dimensions, a channel dimension, and an optional batch dimension (i.e. "
    "{lo}D or {hi}D inputs)."
)


def _legacy_feature_dropout(
    input: Tensor, p: float, training: bool, inplace: bool, spatial: int, batched: bool
) -> Tensor:
    # PyTorch's dropout2d/3d accept any rank >= 1 with a deprecation warning (dropout1d does
    # not): scripts such as pytorch/examples' mnist_rnn put Dropout2d after Linear layers
    _check_p(p)
    nd = input.dim()
    name = f"dropout{spatial}d"
    if nd not in (spatial + 1, spatial + 2):
        warnings.warn(
            _LEGACY_DIMS_MSG.format(
                name=name, nd=nd, spatial=spatial, lo=spatial + 1, hi=spatial + 2
            ),
            stacklevel=3,
        )
    if nd < (2 if batched else 1):
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    if not training or p == 0.0:
        return input
    # the mask covers the (batch, channel) dims of the input as PyTorch reads it: dropout2d
    # takes every input as batched (a 3-D input is (N, C, L)); dropout3d only a 5-D one
    lead = 2 if batched else 1
    shape = input._data.shape[:lead] + (1,) * (nd - lead)
    return _apply_mask(input, _keep_mask(input, p, shape), inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    r"""Zero whole channels of (N, C, H, W) or (C, H, W) inputs.

    As in PyTorch, a 3-D input is read as (N, C, L) (1-D channel dropout, with a warning) and
    other ranks are accepted with a deprecation warning (a 2-D input drops single elements).
    """
    nd = input.dim()
    if nd == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _legacy_feature_dropout(input, p, training, inplace, 2, batched=True)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    r"""Zero whole channels of (N, C, D, H, W) or (C, D, H, W) inputs (other ranks: a
    deprecation warning, the input read as unbatched, as in PyTorch)."""
    return _legacy_feature_dropout(input, p, training, inplace, 3, batched=input.dim() == 5)


_SELU_ALPHA_SCALE = 1.7580993408473766  # -alpha * scale of SELU: the value a dropped unit takes


def _alpha_dropout(input: Tensor, p: float, training: bool, inplace: bool, shape) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    xp = get_array_module(input._data)
    dt = input._data.dtype
    if p == 1.0:
        keep = xp.zeros(shape, dtype=dt)
        a = 0.0
    else:
        keep = (gen_for(None, xp).random(shape) >= p).astype(dt)
        a = 1.0 / np.sqrt((_SELU_ALPHA_SCALE**2 * p + 1) * (1 - p))
    alpha = _SELU_ALPHA_SCALE
    scale = keep * a
    shift = (keep - 1) * (alpha * a) + alpha * a * p
    if inplace:
        fn = _inplace.make_inplace(nn_ops.MaskAffine.apply, "alpha_dropout_")
        return fn(input, scale.astype(dt), shift.astype(dt))
    return nn_ops.MaskAffine.apply(input, scale.astype(dt), shift.astype(dt))


def alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    r"""Dropout that keeps SELU's self-normalising mean and variance."""
    return _alpha_dropout(input, p, training, inplace, input._data.shape)


def feature_alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    r"""Alpha dropout of whole channels."""
    shape = input._data.shape[:2] + (1,) * (input.dim() - 2)
    return _alpha_dropout(input, p, training, inplace, shape)
