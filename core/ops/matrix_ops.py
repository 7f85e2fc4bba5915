"""Solves and inverses: solve, inv, det, slogdet, matrix_power, triangular and Cholesky solves,
tensorinv/tensorsolve, with their ``_ex`` variants. Batched over leading dims; gradients follow
PyTorch's (conjugate-transposed) formulas, written so they also give double backward.

matrix_exp and pinv live in ``matrix_exp_pinv`` and are re-exported here."""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.finfo import np_finfo  # noqa: F401
from ..tensor import Tensor
from . import _la_util as u
from ._util import promote
from .complex_ops import conj_any
from .function_free import _xp_of
from .matrix_exp_pinv import (  # noqa: F401  (re-exported: every name stays importable here)
    MatrixExp,
    Pinv,
    _expm,
    _expm_taylor,
    _square_float,
    _tolerance,
    matrix_exp,
    pinv,
    pinverse,
)


def _singular(name: str, a) -> u.LinAlgError:
    """PyTorch's message for a singular input: which batch element and which pivot."""
    a = u.host(a)
    batch = a.reshape((-1,) + a.shape[-2:])
    for i, m in enumerate(batch):
        k = _zero_pivot(m) if np.isfinite(m).all() else 0
        if k:
            where = f"(Batch element {i}): " if a.ndim > 2 else ""
            return u.LinAlgError(
                f"{name}: {where}The diagonal element {k} is zero, "
                "the inversion could not be completed because the input matrix "
                "is singular."
            )
    return u.LinAlgError(f"{name}: The solver failed because the input matrix is singular.")


class Inv(Function):
    @staticmethod
    def forward(ctx, a):
        try:
            out = ctx.xp.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise _singular("linalg.inv", a) from None
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (ainv,) = ctx.saved_tensors
        ah = u.mH(ainv)
        return -(ah @ grad @ ah)


class Solve(Function):
    """X = A^-1 B for matrices B (vectors are handled by ``solve``)."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            x = ctx.xp.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            raise _singular("linalg.solve", a) from None
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        a, x = ctx.saved_tensors
        gb = u.solve_any(u.mH(a), grad)
        ga = -(gb @ u.mH(x)) if ctx.needs_input_grad[0] else None
        return ga, gb


class Det(Function):
    @staticmethod
    def forward(ctx, a):
        d = ctx.xp.linalg.det(a)
        ctx.save_for_backward(a, d)
        return d

    @staticmethod
    def backward(ctx, grad):
        a, d = ctx.saved_tensors
        # d det(A) = det(A) tr(A^-1 dA): the gradient is grad * conj(det) * A^-H
        return u.unsq(grad * conj_any(d), -1, -1) * u.mH(u.inv_any(a))


class Slogdet(Function):
    @staticmethod
    def forward(ctx, a):
        sign, logabs = ctx.xp.linalg.slogdet(a)
        ctx.save_for_backward(a, sign)
        return sign, logabs

    @staticmethod
    def backward(ctx, g_sign, g_logabs):
        a, sign = ctx.saved_tensors
        g = g_logabs
        if (a._data if isinstance(a, Tensor) else a).dtype.kind == "c":
            # the gradient with respect to log det: the real part from logabsdet, the
            # imaginary part (the phase) from sign = exp(i phase)
            from .complex_ops import imag_any

            g = g_logabs - imag_any(conj_any(g_sign) * sign) * 1j
        return u.unsq(g, -1, -1) * u.mH(u.inv_any(a))


# ---- public functions ----------------------------------------------------------------------
def inv(A: Tensor, *, out=None) -> Tensor:
    """The inverse of a square matrix.

    Args:
        A (Tensor): a matrix or a batch of matrices, shape ``(*, n, n)``.

    Raises:
        ember.linalg.LinAlgError: ``A`` is singular.
    """
    _square_float("linalg.inv", A)
    return Inv.apply(A)


def inv_ex(A: Tensor, *, check_errors: bool = False, out=None):
    """:func:`inv` without raising: returns ``(inverse, info)``, ``info`` > 0 where ``A`` is
    singular (raises if ``check_errors``).
    """
    _square_float("linalg.inv_ex", A)
    try:
        return u.linalg_inv_ex_t(Inv.apply(A), _info_zeros(A))
    except u.LinAlgError:
        if check_errors:
            raise
    # per batch element: the inverses that exist, and LAPACK's info (the zero pivot) elsewhere
    a = u.host(A._data)
    batch = a.reshape((-1,) + a.shape[-2:])
    res, info = np.full(batch.shape, np.nan, a.dtype), np.zeros(len(batch), np.int32)
    for i, m in enumerate(batch):
        try:
            res[i] = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            info[i] = _zero_pivot(m)
    return u.linalg_inv_ex_t(
        Tensor._wrap(u.like(res.reshape(a.shape), A._data)),
        Tensor._wrap(u.like(info.reshape(a.shape[:-2]), A._data)),
    )


def _zero_pivot(m) -> int:
    """The 1-based index of the first zero pivot of m's LU factorization (0 if none)."""
    import warnings

    import scipy.linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lu = scipy.linalg.lu_factor(m, check_finite=False)[0]
    zero = np.flatnonzero(np.diagonal(lu) == 0)
    return int(zero[0]) + 1 if zero.size else 0


