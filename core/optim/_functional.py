"""Helpers shared by the update rules: state creation, argument checks, and in-place array
primitives that mirror PyTorch's ``lerp_`` / ``addcmul_`` / ``addcdiv_`` (same operation order,
so float32 results agree with PyTorch's to the last bit or two).

Everything here works on raw NumPy/CuPy arrays; nothing records an autograd graph.
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor


def _to_scalar(x):
    """A Python number from a number or a one-element tensor (lr, betas may be tensors)."""
    return x.item() if isinstance(x, Tensor) else x


def _step_tensor(value: float = 0.0) -> Tensor:
    """PyTorch's default ``state["step"]``: a 0-d float32 CPU tensor."""
    return Tensor._wrap(np.array(value, dtype=np.float32))


def _zeros_state(p: Tensor) -> Tensor:
    d = p._data
    return Tensor._wrap(_xp(d).zeros_like(d))


def _xp(arr):
    if type(arr) is np.ndarray:
        return np
    from ..backend.device import get_array_module

    return get_array_module(arr)


def _real_view(a):
    """``torch.view_as_real`` of a complex array (a 0-d one as 1-d), other arrays as they are.

    PyTorch's optimizers step a complex parameter as the pairs of reals it is made of, so
    that ``g * g`` is per component (not the complex square) and ``sqrt``, ``sign``, ``max``
    apply to each part. An array that cannot be viewed so (a strided last dimension, a meta
    parameter's broadcast array) is returned unchanged.
    """
    if a.dtype.kind != "c":
        return a
    try:
        return (a if a.ndim else a.reshape(1)).view(a.real.dtype)
    except ValueError:
        return a


def parallel_apply(fn, *arrays, **kwargs) -> None:
    """``backend.threads.parallel_apply`` on the arrays, complex ones viewed as real pairs."""
    from ..backend.threads import parallel_apply as _apply

    _apply(fn, *[_real_view(a) for a in arrays], **kwargs)


def _bump(p: Tensor) -> None:
    """Mark an in-place update of a parameter (autograd's saved-tensor check reads this)."""
    p._version_counter[0] += 1


def _grad_for_update(p: Tensor, weight_decay: float = 0.0, maximize: bool = False):
    """The gradient array an update uses: ``±grad + weight_decay * param``.

    ``p.grad`` is never modified; a new array is made only when the gradient must change.
    """
    g = p.grad._data
    if weight_decay != 0:
        out = p._data * weight_decay
        if maximize:
            out -= g
        else:
            out += g
        return out
    if maximize:
        return -g
    return g


def _grad_with_decay(
    p: Tensor, lr: float, weight_decay: float, decoupled: bool, maximize: bool = False
):
    """:func:`_grad_for_update` with the Adam family's two kinds of weight decay: added to the
    gradient (L2), or ``decoupled`` (AdamW's: the parameter shrinks by ``lr * weight_decay``
    now and the gradient is left alone)."""
    if weight_decay != 0 and decoupled:
        p._data *= 1 - lr * weight_decay
        return _grad_for_update(p, 0, maximize)
    return _grad_for_update(p, weight_decay, maximize)


def _lerp_(start, end, weight: float) -> None:
    """``start.lerp_(end, weight)`` with PyTorch's two-sided formula."""
    tmp = end - start
    if abs(weight) < 0.5:
        tmp *= weight
        start += tmp
    else:
        tmp *= 1.0 - weight
        _xp(start).subtract(end, tmp, out=start)


def _addcmul_(acc, t1, t2, value: float = 1.0) -> None:
    """``acc += value * t1 * t2``."""
    if value == 1:
        tmp = t1 * t2
    else:
        tmp = t1 * value
        tmp *= t2
    acc += tmp


def _addcdiv_(acc, t1, t2, value: float = 1.0) -> None:
    """``acc += value * t1 / t2``."""
    if value == 1:
        tmp = t1 / t2
    else:
        tmp = t1 * value
        tmp /= t2
    acc += tmp


def _check_lr(lr) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_nonneg(value, what: str) -> None:
    """PyTorch's ``Invalid <what>: <value>`` check for a hyper-parameter that must be >= 0."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value}")


def _check_betas(betas) -> tuple[float, float]:
    for i in (0, 1):
        if not 0.0 <= betas[i] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
    return tuple(_to_scalar(b) for b in betas)
