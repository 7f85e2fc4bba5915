"""Window functions for spectral analysis: hann, hamming, blackman, bartlett, kaiser.

``periodic=True`` (the default, for use with an FFT) computes the symmetric window of length
``window_length + 1`` and drops its last sample. Values are computed in float64, then cast.
"""

from __future__ import annotations

import numpy as np

from ..backend.device import CPU, get_array_module
from ..backend.dtype import get_default_dtype, to_dtype
from ..tensor import Tensor


def _window(name, window_length, periodic, dtype, device, requires_grad, values):
    if window_length < 0:
        raise RuntimeError(
            f"{name} requires non-negative window_length, got window_length={window_length}"
        )
    d = to_dtype(dtype) if dtype is not None else get_default_dtype()
    if d.np.kind not in "fV":
        raise RuntimeError(f"{name} expects floating point dtypes, got: {d}")
    xp = get_array_module(device or CPU)
    if window_length <= 1:
        arr = xp.ones(window_length, dtype=d.np)
    else:
        n = window_length + 1 if periodic else window_length
        arr = values(xp, xp.arange(n, dtype=np.float64), n)[:window_length].astype(d.np)
    t = Tensor._wrap(arr)
    return t.requires_grad_(True) if requires_grad else t


def _cosine_sum(*coeffs):
    def values(xp, k, n):
        out = xp.zeros(n, dtype=np.float64)
        for j, a in enumerate(coeffs):
            out = out + (-1) ** j * a * xp.cos(2 * np.pi * j * k / (n - 1))
        return out

    return values


def hann_window(
    window_length: int,
    periodic: bool = True,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=False,
    requires_grad=False,
) -> Tensor:
    """The Hann window, 0.5 - 0.5 cos(2 pi n / N).

    Args:
        window_length: the number of points.
        periodic: a periodic window (True, for spectral analysis: the first ``window_length``
            points of a window one longer) or a symmetric one (False).
        dtype: a floating dtype (default: :func:`get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        pin_memory: accepted for PyTorch's signature; ignored.
        requires_grad: whether autograd records operations on the result.
    """
    return _window(
        "hann_window", window_length, periodic, dtype, device, requires_grad, _cosine_sum(0.5, 0.5)
    )


def hamming_window(
    window_length: int,
    periodic: bool = True,
    alpha: float = 0.54,
    beta: float = 0.46,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=False,
    requires_grad=False,
) -> Tensor:
    """The Hamming window, alpha - beta cos(2 pi n / N).

    Args:
        window_length: the number of points.
        periodic: a periodic window (True, for spectral analysis: the first ``window_length``
            points of a window one longer) or a symmetric one (False).
        alpha: the constant term.
        beta: the cosine's weight.
        dtype: a floating dtype (default: :func:`get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        pin_memory: accepted for PyTorch's signature; ignored.
        requires_grad: whether autograd records operations on the result.
    """
    return _window(
        "hamming_window",
        window_length,
        periodic,
        dtype,
        device,
        requires_grad,
        _cosine_sum(alpha, beta),
    )


def blackman_window(
    window_length: int,
    periodic: bool = True,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=False,
    requires_grad=False,
) -> Tensor:
    """The Blackman window, 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N).

    Args:
        window_length: the number of points.
        periodic: a periodic window (True, for spectral analysis: the first ``window_length``
            points of a window one longer) or a symmetric one (False).
        dtype: a floating dtype (default: :func:`get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        pin_memory: accepted for PyTorch's signature; ignored.
        requires_grad: whether autograd records operations on the result.
    """
    return _window(
        "blackman_window",
        window_length,
        periodic,
        dtype,
        device,
        requires_grad,
        _cosine_sum(0.42, 0.5, 0.08),
    )


def bartlett_window(
    window_length: int,
    periodic: bool = True,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=False,
    requires_grad=False,
) -> Tensor:
    """The Bartlett (triangular) window.

    Args:
        window_length: the number of points.
        periodic: a periodic window (True, for spectral analysis: the first ``window_length``
            points of a window one longer) or a symmetric one (False).
        dtype: a floating dtype (default: :func:`get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        pin_memory: accepted for PyTorch's signature; ignored.
        requires_grad: whether autograd records operations on the result.
    """

    def values(xp, k, n):
        return 1 - xp.abs(2 * k / (n - 1) - 1)

    return _window("bartlett_window", window_length, periodic, dtype, device, requires_grad, values)


def kaiser_window(
    window_length: int,
    periodic: bool = True,
    beta: float = 12.0,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=False,
    requires_grad=False,
) -> Tensor:
    """The Kaiser window with shape parameter ``beta``.

    Args:
        window_length: the number of points.
        periodic: a periodic window (True, for spectral analysis: the first ``window_length``
            points of a window one longer) or a symmetric one (False).
        beta: the shape parameter.
        dtype: a floating dtype (default: :func:`get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        pin_memory: accepted for PyTorch's signature; ignored.
        requires_grad: whether autograd records operations on the result.
    """

    def values(xp, k, n):
        half = (n - 1) / 2
        return xp.i0(beta * xp.sqrt(xp.clip(1 - ((k - half) / half) ** 2, 0, None))) / xp.i0(
            xp.asarray(float(beta))
        )

    return _window("kaiser_window", window_length, periodic, dtype, device, requires_grad, values)
