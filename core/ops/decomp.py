"""Factorizations with gradients: cholesky, qr, eigh, eig, svd (and their value-only forms).

Backward formulas are PyTorch's (the gradient is the conjugate Wirtinger derivative), written
with ``_la_util`` helpers so that they run on arrays and, for double backward, on tensors.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from . import _la_util as u
from .complex_ops import conj_any, real_any
from .function_free import _xp_of


def _is_c(x) -> bool:
    return (x._data if isinstance(x, Tensor) else x).dtype.kind == "c"


# ---- Cholesky -------------------------------------------------------------------------------
def _not_pd(name: str, a) -> u.LinAlgError:
    a = u.host(a)
    batch = a.reshape((-1,) + a.shape[-2:])
    for i, m in enumerate(batch):
        for k in range(1, m.shape[-1] + 1):
            try:
                np.linalg.cholesky(m[:k, :k])
            except np.linalg.LinAlgError:
                where = f"(Batch element {i}): " if a.ndim > 2 else ""
                return u.LinAlgError(
                    f"{name}: {where}The factorization could not be completed because the input "
                    f"is not positive-definite (the leading minor of order {k} is not "
                    "positive-definite)."
                )
    return u.LinAlgError(f"{name}: The factorization could not be completed.")


class Cholesky(Function):
    @staticmethod
    def forward(ctx, a, upper):
        xp = ctx.xp
        try:  # the upper factor reads the upper triangle, as LAPACK does
            low = xp.linalg.cholesky(u.mH(a) if upper else a)
        except np.linalg.LinAlgError:
            raise _not_pd("linalg.cholesky", a) from None
        ctx.upper = upper
        out = u.mH(low).copy() if upper else low
        ctx.save_for_backward(out)  # the output itself: double backward sees its graph
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        low = u.mH(out) if ctx.upper else out
        g = u.mH(grad) if ctx.upper else grad
        # gA = L^-H phi(L^H gL) L^-1, phi = lower triangle with the diagonal halved
        x = u.mH(low) @ g
        phi = u.tril_any(x) - 0.5 * u.diag_embed_any(u.diagonal_any(x))
        linv = u.inv_any(low)
        ga = u.mH(linv) @ phi @ linv
        return 0.5 * (ga + u.mH(ga)), None


def cholesky(A: Tensor, *, upper: bool = False, out=None) -> Tensor:
    """The Cholesky factor L of a Hermitian positive-definite matrix, A = L L^H.

    Args:
        A (Tensor): a matrix or a batch of matrices, shape ``(*, n, n)``.
        upper: return the upper factor U = L^H instead.

    Raises:
        ember.linalg.LinAlgError: ``A`` is not positive-definite.
    """
    u.check_float("linalg.cholesky", A)
    u.check_square("linalg.cholesky", A)
    return Cholesky.apply(A, upper)


def cholesky_ex(A: Tensor, *, upper: bool = False, check_errors: bool = False, out=None):
    """:func:`cholesky` without raising: returns ``(L, info)``, ``info`` 0 where the factorization
    succeeded and the order of the failing leading minor elsewhere (raises if ``check_errors``).
    """
    u.check_float("linalg.cholesky_ex", A)
    u.check_square("linalg.cholesky_ex", A)
    xp = _xp_of(A._data)
    try:
        return u.linalg_cholesky_ex_t(
            Cholesky.apply(A, upper), Tensor._wrap(xp.zeros(A._data.shape[:-2], np.int32))
        )
    except u.LinAlgError:
        if check_errors:
            raise
    # LAPACK's partial factor and the order of the failing minor, per batch element
    import scipy.linalg.lapack as lapack

    a = u.host(A._data)
    batch = a.reshape((-1,) + a.shape[-2:])
    potrf = lapack.get_lapack_funcs("potrf", (batch,))
    facs, infos = [], []
    for m in batch:
        c, info = potrf(m, lower=not upper, clean=True)
        facs.append(c)
        infos.append(info)
    fac = np.stack(facs).reshape(a.shape) if facs else a.copy()
    info = np.asarray(infos, np.int32).reshape(a.shape[:-2])
    return u.linalg_cholesky_ex_t(
        Tensor._wrap(u.like(fac, A._data)), Tensor._wrap(u.like(info, A._data))
    )


def torch_cholesky(input: Tensor, upper: bool = False, *, out=None) -> Tensor:
    """The Cholesky factor of a positive-definite matrix (PyTorch's older ``torch.cholesky``);
    prefer :func:`ember.linalg.cholesky`.
    """
    return cholesky(input, upper=upper)


# ---- QR -------------------------------------------------------------------------------------
class QR(Function):
    @staticmethod
    def forward(ctx, a, mode):
        xp = ctx.xp
        m, n = a.shape[-2:]
        if mode == "r":
            r = xp.linalg.qr(a, mode="r")
            q = xp.zeros((0,), dtype=a.dtype)
        else:
            q, r = xp.linalg.qr(a, mode=mode)
        ctx.mode, ctx.mn = mode, (m, n)
        ctx.save_for_backward(q, r)
        return q, r

    @staticmethod
    def backward(ctx, gq, gr):
        q, r = ctx.saved_tensors
        m, n = ctx.mn
        if ctx.mode == "r":
            raise RuntimeError(
                "The derivative of linalg.qr depends on Q, which is not computed "
                "when mode='r'. Please use linalg.qr(A, mode='reduced') if you "
                "are going to differentiate through linalg.qr."
            )
        if ctx.mode == "complete" and m > n:
            raise RuntimeError(
                "The QR decomposition is not differentiable when mode='complete' and nrows > ncols."
            )
        if m >= n:
            return _qr_square_grad(q, r, gq, gr), None
        # wide A = Q [X | Y]: X = Q U is square; Y = Q V adds Y gV^H to gQ
        x_r, v = r[..., :, :m], r[..., :, m:]
        gu, gv = gr[..., :, :m], gr[..., :, m:]
        y = q @ v
        gx = _qr_square_grad(q, x_r, gq + y @ u.mH(gv), gu)
        gy = q @ gv
        if isinstance(gx, Tensor) or isinstance(gy, Tensor):
            from .shape import cat

            return cat([gx, gy], -1), None
        return _xp_of(gx).concatenate([gx, gy], -1), None


def _qr_square_grad(q, r, gq, gr):
    # M = R gR^H - gQ^H Q; gA = (gQ + Q copyltu(M)) R^-H with copyltu(M) = tril(M) + tril(M,-1)^H
    mm = r @ u.mH(gr) - u.mH(gq) @ q
    low = u.tril_any(mm, -1)
    sym = (
        low
        + u.mH(low)
        + u.diag_embed_any(
            real_any(u.diagonal_any(mm)) * (1 + 0j) if _is_c(mm) else u.diagonal_any(mm)
        )
    )
    b = gq + q @ sym
    # X R^H = b  <=>  R X^H = b^H
    return u.mH(u.solve_any(r, u.mH(b)))


def qr(A: Tensor, mode: str = "reduced", *, out=None):
    """The QR decomposition A = Q R, Q with orthonormal columns and R upper-triangular.

    Args:
        A (Tensor): shape ``(*, m, n)``.
        mode: ``"reduced"`` (Q is ``m x k``, k = min(m, n)), ``"complete"`` (Q is ``m x m``) or
            ``"r"`` (R only; Q is empty).

    Returns:
        A named tuple ``(Q, R)``.
    """
    u.check_float("linalg.qr", A)
    u.check_matrix("linalg.qr", A)
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(
            f"qr received unrecognized mode '{mode}' but expected one of "
            "'reduced' (default), 'r', or 'complete'"
        )
    return u.linalg_qr_t(*QR.apply(A, mode))


def torch_qr(input: Tensor, some: bool = True, *, out=None):
    """The QR decomposition (PyTorch's older ``torch.qr``): ``some=True`` gives the reduced form,
    False the complete one; prefer :func:`ember.linalg.qr`.
    """
    return u.qr_t(*QR.apply(input, "reduced" if some else "complete"))


# ---- eigh / eig -------------------------------------------------------------------------------
def _eig_grad(v, w, gv, gw, hermitian: bool):
    """PyTorch's linalg_eig_backward (hermitian: eigh)."""
    if gv is None:
        out = u.diag_embed_any(gw)
        if not hermitian and (gw._data if isinstance(gw, Tensor) else gw).dtype.kind != "c":
            out = out * (1 + 0j)
        return v @ out @ u.mH(v) if hermitian else u.solve_any(u.mH(v), out @ u.mH(v))
    vhgv = u.mH(v) @ gv
    if hermitian:  # the skew-Hermitian part: the tangent space at the identity of U(n)
        vhgv = 0.5 * (vhgv - u.mH(vhgv))
    else:  # columns of norm 1
        vhgv = vhgv - u.mH(v) @ (v * u.unsq(real_any(u.diagonal_any(vhgv)), -2))
    wc = conj_any(w)
    e = u.unsq(wc, -2) - u.unsq(wc, -1)
    eye = u.eye_like(e)
    e = e + eye  # 1 on the diagonal: the division leaves it unchanged
    inner = vhgv / e
    inner = inner - u.diag_embed_any(u.diagonal_any(inner))
    inner = inner + u.diag_embed_any(gw if gw is not None else u.diagonal_any(vhgv))
    if hermitian:
        return v @ inner @ u.mH(v)
    return u.solve_any(u.mH(v), inner @ u.mH(v))


class Eigh(Function):
    @staticmethod
    def forward(ctx, a, uplo):
        # the vectors are outputs also for eigvalsh: its gradient (and that gradient's own
        # graph, for double backward) needs them
        w, v = ctx.xp.linalg.eigh(a, UPLO=uplo)
        ctx.set_materialize_grads(False)  # no vector gradient: no division by gaps
        ctx.save_for_backward(w, v)
        return w, v

    @staticmethod
    def backward(ctx, gw, gv):
        w, v = ctx.saved_tensors
        return _eig_grad(v, w, gv, gw, True), None


class Eig(Function):
    @staticmethod
    def forward(ctx, a):
        ctype = np.complex64 if a.dtype in (np.float32, np.complex64) else np.complex128
        w, v = np.linalg.eig(u.host(a))  # CuPy has no general eigensolver
        w, v = u.like(w.astype(ctype), a), u.like(v.astype(ctype), a)
        ctx.real_input = a.dtype.kind != "c"
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(w, v)
        return w, v

    @staticmethod
    def backward(ctx, gw, gv):
        w, v = ctx.saved_tensors
        ga = _eig_grad(v, w, gv, gw, False)
        return real_any(ga) if ctx.real_input else ga


def eigh(A: Tensor, UPLO: str = "L", *, out=None):
    """The eigenvalues (ascending) and eigenvectors of a Hermitian or real symmetric matrix.

    Args:
        A (Tensor): a matrix or a batch of matrices, shape ``(*, n, n)``.
        UPLO: use the lower (``"L"``) or upper (``"U"``) triangle of ``A``.

    Returns:
        A named tuple ``(eigenvalues, eigenvectors)``; the eigenvalues are real.
    """
    u.check_float("linalg.eigh", A)
    u.check_square("linalg.eigh", A)
    return u.linalg_eigh_t(*Eigh.apply(A, UPLO))


def eigvalsh(A: Tensor, UPLO: str = "L", *, out=None) -> Tensor:
    """The eigenvalues (ascending, real) of a Hermitian or real symmetric matrix; see
    :func:`eigh`.
    """
    u.check_float("linalg.eigvalsh", A)
    u.check_square("linalg.eigvalsh", A)
    return Eigh.apply(A, UPLO)[0]


def eig(A: Tensor, *, out=None):
    """The eigenvalues and eigenvectors of a general square matrix, both complex.

    Returns:
        A named tuple ``(eigenvalues, eigenvectors)``, each eigenvector of unit norm.
    """
    u.check_float("linalg.eig", A)
    u.check_square("linalg.eig", A)
    return u.linalg_eig_t(*Eig.apply(A))


def eigvals(A: Tensor, *, out=None) -> Tensor:
    """The (complex) eigenvalues of a general square matrix; see :func:`eig`."""
    return eig(A)[0]


# ---- SVD --------------------------------------------------------------------------------------
class SVD(Function):
    @staticmethod
    def forward(ctx, a, full_matrices):
        xp = ctx.xp
        m, n = a.shape[-2:]
        k = min(m, n)
        uu, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
        ctx.set_materialize_grads(False)  # svdvals: no division by the gaps of S
        ctx.save_for_backward(uu, s, vh)
        ctx.full, ctx.k = full_matrices, k
        return uu, s, vh

    @staticmethod
    def backward(ctx, gu, gs, gvh):
        uu, s, vh = ctx.saved_tensors
        k = ctx.k
        if ctx.full:  # the extra columns of a full U or V do not enter the gradient
            uu, vh = uu[..., :, :k], vh[..., :k, :]
            gu = gu[..., :, :k] if gu is not None else None
            gvh = gvh[..., :k, :] if gvh is not None else None
        if gu is None and gvh is None:
            return (uu * u.unsq(gs, -2)) @ vh, None
        m, n = uu.shape[-2], vh.shape[-1]
        v = u.mH(vh)
        gv = u.mH(gvh) if gvh is not None else None
        s2 = s * s
        e = u.unsq(s2, -2) - u.unsq(s2, -1)
        e = e + u.eye_like(e)
        inner = 0
        if gu is not None:
            uhgu = u.mH(uu) @ gu
            inner = (uhgu - u.mH(uhgu)) * u.unsq(s, -2)
        if gv is not None:
            vhgv = u.mH(v) @ gv
            inner = inner + u.unsq(s, -1) * (vhgv - u.mH(vhgv))
        inner = inner / e
        inner = inner - u.diag_embed_any(u.diagonal_any(inner))
        if gs is not None:
            inner = inner + u.diag_embed_any(gs * (1 + 0j) if _is_c(uu) else gs)
        if _is_c(uu) and gu is not None:  # the phase of each singular pair
            from .complex_ops import imag_any

            inner = inner + u.diag_embed_any(imag_any(u.diagonal_any(uhgu)) * 1j / s)
        ga = uu @ inner @ vh
        if m > k and gu is not None:
            gus = gu / u.unsq(s, -2)
            ga = ga + (gus - uu @ (u.mH(uu) @ gus)) @ vh
        if n > k and gv is not None:
            gvs = gv / u.unsq(s, -2)
            ga = ga + uu @ u.mH(gvs - v @ (u.mH(v) @ gvs))
        return ga, None


def svd(A: Tensor, full_matrices: bool = True, *, driver=None, out=None):
    """The singular value decomposition A = U diag(S) V^H.

    Args:
        A (Tensor): shape ``(*, m, n)``.
        full_matrices: return square U and V^H (else their first min(m, n) columns/rows).
        driver: accepted for PyTorch's signature (a CUDA option); ignored.

    Returns:
        A named tuple ``(U, S, Vh)``, singular values in descending order.
    """
    u.check_float("linalg.svd", A)
    u.check_matrix("linalg.svd", A)
    return u.linalg_svd_t(*SVD.apply(A, full_matrices))


def svdvals(A: Tensor, *, driver=None, out=None) -> Tensor:
    """The singular values of ``A`` in descending order; see :func:`svd`."""
    u.check_float("linalg.svdvals", A)
    u.check_matrix("linalg.svdvals", A)
    return SVD.apply(A, False)[1]


def torch_svd(input: Tensor, some: bool = True, compute_uv: bool = True, *, out=None):
    """``torch.svd``: V (not V^H); with ``compute_uv=False`` U and V are zero matrices."""
    if not compute_uv:
        xp = _xp_of(input._data)
        m, n = input._data.shape[-2:]
        batch = input._data.shape[:-2]
        return u.svd_t(
            Tensor._wrap(xp.zeros(batch + (m, m), input._data.dtype)),
            svdvals(input),
            Tensor._wrap(xp.zeros(batch + (n, n), input._data.dtype)),
        )
    uu, s, vh = svd(input, full_matrices=not some)
    return u.svd_t(uu, s, u.mH(vh))
