"""Short-time Fourier transforms (stft/istft) and the low-rank and partial eigen solvers
(svd_lowrank, pca_lowrank, lobpcg), all compositions of differentiable ops."""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from . import _la_util as u
from .shape_ext_views import _as_strided, overlap_add


def _const(a, like: Tensor) -> Tensor:
    return Tensor._wrap(u.like(np.asarray(a), like._data))


def _window(window, win_length: int, n_fft: int, like: Tensor) -> Tensor:
    if window is None:
        window = _const(np.ones(win_length, like._data.real.dtype), like)
    if window.shape[-1] != win_length:
        raise RuntimeError(
            f"stft: expected the window to have length {win_length}, but got {window.shape[-1]}"
        )
    left = (n_fft - win_length) // 2
    if left or n_fft != win_length:
        from .shape import pad

        window = pad(window, (left, n_fft - win_length - left))
    return window


class OverlapAdd(Function):
    """istft's overlap-add of frames ``(..., frames, n_fft)`` into ``(..., total)``; the
    gradient is the frames of the gradient (``unfold``)."""

    @staticmethod
    def forward(ctx, frames, hop, total):
        ctx.hop, ctx.n_fft = hop, frames.shape[-1]
        return overlap_add(ctx.xp, frames, hop, total)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return grad.unfold(-1, ctx.n_fft, ctx.hop), None, None
        xp, hop, n_fft = ctx.xp, ctx.hop, ctx.n_fft
        grad = xp.ascontiguousarray(grad)
        frames = (grad.shape[-1] - n_fft) // hop + 1
        step = grad.strides[-1]
        shape, strides = grad.shape[:-1] + (frames, n_fft), grad.strides[:-1] + (hop * step, step)
        return xp.ascontiguousarray(_as_strided(xp, grad, shape, strides)), None, None


def _center_pad(x: Tensor, p: int, mode: str) -> Tensor:
    """torch.stft's ``center`` padding: ``F.pad`` of the signal viewed as 3-D (torch's
    errors name that shape)."""
    from .shape import pad

    shape = tuple(x.shape)
    x3 = x.reshape((1,) * (3 - len(shape)) + shape)
    return pad(x3, (p, p), mode).reshape(shape[:-1] + (shape[-1] + 2 * p,))


