"""``ember.signal.windows``: SciPy-style window functions with torch.signal's signatures.

``sym=True`` gives the symmetric window (filter design); ``sym=False`` the periodic one (spectral
analysis): the symmetric window of length ``M + 1`` without its last sample. Values are computed
in float64 with the device's array module, then cast to ``dtype``.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend.device import CPU, get_array_module
from ..backend.dtype import float32, float64, get_default_dtype, to_dtype
from ..tensor import Tensor

__all__ = [
    "bartlett",
    "blackman",
    "cosine",
    "exponential",
    "gaussian",
    "general_cosine",
    "general_hamming",
    "hamming",
    "hann",
    "kaiser",
    "nuttall",
]


def _make(name, M, sym, dtype, device, requires_grad, values) -> Tensor:
    """Check the arguments as torch does, then evaluate ``values(xp, n, length)``."""
    if M < 0:
        raise ValueError(f"{name} requires non-negative window length, got M={M}")
    d = to_dtype(dtype) if dtype is not None else get_default_dtype()
    if d not in (float32, float64):
        raise ValueError(f"{name} expects float32 or float64 dtypes, got: {d}")
    xp = get_array_module(device or CPU)
    if M <= 1:
        arr = xp.ones(M, dtype=d.np)
    else:
        length = M if sym else M + 1
        arr = values(xp, xp.arange(length, dtype=np.float64), length)[:M].astype(d.np)
    t = Tensor._wrap(arr)
    return t.requires_grad_(True) if requires_grad else t


def general_cosine(
    M, *, a, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    r"""Sum of cosines: :math:`w_n = \sum_k (-1)^k a_k \cos(2\pi k n / (M - 1))`."""
    coeffs = [float(c) for c in a]

    def values(xp, n, length):
        out = xp.zeros(length, dtype=np.float64)
        for k, c in enumerate(coeffs):
            out = out + (-1) ** k * c * xp.cos(2 * math.pi * k * n / (length - 1))
        return out

    return _make("general_cosine", M, sym, dtype, device, requires_grad, values)


def general_hamming(
    M,
    *,
    alpha: float = 0.54,
    sym: bool = True,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The generalized Hamming window, alpha - (1 - alpha) cos(2 pi n / (M - 1)).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        alpha: the window coefficient (0.54 gives :func:`hamming`, 0.5 :func:`hann`).
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return general_cosine(
        M, a=[alpha, 1.0 - alpha], sym=sym, dtype=dtype, device=device, requires_grad=requires_grad
    )


def hann(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The Hann window, 0.5 - 0.5 cos(2 pi n / (M - 1)).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return general_hamming(
        M, alpha=0.5, sym=sym, dtype=dtype, device=device, requires_grad=requires_grad
    )


def hamming(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The Hamming window, 0.54 - 0.46 cos(2 pi n / (M - 1)).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return general_hamming(M, sym=sym, dtype=dtype, device=device, requires_grad=requires_grad)


def blackman(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The Blackman window, a sum of three cosines (0.42, 0.5, 0.08).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return general_cosine(
        M, a=[0.42, 0.5, 0.08], sym=sym, dtype=dtype, device=device, requires_grad=requires_grad
    )


def nuttall(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The Nuttall window, a four-term cosine sum with minimal side lobes.

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return general_cosine(
        M,
        a=[0.3635819, 0.4891775, 0.1365995, 0.0106411],
        sym=sym,
        dtype=dtype,
        device=device,
        requires_grad=requires_grad,
    )


def bartlett(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The Bartlett (triangular) window, zero at both ends.

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return _make(
        "bartlett",
        M,
        sym,
        dtype,
        device,
        requires_grad,
        lambda xp, n, length: 1 - xp.abs(2 * n / (length - 1) - 1),
    )


def cosine(
    M: int, *, sym: bool = True, dtype=None, layout=None, device=None, requires_grad: bool = False
) -> Tensor:
    """The cosine (sine) window, sin(pi (n + 0.5) / M).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    return _make(
        "cosine",
        M,
        sym,
        dtype,
        device,
        requires_grad,
        lambda xp, n, length: xp.sin(math.pi * (n + 0.5) / length),
    )


def exponential(
    M: int,
    *,
    center: float | None = None,
    tau: float = 1.0,
    sym: bool = True,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The exponential (Poisson) window, exp(-abs(n - center) / tau).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        center: the window's centre; default (M - 1) / 2. PyTorch requires None when ``sym``
            is True; ember accepts a centre either way.
        tau: the decay; positive.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    if tau <= 0:
        raise ValueError(f"Tau must be positive, got: {tau} instead.")

    def values(xp, n, length):
        c = (length - 1) / 2 if center is None else center
        return xp.exp(-xp.abs(n - c) / tau)

    return _make("exponential", M, sym, dtype, device, requires_grad, values)


def gaussian(
    M: int,
    *,
    std: float = 1.0,
    sym: bool = True,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The Gaussian window, exp(-(n - (M - 1) / 2)^2 / (2 std^2)).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        std: the standard deviation; positive.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    if std <= 0:
        raise ValueError(f"Standard deviation must be positive, got: {std} instead.")
    return _make(
        "gaussian",
        M,
        sym,
        dtype,
        device,
        requires_grad,
        lambda xp, n, length: xp.exp(-((n - (length - 1) / 2) ** 2) / (2 * std**2)),
    )


def kaiser(
    M: int,
    *,
    beta: float = 12.0,
    sym: bool = True,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """The Kaiser window, I0(beta sqrt(1 - (2n / (M - 1) - 1)^2)) / I0(beta).

    Args:
        M: the window length; 0 gives an empty tensor and 1 gives ``[1.]``.
        beta: the shape parameter; non-negative.
        sym: a symmetric window (True, for filter design) or a periodic one (False, for
            spectral analysis: the first M points of a window of length M + 1).
        dtype: float32 or float64 (default: :func:`ember.get_default_dtype`).
        layout: accepted for PyTorch's signature; ignored.
        device: where the window is created.
        requires_grad: whether autograd records operations on the result.
    """
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got: {beta} instead.")

    def values(xp, n, length):
        half = (length - 1) / 2
        return xp.i0(beta * xp.sqrt(xp.clip(1 - ((n - half) / half) ** 2, 0, None))) / xp.i0(
            xp.asarray(float(beta))
        )

    return _make("kaiser", M, sym, dtype, device, requires_grad, values)
