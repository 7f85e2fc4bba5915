"""Batching rules of the matmul family and linear algebra (see ``_vmap_tensor.py``).

``matmul`` pads both operands to matmul's broadcasting batch dims (vectors handled as in
``torch.matmul``); ``einsum`` gets a fresh subscript per batch dim; linalg ops, which already
take any number of leading batch dims, only align their arguments' batch dims; the rest
(``outer``, ``addmm``, ``kron``, ``tensordot``, ...) are written as batched ops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_rules import _ABSENT, _wrap_dim, dim_op, elementwise
from ._vmap_tensor import align, levels_of, merge_levels, unwrapped, wrap


def _ember():
    import ember

    return ember


def matmul_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul(): argument must be a Tensor")
    ea, eb = a.dim(), b.dim()
    if ea == 0 or eb == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {ea}D and {eb}D"
        )
    target = merge_levels(levels_of(a), levels_of(b))
    with unwrapped(a, b) as lv:
        p, q = a, b
        if ea == 1:
            p = p.unsqueeze(-2)
        if eb == 1:
            q = q.unsqueeze(-1)
        nd = max(ea, eb, 2)
        p = align(p, lv.get(id(a), ()), target, nd)
        q = align(q, lv.get(id(b), ()), target, nd)
        out = _ember().matmul(p, q)
        if ea == 1:
            out = out.squeeze(-2)
        if eb == 1:
            out = out.squeeze(-1)
    return wrap(out, target)


def _check_nd(name: str, need: tuple[int, ...], rule: Callable) -> Callable:
    def checked(orig, args, kwargs):
        for n, (t, want) in enumerate(zip(args, need)):
            if isinstance(t, Tensor) and t.dim() != want:
                raise RuntimeError(
                    f"{name}: expected argument {n} to be {want}-D, but got {t.dim()}-D"
                )
        return rule(orig, args, kwargs)

    return checked


def outer_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def dot_rule(orig, args, kwargs):
    return (args[0] * args[1]).sum(-1)


def addmm_rule(orig, args, kwargs):
    inp, m1, m2 = args[:3]
    beta = kwargs.get("beta", args[3] if len(args) > 3 else 1)
    alpha = kwargs.get("alpha", args[4] if len(args) > 4 else 1)
    return inp * beta + _ember().matmul(m1, m2) * alpha


def einsum_rule(orig, args, kwargs):
    eq = args[0]
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    eq = eq.replace(" ", "")
    ins, _, out = eq.partition("->")
    specs = ins.split(",")
    if "->" not in eq:
        letters = [c for c in ins if c.isalpha()]
        out = ("..." if "..." in ins else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1)
        )
    used = set(eq)
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    target = merge_levels(*(levels_of(t) for t in ops))
    bl = "".join(free[: len(target)])
    with unwrapped(ops) as lv:
        phys = []
        new_specs = []
        for t, s in zip(ops, specs):
            have = lv.get(id(t), ())
            if have:
                t = align(t, have, target, expand=True)
                s = bl + s
            phys.append(t)
            new_specs.append(s)
        res = orig(",".join(new_specs) + "->" + bl + out, *phys)
    return wrap(res, target)


def batch_leading(orig: Callable, args: tuple, kwargs: dict):
    """Ops over the trailing dims that broadcast leading batch dims (linalg): align the batch
    dims of the tensor arguments (no rank padding: a vector stays a vector)."""
    ts = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
    target = merge_levels(*(levels_of(t) for t in ts))
    with unwrapped(args, kwargs) as lv:

        def fix(a):
            return (
                align(a, lv[id(a)], target)
                if id(a) in lv
                else (align(a, (), target) if isinstance(a, Tensor) else a)
            )

        out = orig(*[fix(a) for a in args], **{k: fix(v) for k, v in kwargs.items()})
    return wrap(out, target)


def inner_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    if a.dim() == 0 or b.dim() == 0:
        return a * b
    shape = tuple(a.shape[:-1]) + (1,) * (b.dim() - 1) + (a.shape[-1],)
    return (a.reshape(shape) * b).sum(-1)


def cross_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    nd = max(a.dim(), b.dim())
    if dim is None:
        dim = next(i for i, n in enumerate(_ember().broadcast_shapes(a.shape, b.shape)) if n == 3)
    dim = _wrap_dim(dim, nd) - nd  # negative: unchanged by the rank padding and batch dims
    return elementwise(orig, (a, b), {"dim": dim})


def linalg_cross_rule(orig, args, kwargs):
    dim = args[2] if len(args) > 2 else kwargs.get("dim", -1)
    return cross_rule(orig, (args[0], args[1], dim), {})


def vecdot_rule(orig, args, kwargs):
    x, y = args[0], args[1]
    dim = kwargs.get("dim", args[2] if len(args) > 2 else -1)
    return (x.conj() * y).sum(dim)


def addmv_rule(orig, args, kwargs):
    inp, m, v = args[:3]
    return inp * kwargs.get("beta", 1) + _ember().matmul(m, v) * kwargs.get("alpha", 1)


def addr_rule(orig, args, kwargs):
    inp, a, b = args[:3]
    return inp * kwargs.get("beta", 1) + a.unsqueeze(-1) * b.unsqueeze(-2) * kwargs.get("alpha", 1)


def addbmm_rule(orig, args, kwargs):
    inp, a, b = args[:3]
    return inp * kwargs.get("beta", 1) + _ember().matmul(a, b).sum(0) * kwargs.get("alpha", 1)


def chain_rule(orig, args, kwargs):
    ms = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    return functools.reduce(_ember().matmul, ms)


def kron_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    nd = max(a.dim(), b.dim())
    a = a.reshape((1,) * (nd - a.dim()) + tuple(a.shape))
    b = b.reshape((1,) * (nd - b.dim()) + tuple(b.shape))
    sa = [s for n in a.shape for s in (n, 1)]
    sb = [s for n in b.shape for s in (1, n)]
    return (a.reshape(sa) * b.reshape(sb)).reshape([x * y for x, y in zip(a.shape, b.shape)])


def tensordot_rule(orig, args, kwargs):
    a, b = args[0], args[1]
    dims = args[2] if len(args) > 2 else kwargs.get("dims", 2)
    letters = "abcdefghijklmnopqrstuvwxyz"
    la, lb = list(letters[: a.dim()]), list(letters[a.dim() : a.dim() + b.dim()])
    if isinstance(dims, int):
        da, db = list(range(a.dim() - dims, a.dim())), list(range(dims))
    else:
        da, db = [list(d) if isinstance(d, (list, tuple)) else [d] for d in dims]
    for i, j in zip(da, db):
        lb[j % b.dim()] = la[i % a.dim()]
    out = [c for n, c in enumerate(la) if n not in [i % a.dim() for i in da]] + [
        c for n, c in enumerate(lb) if n not in [j % b.dim() for j in db]
    ]
    return einsum_rule(
        _ember().einsum, ("".join(la) + "," + "".join(lb) + "->" + "".join(out), a, b), {}
    )


def linalg_norm_rule(orig, args, kwargs):
    names = ("input", "ord", "dim", "keepdim")
    a = dict(zip(names, args))
    a.update(kwargs)
    x = a["input"]
    ord_, dim, keepdim = a.get("ord"), a.get("dim"), a.get("keepdim", False)
    if dim is None:
        if ord_ is None:
            return _ember().linalg.vector_norm(x, 2, None, keepdim)
        dim = 0 if x.dim() == 1 else (0, 1)
    return dim_op(2, "dim", _ABSENT)(orig, (x, ord_, dim, keepdim), {})


LINALG = """
inv inv_ex det slogdet cholesky cholesky_ex qr eigh eigvalsh eigvals eig svd svdvals pinv
matrix_exp matrix_power solve solve_ex solve_triangular lstsq lu lu_factor lu_factor_ex lu_solve
householder_product cond matrix_rank tensorsolve ldl_factor ldl_factor_ex ldl_solve inverse
logdet cholesky_inverse cholesky_solve pinverse triangular_solve lu_unpack orgqr ormqr geqrf
""".split()


def install() -> None:
    RULES.update(
        {
            "matmul": matmul_rule,
            "__matmul__": matmul_rule,
            "__rmatmul__": lambda o, a, k: matmul_rule(o, (a[1], a[0]), k),
            "mm": _check_nd("mm", (2, 2), matmul_rule),
            "bmm": _check_nd("bmm", (3, 3), matmul_rule),
            "mv": _check_nd("mv", (2, 1), matmul_rule),
            "dot": _check_nd("dot", (1, 1), dot_rule),
            "vdot": _check_nd("vdot", (1, 1), dot_rule),
            "inner": inner_rule,
            "outer": outer_rule,
            "ger": outer_rule,
            "addmm": addmm_rule,
            "baddbmm": addmm_rule,
            "einsum": einsum_rule,
            "addmv": addmv_rule,
            "addr": addr_rule,
            "addbmm": addbmm_rule,
            "kron": kron_rule,
            "tensordot": tensordot_rule,
            "cross": cross_rule,
        }
    )
    for name in LINALG:
        RULES["linalg." + name] = batch_leading
        RULES.setdefault(name, batch_leading)
    RULES["linalg.matrix_norm"] = dim_op(2, "dim", (-2, -1))
    RULES["linalg.vector_norm"] = dim_op(2, "dim", _ABSENT)
    RULES["linalg.norm"] = linalg_norm_rule
    RULES["linalg.matmul"] = matmul_rule
    RULES["linalg.diagonal"] = lambda o, a, k: a[0].diagonal(
        k.get("offset", 0), k.get("dim1", -2), k.get("dim2", -1)
    )
    RULES["linalg.vecdot"] = RULES["vecdot"] = vecdot_rule
    RULES["linalg.cross"] = linalg_cross_rule
    RULES["linalg.multi_dot"] = RULES["chain_matmul"] = chain_rule
    RULES["linalg.vander"] = batch_leading
