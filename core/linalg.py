"""``ember.linalg``: PyTorch's torch.linalg (factorizations, solves, norms) with gradients."""

from .ops._la_util import LinAlgError
from .ops.decomp import (
    cholesky,
    cholesky_ex,
    eig,
    eigh,
    eigvals,
    eigvalsh,
    qr,
    svd,
    svdvals,
)
from .ops.linalg import matmul, vector_norm
from .ops.lu_ops import (
    householder_product,
    ldl_factor,
    ldl_factor_ex,
    ldl_solve,
    lstsq,
    lu,
    lu_factor,
    lu_factor_ex,
    lu_solve,
)
from .ops.matrix_ops import (
    det,
    inv,
    inv_ex,
    matrix_exp,
    matrix_power,
    pinv,
    slogdet,
    solve,
    solve_ex,
    solve_triangular,
    tensorinv,
    tensorsolve,
)
from .ops.matrix_products import (
    cond,
    diagonal,
    matrix_norm,
    matrix_rank,
    multi_dot,
    vander,
    vecdot,
)
from .ops.matrix_products import (
    linalg_cross as cross,
)
from .ops.matrix_products import (
    linalg_norm as norm,
)

__all__ = [
    "LinAlgError",
    "cholesky",
    "cholesky_ex",
    "cond",
    "cross",
    "det",
    "diagonal",
    "eig",
    "eigh",
    "eigvals",
    "eigvalsh",
    "householder_product",
    "inv",
    "inv_ex",
    "ldl_factor",
    "ldl_factor_ex",
    "ldl_solve",
    "lstsq",
    "lu",
    "lu_factor",
    "lu_factor_ex",
    "lu_solve",
    "matmul",
    "matrix_exp",
    "matrix_norm",
    "matrix_power",
    "matrix_rank",
    "multi_dot",
    "norm",
    "pinv",
    "qr",
    "slogdet",
    "solve",
    "solve_ex",
    "solve_triangular",
    "svd",
    "svdvals",
    "tensorinv",
    "tensorsolve",
    "vander",
    "vecdot",
    "vector_norm",
]


def _install_torch_function() -> None:
    # torch.linalg's functions take part in __torch_function__ (linear_operator's
    # LinearOperator, not a Tensor, handles torch.linalg.cholesky & co.): the same generated
    # per-parameter test as the ember.* functions (core/_torch_function.py)
    from ._torch_function import namespace_dispatch

    g = globals()
    for name in __all__:
        fn = g[name]
        if not callable(fn) or isinstance(fn, type):
            continue
        if getattr(fn, "__ember_torch_function__", False):
            continue
        wrapped = namespace_dispatch(fn, name)
        if wrapped is not fn:
            wrapped.__module__ = "ember.linalg"
            g[name] = wrapped


_install_torch_function()
del _install_torch_function