def stft(
    input: Tensor,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Tensor | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = False,
    onesided: bool | None = None,
    return_complex: bool | None = None,
    align_to_window: bool | None = None,
) -> Tensor:
    """The short-time Fourier transform: the FFT of windowed frames of ``input``.

    Args:
        input (Tensor): a 1-D signal or a 2-D batch of them.
        n_fft: the frame (FFT) size.
        hop_length: the distance between frames (default ``n_fft // 4``).
        win_length: the window size, centered in the frame (default ``n_fft``).
        window (Tensor, optional): the window (default: all ones).
        center: pad the signal by ``n_fft // 2`` on both sides so frame t is centered at
            ``t * hop_length``.
        pad_mode: the padding when ``center`` (``"reflect"``, ``"constant"``, ...).
        normalized: scale by ``n_fft ** -0.5``.
        onesided: keep only the non-negative frequencies (default: True for real input).
        return_complex: return a complex tensor; required for real input (False gives the real
            and imaginary parts in a last dimension of size 2).
        align_to_window: accepted for PyTorch's signature.

    Returns:
        A tensor of shape ``(*, freq, frames)``.
    """
    from .. import fft as _fft
    from .complex_ops import view_as_real

    is_c = input._data.dtype.kind == "c" or (window is not None and window._data.dtype.kind == "c")
    if return_complex is None and not is_c:
        raise RuntimeError(
            "stft requires the return_complex parameter be given for real "
            "inputs, and will further require that return_complex=True in a "
            "future PyTorch release."
        )
    if input.ndim not in (1, 2):
        raise RuntimeError(f"stft: expected a 1D or 2D tensor, but got {input.ndim}D")
    hop = n_fft // 4 if hop_length is None else hop_length
    win = n_fft if win_length is None else win_length
    x = _center_pad(input, n_fft // 2, pad_mode) if center else input
    n = x.shape[-1]
    if n_fft <= 0 or n_fft > n:
        raise RuntimeError(f"stft: expected 0 < n_fft <= {n}, but got n_fft={n_fft}")
    # the frames as a strided view (a gather of every sample was most of stft's time)
    seg = x.unfold(-1, n_fft, hop) * _window(window, win, n_fft, input)
    one = (not is_c) if onesided is None else onesided
    spec = _fft.rfft(seg, dim=-1) if one else _fft.fft(seg, dim=-1)
    if normalized:
        spec = spec * (n_fft**-0.5)
    spec = spec.transpose(-1, -2)
    return spec if return_complex or return_complex is None else view_as_real(spec)


def istft(
    input: Tensor,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Tensor | None = None,
    center: bool = True,
    normalized: bool = False,
    onesided: bool | None = None,
    length: int | None = None,
    return_complex: bool = False,
) -> Tensor:
    """The inverse of :func:`stft`: the signal rebuilt by overlap-add of the inverse FFTs of the
    frames, divided by the summed squared window.

    Args:
        input (Tensor): the complex spectrogram, shape ``(*, freq, frames)``.
        n_fft: the frame (FFT) size.
        hop_length: the distance between frames (default ``n_fft // 4``).
        win_length: the window size (default ``n_fft``).
        window (Tensor, optional): the window :func:`stft` used.
        center: whether :func:`stft` padded the signal (the padding is removed).
        normalized: whether :func:`stft` normalized.
        onesided: whether the spectrogram holds only non-negative frequencies.
        length: trim or pad the result to this many samples.
        return_complex: return a complex signal.
    """
    from .. import fft as _fft
    from .complex_ops import real

    hop = n_fft // 4 if hop_length is None else hop_length
    win = n_fft if win_length is None else win_length
    spec = input.transpose(-1, -2)  # (..., frames, freq)
    if normalized:
        spec = spec * (n_fft**0.5)
    one = (spec.shape[-1] != n_fft) if onesided is None else onesided
    if one:
        frames = _fft.irfft(spec, n=n_fft, dim=-1)
    else:
        frames = _fft.ifft(spec, n=n_fft, dim=-1)
        if not return_complex:
            frames = real(frames)
    w = _window(window, win, n_fft, frames)
    frames = frames * w
    nf = frames.shape[-2]
    total = n_fft + hop * (nf - 1)
    out = OverlapAdd.apply(frames, hop, total)
    wsq = u.host((w * w)._data)
    env = overlap_add(np, np.broadcast_to(wsq, (nf, n_fft)), hop, total)
    start = n_fft // 2 if center else 0
    end = total - (n_fft // 2 if center else 0) if length is None else start + length
    env = env[start : min(end, total)]
    if np.abs(env).min(initial=1.0) < 1e-11:
        raise RuntimeError(
            "istft: window overlap add min: the window envelope is zero "
            "somewhere (NOLA condition failed)"
        )
    y = out[..., start : min(end, total)] / _const(env, frames)
    if end > total:
        from .shape import pad

        y = pad(y, (0, end - total))
    return y


# ---- low-rank and partial eigen solvers --------------------------------------------------
def svd_lowrank(A: Tensor, q: int | None = 6, niter: int | None = 2, M: Tensor | None = None):
    """A rank-q SVD by randomized range finding (Halko et al.), as ``torch.svd_lowrank``."""
    from .. import creation
    from .decomp import qr, svd

    x = A if M is None else A - M
    m, n = x.shape[-2:]
    q = min(6 if q is None else q, m, n)
    r = creation.randn(tuple(x.shape[:-2]) + (n, q), dtype=x.dtype, device=x.device)
    y = qr(x @ r).Q
    for _ in range(niter or 0):
        y = qr(u.mH(x) @ y).Q
        y = qr(x @ y).Q
    ub, s, vh = svd(u.mH(y) @ x, full_matrices=False)
    return y @ ub, s, u.mH(vh)


def pca_lowrank(A: Tensor, q: int | None = None, center: bool = True, niter: int = 2):
    """A randomized principal component analysis of ``A``: ``(U, S, V)`` with ``q`` components
    (default min(6, m, n)), centered over the rows first unless ``center`` is False.
    """
    m, n = A.shape[-2:]
    q = min(6, m, n) if q is None else q
    x = A - A.mean(-2, keepdim=True) if center else A
    return svd_lowrank(x, q, niter)


def lobpcg(
    A: Tensor,
    k: int | None = None,
    B: Tensor | None = None,
    X: Tensor | None = None,
    n: int | None = None,
    iK=None,
    niter=None,
    tol=None,
    largest: bool | None = None,
    method=None,
    tracker=None,
    ortho_iparams=None,
    ortho_fparams=None,
    ortho_bparams=None,
):
    """The k extreme eigenpairs of the symmetric (generalized) problem A x = lambda B x.

    Computed by a dense symmetric eigensolver rather than LOBPCG iterations: the same pairs,
    exact, with eigh's gradient; meant for the moderate sizes a dense solve handles.
    """
    from .decomp import cholesky, eigh
    from .matrix_ops import solve_triangular

    k = (X.shape[-1] if X is not None else 1) if k is None else k
    largest = True if largest is None else largest
    if B is None:
        w, v = eigh(A)
    else:
        low = cholesky(B)
        c = solve_triangular(low, u.mH(solve_triangular(low, A, upper=False)), upper=False)
        w, y = eigh(c)
        v = solve_triangular(u.mH(low), y, upper=True)
    if largest:
        return w[..., -k:].flip(-1), v[..., -k:].flip(-1)
    return w[..., :k], v[..., :k]
