"""Functional linear layers, embeddings, dropout and distance helpers (``ember.nn.functional``)."""

from __future__ import annotations

import numpy as np

from ... import ops
from ...amp._state import autocast_op
from ...autograd import grad_mode
from ...backend.device import get_array_module
from ...ops import nn_ops
from ...ops.embedding_ops import Embedding as _EmbeddingFn
from ...ops.embedding_ops import EmbeddingBag as _EmbeddingBagFn
from ...overrides import _tensor_like, handle_torch_function
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


# the dropout family lives in _dropout.py
from ._dropout import (  # noqa: E402, F401 (re-exported: ember.nn.functional._linear.dropout, ...)
    _alpha_dropout,
    _apply_mask,
    _check_p,
    _keep_mask,
    alpha_dropout,
    dropout,
    dropout1d,
    dropout2d,
    dropout3d,
    feature_alpha_dropout,
)
