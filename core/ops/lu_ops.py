"""LU, LDL and Householder (QR) factorizations, their solves and unpacking; lstsq.

LAPACK routines CuPy lacks (getrf with pivots, sytrf, geqrf) run on the host; gradients of LU
follow PyTorch's linalg_lu_backward, the others are compositions of differentiable ops.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.finfo import np_finfo
from ..backend.meta import is_meta
from ..tensor import Tensor
from . import _la_util as u
from .function_free import _xp_of
from .matrix_ops import pinv, solve_triangular


def _cat_any(xs, axis):
    if any(isinstance(x, Tensor) for x in xs):
        from .shape import cat

        return cat(list(xs), axis)
    return _xp_of(xs[0]).concatenate(xs, axis)


def _rsolve(m, b):
    """X with X M = B."""
    return u.mT(u.solve_any(u.mT(m), u.mT(b)))


class LU(Function):
    @staticmethod
    def forward(ctx, a):
        import scipy.linalg

        h = u.host(a)
        if h.size:
            p, lo, up = scipy.linalg.lu(h)
        else:
            m, n = h.shape[-2:]
            k = min(m, n)
            p = np.broadcast_to(np.eye(m, dtype=h.dtype), h.shape[:-2] + (m, m)).copy()
            lo = np.zeros(h.shape[:-2] + (m, k), h.dtype)
            up = np.zeros(h.shape[:-2] + (k, n), h.dtype)
        p, lo, up = (u.like(x.astype(h.dtype, copy=False), a) for x in (p, lo, up))
        ctx.mark_non_differentiable(p)
        ctx.save_for_backward(p, lo, up)
        return p, lo, up

    @staticmethod
    def backward(ctx, gp, gl, gu):
        p, lo, up = ctx.saved_tensors
        m, n = lo.shape[-2], up.shape[-1]
        k = min(m, n)
        if m <= n:  # square or wide: A = P L [U1 | U2]
            u1 = up[..., :, :k]
            ga = u.tril_any(u.mH(lo) @ gl - u.triu_any(gu) @ u.mH(up), -1)
            ga = _rsolve(u.mH(u1), ga)
            gu1 = gu[..., :, :k]
            ga = ga + u.triu_any(gu1)
            if n > k:
                ga = _cat_any([ga, gu[..., :, k:]], -1)
            ga = u.solve_any(u.mH(lo), ga)
        else:  # tall: A = P [L1; L2] U
            l1 = lo[..., :k, :]
            ga = u.triu_any(gu @ u.mH(up) - u.mH(lo) @ u.tril_any(gl, -1))
            ga = u.solve_any(u.mH(l1), ga)
            ga = _cat_any([ga + u.tril_any(gl[..., :k, :], -1), gl[..., k:, :]], -2)
            ga = _rsolve(u.mH(up), ga)
        return p @ ga


def lu(A: Tensor, *, pivot: bool = True, out=None):
    """The LU decomposition with partial pivoting, A = P L U.

    Returns:
        A named tuple ``(P, L, U)``: a permutation matrix, a unit lower-triangular and an
        upper-triangular matrix.
    """
    u.check_float("linalg.lu", A)
    u.check_matrix("linalg.lu", A)
    if not pivot:
        raise RuntimeError("linalg.lu_factor: LU without pivoting is not implemented on the CPU")
    return u.linalg_lu_t(*LU.apply(A))


def _perm_to_pivots(p: np.ndarray, k: int) -> np.ndarray:
    """LAPACK's 1-based row interchanges of a permutation matrix P (A = P L U)."""
    m = p.shape[-1]
    flat = p.reshape((-1, m, m))
    out = np.empty((flat.shape[0], k), np.int32)
    for b, pm in enumerate(flat):
        perm = np.argmax(pm, axis=0)  # row i of P^T A is row perm[i] of A
        cur = np.arange(m)
        pos = np.arange(m)
        for i in range(k):
            j = pos[perm[i]]
            out[b, i] = j + 1
            ri, rj = cur[i], cur[j]
            cur[i], cur[j] = rj, ri
            pos[rj], pos[ri] = i, j
    return out.reshape(p.shape[:-2] + (k,))


def _pack(lo: Tensor, up: Tensor) -> Tensor:
    m, k = lo.shape[-2:]
    n = up.shape[-1]
    from .shape import pad

    strict = lo.tril(-1)
    upper = up
    if n > k:
        strict = pad(strict, (0, n - k))
    if m > k:
        upper = pad(upper, (0, 0, 0, m - k))
    return strict + upper


