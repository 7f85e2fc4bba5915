"""The matrix exponential (scipy on NumPy, scaling-and-squaring Taylor on CuPy; the backward
is the Frechet derivative adjoint via a 2n x 2n exponential) and the Moore-Penrose
pseudo-inverse (SVD with PyTorch's atol/rtol cut-off). Re-exported by ``matrix_ops``.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.finfo import np_finfo
from ..tensor import Tensor
from . import _la_util as u
from ._util import promote


def _expm_taylor(xp, a):
    """exp(A) by scaling and squaring with a degree-18 Taylor polynomial (CuPy path)."""
    norm = float(xp.abs(a).sum(axis=-2).max()) if a.size else 0.0
    s = max(0, int(np.ceil(np.log2(norm))) + 1) if norm > 0 else 0
    a = a / (2.0**s)
    eye = xp.broadcast_to(xp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    out, term = eye.copy(), eye
    for k in range(1, 19):
        term = term @ a / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def _expm(xp, a):
    if xp is np:
        import scipy.linalg

        return scipy.linalg.expm(a).astype(a.dtype, copy=False) if a.size else a.copy()
    return _expm_taylor(xp, a)


class MatrixExp(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _expm(ctx.xp, a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        # the Frechet derivative's adjoint: the top-right block of exp([[A^H, G], [0, A^H]])
        n = grad.shape[-1]
        ah = u.mH(a)
        if isinstance(grad, Tensor) or isinstance(ah, Tensor):
            from .shape import cat

            ah, grad = promote(ah, grad) if isinstance(ah, Tensor) else (ah, grad)
            top = cat([ah, grad], -1)
            bottom = cat([grad * 0, ah], -1)
            big = matrix_exp(cat([top, bottom], -2))
            return big[..., :n, n:]
        xp = ctx.xp
        ah = xp.broadcast_to(ah, grad.shape)
        top = xp.concatenate([ah, grad], -1)
        bottom = xp.concatenate([xp.zeros_like(grad), ah], -1)
        big = _expm(xp, xp.concatenate([top, bottom], -2))
        return big[..., :n, n:]


# ---- public functions ----------------------------------------------------------------------
def _square_float(name, a):
    u.check_float(name, a)
    u.check_square(name, a)


def matrix_exp(A: Tensor) -> Tensor:
    """The matrix exponential of a square matrix, sum over k of A^k / k!."""
    _square_float("linalg.matrix_exp", A)
    return MatrixExp.apply(A)


def pinv(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False, out=None) -> Tensor:
    """The Moore-Penrose pseudo-inverse, computed from the SVD (from the eigendecomposition with
    ``hermitian``); singular values below ``max(atol, rtol * largest)`` are treated as zero.
    """
    u.check_float("linalg.pinv", A)
    u.check_matrix("linalg.pinv", A)
    return Pinv.apply(A, atol, rtol)


def _tolerance(xp, s, m, n, atol, rtol):
    """max(atol, rtol * sigma_max) with PyTorch's default rtol = eps * max(m, n)."""
    if isinstance(atol, Tensor):
        atol = atol._data
    if isinstance(rtol, Tensor):
        rtol = rtol._data
    if rtol is None:
        rtol = np_finfo(s.dtype).eps * max(m, n) if atol is None or not np.all(atol > 0) else 0.0
    smax = s[..., :1] if s.shape[-1] else xp.zeros(s.shape[:-1] + (1,), s.dtype)
    tol = xp.asarray(rtol, dtype=s.dtype)[..., None] * smax if xp.ndim(rtol) else rtol * smax
    if atol is not None:
        tol = xp.maximum(xp.asarray(atol, dtype=s.dtype)[..., None] if xp.ndim(atol) else atol, tol)
    return tol


class Pinv(Function):
    @staticmethod
    def forward(ctx, a, atol, rtol):
        xp = ctx.xp
        m, n = a.shape[-2:]
        uu, s, vh = xp.linalg.svd(a, full_matrices=False)
        keep = s > _tolerance(xp, s, m, n, atol, rtol)
        sinv = xp.where(keep, 1 / xp.where(keep, s, 1), 0).astype(s.dtype)
        p = (u.mH(vh) * sinv[..., None, :]) @ u.mH(uu)
        ctx.save_for_backward(a, p)
        return p.astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        a, p = ctx.saved_tensors
        ph = u.mH(p)
        # the derivative of the pseudo-inverse (Golub and Pereyra) on the fixed-rank manifold
        ga = -(ph @ grad @ ph)
        ga = ga + ((u.eye_like(a, a.shape[-2]) - a @ p) @ u.mH(grad)) @ (p @ ph)
        ga = ga + (ph @ p) @ (u.mH(grad) @ (u.eye_like(a, a.shape[-1]) - p @ a))
        return ga, None, None


def pinverse(input: Tensor, rcond: float = 1e-15) -> Tensor:
    """The pseudo-inverse, singular values below ``rcond`` times the largest dropped; see
    :func:`ember.linalg.pinv`.
    """
    return pinv(input, rtol=rcond)
