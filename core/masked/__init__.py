"""``ember.masked``: PyTorch's prototype ``torch.masked`` -- :class:`MaskedTensor` (tensors
whose elements are specified or not: reductions skip the unspecified ones, softmax gives them
no weight, gradients of a MaskedTensor leaf come back masked) and the masked reductions on
plain tensors (``ember.masked.sum(x, dim, mask=m)``). See core/masked/_core.py for what
differs from PyTorch."""

from ._core import MaskedTensor, as_masked_tensor, is_masked_tensor, masked_tensor
from ._ops import amax, amin, argmax, argmin, log_softmax, mean, prod, softmax, sum

__all__ = [
    "MaskedTensor",
    "as_masked_tensor",
    "is_masked_tensor",
    "masked_tensor",
    "sum",
    "mean",
    "prod",
    "amin",
    "amax",
    "argmin",
    "argmax",
    "softmax",
    "log_softmax",
]
