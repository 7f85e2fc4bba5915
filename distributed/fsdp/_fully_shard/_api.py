"""FSDP2's policies (PyTorch's ``torch.distributed.fsdp.MixedPrecisionPolicy``,
``OffloadPolicy`` and ``CPUOffloadPolicy``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CPUOffloadPolicy", "MixedPrecisionPolicy", "OffloadPolicy"]


def _check_dtype(field: str, value: Any) -> None:
    import ember

    if value is not None and not isinstance(value, type(ember.float32)):
        raise TypeError(
            f"MixedPrecisionPolicy.{field} must be an ember dtype (e.g. ember.bfloat16) or "
            f"None, got {value!r}"
        )
    if value is not None and not value.is_floating_point:
        raise ValueError(f"MixedPrecisionPolicy.{field} must be a floating dtype, got {value}")


@dataclass(frozen=True)
class MixedPrecisionPolicy:
    """How ``fully_shard`` casts parameters, gradients and activations.

    Args:
        param_dtype: dtype of the unsharded parameters (the all-gather and the forward/backward
            computation). ``None``: the parameters' own dtype.
        reduce_dtype: dtype of the gradient reduce-scatter. ``None``: ``param_dtype`` (or the
            parameters' dtype).
        output_dtype: dtype the module's floating-point outputs are cast to. ``None``: no cast.
        cast_forward_inputs: cast the module's floating-point inputs to ``param_dtype``.
    """

    param_dtype: Any = None
    reduce_dtype: Any = None
    output_dtype: Any = None
    cast_forward_inputs: bool = True

    def __post_init__(self) -> None:
        for field in ("param_dtype", "reduce_dtype", "output_dtype"):
            _check_dtype(field, getattr(self, field))


@dataclass
class OffloadPolicy:
    """No offloading: the sharded parameters, gradients and optimizer state stay on the
    parameters' device."""


@dataclass
class CPUOffloadPolicy(OffloadPolicy):
    """Keep the sharded parameters and gradients on the CPU (the optimizer steps there);
    each unshard copies the shard to the compute device before the all-gather, and each
    reduce-scatter copies the reduced shard back.

    Args:
        pin_memory: accepted for PyTorch compatibility (ember's CPU arrays are not pinned).
    """

    pin_memory: bool = True
