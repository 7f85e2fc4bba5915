"""``ember.fft``'s one- and two-dimensional transforms (fft/ifft, rfft/irfft, hfft/ihfft and
the ``2`` variants): the n-dimensional transforms of ``fft_nd`` over one or two dims.
"""

from __future__ import annotations

from ..tensor import Tensor
from .complex_ops import conj
from .fft_nd import _DUAL, _as_complex, _norm, fftn, hfftn, ifftn, ihfftn, irfftn, rfftn


def fft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The one-dimensional discrete Fourier transform.

    Args:
        input (Tensor): the signal.
        n: the length of the transformed dimension; the input is zero-padded or trimmed to it.
        dim: the dimension to transform.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return fftn(input, None if n is None else [n], [dim], norm)


def ifft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`fft`.

    Args:
        input (Tensor): the signal.
        n: the length of the transformed dimension; the input is zero-padded or trimmed to it.
        dim: the dimension to transform.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return ifftn(input, None if n is None else [n], [dim], norm)


def rfft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The discrete Fourier transform of a real signal: only the n // 2 + 1 non-negative
    frequencies (the rest are their conjugates).

    Args:
        input (Tensor): the signal.
        n: the length of the transformed dimension; the input is zero-padded or trimmed to it.
        dim: the dimension to transform.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor with n // 2 + 1 entries along ``dim``.
    """
    return rfftn(input, None if n is None else [n], [dim], norm)


def irfft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`rfft`: a real signal from its non-negative frequencies; ``n`` is
    the output length (default 2 * (m - 1) for m input entries).

    Args:
        input (Tensor): the signal.
        n: the length of the transformed dimension; the input is zero-padded or trimmed to it.
        dim: the dimension to transform.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A real tensor.
    """
    return irfftn(input, None if n is None else [n], [dim], norm)


def hfft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The real spectrum of a Hermitian-symmetric signal given by its first half."""
    return irfft(conj(_as_complex(input)), n, dim, _DUAL[_norm(norm)])


def ihfft(input: Tensor, n=None, dim: int = -1, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`hfft`: the one-sided spectrum of a real signal under the inverse
    transform's sign and scaling.

    Args:
        input (Tensor): the signal.
        n: the length of the transformed dimension; the input is zero-padded or trimmed to it.
        dim: the dimension to transform.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor with n // 2 + 1 entries along ``dim``.
    """
    return conj(rfft(input, n, dim, _DUAL[_norm(norm)]))


def fft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The two-dimensional discrete Fourier transform.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return fftn(input, s, dim, norm)


def ifft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`fft2`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return ifftn(input, s, dim, norm)


def rfft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The two-dimensional Fourier transform of a real signal; see :func:`rfftn`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return rfftn(input, s, dim, norm)


def irfft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`rfft2`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A real tensor.
    """
    return irfftn(input, s, dim, norm)


def hfft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The two-dimensional :func:`hfftn`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A real tensor.
    """
    return hfftn(input, s, dim, norm)


def ihfft2(input: Tensor, s=None, dim=(-2, -1), norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`hfft2`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default the last two.
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return ihfftn(input, s, dim, norm)
