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

__all__ = ["LinAlgError", "cholesky", "cholesky_ex", "cond", "cross", "det", "diagonal", "eig",
           "eigh", "eigvals", "eigvalsh", "householder_product", "inv", "inv_ex", "ldl_factor",
           "ldl_factor_ex", "ldl_solve", "lstsq", "lu", "lu_factor", "lu_factor_ex", "lu_solve",
           "matmul", "matrix_exp", "matrix_norm", "matrix_power", "matrix_rank", "multi_dot",
           "norm", "pinv", "qr", "slogdet", "solve", "solve_ex", "solve_triangular", "svd",
           "svdvals", "tensorinv", "tensorsolve", "vander", "vecdot", "vector_norm"]
