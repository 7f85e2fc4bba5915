"""Linear algebra: matmul family, einsum, outer/dot, norms."""

from __future__ import annotations

import string

import numpy as np

from .._torch_function import torch_function_dispatch
from ..amp._state import autocast_op
from ..autograd.function import Function
from ..backend.mkl_gemm import matmul as _gemm
from ..tensor import Tensor
from ._lowp import float32_compute
from ._util import broadcast_shapes, cpp_type_name, norm_dims, promote, scalar_type_name
from .einsum_pairs import contract
from .shape import squeeze, unsqueeze


@float32_compute
class Matmul(Function):
    """Batched matmul of >= 2-D operands; batch dims broadcast (the engine un-broadcasts)."""

    @staticmethod
    def forward(ctx, a, b):
        na, nb = ctx.needs_input_grad
        if na or nb:  # (neither: no graph is recorded, nothing to save)
            ctx.save_for_backward(a if nb else None, b if na else None)
        return _gemm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        na, nb = ctx.needs_input_grad
        if grad.dtype.kind == "c" if not hasattr(grad, "_data") else grad._data.dtype.kind == "c":
            a = a.conj() if a is not None else None  # PyTorch's complex convention
            b = b.conj() if b is not None else None
        ga = _gemm(grad, xp.swapaxes(b, -1, -2)) if na else None
        gb = _gemm(xp.swapaxes(a, -1, -2), grad) if nb else None
        return ga, gb


class Mv(Matmul):
    """:class:`Matmul` where one operand was a 1-D vector that PyTorch's ``matmul`` runs as
    ``mv`` (``A @ v``, ``v @ batched``): the same kernel, a class of its own so that observers
    (``FlopCounterMode``, which does not count ``mv``; the profiler's ``ember::mv``) can tell
    it from a real ``(k, 1)`` matrix."""


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _mm_error(a, b):
    """PyTorch's message for matmul operands whose inner sizes differ, by the path it takes:
    matrix-vector, matrix-matrix (leading dims of the first operand folded into rows), or
    batched (the broadcast batch dims folded, as bmm reports them)."""
    sa, sb = a._data.shape, b._data.shape
    if len(sb) == 1:
        rows = _prod(sa[:-1])
        return RuntimeError(
            f"size mismatch, got input ({rows}), mat ({rows}x{sa[-1]}), vec ({sb[0]})"
        )
    if len(sb) == 2:
        rows = _prod(sa[:-1]) if len(sa) > 1 else 1
        return RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{sa[-1]} and {sb[0]}x{sb[1]})"
        )
    n = _prod(broadcast_shapes(sa[:-2], sb[:-2]))
    return RuntimeError(
        f"Expected size for first two dimensions of batch2 tensor to be: "
        f"[{n}, {sa[-1]}] but got: [{n}, {sb[-2]}]."
    )


def _dtype_error(a, b):
    """PyTorch's message for matmul operands of different dtypes, by the kernel its path takes
    (dot, matrix-vector, matrix-matrix or batched); PyTorch never promotes here."""
    da, db = a._data.ndim, b._data.ndim
    na, nb = scalar_type_name(a), scalar_type_name(b)
    if da == 1 and db == 1:
        return RuntimeError(
            f"dot : expected both vectors to have same dtype, but found {na} and {nb}"
        )
    if db == 1:
        return RuntimeError(
            f"addmv input tensors must have the same dtype, but got {nb}, {na}, and {nb}"
        )
    if db == 2:
        return RuntimeError(
            f"expected m1 and m2 to have the same dtype, but got: "
            f"{cpp_type_name(a)} != {cpp_type_name(b)}"
        )
    return RuntimeError(f"expected scalar type {na} but found {nb}")