def lu_factor(A: Tensor, *, pivot: bool = True, out=None):
    """The compact LU factorization of ``A``: ``(LU, pivots)``, L and U packed in one matrix and
    1-based pivots as LAPACK gives them; for :func:`lu_solve` and :func:`ember.lu_unpack`.
    """
    res = lu_factor_ex(A, pivot=pivot, check_errors=False)
    if res.info._data.any():
        pass  # like PyTorch, lu_factor reports singular inputs only through lu_factor_ex
    return u.linalg_lu_factor_t(res.LU, res.pivots)


def lu_factor_ex(A: Tensor, *, pivot: bool = True, check_errors: bool = False, out=None):
    """:func:`lu_factor` without raising: returns ``(LU, pivots, info)``, ``info`` > 0 where U
    is singular (raises if ``check_errors``).
    """
    p, lo, up = lu(A, pivot=pivot)
    m, n = A._data.shape[-2:]
    k = min(m, n)
    piv = _perm_to_pivots(u.host(p._data), k)
    diag = u.host(u.diagonal_any(up._data))
    zero = diag == 0
    info = np.where(zero.any(-1), zero.argmax(-1) + 1, 0).astype(np.int32)
    if check_errors and info.any():
        raise u.LinAlgError(
            "linalg.lu_factor_ex: U[{0},{0}] is zero and using it on "
            "lu_solve would result in a division by zero.".format(
                int(info.reshape(-1)[np.flatnonzero(info)[0]])
            )
        )
    return u.linalg_lu_factor_ex_t(
        _pack(lo, up), Tensor._wrap(u.like(piv, A._data)), Tensor._wrap(u.like(info, A._data))
    )


def _pivots_to_perm(piv: np.ndarray, m: int, dtype) -> np.ndarray:
    flat = piv.reshape((-1, piv.shape[-1]))
    out = np.empty((flat.shape[0], m, m), dtype)
    for b, row in enumerate(flat):
        perm = np.arange(m)
        for i, j in enumerate(row):
            perm[[i, j - 1]] = perm[[j - 1, i]]
        out[b] = np.eye(m, dtype=dtype)[:, perm]  # P with A = P L U
    return out.reshape(piv.shape[:-1] + (m, m))


def lu_unpack(
    LU_data: Tensor,
    LU_pivots: Tensor,
    unpack_data: bool = True,
    unpack_pivots: bool = True,
    *,
    out=None,
):
    """Unpack the compact ``(LU_data, LU_pivots)`` of :func:`ember.linalg.lu_factor` into
    ``(P, L, U)``; ``unpack_data`` / ``unpack_pivots`` False leave L, U / P empty.
    """
    m, n = LU_data.shape[-2:]
    k = min(m, n)
    xp = _xp_of(LU_data._data)
    dt = LU_data._data.dtype
    if unpack_data:
        lo = LU_data[..., :, :k].tril(-1) + Tensor._wrap(xp.eye(m, k, dtype=dt))
        up = LU_data[..., :k, :].triu()
    else:
        lo = up = Tensor._wrap(xp.zeros((0,), dt))
    if unpack_pivots:
        perm = _pivots_to_perm(u.host(LU_pivots._data), m, dt)
        p = Tensor._wrap(u.like(perm, LU_data._data))
    else:
        p = Tensor._wrap(xp.zeros((0,), dt))
    return u.lu_unpack_t(p, lo, up)


def lu_solve(
    LU: Tensor, pivots: Tensor, B: Tensor, *, left: bool = True, adjoint: bool = False, out=None
) -> Tensor:
    """Solve A X = B (or X A = B with ``left=False``) from the factorization of
    :func:`lu_factor`.

    Args:
        LU (Tensor): the packed factors.
        pivots (Tensor): the pivots.
        B (Tensor): the right-hand side.
        left: solve A X = B (True) or X A = B.
        adjoint: solve with the conjugate transpose of A.
    """
    p, lo, up = lu_unpack(LU, pivots)
    if left and not adjoint:  # X = U^-1 L^-1 P^T B
        y = solve_triangular(lo, p.transpose(-2, -1) @ B, upper=False, unitriangular=True)
        return solve_triangular(up, y, upper=True)
    if left:  # A^H X = B: X = P L^-H U^-H B
        y = solve_triangular(u.mH(up), B, upper=False)
        return p @ solve_triangular(u.mH(lo), y, upper=True, unitriangular=True)
    if not adjoint:  # X A = B: X = B U^-1 L^-1 P^T
        y = solve_triangular(up, B, upper=True, left=False)
        return solve_triangular(lo, y, upper=False, left=False, unitriangular=True) @ p.transpose(
            -2, -1
        )
    # X A^H = B: X = B P L^-H U^-H
    y = solve_triangular(u.mH(lo), B @ p, upper=True, left=False, unitriangular=True)
    return solve_triangular(u.mH(up), y, upper=False, left=False)


