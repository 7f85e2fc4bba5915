"""Dropout functions of ``ember.nn.functional`` (``dropout``, ``dropout1d/2d/3d``,
``alpha_dropout``, ``feature_alpha_dropout``), re-exported by ``_linear.py``, where they keep
their ``__module__``."""

from __future__ import annotations

import warnings

import numpy as np

from ..._torch_function import torch_function_dispatch
from ...backend.device import get_array_module
from ...ops import inplace as _inplace
from ...ops import nn_ops
from ...random import gen_for, torch_stream
from ...tensor import Tensor


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _keep_mask(x: Tensor, p: float, shape) -> np.ndarray:
    """Kept positions scaled by ``1/(1-p)`` (zeros everywhere when ``p == 1``)."""
    # (by device: a meta tensor's mask is a meta array, drawn from no generator)
    xp = get_array_module(x.device if x.is_meta else x._data)
    if p >= 1.0:  # (torch draws nothing then)
        return xp.zeros(shape, dtype=x._data.dtype)
    stream = torch_stream(None, xp)
    if stream is not None:  # torch's mask: bernoulli_(1 - p), then divided by 1 - p
        mask = stream.bernoulli_scalar(tuple(shape), 1.0 - p).astype(x._data.dtype)
        mask /= mask.dtype.type(1.0 - p)
        return mask
    dt = x._data.dtype if x._data.dtype in (np.float32, np.float64) else np.float32
    u = gen_for(None, xp).random(shape, dtype=dt)
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
    data = input._data
    order = _dense_order(data)
    if order is None:
        return _apply_mask(input, _keep_mask(input, p, data.shape), inplace)
    # torch draws into ``empty_like(input)``, which keeps a permuted (transposed) layout, and
    # fills it in memory order: draw in that order, then view it in the input's axes
    mask = _keep_mask(input, p, tuple(data.shape[d] for d in order))
    return _apply_mask(input, mask.transpose(np.argsort(order)), inplace)


def _dense_order(a) -> list[int] | None:
    """The axes of a dense, non-overlapping but permuted NumPy array from outermost to
    innermost in memory; None for a C-contiguous one or any other layout."""
    if not isinstance(a, np.ndarray) or a.ndim < 2 or a.flags.c_contiguous:
        return None
    big = [d for d in range(a.ndim) if a.shape[d] != 1]
    order = sorted(big, key=lambda d: -a.strides[d])
    step = a.itemsize
    for d in reversed(order):  # dense: each axis strides over all the axes inside it
        if a.strides[d] != step:
            return None
        step *= a.shape[d]
    order = [d for d in range(a.ndim) if a.shape[d] == 1] + order
    return None if order == sorted(order) else order


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
        stream = torch_stream(None, xp)
        if stream is not None:  # torch's noise: bernoulli_(1 - p)
            keep = stream.bernoulli_scalar(tuple(shape), 1.0 - p).astype(dt)
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


for _fn in (dropout, dropout1d, dropout2d, dropout3d, alpha_dropout, feature_alpha_dropout):
    _fn.__module__ = "ember.nn.functional._linear"
del _fn
