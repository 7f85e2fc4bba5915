"""The ``reduction`` argument of the functional losses: PyTorch's deprecated ``size_average`` /
``reduce`` pair mapped to it, the reduction itself, and the target-size warning.

Shared by every loss file (``_loss``, ``_loss_embedding``, ``_loss_likelihood``, ``_loss_extra``);
``_loss`` re-exports these names.
"""

from __future__ import annotations

import warnings

from ...tensor import Tensor


def legacy_get_string(size_average, reduce, emit_warning: bool = True) -> str:
    """The ``reduction`` string for PyTorch's deprecated ``size_average`` / ``reduce``."""
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        ret = "mean"
    elif reduce:
        ret = "sum"
    else:
        ret = "none"
    if emit_warning:
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{ret}' instead.",
            stacklevel=3,
        )
    return ret


def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_size(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )
