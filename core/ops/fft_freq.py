"""``ember.fft``'s helpers around the transforms: fftshift/ifftshift and the sample frequencies
fftfreq/rfftfreq.
"""

from __future__ import annotations

import numpy as np

from ..backend.dtype import get_default_dtype
from ..tensor import Tensor


def _shift(input: Tensor, dim, sign: int) -> Tensor:
    from .shape import roll

    dims = (
        list(range(input.ndim)) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    )
    shifts = [sign * (input.shape[d] // 2) for d in dims]
    return roll(input, shifts, dims)


def fftshift(input: Tensor, dim=None) -> Tensor:
    """Roll the zero frequency to the centre of ``dim`` (all dimensions when None), as for
    plotting a spectrum.
    """
    return _shift(input, dim, 1)


def ifftshift(input: Tensor, dim=None) -> Tensor:
    """The inverse of :func:`fftshift`."""
    return _shift(input, dim, -1)


def _freq(values, dtype, device, requires_grad):
    from .. import creation

    return creation.tensor(
        values, dtype=dtype or get_default_dtype(), device=device, requires_grad=requires_grad
    )


def fftfreq(
    n: int,
    d: float = 1.0,
    *,
    out=None,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The sample frequencies of an ``n``-point transform, ``[0, 1, ..., -1] / (d * n)`` with the
    negative frequencies last (the order :func:`fft` returns).

    Args:
        n: the transform length.
        d: the sample spacing.
    """
    return _freq(np.fft.fftfreq(n, d), dtype, device, requires_grad)


def rfftfreq(
    n: int,
    d: float = 1.0,
    *,
    out=None,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The non-negative sample frequencies of an ``n``-point :func:`rfft`,
    ``[0, 1, ..., n // 2] / (d * n)``.

    Args:
        n: the transform length.
        d: the sample spacing.
    """
    return _freq(np.fft.rfftfreq(n, d), dtype, device, requires_grad)
