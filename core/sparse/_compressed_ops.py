"""Operations on sparse compressed tensors (CSR, CSC, BSR, BSC): products with dense matrices
(``mm``, ``matmul``, ``@``, ``addmm``, ``sampled_addmm``), sums, ``+``, ``*`` and ``/`` by a
scalar, transposes (CSR <-> CSC, BSR <-> BSC), and the route that ``Function.apply`` takes when
a dense op meets a compressed tensor.

Products expand the pattern into each stored scalar's (row, column) once (cached on the tensor,
see ``_compressed_build.elements``) and run the COO kernel ``_SpMM`` of sparse/_ops.py: its
gradient to the values is per stored element, so the gradient of a compressed leaf keeps the
leaf's pattern (PyTorch's masked gradient of ``torch.sparse.mm``). On CuPy arrays the same code
runs (written for it, not run on a device here).
"""

from __future__ import annotations

import re

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._compressed import (
    BLOCK_LAYOUTS,
    SparseCompressedTensor,
    layout_name,
    sparse_bsc,
    sparse_bsr,
    sparse_csc,
    sparse_csr,
    unsupported,
)
from ._compressed_build import compressed_to_dense, elements, plans

_SWAP = {
    sparse_csr: sparse_csc,
    sparse_csc: sparse_csr,
    sparse_bsr: sparse_bsc,
    sparse_bsc: sparse_bsr,
}
_wrap = Tensor._wrap


def _is_c(x) -> bool:
    return isinstance(x, SparseCompressedTensor)


# ---- products ---------------------------------------------------------------------------
def _spmm(s: SparseCompressedTensor, dense: Tensor, name: str, transposed: bool = False):
    """``s @ dense`` (``s.T @ dense`` when ``transposed``) for a 2-D ``s`` without dense dims
    and a 1-D or 2-D ``dense``."""
    from ._ops import _SpMM

    if s.dense_dim() != 0:
        raise unsupported(f"{name} of a tensor with {s.dense_dim()} dense dims", s._layout)
    if not isinstance(dense, Tensor) or _is_c(dense) or dense.is_sparse:
        raise unsupported(f"{name} of two sparse tensors", s._layout)
    vec = dense.dim() == 1
    d2 = dense.unsqueeze(-1) if vec else dense
    if d2.dim() != 2:
        raise RuntimeError(f"{name}: mat2 must be a matrix, got {dense.dim()}-D")
    n, m = s.shape[-2:]
    if transposed:
        n, m = m, n
    if d2.shape[0] != m:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({n}x{m} and {d2.shape[0]}x{d2.shape[1]})"
        )
    if s.dtype != dense.dtype:
        raise RuntimeError(
            f"{name}: expected mat1 and mat2 to have the same dtype, but got: "
            f"{s.dtype} != {dense.dtype}"
        )
    v, _, r, c = elements(s)
    if transposed:
        r, c = c, r
    if (
        s._layout in (sparse_csr, sparse_csc)
        and type(d2._data) is np.ndarray
        and d2.dtype.name in ("float32", "float64")
    ):
        lay = s._layout if not transposed else _SWAP[s._layout]
        out = _CompressedMM.apply(v, d2, s._cidx._data, s._pidx._data, (n, m), lay, r, c)
    else:
        out = _SpMM.apply(v, d2, r, c, n, plans(s).setdefault("T" if transposed else "N", {}))
    return out.squeeze(-1) if vec else out


