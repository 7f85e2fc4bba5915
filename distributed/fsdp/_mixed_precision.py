"""FSDP mixed precision: checking a ``MixedPrecision`` and the casts it asks for around a
unit (forward inputs, buffers). The parameter and gradient casts live in ``_flat_param``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import ember
from ember.nn import Module

from ._runtime import _flatten
from .api import MixedPrecision


@dataclass(frozen=True)
class MPPolicy:
    """A checked ``MixedPrecision`` (ember dtypes, ``reduce_dtype`` defaulted)."""

    param_dtype: Any
    reduce_dtype: Any
    buffer_dtype: Any
    keep_low_precision_grads: bool
    cast_forward_inputs: bool
    cast_root_forward_inputs: bool


def _check_dtype(field: str, value):
    if value is None:
        return None
    if not isinstance(value, type(ember.float32)):
        raise TypeError(
            f"MixedPrecision.{field} must be an ember dtype (e.g. ember.bfloat16) "
            f"or None, got {value!r}"
        )
    if not value.is_floating_point:
        raise ValueError(f"MixedPrecision.{field} must be a floating-point dtype, got {value}")
    return value


def resolve(mixed_precision) -> MPPolicy | None:
    """``None`` for no mixed precision; raise on a malformed policy."""
    if mixed_precision is None:
        return None
    if not isinstance(mixed_precision, MixedPrecision):
        raise TypeError(
            "FullyShardedDataParallel: mixed_precision must be an "
            f"ember.distributed.fsdp.MixedPrecision, got "
            f"{type(mixed_precision).__name__}"
        )
    mp = mixed_precision
    param = _check_dtype("param_dtype", mp.param_dtype)
    reduce = _check_dtype("reduce_dtype", mp.reduce_dtype)
    buffer = _check_dtype("buffer_dtype", mp.buffer_dtype)
    if param is None and reduce is None and buffer is None:
        return None
    return MPPolicy(
        param,
        reduce if reduce is not None else param,
        buffer,
        bool(mp.keep_low_precision_grads),
        bool(mp.cast_forward_inputs),
        bool(mp.cast_root_forward_inputs),
    )


def np_dtype(dtype) -> np.dtype | None:
    return None if dtype is None else np.dtype(dtype.np)


def cast_inputs(dtype, args: tuple, kwargs: dict):
    """Floating-point tensors in ``args``/``kwargs`` cast to ``dtype`` (others unchanged)."""
    tensors, rebuild = _flatten((args, kwargs))
    if not tensors:
        return args, kwargs
    cast = [t.to(dtype) if t.dtype.is_floating_point and t.dtype != dtype else t for t in tensors]
    return rebuild(cast)


def cast_buffers(module: Module, dtype, ignored_modules) -> None:
    """Cast the floating-point buffers under ``module`` to ``dtype`` once, remembering each
    original dtype (``state_dict`` converts back to it)."""
    for m in module.modules():
        if id(m) in ignored_modules:
            continue
        orig = m.__dict__.get("_ember_fsdp_buffer_dtypes")
        for name, b in m._buffers.items():
            if b is None or not b.dtype.is_floating_point or b.dtype == dtype:
                continue
            if orig is None:
                orig = {}
                object.__setattr__(m, "_ember_fsdp_buffer_dtypes", orig)
            orig.setdefault(name, b.dtype)
            with ember.no_grad():
                m._buffers[name] = b.to(dtype)


def buffer_for_state_dict(module: Module, name: str, buf):
    """A buffer as ``state_dict`` returns it: in its dtype from before the cast."""
    orig = module.__dict__.get("_ember_fsdp_buffer_dtypes", {}).get(name)
    return buf if orig is None or buf.dtype == orig else buf.to(orig)
