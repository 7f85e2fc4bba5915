"""Products and matrix functions built from differentiable ops: cross, vecdot, multi_dot, kron,
tensordot, inner, addmv/addr/addbmm, trace, vander, matrix and spectral norms, cond, rank."""

from __future__ import annotations

import numpy as np

from ..amp._state import autocast_op
from ..tensor import Tensor
from . import _la_util as u
from ._util import promote, wrap_dim
from .complex_ops import conj
from .decomp import svdvals
from .function_free import _xp_of
from .linalg import einsum, matmul, vector_norm
from .matrix_ops import inv


def _sel(x: Tensor, dim: int, i: int) -> Tensor:
    return x.narrow(dim, i, 1)


def _cross(a: Tensor, b: Tensor, dim: int) -> Tensor:
    from .shape import cat

    a0, a1, a2 = (_sel(a, dim, i) for i in range(3))
    b0, b1, b2 = (_sel(b, dim, i) for i in range(3))
    return cat([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim)


def linalg_cross(input: Tensor, other: Tensor, *, dim: int = -1, out=None) -> Tensor:
    """The cross product of 3-vectors along ``dim``, with broadcasting."""
    input, other = promote(input, other)
    sa, sb = input._data.shape, other._data.shape
    if input.ndim != other.ndim:
        raise RuntimeError("linalg.cross: inputs must have the same number of dimensions.")
    d = wrap_dim(dim, input.ndim)
    if sa[d] != 3 or sb[d] != 3:
        raise RuntimeError(
            f"linalg.cross: inputs dimension {dim} must have length 3. Got {sa[d]} and {sb[d]}"
        )
    shape = tuple(np.broadcast_shapes(sa, sb))
    return _cross(input.expand(*shape), other.expand(*shape), d)


def cross(input: Tensor, other: Tensor, dim=None, *, out=None) -> Tensor:
    """``torch.cross``: ``dim=None`` takes the first dim of size 3."""
    if dim is None:
        shape = np.broadcast_shapes(input._data.shape, other._data.shape)
        dim = next((i for i, n in enumerate(shape) if n == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    return linalg_cross(input, other, dim=dim)


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1, out=None) -> Tensor:
    """The dot product of vectors along ``dim``, sum of conj(x) * y, with broadcasting."""
    x, y = promote(x, y)
    return (conj(x) * y).sum(dim)


@autocast_op("linalg_multi_dot")
def multi_dot(tensors, *, out=None) -> Tensor:
    """The product of a list of matrices in the cheapest order (the first and last may be
    vectors).
    """
    ts = list(tensors)
    if len(ts) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(ts)}")
    first_vec, last_vec = ts[0].ndim == 1, ts[-1].ndim == 1
    if first_vec:
        ts[0] = ts[0].unsqueeze(0)
    if last_vec:
        ts[-1] = ts[-1].unsqueeze(-1)
    for i, t in enumerate(ts):
        if t.ndim != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {t.ndim}D")
    out_t = ts[0]
    for t in ts[1:]:
        out_t = matmul(out_t, t)
    if first_vec:
        out_t = out_t.squeeze(0)
    if last_vec:
        out_t = out_t.squeeze(-1)
    return out_t


@autocast_op("chain_matmul")
def chain_matmul(*matrices, out=None) -> Tensor:
    """The product of the matrices given as arguments; see :func:`ember.linalg.multi_dot`."""
    if len(matrices) == 1:
        return matrices[0].clone()
    return multi_dot(matrices)


def kron(input: Tensor, other: Tensor, *, out=None) -> Tensor:
    """The Kronecker product of two tensors."""
    input, other = promote(input, other)
    nd = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (nd - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (nd - other.ndim) + tuple(other.shape))
    # a[..., i, None, j, None] * b[None, k, None, l] interleaves the dims: (a0 b0, a1 b1, ...)
    sa, sb = [], []
    for n in a.shape:
        sa += [n, 1]
    for n in b.shape:
        sb += [1, n]
    prod = a.reshape(tuple(sa)) * b.reshape(tuple(sb))
    return prod.reshape(tuple(x * y for x, y in zip(a.shape, b.shape)))


@autocast_op("tensordot")
def tensordot(a: Tensor, b: Tensor, dims=2, out=None) -> Tensor:
    """The contraction of ``a`` and ``b`` over ``dims``: the last ``dims`` dimensions of ``a``
    with the first of ``b`` (an int), or the listed pairs (two lists).
    """
    a, b = promote(a, b)
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    la = list(letters[: a.ndim])
    lb = list(letters[a.ndim : a.ndim + b.ndim])
    for i, j in zip(da, db):
        lb[j % b.ndim] = la[i % a.ndim]
    contracted = {la[i % a.ndim] for i in da}
    outs = [c for c in la if c not in contracted] + [c for c in lb if c not in contracted]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(outs)}", a, b)