class _CompressedMM(Function):
    """``A @ D`` on the CPU with SciPy's CSR/CSC kernels, ``A`` given by ``values`` and the
    compressed/plain indices of ``lay`` (a transposed CSR is the CSC of the same arrays);
    gradients to the values (per stored element: the leaf's pattern) and to ``D``."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, values, dense, cidx, pidx, shape, lay, rows, cols):
        import scipy.sparse as sp

        make = sp.csr_matrix if lay is sparse_csr else sp.csc_matrix
        a = make((values, pidx, cidx), shape=shape, copy=False)
        ctx.a, ctx.rows, ctx.cols = a, rows, cols
        ctx.save_for_backward(dense)
        return np.asarray(a @ dense)

    @staticmethod
    def backward(ctx, grad):
        (dense,) = ctx.saved_tensors
        gv = gd = None
        if ctx.needs_input_grad[0]:
            gv = np.einsum("ij,ij->i", grad[ctx.rows], dense[ctx.cols])
        if ctx.needs_input_grad[1]:
            gd = np.asarray(ctx.a.T @ grad)
        return gv, gd, None, None, None, None, None, None


def _batched(s: SparseCompressedTensor, dense: Tensor, name: str, transposed: bool = False):
    if s._batch_dim() == 0:
        return _spmm(s, dense, name, transposed)
    from ..ops import stack

    nb = s._batch_dim()
    if nb != 1:
        raise unsupported(f"{name} with {nb} batch dims", s._layout)
    if dense.dim() == 3 and dense.shape[0] != s.shape[0]:
        raise RuntimeError(f"{name}: batch sizes differ ({s.shape[0]} and {dense.shape[0]})")
    outs = []
    for i in range(s.shape[0]):
        one = SparseCompressedTensor._make(
            s._cidx[i], s._pidx[i], s._vals[i], tuple(s.shape[1:]), s._layout
        )
        outs.append(_spmm(one, dense[i] if dense.dim() == 3 else dense, name, transposed))
    return stack(outs)


def matmul(input, other) -> Tensor:
    """``input @ other`` with one compressed operand and one dense (a dense result)."""
    if _is_c(input):
        return _batched(input, other, "matmul")
    # D @ S = (S.T @ D.T).T
    if other._batch_dim():
        raise unsupported("dense @ batched sparse", other._layout)
    if input.dim() == 1:
        return _spmm(other, input, "matmul", transposed=True)
    if input.dim() != 2:
        raise unsupported(f"matmul of a {input.dim()}-D dense tensor and", other._layout)
    return _spmm(other, input.transpose(0, 1), "mm", transposed=True).transpose(0, 1)


def addmm(input, mat1, mat2, *, beta=1, alpha=1) -> Tensor:
    """``beta * input + alpha * (mat1 @ mat2)`` with a compressed ``mat1`` or ``mat2``."""
    out = matmul(mat1, mat2)
    if alpha != 1:
        out = out * alpha
    if beta == 0:
        return out
    if _is_c(input):
        input = compressed_to_dense(input)
    return out + (input if beta == 1 else input * beta)


def sampled_addmm(input, mat1, mat2, *, beta=1.0, alpha=1.0, out=None):
    """``beta * input + alpha * (mat1 @ mat2)`` evaluated only at the stored elements of the
    CSR ``input`` (PyTorch's ``torch.sparse.sampled_addmm``): a CSR result with its pattern."""
    if out is not None:
        raise TypeError("sampled_addmm: out= is not supported")
    if not _is_c(input) or input._layout is not sparse_csr:
        lay = input.layout
        raise RuntimeError(
            f"sampled_addmm: Expected self to be a sparse CSR tensor, but got layout {lay}"
        )
    if mat1.dim() != 2 or mat2.dim() != 2 or input._batch_dim():
        raise unsupported("sampled_addmm of batched or non-matrix operands", input._layout)
    n, m = input.shape
    if mat1.shape[0] != n or mat2.shape[1] != m or mat1.shape[1] != mat2.shape[0]:
        raise RuntimeError(
            f"sampled_addmm: expected mat1 @ mat2 to be {n}x{m}, but got "
            f"{mat1.shape[0]}x{mat1.shape[1]} @ {mat2.shape[0]}x{mat2.shape[1]}"
        )
    _, _, r, c = elements(input)
    prod = (mat1[_wrap(r)] * mat2.transpose(0, 1)[_wrap(c)]).sum(-1)
    if alpha != 1:
        prod = prod * alpha
    vals = prod if beta == 0 else prod + (input._vals if beta == 1 else input._vals * beta)
    return input._with_values(vals)


# ---- elementwise, reductions, shape -----------------------------------------------------
def mul(input, other):
    """``compressed * number`` / ``* 0-d tensor`` (same pattern) and ``* dense`` of the same
    shape (the dense entries at the stored positions)."""
    if not _is_c(input):
        input, other = other, input
    s = input
    if _is_c(other) or (isinstance(other, Tensor) and other.is_sparse):
        raise unsupported("elementwise product of two sparse tensors", s._layout)
    if not isinstance(other, Tensor) or other.dim() == 0:
        return s._with_values(s._vals * other)
    if tuple(other.shape) != tuple(s.shape) or s._layout in BLOCK_LAYOUTS or s.dense_dim():
        raise unsupported(f"mul with a dense tensor of shape {list(other.shape)}", s._layout)
    _, b, r, c = elements(s)
    nb = s._batch_dim()
    flat = other.reshape((-1,) + tuple(other.shape[nb:]))
    picked = flat[_wrap(b), _wrap(r), _wrap(c)].reshape(tuple(s._vals.shape))
    return s._with_values(s._vals * picked)


def div(input, other):
    """``compressed / number`` (or a 0-d tensor)."""
    if not _is_c(input) or (isinstance(other, Tensor) and other.dim() != 0):
        raise unsupported("division by a non-scalar tensor", getattr(input, "layout", other))
    return input._with_values(input._vals / other)


def neg(input):
    """``-input`` (the values negated)."""
    return input._with_values(-input._vals)


def add(input, other, *, alpha=1):
    """``input + alpha * other``: two compressed tensors of one layout give a compressed
    result (one pattern: the values add; else the union of the patterns); with a dense operand
    the result is dense, as PyTorch's."""
    if not (_is_c(input) and _is_c(other)):
        if not isinstance(input, Tensor) or not isinstance(other, Tensor):
            raise unsupported("adding a number to a sparse tensor", _layout_of(input, other))
        a = compressed_to_dense(input) if _is_c(input) else input
        b = compressed_to_dense(other) if _is_c(other) else other
        return a + (b if alpha == 1 else b * alpha)
    if input.shape != other.shape:
        raise RuntimeError(
            f"add: expected 'self' and 'other' to have same size, but self has size "
            f"{list(input.shape)} while other has size {list(other.shape)}"
        )
    if input._layout is not other._layout:
        raise RuntimeError(
            f"add: expected both sparse operands in one layout, got {layout_name(input)} and "
            f"{layout_name(other)}"
        )
    ov = other._vals if alpha == 1 else other._vals * alpha
    if ov.dtype != input.dtype:
        ov = ov.to(input.dtype)
    same = input._cidx is other._cidx and input._pidx is other._pidx
    if not same and input._vals.shape == other._vals.shape:
        xp = _xp(input)
        same = bool(xp.array_equal(input._cidx._data, other._cidx._data)) and bool(
            xp.array_equal(input._pidx._data, other._pidx._data)
        )
    if same:
        return input._with_values(input._vals + ov)
    if input._layout in BLOCK_LAYOUTS or input._batch_dim():
        raise unsupported("adding tensors of different patterns", input._layout)
    # the union of the patterns, through COO (sums of duplicates are differentiable there)
    from ._compressed_build import compressed_to_coo, coo_to_compressed

    total = compressed_to_coo(input) + compressed_to_coo(other._with_values(ov))
    return coo_to_compressed(total, input._layout)


def _xp(s):
    from ..backend.device import get_array_module

    return get_array_module(s._cidx._data)


def _layout_of(*xs):
    return next(x.layout for x in xs if _is_c(x))


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` (the rules of :func:`add`)."""
    return add(input, other, alpha=-alpha)


def sum(input, dim=None, keepdim: bool = False, *, dtype=None):
    """The sum of every element (a dense 0-d tensor), as PyTorch's; sums over one dim raise
    PyTorch's error (the compressed layouts have no reductions along a dim)."""
    s = input if dtype is None else input.to(dtype)
    if dim is not None:
        raise RuntimeError(
            f"reduction operations on {layout_name(s)[6:].upper()} tensors with "
            f"keepdim={keepdim} is unsupported"
        )
    return s._vals.sum()


def transpose(self, dim0: int, dim1: int):
    """Swap the two sparse dims: CSR <-> CSC and BSR <-> BSC over the same index arrays (and
    each block transposed)."""
    nd, nb = self.dim(), self._batch_dim()
    d0, d1 = sorted((dim0 % nd, dim1 % nd))
    if d0 == d1:
        return self
    if (d0, d1) != (nb, nb + 1):
        raise unsupported(f"transpose({dim0}, {dim1}) (only the two sparse dims)", self._layout)
    shape = list(self.shape)
    shape[nb], shape[nb + 1] = shape[nb + 1], shape[nb]
    vals = self._vals
    if self._layout in BLOCK_LAYOUTS:
        vals = vals.transpose(nb + 1, nb + 2)
    return SparseCompressedTensor._make(
        self._cidx, self._pidx, vals, tuple(shape), _SWAP[self._layout]
    )


def t(self):
    """The transpose of a compressed matrix: CSR <-> CSC, BSR <-> BSC."""
    if self.dim() != 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.dim()}D")
    return transpose(self, 0, 1)


# ---- the route from Function.apply ------------------------------------------------------
def _route_cast(args, kwargs):
    import numpy as np

    from ..backend.dtype import from_numpy_dtype

    x, dt = args[0], args[1] if len(args) > 1 else kwargs.get("dtype")
    if not _is_c(x) or not isinstance(dt, np.dtype):
        raise unsupported("the operation 'cast'", _layout_of(*args))
    return x.to(from_numpy_dtype(dt))


def _route_sum(args, kwargs):
    dims = args[1] if len(args) > 1 else None
    return sum(args[0], dims, bool(args[2]) if len(args) > 2 else False)


def _route_linear(args, kwargs):
    # F.linear(x, W) with a compressed weight: (W @ x.T).T, as torch's sparse linear
    x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
    if _is_c(x) or not _is_c(w) or w.dim() != 2:
        raise unsupported("linear with a sparse input", _layout_of(*args))
    x2 = x.reshape(-1, x.shape[-1])
    out = matmul(w, x2.transpose(0, 1)).transpose(0, 1)
    out = out.reshape(tuple(x.shape[:-1]) + (w.shape[0],))
    return out if b is None else out + b


def _value_wise(cls):
    # f(0) == 0: applied to the stored values, the pattern is unchanged (torch's rule)
    def route(args, kwargs):
        s = args[0]
        if not _is_c(s) or any(_is_c(a) for a in args[1:]):
            raise unsupported(f"the operation {cls.__name__.lower()!r}", _layout_of(*args))
        return s._with_values(cls.apply(s._vals, *args[1:], **kwargs))

    return route


def _routes():
    from ..ops import elementwise_unary as eu
    from ..ops.convert import Cast
    from ..ops.elementwise_binary import Add, Mul, Neg
    from ..ops.linalg import Matmul, Mv
    from ..ops.nn_ops import Linear
    from ..ops.reduction_sum import Sum

    def binary(rule):
        return lambda args, kwargs: rule(args[0], args[1])

    routes = {
        Matmul: binary(matmul),
        Mv: binary(matmul),
        Sum: _route_sum,
        Add: binary(add),
        Mul: binary(mul),
        Cast: _route_cast,
        Linear: _route_linear,
        Neg: _value_wise(Neg),
    }
    for name in ("Abs", "Sqrt", "Sin", "Tanh", "Relu", "Expm1", "Log1p"):
        routes[getattr(eu, name)] = _value_wise(getattr(eu, name))
    return routes


_ROUTES: dict = {}


def compressed_apply(cls, args, kwargs):
    """Where ``Function.apply`` sends an op that reached a compressed tensor: its rule, or
    ``NotImplementedError`` naming the op and the layout."""
    if not _ROUTES:
        _ROUTES.update(_routes())
    route = _ROUTES.get(cls)
    if route is not None:
        return route(args, kwargs)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    lay = _layout_of(*args)
    raise NotImplementedError(
        f"ember: the operation {name!r} is not implemented for tensors with layout "
        f"ember.{lay.name} (they support to_dense, mm/matmul/@/addmm/linear, sampled_addmm, "
        "sum, +, * and / by a scalar, t/transpose, and abs/neg/relu/sqrt/sin/tanh/expm1/log1p "
        "of the values); call .to_dense() first"
    )
