"""Operations on sparse COO tensors: the kernels (segment sums on ``xp``), the differentiable
pieces (``_SpMM``, ``_ToDense``, ``_SegmentSum``), the public ops and the route that
``Function.apply`` takes when a dense op meets a sparse tensor.

Every op differentiates through the values tensor and the dense operand, so ``grad`` of a sparse
leaf is sparse with the leaf's indices (PyTorch's ``sparse.mm`` gives the same; its ``mm``/``@``
give the full dense gradient instead, see docs/sparse.md).
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.device import get_array_module
from ..tensor import Tensor
from ._coo import SparseTensor, _unsupported

_wrap = Tensor._wrap


# ---- kernels (raw arrays) ---------------------------------------------------------------
def _linear_keys(idx, sparse_shape):
    """The row-major position of each column of ``idx`` in ``sparse_shape``."""
    xp = get_array_module(idx)
    keys = xp.zeros(idx.shape[1], dtype=np.int64)
    for d, n in enumerate(sparse_shape):
        keys = keys * n + idx[d]
    return keys


class _SegmentPlan:
    """How to sum runs of equal keys on NumPy: the sorting order (None when the keys are
    sorted already, as the rows of a coalesced matrix), where each run starts and its key."""

    __slots__ = ("order", "starts", "targets")

    def __init__(self, keys) -> None:
        self.order = None
        if keys.shape[0] > 1 and not (keys[1:] >= keys[:-1]).all():
            self.order = np.argsort(keys, kind="stable")
            keys = keys[self.order]
        self.starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        self.targets = keys[self.starts]


def _segment_sum(xp, keys, vals, n: int, plan: _SegmentPlan | None = None):
    """``out[keys[i]] += vals[i]`` into ``n`` rows (repeats add up)."""
    out = xp.zeros((n,) + tuple(vals.shape[1:]), dtype=vals.dtype)
    if keys.shape[0] == 0:
        return out
    if xp is not np:  # pragma: no cover - GPU
        xp.add.at(out, keys, vals)
        return out
    plan = plan or _SegmentPlan(keys)
    if plan.order is not None:
        vals = vals[plan.order]
    # one pass over the runs (np.add.at is ~3x slower at GCN sizes)
    out[plan.targets] = np.add.reduceat(vals, plan.starts, axis=0)
    return out


def _plans(s: SparseTensor) -> dict:
    """The segment plans of ``s``'s rows and columns, kept on ``s`` while its indices stay
    unmodified: a GCN multiplies by one adjacency every step, so sorting happens once."""
    idx = s._idx
    cache = s._cache
    if cache is None or cache[0] is not idx._data or cache[1] != idx._version_counter[0]:
        cache = s._cache = (idx._data, idx._version_counter[0], {})
    return cache[2]


def _plan(xp, plans: dict, name: str, keys):
    if xp is not np:  # pragma: no cover - GPU: scatter-adds need no plan
        return None
    plan = plans.get(name)
    if plan is None:
        plan = plans[name] = _SegmentPlan(keys)
    return plan


def _first_of_each(idx, sparse_shape):
    """The sorted distinct columns of ``idx`` and the position of each one's first copy."""
    xp = get_array_module(idx)
    uniq, first = xp.unique(_linear_keys(idx, sparse_shape), return_index=True)
    return idx[:, first], first


class _SpMM(Function):
    """``S @ D`` for a 2-D sparse ``S`` given by ``values`` at ``(rows, cols)`` and a dense
    matrix ``D``; gradients to the values and to ``D``."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, values, dense, rows, cols, n, plans):
        xp = ctx.xp
        ctx.save_for_backward(values, dense)
        ctx.rows, ctx.cols, ctx.plans = rows, cols, plans
        plan = _plan(xp, plans, "rows", rows)
        return _segment_sum(xp, rows, values[:, None] * dense[cols], n, plan)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        values, dense = ctx.saved_tensors
        rows, cols = ctx.rows, ctx.cols
        g_rows = grad[rows]
        gv = xp.einsum("ij,ij->i", g_rows, dense[cols]) if ctx.needs_input_grad[0] else None
        gd = None
        if ctx.needs_input_grad[1]:
            plan = _plan(xp, ctx.plans, "cols", cols)
            gd = _segment_sum(xp, cols, values[:, None] * g_rows, dense.shape[0], plan)
        return gv, gd, None, None, None, None


class _ToDense(Function):
    """The dense tensor of ``values`` at linear positions ``keys`` (duplicates add up)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, values, keys, shape):
        n = 1
        for k in shape[: len(shape) - values.ndim + 1]:  # the sparse dims
            n *= k
        ctx.keys, ctx.rows, ctx.tail = keys, n, tuple(values.shape[1:])
        return _segment_sum(ctx.xp, keys, values, n).reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape((ctx.rows,) + ctx.tail)[ctx.keys], None, None


