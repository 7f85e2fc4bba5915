"""``torch.<loss>`` spellings that take ATen's integer ``reduction`` (0 none, 1 mean, 2 sum).

Part of the top-level signatures table (``_toplevel.TORCH_SIGNATURES``); each converts the
enum to ``F``'s reduction string and calls the ``F.<loss>`` of ``_loss`` / ``_ctc``.
"""

from __future__ import annotations

import warnings

from ...tensor import Tensor
from . import _loss

_REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction: int | str) -> str:
    """ATen's ``at::Reduction`` enum (0 none, 1 mean, 2 sum) as F's reduction string."""
    if isinstance(reduction, str):
        return reduction
    if not 0 <= int(reduction) <= 2:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return _REDUCTIONS[int(reduction)]


# ---- losses with ATen's integer reduction ---------------------------------------------------
def kl_div(
    input: Tensor, target: Tensor, reduction: int = 1, *, log_target: bool = False
) -> Tensor:
    with warnings.catch_warnings():  # ATen's kl_div has no 'batchmean' advice to give
        warnings.simplefilter("ignore", UserWarning)
        return _loss.kl_div(input, target, reduction=_reduction(reduction), log_target=log_target)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: int = 1,
) -> Tensor:
    return _loss.binary_cross_entropy_with_logits(
        input, target, weight, reduction=_reduction(reduction), pos_weight=pos_weight
    )


def cosine_embedding_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: int = 1
) -> Tensor:
    return _loss.cosine_embedding_loss(
        input1, input2, target, margin, reduction=_reduction(reduction)
    )


def hinge_embedding_loss(
    input: Tensor, target: Tensor, margin: float = 1.0, reduction: int = 1
) -> Tensor:
    return _loss.hinge_embedding_loss(input, target, margin, reduction=_reduction(reduction))


def margin_ranking_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: int = 1
) -> Tensor:
    return _loss.margin_ranking_loss(
        input1, input2, target, margin, reduction=_reduction(reduction)
    )


def poisson_nll_loss(
    input: Tensor, target: Tensor, log_input: bool, full: bool, eps: float, reduction: int
) -> Tensor:
    return _loss.poisson_nll_loss(
        input, target, log_input, full, eps=eps, reduction=_reduction(reduction)
    )


def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: int = 1,
) -> Tensor:
    return _loss.triplet_margin_loss(
        anchor, positive, negative, margin, p, eps, swap, reduction=_reduction(reduction)
    )


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths,
    target_lengths,
    blank: int = 0,
    reduction: int = 1,
    zero_infinity: bool = False,
) -> Tensor:
    from ._ctc import ctc_loss as _ctc_loss

    return _ctc_loss(
        log_probs,
        targets,
        input_lengths,
        target_lengths,
        blank,
        _reduction(reduction),
        zero_infinity,
    )
