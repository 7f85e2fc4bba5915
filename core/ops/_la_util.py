"""Helpers of the factorizations (decomp.py, matrix_ops.py): the named result tuples, checks
with PyTorch's wording, and matrix helpers that work on raw arrays and, when a backward runs
with ``create_graph=True``, on tensors (so each backward formula also gives double backward).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..autograd.function import Function
from ..backend.meta import MetaArray, to_meta
from ..tensor import Tensor
from ._util import scalar_type_name
from .complex_ops import conj_any
from .function_free import _xp_of


class LinAlgError(RuntimeError):
    """``torch.linalg.LinAlgError``: a factorization or solve failed (singular, not PD)."""


def return_repr(self) -> str:
    """PyTorch's layout of a ``return_types`` tuple: the qualified name, one field a line."""
    body = ",\n".join(f"{f}={v!r}" for f, v in zip(self._fields, self))
    return f"ember.return_types.{type(self).__name__}(\n{body})"


def _nt(name, fields):
    cls = namedtuple(name, fields, module="ember.return_types")
    cls.__repr__ = return_repr
    return cls


# torch.return_types.* names and fields
slogdet_t = _nt("slogdet", ["sign", "logabsdet"])
linalg_slogdet_t = _nt("linalg_slogdet", ["sign", "logabsdet"])
qr_t = _nt("qr", ["Q", "R"])
linalg_qr_t = _nt("linalg_qr", ["Q", "R"])
svd_t = _nt("svd", ["U", "S", "V"])
linalg_svd_t = _nt("linalg_svd", ["U", "S", "Vh"])
linalg_eig_t = _nt("linalg_eig", ["eigenvalues", "eigenvectors"])
linalg_eigh_t = _nt("linalg_eigh", ["eigenvalues", "eigenvectors"])
linalg_cholesky_ex_t = _nt("linalg_cholesky_ex", ["L", "info"])
linalg_inv_ex_t = _nt("linalg_inv_ex", ["inverse", "info"])
linalg_solve_ex_t = _nt("linalg_solve_ex", ["result", "info"])
linalg_lstsq_t = _nt("linalg_lstsq", ["solution", "residuals", "rank", "singular_values"])
linalg_lu_t = _nt("linalg_lu", ["P", "L", "U"])
linalg_lu_factor_t = _nt("linalg_lu_factor", ["LU", "pivots"])
linalg_lu_factor_ex_t = _nt("linalg_lu_factor_ex", ["LU", "pivots", "info"])
lu_unpack_t = _nt("lu_unpack", ["P", "L", "U"])
linalg_ldl_factor_t = _nt("linalg_ldl_factor", ["LD", "pivots"])
linalg_ldl_factor_ex_t = _nt("linalg_ldl_factor_ex", ["LD", "pivots", "info"])
triangular_solve_t = _nt("triangular_solve", ["solution", "cloned_coefficient"])
geqrf_t = _nt("geqrf", ["a", "tau"])


# ---- checks -------------------------------------------------------------------------------
def check_float(name: str, t: Tensor, what: str = "input") -> None:
    if t._data.dtype.kind not in "fc":
        raise RuntimeError(
            f"{name}: Expected a floating point or complex tensor as {what}. "
            f"Got {scalar_type_name(t)}"
        )


def check_matrix(name: str, t: Tensor, what: str = "A") -> None:
    if t._data.ndim < 2:
        raise RuntimeError(f"{name}: The input tensor {what} must have at least 2 dimensions.")


def check_square(name: str, t: Tensor, what: str = "A") -> None:
    check_matrix(name, t, what)
    m, n = t._data.shape[-2:]
    if m != n:
        raise RuntimeError(
            f"{name}: {what} must be batches of square matrices, but they are {m} by {n} matrices"
        )


def check_same_dtype(name: str, a: Tensor, b: Tensor) -> None:
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(
            f"{name}: Expected A and B to have the same dtype, but found A of "
            f"type {scalar_type_name(a)} and B of type {scalar_type_name(b)} "
            "instead"
        )


def host(a):
    """A NumPy copy of a NumPy or CuPy array (for LAPACK routines CuPy lacks)."""
    return a if isinstance(a, np.ndarray) else a.get()


def like(a, ref):
    """``a`` (NumPy) on ``ref``'s device (a meta ``ref``: ``a``'s shape and dtype, no data)."""
    if isinstance(ref, np.ndarray):
        return to_meta(a) if type(ref) is MetaArray else a
    return _xp_of(ref).asarray(a)


# ---- diagonal and diag_embed over the last two dims (private, closed under double backward)
class _Diagonal(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.n = x.shape[-1]
        return ctx.xp.diagonal(x, axis1=-2, axis2=-1).copy()

    @staticmethod
    def backward(ctx, grad):
        return diag_embed_any(grad)


class _DiagEmbed(Function):
    @staticmethod
    def forward(ctx, d):
        xp = ctx.xp
        out = xp.zeros(d.shape + (d.shape[-1],), dtype=d.dtype)
        xp.einsum("...ii->...i", out)[...] = d
        return out

    @staticmethod
    def backward(ctx, grad):
        return diagonal_any(grad)


def diagonal_any(x):
    if isinstance(x, Tensor):
        return _Diagonal.apply(x)
    return _xp_of(x).diagonal(x, axis1=-2, axis2=-1)


def diag_embed_any(d):
    if isinstance(d, Tensor):
        return _DiagEmbed.apply(d)
    xp = _xp_of(d)
    out = xp.zeros(d.shape + (d.shape[-1],), dtype=d.dtype)
    xp.einsum("...ii->...i", out)[...] = d
    return out


# ---- matrix helpers on arrays or tensors --------------------------------------------------
def mT(x):
    return x.transpose(-2, -1) if isinstance(x, Tensor) else x.swapaxes(-1, -2)


def mH(x):
    return conj_any(mT(x))


def eye_like(x, n: int | None = None):
    """The identity of x's last dim (or ``n``) in x's dtype and device, as x's kind."""
    data = x._data if isinstance(x, Tensor) else x
    n = data.shape[-1] if n is None else n
    e = _xp_of(data).eye(n, dtype=data.dtype)
    return Tensor._wrap(e) if isinstance(x, Tensor) else e


def tril_any(x, k: int = 0):
    return x.tril(k) if isinstance(x, Tensor) else _xp_of(x).tril(x, k)


def triu_any(x, k: int = 0):
    return x.triu(k) if isinstance(x, Tensor) else _xp_of(x).triu(x, k)


def unsq(x, *axes):
    """Insert trailing axes: ``unsq(d, -1)`` is ``d[..., None]`` for arrays and tensors."""
    for a in axes:
        x = x.unsqueeze(a) if isinstance(x, Tensor) else _xp_of(x).expand_dims(x, a)
    return x


def solve_any(a, b):
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        from .matrix_ops import solve

        return solve(a, b)
    return _xp_of(a).linalg.solve(a, b)


def inv_any(a):
    if isinstance(a, Tensor):
        from .matrix_ops import inv

        return inv(a)
    return _xp_of(a).linalg.inv(a)


def real_part(x):
    """The real part of a gradient headed for a real input."""
    from .complex_ops import real_any

    return real_any(x)