def _info_zeros(A):
    xp = _xp_of(A._data)
    return Tensor._wrap(xp.zeros(A._data.shape[:-2], dtype=np.int32))


def _nan_like(A):
    xp = _xp_of(A._data)
    return Tensor._wrap(xp.full(A._data.shape, np.nan, dtype=A._data.dtype))


def _is_vector_rhs(A, B) -> bool:
    sa, sb = A._data.shape, B._data.shape
    return len(sb) == 1 or (len(sb) == len(sa) - 1 and sb == sa[:-1])


def solve(A: Tensor, B: Tensor, *, left: bool = True, out=None) -> Tensor:
    """The solution X of A X = B (or X A = B with ``left=False``) for square, invertible ``A``.

    Args:
        A (Tensor): a matrix or a batch of matrices, shape ``(*, n, n)``.
        B (Tensor): the right-hand side, shape ``(*, n, k)`` or ``(*, n)``.
        left: solve A X = B (True) or X A = B.
    """
    u.check_float("linalg.solve", A)
    u.check_square("linalg.solve", A)
    A, B = promote(A, B)
    if not left:  # X A = B  <=>  A^T X^T = B^T
        return solve(A.transpose(-2, -1), B.transpose(-2, -1)).transpose(-2, -1)
    if _is_vector_rhs(A, B):
        return Solve.apply(A, B.unsqueeze(-1)).squeeze(-1)
    if B._data.shape[-2] != A._data.shape[-1]:
        raise RuntimeError(
            f"linalg.solve: Incompatible shapes of A and B for the equation AX = "
            f"B ({A._data.shape[-2]}x{A._data.shape[-1]} and "
            f"{B._data.shape[-2]}x{B._data.shape[-1]})"
        )
    return Solve.apply(A, B)


def solve_ex(A: Tensor, B: Tensor, *, left: bool = True, check_errors: bool = False, out=None):
    """:func:`solve` without raising: returns ``(result, info)``, ``info`` > 0 where ``A`` is
    singular.
    """
    try:
        res, info = solve(A, B, left=left), _info_zeros(A)
    except u.LinAlgError:
        if check_errors:
            raise
        res = _nan_like(B)
        a = u.host(A._data)
        pivots = [_zero_pivot(m) for m in a.reshape((-1,) + a.shape[-2:])]
        info = Tensor._wrap(u.like(np.asarray(pivots, np.int32).reshape(a.shape[:-2]), A._data))
    return u.linalg_solve_ex_t(res, info)


def det(A: Tensor, *, out=None) -> Tensor:
    """The determinant of a square matrix (or of each matrix of a batch)."""
    _square_float("linalg.det", A)
    return Det.apply(A)


def slogdet(A: Tensor, *, out=None):
    """The sign and the natural logarithm of the absolute value of the determinant, a named
    tuple ``(sign, logabsdet)``; stable where the determinant under- or overflows.
    """
    _square_float("linalg.slogdet", A)
    return u.linalg_slogdet_t(*Slogdet.apply(A))


def _torch_slogdet(input: Tensor):
    """The sign and log absolute determinant of a square matrix; see
    :func:`ember.linalg.slogdet`."""
    _square_float("linalg.slogdet", input)
    return u.slogdet_t(*Slogdet.apply(input))


