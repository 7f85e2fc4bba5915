"""Two-operand ``einsum`` as one batched matrix product, as PyTorch runs it.

NumPy's ``einsum`` without ``optimize`` loops in C over every index, and with it uses BLAS only
through ``tensordot``, which has no batch indices. Attention-style contractions
(``bhid,bhjd->bhij``) therefore ran ~7x slower than the same product as a ``matmul`` ((8, 4, 64,
64): 10.1 ms against 1.5 ms at one thread). Here the indices of a pair are sorted into batch
(both operands and the output), contracted (both operands, not the output) and free (one
operand and the output); indices of one operand alone that the output drops are summed first.
Each operand is permuted and reshaped to (batch, free, contracted) / (batch, contracted, free),
multiplied once (``mkl_gemm.matmul``: MKL where it qualifies, else NumPy's BLAS), and the
result is reshaped and permuted to the output's order (a view, as ``torch.einsum``'s result).

Anything else -- more operands, a repeated index within one operand or the output (a
diagonal), sizes that only broadcast, integer or boolean operands -- goes to ``xp.einsum``.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend.mkl_gemm import matmul as mm


def contract(xp, ins: list[str], out: str, ops: list):
    """``xp.einsum(",".join(ins) + "->" + out, *ops)`` with a pair of operands run as one batched
    matrix product where possible (see the module docstring)."""
    if len(ops) != 2 or not _plain(ins, out, ops):
        return xp.einsum(",".join(ins) + "->" + out, *ops, optimize=len(ops) > 2)
    (sa, sb), (a, b) = ins, ops
    a, sa = _sum_alone(xp, a, sa, sb, out)
    b, sb = _sum_alone(xp, b, sb, sa, out)
    size = dict(zip(sa, a.shape))
    size.update(zip(sb, b.shape))
    batch = [c for c in out if c in sa and c in sb]
    con = [c for c in sa if c in sb and c not in out]
    fa = [c for c in sa if c not in sb]
    fb = [c for c in sb if c not in sa]
    if not con:
        # nothing contracted: a broadcast product, as torch's (``mul``), so the result is
        # laid out in the output's order (DANet's ``einsum("nd,bd->bnd", ...).view(b, -1, 1)``)
        ea = xp.transpose(a, [sa.index(c) for c in out if c in sa])
        eb = xp.transpose(b, [sb.index(c) for c in out if c in sb])
        ea = ea.reshape([size[c] if c in sa else 1 for c in out])
        eb = eb.reshape([size[c] if c in sb else 1 for c in out])
        return ea * eb
    nb = math.prod(size[c] for c in batch)
    nk = math.prod(size[c] for c in con)
    am = xp.transpose(a, [sa.index(c) for c in batch + fa + con])
    am = am.reshape(nb, math.prod(size[c] for c in fa), nk)
    bm = xp.transpose(b, [sb.index(c) for c in batch + con + fb])
    bm = bm.reshape(nb, nk, math.prod(size[c] for c in fb))
    r = mm(am, bm) if nb > 1 else mm(am[0], bm[0])
    order = batch + fa + fb
    r = r.reshape([size[c] for c in order])
    return xp.transpose(r, [order.index(c) for c in out])


def _plain(ins: list[str], out: str, ops: list) -> bool:
    """A pair the batched product can run: no index repeated within an operand or the output,
    equal sizes wherever an index appears twice, and float or complex operands of one dtype."""
    if any(len(set(s)) != len(s) for s in (*ins, out)) or not set(out) <= set(ins[0] + ins[1]):
        return False
    a, b = ops
    # (Tensors -- double backward records its graph -- keep einsum)
    if not isinstance(a.dtype, np.dtype) or a.dtype != b.dtype or a.dtype.kind not in "fc":
        return False
    sizes = dict(zip(ins[0], a.shape))
    return all(sizes.get(c, n) == n for c, n in zip(ins[1], b.shape))


def _sum_alone(xp, x, s: str, other: str, out: str):
    """Sum out the indices of ``x`` that neither the other operand nor the output has."""
    drop = [i for i, c in enumerate(s) if c not in other and c not in out]
    if not drop:
        return x, s
    return x.sum(axis=tuple(drop)), "".join(c for c in s if c in other or c in out)