def torch_lu_solve(b: Tensor, LU_data: Tensor, LU_pivots: Tensor, *, out=None) -> Tensor:
    """Solve A X = b from the factorization of :func:`ember.linalg.lu_factor` (PyTorch's older
    argument order); prefer :func:`ember.linalg.lu_solve`.
    """
    return lu_solve(LU_data, LU_pivots, b)


# ---- LDL (LAPACK sytrf / hetrf; no gradient, as in PyTorch) ------------------------------------
def _lapack_batched(name, arrays, **kw):
    import scipy.linalg.lapack as lapack

    hs = [u.host(a) for a in arrays]
    fn = lapack.get_lapack_funcs(name, (hs[0],))
    batch = hs[0].shape[:-2] if hs[0].ndim > 2 else ()
    outs = []
    for idx in np.ndindex(*batch):
        outs.append(fn(*[h[idx] for h in hs], **kw))
    return batch, outs


def ldl_factor_ex(A: Tensor, *, hermitian: bool = False, check_errors: bool = False, out=None):
    """:func:`ldl_factor` without raising: returns ``(LD, pivots, info)``."""
    u.check_float("linalg.ldl_factor_ex", A)
    u.check_square("linalg.ldl_factor_ex", A)
    name = "hetrf" if hermitian and A._data.dtype.kind == "c" else "sytrf"
    batch, outs = _lapack_batched(name, [A._data], lower=1)
    n = A._data.shape[-1]
    ld = np.stack([np.tril(o[0]) for o in outs]).reshape(batch + (n, n))
    piv = np.stack([o[1] for o in outs]).astype(np.int32).reshape(batch + (n,))
    info = np.asarray([o[2] for o in outs], np.int32).reshape(batch)
    if check_errors and info.any():
        raise u.LinAlgError(
            f"linalg.ldl_factor_ex: The factorization could not be completed "
            f"(info = {int(info.max())})."
        )
    return u.linalg_ldl_factor_ex_t(*(Tensor._wrap(u.like(x, A._data)) for x in (ld, piv, info)))


def ldl_factor(A: Tensor, *, hermitian: bool = False, out=None):
    """The LDL^T (or LDL^H with ``hermitian``) factorization of a symmetric matrix with
    Bunch-Kaufman pivoting: ``(LD, pivots)`` in LAPACK's compact form, for :func:`ldl_solve`.
    """
    res = ldl_factor_ex(A, hermitian=hermitian)
    return u.linalg_ldl_factor_t(res.LD, res.pivots)


def ldl_solve(
    LD: Tensor, pivots: Tensor, B: Tensor, *, hermitian: bool = False, out=None
) -> Tensor:
    """Solve A X = B from the factorization of :func:`ldl_factor`."""
    name = "hetrs" if hermitian and LD._data.dtype.kind == "c" else "sytrs"
    import scipy.linalg.lapack as lapack

    ld, piv, b = u.host(LD._data), u.host(pivots._data), u.host(B._data)
    shape = np.broadcast_shapes(ld.shape[:-2], b.shape[:-2])
    ld = np.broadcast_to(ld, shape + ld.shape[-2:])
    piv = np.broadcast_to(piv, shape + piv.shape[-1:])
    b = np.broadcast_to(b, shape + b.shape[-2:])
    fn = lapack.get_lapack_funcs(name, (ld,))
    out_arr = np.empty(b.shape, np.result_type(ld, b))
    for idx in np.ndindex(*shape):
        out_arr[idx] = fn(ld[idx], piv[idx], b[idx], lower=1)[0]
    return Tensor._wrap(u.like(out_arr, LD._data))


# ---- Householder -------------------------------------------------------------------------------
def _householder_full(A: Tensor, tau: Tensor, ncols: int) -> Tensor:
    m = A.shape[-2]
    k = tau.shape[-1]
    xp = _xp_of(A._data)
    v = A[..., :, :k].tril(-1) + Tensor._wrap(xp.eye(m, k, dtype=A._data.dtype))
    q = Tensor._wrap(xp.eye(m, ncols, dtype=A._data.dtype))
    for i in range(k - 1, -1, -1):  # Q = H_1 ... H_k applied to the first columns of I
        vi = v[..., :, i : i + 1]
        q = q - (vi * tau[..., i : i + 1].unsqueeze(-1)) @ (u.mH(vi) @ q)
    return q


def householder_product(A: Tensor, tau: Tensor, *, out=None) -> Tensor:
    """The product of Householder reflections H_1 ... H_k given by the columns of ``A`` and the
    scalars ``tau`` (as :func:`ember.geqrf` returns them): the first n columns of that product.
    """
    u.check_matrix("torch.linalg.householder_product", A, "input")
    m, n = A.shape[-2:]
    if n > m:
        raise RuntimeError(
            "torch.linalg.householder_product: input.shape[-2] must be greater "
            "than or equal to input.shape[-1]"
        )
    if tau.shape[-1] > n:
        raise RuntimeError(
            "torch.linalg.householder_product: input.shape[-1] must be greater "
            "than or equal to tau.shape[-1]"
        )
    return _householder_full(A, tau, n)


