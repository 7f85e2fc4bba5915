"""Gradient clipping: ``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm``,
``clip_grads_with_norm_`` (a loop over the gradients, no fused multi-tensor kernels)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ...autograd.grad_mode import no_grad
from ...backend.device import get_array_module
from ...tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_list(tensors) -> list:
    if isinstance(tensors, Tensor):
        return [tensors]
    return list(tensors)


def _norm(xp, g, norm_type: float):
    a = g.reshape(-1)
    if norm_type == math.inf:
        return xp.abs(a).max() if a.size else xp.zeros((), a.dtype)
    if norm_type == -math.inf:
        return xp.abs(a).min() if a.size else xp.zeros((), a.dtype)
    if norm_type == 2:
        return xp.sqrt(xp.dot(a, a))
    if norm_type == 0:
        return (a != 0).sum().astype(a.dtype)
    return (xp.abs(a) ** norm_type).sum() ** (1.0 / norm_type)


def _check_finite(xp, total, norm_type: float) -> None:
    if not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
            "by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )


def get_total_norm(
    tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach: bool | None = None
) -> Tensor:
    r"""The norm of the norms of ``tensors`` (as if they were concatenated into one vector)."""
    tensors = [t for t in _as_list(tensors) if t is not None]
    norm_type = float(norm_type)
    if not tensors:
        return Tensor._wrap(np.zeros((), np.float32))
    xp = get_array_module(tensors[0]._data)
    norms = xp.stack([_norm(xp, t._data, norm_type) for t in tensors])
    total = _norm(xp, norms, norm_type)
    if error_if_nonfinite:
        _check_finite(xp, total, norm_type)
    return Tensor._wrap(xp.asarray(total))


def clip_grads_with_norm_(
    parameters, max_norm: float, total_norm: Tensor, foreach: bool | None = None
) -> None:
    r"""Scale the gradients by ``max_norm / (total_norm + 1e-6)`` when that is below 1."""
    params = _as_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    coef = float(max_norm) / (float(total_norm.item()) + 1e-6)
    coef = min(coef, 1.0)  # PyTorch multiplies by the clamped coefficient unconditionally
    with no_grad():
        for g in grads:
            g._data *= g._data.dtype.type(coef)
            g._version_counter[0] += 1


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    r"""Clip the gradient norm of ``parameters`` (computed over all of them together) to
    ``max_norm``, in place. Returns the total norm before clipping."""
    params = _as_list(parameters)
    with_grad = [p for p in params if p.grad is not None]
    hook = next((type(p)._global_norm_terms for p in with_grad if _is_piece(p)), None)
    if hook is None:
        total = get_total_norm([p.grad for p in with_grad], norm_type, error_if_nonfinite, foreach)
    else:
        total = _total_over_pieces(with_grad, hook, float(norm_type), error_if_nonfinite)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def _is_piece(p) -> bool:
    """Whether ``p`` is one rank's piece of a distributed parameter (a tensor-parallel or FSDP2
    ``DTensorParameter``): its class reduces per-parameter norm terms over its mesh."""
    return hasattr(type(p), "_global_norm_terms")


def _total_over_pieces(params: list, hook, norm_type: float, error_if_nonfinite: bool):
    """The norm over whole parameters when some are pieces: per parameter this rank's term
    (sum of ``|g|^p``; the max or min for the infinite norms; the count of nonzeros for 0),
    the pieces' terms reduced over the ranks holding the other pieces (``hook``, from
    ember.distributed), then combined; torch gets the same from DTensor gradients."""
    xp = get_array_module(params[0].grad._data)

    def term(g):
        a = g.reshape(-1)
        if math.isinf(norm_type):
            return _norm(xp, a, norm_type)
        if norm_type == 0:
            return (a != 0).sum().astype(a.dtype)
        return xp.dot(a, a) if norm_type == 2 else (xp.abs(a) ** norm_type).sum()

    terms = [Tensor._wrap(xp.asarray(term(p.grad._data))) for p in params]
    pieces = [i for i, p in enumerate(params) if _is_piece(p)]
    reduced = hook([params[i] for i in pieces], [terms[i] for i in pieces], norm_type)
    for i, t in zip(pieces, reduced):
        terms[i] = t
    stacked = xp.stack([t._data for t in terms])
    if norm_type == math.inf:
        total = stacked.max()
    elif norm_type == -math.inf:
        total = stacked.min()
    elif norm_type == 0:
        total = stacked.sum()
    else:
        total = stacked.sum() ** (1.0 / norm_type)
    if error_if_nonfinite:
        _check_finite(xp, total, norm_type)
    return Tensor._wrap(xp.asarray(total))


def clip_grad_value_(
    parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach: bool | None = None
) -> None:
    r"""Clamp every gradient element to ``[-clip_value, clip_value]``, in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            xp = get_array_module(p.grad._data)
            xp.clip(p.grad._data, -clip_value, clip_value, out=p.grad._data)
            p.grad._version_counter[0] += 1


def clip_grad_norm(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    r"""Clip the gradient norm of an iterable of parameters.

    .. warning:: Deprecated in favor of :func:`ember.nn.utils.clip_grad_norm_`.
    """
    import warnings

    warnings.warn(
        "`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
        "`torch.nn.utils.clip_grad_norm_`.",
        FutureWarning,
        stacklevel=2,
    )
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)
