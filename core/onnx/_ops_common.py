"""Helpers every ONNX handler module shares: dtype of a value, casting to a dtype, rank, and
scalar constants (re-exported by ``_ops_basic``, where they used to live)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._context import Sym, _np_of


def dtype_of(v: Any) -> np.dtype | None:
    """numpy dtype of a Sym or constant tensor; None for Python scalars."""
    from ember import Tensor

    if isinstance(v, Sym):
        return v.np_dtype
    if isinstance(v, (Tensor, np.ndarray)):
        return _np_of(v).dtype
    return None


def typed(ctx, v: Any, dt) -> str:
    """The ONNX name of ``v`` as dtype ``dt`` (casting a Sym, converting a constant)."""
    dt = np.dtype(dt)
    if isinstance(v, str):  # an ONNX name made by the caller, already of dtype dt
        return v
    if isinstance(v, Sym):
        return v.name if v.np_dtype == dt else ctx.cast(v.name, dt)
    return ctx.const(_np_of(v), dtype=dt)


def rank(v: Any) -> int:
    return len(getattr(v.ex if isinstance(v, Sym) else v, "shape", ()))


def _c(ctx, value, like) -> str:
    """A scalar constant of ``like``'s dtype."""
    return ctx.const(np.asarray(value, dtype=dtype_of(like) or np.float32))