def orgqr(input: Tensor, tau: Tensor) -> Tensor:
    """The matrix Q of a QR decomposition from :func:`geqrf`'s output; ``householder_product``."""
    return householder_product(input, tau)


def ormqr(
    input: Tensor,
    tau: Tensor,
    other: Tensor,
    left: bool = True,
    transpose: bool = False,
    *,
    out=None,
) -> Tensor:
    """Multiply ``other`` by the Q of :func:`geqrf`'s output without forming Q: Q @ other (or
    other @ Q with ``left=False``; Q^H with ``transpose=True``).
    """
    q = _householder_full(input, tau, input.shape[-2])
    if transpose:
        q = u.mH(q)
    return q @ other if left else other @ q


def geqrf(input: Tensor, *, out=None):
    """The QR decomposition in LAPACK's compact form: ``(a, tau)``, R in the upper triangle of ``a``
    and Householder vectors below it; see :func:`orgqr`.
    """
    u.check_matrix("geqrf", input, "input")
    batch, outs = _lapack_batched("geqrf", [input._data])
    m, n = input._data.shape[-2:]
    a = np.stack([o[0] for o in outs]).reshape(batch + (m, n))
    tau = np.stack([o[1] for o in outs]).reshape(batch + (min(m, n),))
    return u.geqrf_t(Tensor._wrap(u.like(a, input._data)), Tensor._wrap(u.like(tau, input._data)))


# ---- least squares ---------------------------------------------------------------------------
def lstsq(A: Tensor, B: Tensor, rcond=None, *, driver=None):
    """The minimum-norm least-squares solution (through the pseudo-inverse, which also gives
    PyTorch's gradient), with gelsy's rank and the residuals and singular values the driver
    reports."""
    u.check_float("torch.linalg.lstsq", A)
    u.check_same_dtype("torch.linalg.lstsq", A, B)
    drivers = (None, "gels", "gelsy", "gelsd", "gelss")
    if driver not in drivers:
        raise RuntimeError(
            f"torch.linalg.lstsq: parameter `driver` should be one of "
            f"(gels, gelsy, gelsd, gelss). Got {driver}"
        )
    vector = B.ndim == A.ndim - 1
    b = B.unsqueeze(-1) if vector else B
    m, n = A.shape[-2:]
    x = pinv(A, rtol=rcond) @ b
    xp = _xp_of(A._data)
    rdt = A._data.real.dtype
    empty = Tensor._wrap(xp.zeros((0,), rdt))
    s = None
    if driver in (None, "gelsy", "gelsd", "gelss"):
        s = np.linalg.svd(u.host(A._data), compute_uv=False)
        tol = (np_finfo(s.dtype).eps * max(m, n) if rcond is None else rcond) * s[..., :1]
        rank = Tensor._wrap(u.like(np.asarray((s > tol).sum(-1), np.int64), A._data))
    else:
        rank = Tensor._wrap(xp.zeros((0,), np.int64))
    residuals = empty
    full_rank = driver == "gels" or is_meta(rank._data) or bool((rank._data == min(m, n)).all())
    if m > n and driver != "gelsy" and driver is not None and full_rank:
        r = A @ x - b
        residuals = (r * r.conj()).real.sum(-2) if r._data.dtype.kind == "c" else (r * r).sum(-2)
    svals = Tensor._wrap(u.like(s.astype(rdt), A._data)) if driver in ("gelsd", "gelss") else empty
    if vector:
        x = x.squeeze(-1)
    return u.linalg_lstsq_t(x, residuals, rank, svals)


def torch_lu(A: Tensor, pivot: bool = True, get_infos: bool = False, out=None):
    """``torch.lu`` (deprecated in PyTorch for linalg.lu_factor): (LU, pivots[, infos])."""
    res = lu_factor_ex(A, pivot=pivot)
    return (res.LU, res.pivots, res.info) if get_infos else (res.LU, res.pivots)


def _removed(name: str, hint: str):
    def method(self, *args, **kwargs):
        raise RuntimeError(
            f"This function was deprecated since version 1.9 and is now removed. {hint}"
        )

    method.__name__ = name
    return method


tensor_lstsq = _removed("lstsq", "`torch.lstsq` is deprecated in favor of `torch.linalg.lstsq`.")
tensor_eig = _removed(
    "eig",
    "`torch.linalg.eig` returns complex tensors of dtype `cfloat` or "
    "`cdouble` rather than real tensors mimicking complex tensors.",
)
tensor_solve = _removed("solve", "`torch.solve` is deprecated in favor of `torch.linalg.solve`.")