@torch_function_dispatch(2)
@autocast_op("matmul")
def matmul(input, other):
    """The matrix product of two tensors, with NumPy's broadcasting rules: 1-D operands are
    treated as vectors, and batch dimensions broadcast.

    Args:
        input (Tensor): the first operand.
        other (Tensor): the second operand.

    Raises:
        RuntimeError: the inner dimensions do not match (PyTorch's message).
    """
    # two tensors are never promoted (PyTorch raises); NumPy operands join as tensors
    a, b = (
        (input, other)
        if isinstance(input, Tensor) and isinstance(other, Tensor)
        else promote(input, other)
    )
    da, db = a._data.ndim, b._data.ndim
    if da == 0 or db == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {da}D and {db}D"
        )
    ka = a._data.shape[-1]
    kb = b._data.shape[-2] if db > 1 else b._data.shape[0]
    if ka != kb:
        if da == 1 and db == 1:
            raise RuntimeError(
                f"inconsistent tensor size, expected tensor [{ka}] and src [{kb}] "
                "to have the same number of elements, but got "
                f"{ka} and {kb} elements respectively"
            )
        raise _mm_error(a, b)
    if da > 2 and db > 2 and a._data.shape[:-2] != b._data.shape[:-2]:
        broadcast_shapes(a._data.shape[:-2], b._data.shape[:-2])  # PyTorch's message if not
    if a._data.dtype != b._data.dtype:
        raise _dtype_error(a, b)
    if da >= 2 and db >= 2:
        return Matmul.apply(a, b)
    # 1-D operands: promote to matrices and squeeze the added dim afterwards, as numpy does
    a2 = unsqueeze(a, 0) if da == 1 else a
    b2 = unsqueeze(b, -1) if db == 1 else b
    # PyTorch: matrix/batch @ vector and vector @ batch are mv, vector @ matrix an mm
    out = (Mv if db != 2 else Matmul).apply(a2, b2)
    if db == 1:
        out = squeeze(out, -1)
    if da == 1:
        out = squeeze(out, -2 if db > 1 else -1)
    return out


@autocast_op("mm")
def mm(input, mat2):
    """The matrix product of two 2-D tensors, ``(n, m) @ (m, p) -> (n, p)``; no broadcasting."""
    if input._data.ndim != 2 or mat2._data.ndim != 2:
        raise RuntimeError(
            "self must be a matrix" if input._data.ndim != 2 else "mat2 must be a matrix"
        )
    return matmul(input, mat2)


@autocast_op("bmm")
def bmm(input, mat2):
    """The batched matrix product ``(b, n, m) @ (b, m, p) -> (b, n, p)``; no broadcasting."""
    if input._data.ndim != 3 or mat2._data.ndim != 3:
        raise RuntimeError(
            "batch1 must be a 3D tensor" if input._data.ndim != 3 else "batch2 must be a 3D tensor"
        )
    if input._data.shape[0] != mat2._data.shape[0] or input._data.shape[2] != mat2._data.shape[1]:
        raise RuntimeError(
            f"Expected size for first two dimensions of batch2 tensor to be: "
            f"[{input._data.shape[0]}, {input._data.shape[2]}] but got: "
            f"[{mat2._data.shape[0]}, {mat2._data.shape[1]}]."
        )
    return matmul(input, mat2)


@autocast_op("mv")
def mv(input, vec):
    """The product of a matrix ``(n, m)`` and a vector ``(m,)``."""
    return matmul(input, vec)


@autocast_op("dot")
def dot(input, other):
    """The dot product of two 1-D tensors of the same length (no conjugation; see :func:`vdot`)."""
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(
            f"1D tensors expected, but got {input._data.ndim}D and {other._data.ndim}D tensors"
        )
    return matmul(input, other)


@torch_function_dispatch(2)
@autocast_op("outer")
def outer(input, vec2):
    """The outer product of two vectors: ``out[i, j] = input[i] * vec2[j]``."""
    for name, t in (("self", input), ("vec2", vec2)):
        if t._data.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {t._data.ndim}-D")
    # an elementwise product, as in PyTorch: the dtypes promote (``outer(arange(n), freqs)``
    # is the rotary-embedding idiom), where a matmul of mixed dtypes raises
    return unsqueeze(input, -1) * unsqueeze(vec2, 0)


ger = outer


@autocast_op("addmm")
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``, ``input`` broadcast to the product's shape."""
    out = matmul(mat1, mat2)
    if alpha != 1:
        out = out * alpha
    return out + (input if beta == 1 else input * beta)