class _SegmentSum(Function):
    """``out[inverse[i]] += values[i]``: the values of a coalesced tensor."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, values, inverse, n):
        ctx.inverse = inverse
        return _segment_sum(ctx.xp, inverse, values, n)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.inverse], None, None


# ---- public ops -------------------------------------------------------------------------
def _check_sparse(x, what: str) -> SparseTensor:
    if not isinstance(x, SparseTensor):
        raise TypeError(f"{what}: expected a sparse_coo tensor, got layout {x.layout}")
    return x


def coalesce(self: SparseTensor) -> SparseTensor:
    """The tensor with sorted, unique indices; the values of repeated indices are summed."""
    if self._coalesced:
        return self
    xp = get_array_module(self._idx._data)
    sd = self.sparse_dim()
    sparse_shape = tuple(self.shape[:sd])
    keys = _linear_keys(self._idx._data, sparse_shape)
    uniq, inverse = xp.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    if sd:
        idx = xp.stack(xp.unravel_index(uniq, sparse_shape)).astype(np.int64)
    else:
        idx = xp.zeros((0, uniq.shape[0]), dtype=np.int64)
    vals = _SegmentSum.apply(self._vals, inverse, int(uniq.shape[0]))
    return SparseTensor._make(_wrap(idx), vals, self.shape, True)


def to_dense(self, *, dtype=None, masked_grad=None) -> Tensor:
    """The dense tensor (duplicates add up); differentiable w.r.t. the values."""
    if not isinstance(self, SparseTensor):
        return self if dtype is None else self.to(dtype)
    keys = _linear_keys(self._idx._data, tuple(self.shape[: self.sparse_dim()]))
    out = _ToDense.apply(self._vals, keys, tuple(self.shape))
    return out if dtype is None else out.to(dtype)


def to_sparse(self: Tensor, sparse_dim: int | None = None, *, layout=None) -> SparseTensor:
    """This dense tensor in the sparse COO layout (its non-zero entries; with ``sparse_dim``
    the leading dims are sparse and each stored value is a dense slice of the rest)."""
    if isinstance(self, SparseTensor):
        return self.to_sparse(sparse_dim)
    if layout is not None and str(layout) not in ("ember.sparse_coo", "sparse_coo"):
        raise _unsupported(f"to_sparse(layout={layout})")
    nd = self.dim()
    sd = nd if sparse_dim is None else int(sparse_dim)
    if not 0 < sd <= nd:
        raise RuntimeError(f"sparse_dim must be in [1, {nd}], but got {sd}")
    d = self._data
    xp = get_array_module(d)
    mask = d != 0
    if sd < nd:
        mask = mask.reshape(d.shape[:sd] + (-1,)).any(axis=-1)
    nz = xp.nonzero(mask)
    idx = xp.stack(nz).astype(np.int64) if nz else xp.zeros((0, 1), np.int64)
    if self.requires_grad:
        vals = self[tuple(_wrap(i) for i in nz)]
    else:
        vals = _wrap(d[nz])
    return SparseTensor._make(_wrap(idx), vals, tuple(self.shape), True)


def _bmm_3d(s: SparseTensor, dense: Tensor, name: str) -> Tensor:
    """``torch.bmm`` of a 3-D sparse COO tensor and a dense one (torch-harmonics' DISCO
    contraction): one 2-D product with the block-diagonal matrix of the batch."""
    b, n, m = s.shape
    if tuple(dense.shape[:2]) != (b, m):
        raise RuntimeError(
            "Expected size for first two dimensions of batch2 tensor to be: "
            f"[{b}, {m}] but got: [{dense.shape[0]}, {dense.shape[1]}]."
        )
    idx = s._idx._data
    xp = get_array_module(idx)
    flat_idx = xp.stack([idx[0] * n + idx[1], idx[0] * m + idx[2]])
    flat = SparseTensor._make(_wrap(flat_idx), s._vals, (b * n, b * m), s.is_coalesced())
    p = dense.shape[2]
    return _mm_2d(flat, dense.reshape(b * m, p), name).reshape(b, n, p)


def _mm_2d(s: SparseTensor, dense: Tensor, name: str) -> Tensor:
    if s.dim() == 3 and s.dense_dim() == 0 and isinstance(dense, Tensor) and dense.dim() == 3:
        if not isinstance(dense, SparseTensor):
            return _bmm_3d(s, dense, name)
    if s.dim() != 2 or s.dense_dim() != 0:
        raise _unsupported(f"{name} of a {s.dim()}-D sparse tensor with {s.dense_dim()} dense dims")
    if isinstance(dense, SparseTensor) and dense.dense_dim() == 0:
        # sparse @ sparse is sparse in PyTorch (sentence-transformers' cos_sim / dot_score of
        # sparse embeddings); the second operand densified, differentiable w.r.t. both values
        return _mm_2d(s, dense.to_dense(), name).to_sparse()
    if not isinstance(dense, Tensor) or isinstance(dense, SparseTensor):
        raise _unsupported(f"{name} with a sparse second operand")
    vec = dense.dim() == 1
    d2 = dense.unsqueeze(-1) if vec else dense
    if d2.dim() != 2:
        raise RuntimeError(f"{name}: mat2 must be a matrix, got {dense.dim()}-D")
    n, m = s.shape
    if d2.shape[0] != m:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({n}x{m} and {d2.shape[0]}x{d2.shape[1]})"
        )
    if s.dtype != dense.dtype:
        raise RuntimeError(
            f"{name}: expected mat1 and mat2 to have the same dtype, but got: "
            f"{s.dtype} != {dense.dtype}"
        )
    idx = s._idx._data
    out = _SpMM.apply(s._vals, d2, idx[0], idx[1], n, _plans(s))
    return out.squeeze(-1) if vec else out


def mm(mat1, mat2, reduce: str = "sum") -> Tensor:
    r"""The matrix product ``mat1 @ mat2`` where ``mat1`` is a 2-D sparse COO tensor and
    ``mat2`` is dense (PyTorch's ``torch.sparse.mm``); gradients reach ``mat2`` and the values
    of ``mat1`` (a sparse gradient with ``mat1``'s pattern). With a CSR ``mat1``, ``reduce``
    (``"sum"``, ``"mean"``, ``"amax"``/``"max"``, ``"amin"``/``"min"``) reduces each row's
    terms instead of summing them (``_mm_reduce.py``)."""
    if reduce != "sum":
        from ._mm_reduce import mm_reduce

        return mm_reduce(mat1, mat2, reduce)
    if isinstance(mat1, SparseTensor):
        return _mm_2d(mat1, mat2, "sparse.mm")
    if isinstance(mat2, SparseTensor):
        return _dense_mm_sparse(mat1, mat2)
    from ..ops import mm as _dense_mm

    return _dense_mm(mat1, mat2)


def _dense_mm_sparse(dense: Tensor, s: SparseTensor) -> Tensor:
    """``D @ S`` = ``(S.t() @ D.t()).t()`` (dense result, as PyTorch)."""
    if dense.dim() == 1:
        return _mm_2d(transpose(s, 0, 1), dense, "matmul")
    return _mm_2d(transpose(s, 0, 1), dense.transpose(0, 1), "mm").transpose(0, 1)


def matmul(input, other) -> Tensor:
    """``input @ other`` with a sparse operand (dense result)."""
    if isinstance(input, SparseTensor):
        return _mm_2d(input, other, "matmul")
    return _dense_mm_sparse(input, other)


def transpose(self: SparseTensor, dim0: int, dim1: int) -> SparseTensor:
    """Swap two sparse dimensions (the indices' rows); uncoalesced result."""
    nd, sd = self.dim(), self.sparse_dim()
    d0, d1 = dim0 % nd if nd else 0, dim1 % nd if nd else 0
    if d0 >= sd or d1 >= sd:
        raise _unsupported("transpose of a dense dimension")
    if d0 == d1:
        return self
    xp = get_array_module(self._idx._data)
    order = list(range(sd))
    order[d0], order[d1] = d1, d0
    idx = self._idx._data[xp.asarray(order)]
    shape = list(self.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return SparseTensor._make(_wrap(idx), self._vals, shape, self._nnz() <= 1)


def t(self: SparseTensor) -> SparseTensor:
    """The transpose of a sparse matrix (a vector is returned as is)."""
    if self.dim() > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.dim()}D")
    return self if self.dim() < 2 else transpose(self, 0, 1)


def sum(input: SparseTensor, dim=None, keepdim: bool = False, *, dtype=None):
    """The sum over ``dim`` (PyTorch's ``torch.sparse.sum``): all dims give a dense 0-d tensor,
    all sparse dims a dense tensor, otherwise a coalesced sparse tensor."""
    s = _check_sparse(input, "sparse.sum")
    if dtype is not None:
        s = s.to(dtype)
    if keepdim:
        raise _unsupported("sum(keepdim=True)")
    vals = s._vals
    if dim is None:
        return vals.sum()
    nd, sd = s.dim(), s.sparse_dim()
    dims = sorted({int(d) % nd for d in ((dim,) if isinstance(dim, int) else dim)})
    dense_dims = [d - sd + 1 for d in dims if d >= sd]
    sparse_dims = [d for d in dims if d < sd]
    if dense_dims:
        vals = vals.sum(dim=tuple(dense_dims))
    if not sparse_dims:
        return SparseTensor._make(s._idx, vals, _keep(s.shape, dims), s._coalesced)
    if len(sparse_dims) == sd:
        return vals.sum(dim=0)
    keep = [d for d in range(sd) if d not in sparse_dims]
    xp = get_array_module(s._idx._data)
    idx = s._idx._data[xp.asarray(keep)]
    return coalesce(SparseTensor._make(_wrap(idx), vals, _keep(s.shape, dims), False))


def _keep(shape, dims):
    return tuple(n for d, n in enumerate(shape) if d not in dims)


def add(input, other, *, alpha=1):
    """``input + alpha * other`` with PyTorch's sparse rules: sparse + sparse is sparse
    (coalesced when both operands are), dense + sparse is dense, sparse + dense is refused."""
    if not isinstance(other, SparseTensor):
        if isinstance(input, SparseTensor) and isinstance(other, Tensor):
            raise RuntimeError(
                "add(sparse, dense) is not supported. Use add(dense, sparse) instead."
            )
        raise _unsupported("adding a number to a sparse tensor")
    if not isinstance(input, SparseTensor):
        from ..ops import add as _dense_add

        return _dense_add(input, to_dense(other), alpha=alpha)
    if input.shape != other.shape:
        raise RuntimeError(
            f"add: expected 'self' and 'other' to have same size, but self has size "
            f"{list(input.shape)} while other has size {list(other.shape)}"
        )
    if input.sparse_dim() != other.sparse_dim():
        raise _unsupported("adding sparse tensors with different sparse_dim")
    from ..ops import cat

    ov = other._vals if alpha == 1 else other._vals * alpha
    if ov.dtype != input.dtype:
        ov = ov.to(input.dtype)
    if input._idx is other._idx:  # one pattern (s + s * 3): add the values, as PyTorch
        return SparseTensor._make(input._idx, input._vals + ov, input.shape, input._coalesced)
    xp = get_array_module(input._idx._data)
    idx = xp.concatenate([input._idx._data, other._idx._data], axis=1)
    out = SparseTensor._make(_wrap(idx), cat([input._vals, ov]), input.shape, False)
    # PyTorch merges two coalesced operands and concatenates otherwise
    return coalesce(out) if input._coalesced and other._coalesced else out


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` (the rules of :func:`add`)."""
    return add(input, other, alpha=-alpha)


def mul(input, other):
    """``sparse * number``, ``sparse * 0-d tensor``, ``sparse * dense`` of the same shape
    (sparse result) and ``sparse * sparse`` via the dense form of neither (refused)."""
    if not isinstance(input, SparseTensor):
        input, other = other, input
    s = input
    if isinstance(other, SparseTensor):
        raise _unsupported("elementwise product of two sparse tensors")
    if not isinstance(other, Tensor) or other.dim() == 0:
        return SparseTensor._make(s._idx, s._vals * other, s.shape, s._coalesced)
    if tuple(other.shape) != tuple(s.shape):
        raise _unsupported(f"mul with a dense tensor of shape {list(other.shape)}")
    picked = other[tuple(_wrap(i) for i in s._idx._data)]
    return SparseTensor._make(s._idx, s._vals * picked, s.shape, s._coalesced)


def div(input: SparseTensor, other):
    """``sparse / number`` (or a 0-d tensor)."""
    if isinstance(other, Tensor) and other.dim() != 0:
        raise _unsupported("division by a non-scalar tensor")
    return SparseTensor._make(input._idx, input._vals / other, input.shape, input._coalesced)


def neg(input: SparseTensor) -> SparseTensor:
    """``-input`` (the values negated)."""
    return SparseTensor._make(input._idx, -input._vals, input.shape, input._coalesced)