def logdet(input: Tensor) -> Tensor:
    """log det(A): NaN where the determinant is negative, -inf where it is zero."""
    _square_float("logdet", input)
    sign, logabs = Slogdet.apply(input)
    if input._data.dtype.kind == "c":
        from .complex_ops import angle

        return logabs + angle(sign) * 1j
    return logabs.masked_fill(sign.detach() < 0, float("nan"))


def matrix_power(A: Tensor, n: int, *, out=None) -> Tensor:
    """The ``n``-th power of a square matrix; a negative ``n`` uses the inverse, ``n`` = 0 gives
    the identity.
    """
    u.check_square("linalg.matrix_power", A)
    if n == 0:  # the identity, still part of the graph (with a zero gradient) as in PyTorch
        return A * 0 + u.eye_like(A)
    if n < 0:
        A, n = inv(A), -n
    result, base = None, A
    while n:  # binary exponentiation: log2(n) squarings
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    return result


def solve_triangular(
    A: Tensor, B: Tensor, *, upper: bool, left: bool = True, unitriangular: bool = False, out=None
) -> Tensor:
    """The solution X of A X = B (or X A = B with ``left=False``) for triangular ``A``.

    Args:
        A (Tensor): a triangular matrix or batch.
        B (Tensor): the right-hand side.
        upper: whether ``A`` is upper (True) or lower triangular.
        left: solve A X = B (True) or X A = B.
        unitriangular: assume a diagonal of ones.
    """
    u.check_float("linalg.solve_triangular", A)
    u.check_matrix("linalg.solve_triangular", B, "B")
    A, B = promote(A, B)
    T = A.triu() if upper else A.tril()
    if unitriangular:
        T = T - u.diag_embed_any(u.diagonal_any(T)) + u.eye_like(T)
    return solve(T, B, left=left)


def triangular_solve(
    b: Tensor,
    A: Tensor,
    upper: bool = True,
    transpose: bool = False,
    unitriangular: bool = False,
    *,
    out=None,
):
    """Solve A X = b for triangular ``A`` (PyTorch's older API); prefer
    :func:`ember.linalg.solve_triangular`.

    Returns:
        A named tuple ``(solution, cloned_coefficient)``.
    """
    M = A.transpose(-2, -1) if transpose else A
    x = solve_triangular(M, b, upper=upper != transpose, unitriangular=unitriangular)
    return u.triangular_solve_t(x, A.clone())


def cholesky_solve(B: Tensor, L: Tensor, upper: bool = False, *, out=None) -> Tensor:
    """X with (L L^H) X = B (or (U^H U) X = B when ``upper``)."""
    Lo = u.mH(L) if upper else L
    y = solve_triangular(Lo, B, upper=False)
    return solve_triangular(u.mH(Lo), y, upper=True)


def cholesky_inverse(L: Tensor, upper: bool = False, *, out=None) -> Tensor:
    """The inverse of A from its Cholesky factor ``L`` (A = L L^H; U^H U with ``upper``)."""
    return cholesky_solve(u.eye_like(L) + L * 0, L, upper)


def tensorinv(A: Tensor, ind: int = 2, *, out=None) -> Tensor:
    """The inverse of ``A`` seen as a linear map from its last ``ndim - ind`` dimensions to its
    first ``ind`` dimensions; the result has shape ``A.shape[ind:] + A.shape[:ind]``.
    """
    if ind <= 0:
        raise RuntimeError(f"Expected a strictly positive integer for 'ind', but got {ind}")
    shape = tuple(A.shape)
    rows, cols = shape[:ind], shape[ind:]
    m = int(np.prod(rows))
    if m != int(np.prod(cols)):
        raise RuntimeError(
            "Expected self to satisfy the requirement prod(self.shape[ind:]) == "
            f"prod(self.shape[:ind]), but got {int(np.prod(cols))} != {m}"
        )
    return inv(A.reshape(m, m)).reshape(cols + rows)


def tensorsolve(A: Tensor, B: Tensor, dims=None, *, out=None) -> Tensor:
    """The tensor X with ``tensordot(A, X, X.ndim) = B``; ``dims`` moves those dimensions of
    ``A`` to the end first.
    """
    if dims is not None:
        nd = A.ndim
        dims = [d % nd for d in dims]
        A = A.permute([i for i in range(nd) if i not in dims] + dims)
    rest = tuple(A.shape)[B.ndim :]
    n = int(np.prod(rest))
    return solve(A.reshape(-1, n), B.reshape(-1)).reshape(rest)