@autocast_op("baddbmm")
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * (batch1 @ batch2)`` over a batch of matrices."""
    return addmm(input, batch1, batch2, beta=beta, alpha=alpha)


# ---- einsum -------------------------------------------------------------------------------
def _parse_einsum(eq: str, shapes):
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise RuntimeError(
            "einsum(): more operands were provided than specified in the equation"
            if len(shapes) > len(ins)
            else "einsum(): fewer operands were provided than specified in the equation"
        )
    used = set(c for c in eq if c.isalpha())
    spare = [c for c in string.ascii_letters if c not in used]
    ell_n = max((len(s) - (len(t) - 3) for t, s in zip(ins, shapes) if "..." in t), default=0)
    ell = "".join(spare[:ell_n])
    full = []
    for i, (t, s) in enumerate(zip(ins, shapes)):
        if "..." in t:
            k = len(s) - (len(t) - 3)
            if k < 0:
                raise RuntimeError(
                    f"einsum(): the number of subscripts in the equation "
                    f"({len(t) - 3}) is more than the number of dimensions "
                    f"({len(s)}) for operand {i}"
                )
            t = t.replace("...", ell[ell_n - k :] if k else "")
        elif len(t) != len(s):
            raise RuntimeError(
                f"einsum(): the number of subscripts in the equation ({len(t)}) "
                f"does not match the number of dimensions ({len(s)}) for operand "
                f"{i} and no ellipsis was given"
            )
        full.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for t in full:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return full, out


def _conj(o):
    """``o`` conjugated when complex (an array, or a Tensor in double backward)."""
    if isinstance(o.dtype, np.dtype):
        return o.conj() if o.dtype.kind == "c" else o
    return o.conj() if o.is_complex() else o


@float32_compute
class Einsum(Function):
    @staticmethod
    def forward(ctx, eq, *ops):
        ins, out = _parse_einsum(eq, [o.shape for o in ops])
        ctx.ins, ctx.out = ins, out
        ctx.shapes = [o.shape for o in ops]
        ctx.save_for_backward(*ops)
        return contract(ctx.xp, ins, out, list(ops))

    @staticmethod
    def backward(ctx, grad):
        ops = ctx.saved_tensors
        xp = ctx.xp
        grads = [None]
        for i, need in enumerate(ctx.needs_input_grad[1:]):
            if not need:
                grads.append(None)
                continue
            full_target = ctx.ins[i]
            # a letter repeated in one operand ("ii->i", zuko's trace "i...i") reads its
            # diagonal: the gradient is computed over the distinct letters, then written
            # onto that diagonal of a zero array
            target = "".join(dict.fromkeys(full_target))
            sizes = dict(zip(full_target, ctx.shapes[i]))
            shape_i = tuple(sizes[c] for c in target)
            others = [ctx.ins[j] for j in range(len(ops)) if j != i]
            avail = set(ctx.out).union(*others) if others else set(ctx.out)
            reduced = "".join(c for c in target if c in avail)
            # a complex product's gradient takes the other factors conjugated (torch's
            # convention: grad_a = grad * conj(b)), as FNO's complex spectral weights need
            rest = [_conj(ops[j]) for j in range(len(ops)) if j != i]
            g = contract(xp, [ctx.out] + others, reduced, [grad] + rest)
            if reduced != target:  # letters summed out in this operand alone: broadcast back
                shape = [sizes[c] if c in reduced else 1 for c in target]
                g = xp.broadcast_to(xp.reshape(g, tuple(shape)), shape_i)
            if target != full_target:
                out = xp.zeros(ctx.shapes[i], dtype=g.dtype)
                strides = tuple(
                    sum(st for c2, st in zip(full_target, out.strides) if c2 == c) for c in target
                )
                xp.lib.stride_tricks.as_strided(out, shape_i, strides)[...] = g
                g = out
            grads.append(g)
        return tuple(grads)


@autocast_op("einsum")
def einsum(equation, *operands):
    """Einstein summation: ``einsum("ij,jk->ik", a, b)`` is ``a @ b``. Operands may be passed as
    arguments or as one list. The contraction order is NumPy's optimized one.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        # called again unpacked, as torch's is, so that a tensor-like in the list reaches its
        # __torch_function__ (opt_einsum's torch backend passes a list of fx Proxies)
        return einsum(equation, *operands[0])
    ops = list(operands)
    for k in range(1, len(ops)):
        ops[0], ops[k] = promote(ops[0], ops[k])
    ops = [promote(o, ops[0])[0] for o in ops]
    return Einsum.apply(equation, *ops)


