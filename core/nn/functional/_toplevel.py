"""``torch.<name>`` spellings of nn ops whose top-level signature differs from ``F.<name>``.

PyTorch's top-level functions are the ATen schemas: ``torch.dropout(input, p, train)``,
``torch.batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
cudnn_enabled)``, ``torch.embedding(weight, indices, ...)``, losses with an integer
``reduction`` (0 none, 1 mean, 2 sum), ... ``ember.<name>`` resolves to ``TORCH_SIGNATURES[name]``
when present, otherwise to ``ember.nn.functional.<name>`` (core/__init__.py). The losses with
an integer reduction live in ``_toplevel_loss.py`` and the recurrent layers in
``_toplevel_rnn.py``; both are re-exported here and listed in the one table below.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import ops
from ...amp._state import autocast_op
from ...backend.device import get_array_module
from ...ops import inplace as _inplace
from ...tensor import Tensor
from . import _activation, _conv, _linear, _normalization, _pooling, _vision

# The two families kept in their own files, re-exported here under their old names.
from ._toplevel_loss import (
    _REDUCTIONS,  # noqa: F401
    _reduction,  # noqa: F401
    binary_cross_entropy_with_logits,
    cosine_embedding_loss,
    ctc_loss,
    hinge_embedding_loss,
    kl_div,
    margin_ranking_loss,
    poisson_nll_loss,
    triplet_margin_loss,
)
from ._toplevel_rnn import (
    _cell,  # noqa: F401
    _layer_params,  # noqa: F401
    _recurrent,  # noqa: F401
    _run_rnn,  # noqa: F401
    gru,
    gru_cell,
    lstm,
    lstm_cell,
    rnn_relu,
    rnn_relu_cell,
    rnn_tanh,
    rnn_tanh_cell,
)


# ---- dropout: (input, p, train) ------------------------------------------------------------
def dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear.dropout(input, p, train)


def dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear.dropout(input, p, train, inplace=True)


def alpha_dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear.alpha_dropout(input, p, train)


def alpha_dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear.alpha_dropout(input, p, train, inplace=True)


def _feature_shape(input: Tensor) -> tuple:
    if input.dim() < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    return input._data.shape[:2] + (1,) * (input.dim() - 2)


def feature_dropout(input: Tensor, p: float, train: bool, _in_place: bool = False) -> Tensor:
    _linear._check_p(p)
    if not train or p == 0.0:
        return input
    mask = _linear._keep_mask(input, p, _feature_shape(input))
    return _linear._apply_mask(input, mask, _in_place)


def feature_dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return feature_dropout(input, p, train, True)


def feature_alpha_dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear._alpha_dropout(input, p, train, False, _feature_shape(input))


def feature_alpha_dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return _linear._alpha_dropout(input, p, train, True, _feature_shape(input))


# ---- normalisation: weight/bias first, cudnn flags ------------------------------------------
def layer_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enable: bool = True,
) -> Tensor:
    return _normalization.layer_norm(input, normalized_shape, weight, bias, eps)


def batch_norm(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool,
) -> Tensor:
    return _normalization.batch_norm(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enabled: bool = True,
) -> Tensor:
    return _normalization.group_norm(input, num_groups, weight, bias, eps)


def instance_norm(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool,
) -> Tensor:
    return _normalization.instance_norm(
        input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps
    )


# ---- embedding: weight first -------------------------------------------------------------
def embedding(
    weight: Tensor,
    indices: Tensor,
    padding_idx: int = -1,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    # ATen's padding_idx -1 means "none" (F's None); F normalises negative indices otherwise
    pad = None if padding_idx == -1 else padding_idx
    return _linear.embedding(indices, weight, pad, None, 2.0, scale_grad_by_freq, sparse)


def embedding_bag(
    weight: Tensor,
    indices: Tensor,
    offsets: Tensor,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
):
    """ATen's embedding_bag (mode 0 sum, 1 mean, 2 max): ``(output, offset2bag, bag_size,
    max_indices)``; the last three are bookkeeping without gradient (ATen's layout: empty
    ``offset2bag`` in sum mode, per-dimension argmax rows in max mode)."""
    name = ("sum", "mean", "max")[int(mode)]
    out = _linear.embedding_bag(
        indices,
        weight,
        offsets,
        None,
        2.0,
        scale_grad_by_freq,
        name,
        sparse,
        per_sample_weights,
        include_last_offset,
        padding_idx,
    )
    xp = get_array_module(indices._data)
    idx = indices._data.reshape(-1).astype(np.int64)
    if indices.dim() == 2:
        b, length = indices.shape
        starts = xp.arange(0, b * length, length, dtype=np.int64)
    else:
        starts = offsets._data.astype(np.int64)
        if include_last_offset:
            starts = starts[:-1]
    n, bags = idx.shape[0], starts.shape[0]
    # bag of each index: how many bag starts lie at or before it
    offset2bag = xp.searchsorted(starts, xp.arange(n), side="right") - 1
    bag_size = xp.bincount(offset2bag, minlength=bags)[:bags].astype(np.int64)
    if name == "max":
        rows = weight._data[idx]
        max_idx = xp.zeros((bags, weight.shape[1]), dtype=np.int64)
        for k in range(bags):  # bookkeeping only: a short Python loop over bags
            sel = offset2bag == k
            if bool(sel.any()):
                max_idx[k] = idx[sel][rows[sel].argmax(0)]
    else:
        max_idx = bag_size.copy() if name == "mean" else xp.zeros(bags, dtype=np.int64)
    if name == "sum":  # ATen fills neither in sum mode
        offset2bag = xp.zeros(0, dtype=np.int64)
        bag_size = xp.zeros(bags, dtype=np.int64)
    wrap = Tensor._wrap
    return out, wrap(offset2bag.astype(np.int64)), wrap(bag_size), wrap(max_idx)


# (losses with ATen's integer reduction: _toplevel_loss.py; recurrent: _toplevel_rnn.py)


# ---- convolution, pooling, padding, sampling -----------------------------------------------
def convolution(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
) -> Tensor:
    nd = weight.dim() - 2
    if not 1 <= nd <= 3:
        raise RuntimeError(
            f"Expected 3D, 4D or 5D weight for convolution, but got {weight.dim()}D weight"
        )
    if transposed:
        fn = (_conv.conv_transpose1d, _conv.conv_transpose2d, _conv.conv_transpose3d)[nd - 1]
        return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)
    fn = (_conv.conv1d, _conv.conv2d, _conv.conv3d)[nd - 1]
    return fn(input, weight, bias, stride, padding, dilation, groups)


def adaptive_max_pool1d(input: Tensor, output_size) -> tuple[Tensor, Tensor]:
    return _pooling.adaptive_max_pool1d(input, output_size, return_indices=True)


def constant_pad_nd(input: Tensor, pad: Sequence[int], value: float = 0) -> Tensor:
    return _vision.pad(input, list(pad), "constant", value)


def grid_sampler(
    input: Tensor, grid: Tensor, interpolation_mode: int, padding_mode: int, align_corners: bool
) -> Tensor:
    from ._grid import GRID_SAMPLE_INTERPOLATION_MODES, GRID_SAMPLE_PADDING_MODES, grid_sample

    modes = {v: k for k, v in GRID_SAMPLE_INTERPOLATION_MODES.items()}
    pads = {v: k for k, v in GRID_SAMPLE_PADDING_MODES.items()}
    return grid_sample(
        input, grid, modes[int(interpolation_mode)], pads[int(padding_mode)], align_corners
    )


@autocast_op("cdist")
def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str | None = None) -> Tensor:
    r"""The :math:`p`-norm distance between each row of ``x1`` (..., P, M) and each row of
    ``x2`` (..., R, M): a (..., P, R) tensor."""
    if x1.dim() < 2 or x2.dim() < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {x1.dim()}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(
            f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: {x2.shape[-1]}"
        )
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    diff = ops.unsqueeze(x1, -2) - ops.unsqueeze(x2, -3)
    return ops.vector_norm(diff, p, -1)


# ---- activations ---------------------------------------------------------------------------
def rrelu(
    input: Tensor,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    generator=None,
) -> Tensor:
    return _activation.rrelu(input, lower, upper, training)


def rrelu_(
    input: Tensor,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    generator=None,
) -> Tensor:
    return _activation.rrelu(input, lower, upper, training, inplace=True)


sigmoid_ = _inplace.make_inplace(ops.sigmoid, "sigmoid_")
tanh_ = _inplace.make_inplace(ops.tanh, "tanh_")


TORCH_SIGNATURES = {
    f.__name__: f
    for f in (
        dropout,
        dropout_,
        alpha_dropout,
        alpha_dropout_,
        feature_dropout,
        feature_dropout_,
        feature_alpha_dropout,
        feature_alpha_dropout_,
        layer_norm,
        batch_norm,
        group_norm,
        instance_norm,
        embedding,
        embedding_bag,
        kl_div,
        binary_cross_entropy_with_logits,
        cosine_embedding_loss,
        hinge_embedding_loss,
        margin_ranking_loss,
        poisson_nll_loss,
        triplet_margin_loss,
        ctc_loss,
        convolution,
        adaptive_max_pool1d,
        constant_pad_nd,
        grid_sampler,
        cdist,
        rrelu,
        rrelu_,
        lstm,
        gru,
        rnn_tanh,
        rnn_relu,
        lstm_cell,
        gru_cell,
        rnn_tanh_cell,
        rnn_relu_cell,
    )
}
TORCH_SIGNATURES.update(sigmoid_=sigmoid_, tanh_=tanh_)
