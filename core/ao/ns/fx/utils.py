"""Comparison functions of the numeric suite (``torch.ao.ns.fx.utils``' public ones).

Each takes the value logged in the reference model and the one logged in the other model;
quantized tensors are dequantized first, and tuples / lists are compared item by item (an
RNN's ``(output, (h, c))`` included), so they can be handed to
``extend_logger_results_with_comparison`` for any logged value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import ember

__all__ = [
    "compute_sqnr",
    "compute_normalized_l2_error",
    "compute_cosine_similarity",
    "maybe_dequantize_first_two_tensor_args_and_handle_tuples",
]


def _float(t: Any) -> Any:
    return t.dequantize() if getattr(t, "is_quantized", False) else t


def maybe_dequantize_first_two_tensor_args_and_handle_tuples(f: Callable) -> Callable:
    """Dequantize the first two arguments of ``f`` and map ``f`` over tuples / lists."""

    @functools.wraps(f)
    def inner(x: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, (tuple, list)):
            if not isinstance(y, (tuple, list)) or len(x) != len(y):
                raise ValueError(
                    f"{f.__name__}: cannot compare a {type(x).__name__} of {len(x)} values "
                    f"with {type(y).__name__}"
                )
            return [inner(a, b, *args, **kwargs) for a, b in zip(x, y)]
        return f(_float(x), _float(y), *args, **kwargs)

    return inner


@maybe_dequantize_first_two_tensor_args_and_handle_tuples
def compute_sqnr(x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
    """Signal-to-quantization-noise ratio of ``y`` against the reference ``x``, in dB:
    ``20 * log10(||x|| / ||x - y||)`` (higher is closer)."""
    return 20 * ember.log10(ember.linalg.norm(x) / ember.linalg.norm(x - y))


@maybe_dequantize_first_two_tensor_args_and_handle_tuples
def compute_normalized_l2_error(x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
    """``sqrt(sum((x - y)^2) / sum(x^2))``: the L2 error of ``y`` relative to ``x``."""
    return ember.sqrt(((x - y) ** 2).sum() / (x**2).sum())


@maybe_dequantize_first_two_tensor_args_and_handle_tuples
def compute_cosine_similarity(x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
    """Cosine similarity of ``x`` and ``y`` taken as flat vectors."""
    return ember.nn.functional.cosine_similarity(x.reshape(1, -1), y.reshape(1, -1))