# ---- norms --------------------------------------------------------------------------------
@float32_compute
class VectorNorm(Function):
    @staticmethod
    def forward(ctx, x, p, axes, keepdim):
        xp = ctx.xp
        a = xp.abs(x)
        if p == float("inf"):
            out = a.max(axis=axes, keepdims=True)
        elif p == 2:
            out = xp.sqrt((a * a).sum(axis=axes, keepdims=True))
        elif p == 1:
            out = a.sum(axis=axes, keepdims=True)
        elif p == 0:
            out = (a != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        else:
            out = (a**p).sum(axis=axes, keepdims=True) ** (1.0 / p)
        if not keepdim:
            out = out.reshape(
                tuple(n for i, n in enumerate(x.shape) if axes is not None and i not in axes)
            )
        # save the returned array itself: double backward then sees it as the output
        ctx.save_for_backward(x, out)
        ctx.p, ctx.axes, ctx.keepdim = p, axes, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp, p = ctx.xp, ctx.p
        if not ctx.keepdim:  # back to the reduced dims kept as 1s, to broadcast against x
            kept = tuple(
                1 if ctx.axes is None or i in ctx.axes else n for i, n in enumerate(x.shape)
            )
            grad, out = xp.reshape(grad, kept), xp.reshape(out, kept)
        g = grad
        safe = xp.where(out == 0, 1, out)  # PyTorch's subgradient: 0 where the norm is 0
        if p == float("inf"):
            mask = xp.abs(x) == out
            return (
                g * xp.sign(x) * mask / xp.sum(mask, axis=ctx.axes, keepdims=True),
                None,
                None,
                None,
            )
        if p == 2:
            return g * x / safe * (out != 0), None, None, None
        if p == 1:
            return g * xp.sign(x), None, None, None
        if p == 0:
            return g * 0 * x, None, None, None
        return (
            g * xp.sign(x) * xp.abs(x) ** (p - 1) / safe ** (p - 1) * (out != 0),
            None,
            None,
            None,
        )


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """The vector p-norm of ``x`` over ``dim`` (all elements when None).

    Args:
        x (Tensor): the input.
        ord: the order p: a real number, ``inf`` (max of absolute values), ``-inf`` (min) or 0
            (count of non-zeros).
        dim: the dimension(s) to reduce; None flattens the input.
        keepdim: keep the reduced dimensions with size 1.
        dtype: compute and return in this dtype.
    """
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind not in "fcV":
        raise RuntimeError(
            f"linalg.vector_norm: Expected a floating point or complex tensor as "
            f"input. Got {scalar_type_name(x)}"
        )
    return VectorNorm.apply(x, float(ord), norm_dims(dim, x._data.ndim), keepdim)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """``torch.norm``: vector p-norms and the Frobenius norm ("fro" == 2 over the dims)."""
    if p == "fro" or p is None:
        p = 2
    if p == "nuc":
        raise NotImplementedError("nuclear norm is not supported")
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


def linalg_norm(input, ord=None, dim=None, keepdim=False, *, dtype=None):
    """``torch.linalg.norm``: 2-norm of the flattened input, a vector ord, or "fro"."""
    if ord is None or ord == "fro":
        return vector_norm(input, 2, dim, keepdim, dtype=dtype)
    if isinstance(dim, (tuple, list)) and len(dim) == 2 or (dim is None and input.ndim == 2):
        raise NotImplementedError(f"matrix norm ord={ord!r} is not supported; use 'fro'")
    return vector_norm(input, ord, dim, keepdim, dtype=dtype)


def _is_tensor(x):
    return isinstance(x, Tensor)