def inner(input: Tensor, other: Tensor, *, out=None) -> Tensor:
    """The inner product over the last dimension of both tensors (a dot product for vectors)."""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return tensordot(input, other, ([-1], [-1]))


def vdot(input: Tensor, other: Tensor, *, out=None) -> Tensor:
    """The dot product of two 1-D tensors with the first conjugated, sum of conj(x) * y."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return (conj(input) * other).sum()


def _scaled(x, c):
    return x if c == 1 else x * c


@autocast_op("addmv")
def addmv(input: Tensor, mat: Tensor, vec: Tensor, *, beta=1, alpha=1, out=None) -> Tensor:
    """``beta * input + alpha * (mat @ vec)``."""
    prod = _scaled(matmul(mat, vec), alpha)
    return prod if beta == 0 else _scaled(input, beta) + prod


@autocast_op("addr")
def addr(input: Tensor, vec1: Tensor, vec2: Tensor, *, beta=1, alpha=1, out=None) -> Tensor:
    """``beta * input + alpha * outer(vec1, vec2)``."""
    prod = _scaled(vec1.unsqueeze(-1) * vec2.unsqueeze(0), alpha)
    return prod if beta == 0 else _scaled(input, beta) + prod


@autocast_op("addbmm")
def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1, out=None) -> Tensor:
    """``beta * input + alpha * sum over b of batch1[b] @ batch2[b]``."""
    prod = _scaled(matmul(batch1, batch2).sum(0), alpha)
    return prod if beta == 0 else _scaled(input, beta) + prod


def trace(input: Tensor) -> Tensor:
    """The sum of the diagonal of a 2-D tensor."""
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    n = min(input.shape)
    d = u.diagonal_any(input[:n, :n])
    if input._data.dtype.kind in "biu":
        return d.sum()
    return d.sum()


def diagonal(A: Tensor, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """``torch.linalg.diagonal``: the diagonal over the last two dims by default."""
    x = A.movedim((dim1, dim2), (-2, -1)) if (dim1, dim2) != (-2, -1) else A
    m, n = x.shape[-2:]
    if offset >= 0:
        x = x[..., :, offset:]
    else:
        x = x[..., -offset:, :]
    k = max(0, min(x.shape[-2], x.shape[-1]))
    return u.diagonal_any(x[..., :k, :k])


def vander(x: Tensor, N: int | None = None) -> Tensor:
    """``torch.linalg.vander``: powers x^0 .. x^(N-1) along a new last dim."""
    from .shape import cat

    n = x.shape[-1] if N is None else N
    if n <= 1:
        if n < 0:
            raise RuntimeError("N must be greater than 1.")
        return x.unsqueeze(-1) ** 0 if n == 1 else x.unsqueeze(-1)[..., :0]
    cols = [x.unsqueeze(-1) ** 0 * 1]
    for _ in range(n - 1):
        cols.append(cols[-1] * x.unsqueeze(-1))
    return cat(cols, -1)


# ---- norms -----------------------------------------------------------------------------------
def matrix_norm(
    A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None, out=None
) -> Tensor:
    """A matrix norm over the two dimensions ``dim``.

    Args:
        A (Tensor): the input, at least 2-D.
        ord: ``"fro"`` (Frobenius), ``"nuc"`` (nuclear), ``inf``, ``-inf``, 1, -1, 2 or -2.
        dim: the two dimensions holding the matrices.
        keepdim: keep the reduced dimensions with size 1.
        dtype: compute and return in this dtype.
    """
    if dtype is not None:
        A = A.to(dtype)
    u.check_float("linalg.matrix_norm", A)
    d0, d1 = (wrap_dim(d, A.ndim) for d in dim)
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim)
    x = A.movedim((d0, d1), (-2, -1))
    if ord in ("nuc", 2, -2):
        s = svdvals(x)
        res = s.sum(-1) if ord == "nuc" else (s.amax(-1) if ord == 2 else s.amin(-1))
    elif ord in (1, -1, float("inf"), -float("inf")):
        axis = -2 if ord in (1, -1) else -1  # 1: max column sum; inf: max row sum
        sums = x.abs().sum(axis)
        res = sums.amax(-1) if ord > 0 else sums.amin(-1)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if keepdim:
        for d in sorted((d0, d1)):
            res = res.unsqueeze(d)
    return res


def linalg_norm(
    input: Tensor, ord=None, dim=None, keepdim: bool = False, *, out=None, dtype=None
) -> Tensor:
    """A vector or matrix norm: :func:`vector_norm` when ``dim`` is an int or ``A`` is 1-D (or
    ``ord`` is None), else :func:`matrix_norm`.
    """
    if isinstance(dim, int):
        dim = (dim,)
    if dim is not None and len(dim) == 2 or (dim is None and ord is not None and input.ndim == 2):
        return matrix_norm(
            input, "fro" if ord is None else ord, dim or (-2, -1), keepdim, dtype=dtype
        )
    if ord is not None and isinstance(ord, str):
        raise RuntimeError(
            f"linalg.norm: If dim is not specified but ord is, the input must be "
            f"1D or 2D. Got {input.ndim}D."
        )
    return vector_norm(input, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def nuclear_norm(input: Tensor, dim=None, keepdim: bool = False, *, out=None) -> Tensor:
    """The nuclear norm (sum of singular values) of a matrix; see
    :func:`ember.linalg.matrix_norm`."""
    if isinstance(dim, bool):  # nuclear_norm(input, keepdim)
        dim, keepdim = None, dim
    return matrix_norm(input, "nuc", (-2, -1) if dim is None else dim, keepdim)


def cond(A: Tensor, p=None, *, out=None) -> Tensor:
    """The condition number of a matrix in the norm ``p`` (None: the 2-norm, the ratio of the
    largest to the smallest singular value).
    """
    if p is None or p in (2, -2):
        s = svdvals(A)
        big, small = s[..., 0], s[..., -1]
        return big / small if p in (None, 2) else small / big
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


def matrix_rank(
    A: Tensor, *, atol=None, rtol=None, hermitian: bool = False, out=None, tol=None
) -> Tensor:
    """The numerical rank of a matrix: the number of singular values above
    ``max(atol, rtol * largest)``.
    """
    from .matrix_ops import _tolerance

    if tol is not None:
        atol, rtol = tol, 0.0
    xp = _xp_of(A._data)
    a = A._data
    s = (
        xp.sort(xp.abs(xp.linalg.eigvalsh(a)), axis=-1)[..., ::-1]
        if hermitian
        else xp.linalg.svd(a, compute_uv=False)
    )
    tol_ = _tolerance(xp, s, a.shape[-2], a.shape[-1], atol, rtol)
    return Tensor._wrap(xp.asarray((s > tol_).sum(-1), dtype=np.int64))


def addmv_(input: Tensor, mat: Tensor, vec: Tensor, *, beta=1, alpha=1) -> Tensor:
    """``torch.addmv_``: the in-place method as a function."""
    return input.addmv_(mat, vec, beta=beta, alpha=alpha)


def conj_physical_(input: Tensor) -> Tensor:
    """Conjugate ``input`` in place and return it."""
    return input.conj_physical_()
