"""Op-table records of the shape_ext family (assembled into tests/op_table.py's OPS)."""

from __future__ import annotations

import itertools

import numpy as np  # noqa: F401
import scipy.linalg
from op_support import Idx, Mask, OpSpec, S, T  # noqa: F401

_ROWS = np.array([2, 0, 2])  # a constant index with a repeat


def _np_diag_embed(x, offset=0, d1=-2, d2=-1):
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), x.dtype)
    r = np.arange(x.shape[-1]) + max(-offset, 0)
    out[..., r, r + offset] = x
    return np.moveaxis(out, (-2, -1), (d1, d2))


def _np_set_diag(x, src, offset=0, d1=0, d2=1):
    base = x.copy()
    out = np.moveaxis(base, (d1, d2), (-2, -1))  # a view of base
    n = src.shape[-1]
    out[..., np.arange(n) + max(-offset, 0), np.arange(n) + max(offset, 0)] = src
    return base


def _np_select_scatter(x, src, dim, index):
    out = x.copy()
    idx = [slice(None)] * x.ndim
    idx[dim] = index
    out[tuple(idx)] = src
    return out


def _np_slice_scatter(x, src, dim=0, start=None, end=None, step=1):
    out = x.copy()
    idx = [slice(None)] * x.ndim
    idx[dim] = slice(start, end, step)
    out[tuple(idx)] = src
    return out


def _np_as_strided(x, size, stride, offset=0):
    flat = np.ascontiguousarray(x).reshape(-1)
    return np.lib.stride_tricks.as_strided(
        flat[offset:], size, [s * flat.itemsize for s in stride]
    ).copy()


def _np_unfold(x, d, size, step):
    w = np.lib.stride_tricks.sliding_window_view(x, size, axis=d)
    idx = [slice(None)] * x.ndim
    idx[d] = slice(None, None, step)
    return w[tuple(idx)]


def _np_scatter_reduce(x, dim, index, src, reduce, include_self=True):
    full = list(np.ix_(*[np.arange(n) for n in index.shape]))
    full[dim] = index
    full = tuple(full)
    vals = src[tuple(slice(0, n) for n in index.shape)]
    out = x.copy()
    if reduce in ("sum", "mean"):
        if not include_self:
            out[full] = 0
        np.add.at(out, full, vals)
        if reduce == "mean":
            cnt = np.ones(x.shape) if include_self else np.zeros(x.shape)
            np.add.at(cnt, full, 1)
            out = np.where(cnt > 0, out / np.maximum(cnt, 1), x)
        return out
    fn = {"prod": np.multiply, "amax": np.maximum, "amin": np.minimum}[reduce]
    if not include_self:
        out[full] = {"prod": 1.0, "amax": -np.inf, "amin": np.inf}[reduce]
    fn.at(out, full, vals)
    return out


def _np_index_reduce(x, dim, index, src, reduce, include_self=True):
    shape = [1] * src.ndim
    shape[dim] = -1
    full = np.broadcast_to(index.reshape(shape), src.shape)
    return _np_scatter_reduce(x, dim, full, src, reduce, include_self)


def _np_index_copy(x, dim, index, src):
    out = x.copy()
    out[(slice(None),) * dim + (index,)] = src
    return out


def _np_index_fill(x, dim, index, value):
    out = x.copy()
    out[(slice(None),) * dim + (index,)] = value
    return out


def _np_index_put(x, indices, values, accumulate=False):
    out = x.copy()
    if accumulate:
        np.add.at(out, tuple(indices), values)
    else:
        out[tuple(indices)] = values
    return out


def _np_put(x, index, src, accumulate=False):
    out = x.copy().reshape(-1)
    if accumulate:
        np.add.at(out, index.reshape(-1), src.reshape(-1))
    else:
        out[index.reshape(-1)] = src.reshape(-1)
    return out.reshape(x.shape)


def _np_masked_scatter(x, mask, src):
    m = np.broadcast_to(mask, x.shape)
    out = x.copy()
    out[m] = src.reshape(-1)[: m.sum()]
    return out


def _np_combinations(x, r=2, with_replacement=False):
    gen = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    idx = np.array(list(gen(range(len(x)), r)), dtype=np.int64).reshape(-1, r)
    return x[idx]


def _np_cartesian_prod(*xs):
    return np.stack([g.reshape(-1) for g in np.meshgrid(*xs, indexing="ij")], 1)


def _np_sum_to_size(x, size):
    lead = x.ndim - len(size)
    out = x.sum(tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(size) if s == 1 and out.shape[i] != 1)
    return out.sum(axes, keepdims=True)


def _scatter_reduce_call(r, inc):
    return lambda m, x, d, i, s: m.scatter_reduce(x, d, i, s, r, include_self=inc)


def _scatter_reduce_ref(r, inc):
    return lambda x, d, i, s: _np_scatter_reduce(x, d, i, s, r, inc)


OPS: list[OpSpec] = [
    # -- diagonals --
    OpSpec(
        "diagonal",
        lambda m, x, *a: m.diagonal(x, *a),
        lambda x, o=0, d1=0, d2=1: np.diagonal(x, o, d1, d2),
        [
            S(T(3, 4)),
            S(T(3, 4), 1),
            S(T(3, 4), -2),
            S(T(2, 3, 4), 1, 2, 0),
            S(T(3, 4), 5),
            S(T(2, 3, 4), 0, -1, -2),
        ],
    ),
    OpSpec(
        "diagonal_noncontig",
        lambda m, x: x.t().diagonal(1),
        lambda x: np.diagonal(x.T, 1),
        [S(T(4, 3))],
    ),
    OpSpec(
        "diag",
        lambda m, x, *a: m.diag(x, *a),
        lambda x, k=0: np.diag(x, k),
        [S(T(3)), S(T(3), 1), S(T(3), -2), S(T(3, 4)), S(T(3, 4), 1), S(T(3, 4), -1)],
    ),
    OpSpec(
        "diag_embed",
        lambda m, x, *a: m.diag_embed(x, *a),
        _np_diag_embed,
        [S(T(3)), S(T(2, 3)), S(T(2, 3), 1), S(T(2, 3), -1, 0, 2)],
    ),
    OpSpec(
        "diagflat",
        lambda m, x, *a: m.diagflat(x, *a),
        lambda x, k=0: np.diagflat(x, k),
        [S(T(2, 2)), S(T(3), -1)],
    ),
    OpSpec(
        "diagonal_scatter",
        lambda m, x, s, *a: m.diagonal_scatter(x, s, *a),
        lambda x, s, o=0, d1=0, d2=1: _np_set_diag(x, s, o, d1, d2),
        [
            S(T(3, 4), T(3)),
            S(T(3, 4), T(3), 1),
            S(T(3, 4), T(2), -1),
            S(T(2, 3, 4), T(4, 2), 0, 0, 1),
        ],
    ),
    # -- selection and scatters into views --
    OpSpec(
        "select",
        lambda m, x, d, i: m.select(x, d, i),
        lambda x, d, i: np.take(x, i, axis=d),
        [S(T(3, 4), 0, 1), S(T(3, 4), 1, -1), S(T(2, 3, 4), -1, 2)],
    ),
    OpSpec(
        "select_scatter",
        lambda m, x, s, d, i: m.select_scatter(x, s, d, i),
        _np_select_scatter,
        [S(T(3, 4), T(4), 0, 1), S(T(2, 3, 4), T(2, 4), 1, -1)],
    ),
    OpSpec(
        "slice_scatter",
        lambda m, x, s, *a: m.slice_scatter(x, s, *a),
        _np_slice_scatter,
        [S(T(4, 3), T(2, 3), 0, 1, 3), S(T(3, 6), T(3, 3), 1, 0, None, 2), S(T(4, 3), T(4, 3))],
    ),
    OpSpec(
        "as_strided",
        lambda m, x, *a: m.as_strided(x, *a),
        _np_as_strided,
        [S(T(3, 4), (2, 2), (1, 2)), S(T(3, 4), (3, 3), (4, 1), 1), S(T(9), (3, 3), (1, 1))],
    ),
    # torch 2.13's gradient for input is the complement of the right one (gradcheck passes
    # here): gradients are not compared with torch
    OpSpec(
        "as_strided_scatter",
        lambda m, x, s, *a: m.as_strided_scatter(x, s, *a),
        lambda x, s, size, stride, off=0: _np_as_strided_scatter(x, s, size, stride, off),
        [S(T(3, 4), T(2, 2), (2, 2), (1, 2)), S(T(3, 4), T(2, 3), (2, 3), (4, 1), 1)],
        torch_grad=False,
    ),
    OpSpec(
        "unfold",
        lambda m, x, d, size, step: x.unfold(d, size, step),
        _np_unfold,
        [S(T(7), 0, 2, 1), S(T(3, 7), 1, 3, 2), S(T(4, 3), 0, 2, 2), S(T(4, 3), -1, 3, 1)],
    ),
    OpSpec(
        "unfold_twice",
        lambda m, x: x.unfold(0, 2, 1).unfold(1, 2, 2),
        lambda x: _np_unfold(_np_unfold(x, 0, 2, 1), 1, 2, 2),
        [S(T(4, 5))],
    ),
    # -- joins, splits, grids --
    OpSpec(
        "rot90",
        lambda m, x, *a: m.rot90(x, *a),
        lambda x, k=1, dims=(0, 1): np.rot90(x, k, dims),
        [S(T(2, 3)), S(T(2, 3), 2), S(T(2, 3), 3), S(T(2, 3), -1), S(T(2, 3, 4), 1, [2, 0])],
    ),
    OpSpec(
        "atleast_3d",
        lambda m, *xs: m.atleast_3d(*xs),
        np.atleast_3d,
        [S(T()), S(T(3)), S(T(2, 3)), S(T(1, 2, 3))],
    ),
    OpSpec("atleast_2d", lambda m, x: m.atleast_2d(x), np.atleast_2d, [S(T()), S(T(3))]),
    OpSpec(
        "atleast_1d_many",
        lambda m, a, b: m.atleast_1d(a, b),
        lambda a, b: np.atleast_1d(a, b),
        [S(T(), T(2))],
    ),
    OpSpec(
        "block_diag",
        lambda m, *xs: m.block_diag(*xs),
        lambda *xs: scipy.linalg.block_diag(*[np.atleast_2d(x) for x in xs]),
        [S(T(2, 2), T(1, 3)), S(T(2, 3), T(), T(2))],
    ),
    OpSpec(
        "broadcast_tensors",
        lambda m, a, b: m.broadcast_tensors(a, b),
        lambda a, b: np.broadcast_arrays(a, b),
        [S(T(3, 1), T(4)), S(T(2, 3), T())],
    ),
    OpSpec(
        "meshgrid_ij",
        lambda m, a, b: m.meshgrid(a, b, indexing="ij"),
        lambda a, b: np.meshgrid(a, b, indexing="ij"),
        [S(T(2), T(3))],
    ),
    OpSpec(
        "meshgrid_xy",
        lambda m, a, b, c: m.meshgrid(a, b, c, indexing="xy"),
        lambda a, b, c: np.meshgrid(a, b, c, indexing="xy"),
        [S(T(2), T(3), T(4))],
    ),
    OpSpec(
        "cartesian_prod",
        lambda m, *xs: m.cartesian_prod(*xs),
        _np_cartesian_prod,
        [S(T(2), T(3)), S(T(2), T(2), T(1))],
    ),
    OpSpec(
        "combinations",
        lambda m, x, *a: m.combinations(x, *a),
        _np_combinations,
        [S(T(4)), S(T(4), 3), S(T(3), 2, True), S(T(3), 1)],
    ),
    OpSpec(
        "column_stack",
        lambda m, a, b: m.column_stack([a, b]),
        lambda a, b: np.column_stack([a, b]),
        [S(T(3), T(3, 2)), S(T(), T())],
    ),
    OpSpec(
        "dstack",
        lambda m, a, b: m.dstack([a, b]),
        lambda a, b: np.dstack([a, b]),
        [S(T(3), T(3)), S(T(2, 3), T(2, 3, 2))],
    ),
    OpSpec(
        "row_stack",
        lambda m, a, b: m.row_stack([a, b]),
        lambda a, b: np.vstack([a, b]),
        [S(T(3), T(2, 3))],
    ),
    OpSpec(
        "hsplit",
        lambda m, x, s: m.hsplit(x, s),
        np.hsplit,
        [S(T(2, 6), 3), S(T(6), [1, 4]), S(T(2, 5), [3, 1, 9])],
    ),
    OpSpec("vsplit", lambda m, x, s: m.vsplit(x, s), np.vsplit, [S(T(4, 2), 2), S(T(4, 2), [1])]),
    OpSpec("dsplit", lambda m, x, s: m.dsplit(x, s), np.dsplit, [S(T(1, 2, 4), 2)]),
    OpSpec(
        "split_with_sizes",
        lambda m, x, s, d=0: m.split_with_sizes(x, s, d),
        lambda x, s, d=0: np.split(x, np.cumsum(s)[:-1], axis=d),
        [S(T(5, 2), [2, 3])],
    ),
    OpSpec("ravel", lambda m, x: m.ravel(x.t()), lambda x: x.T.reshape(-1), [S(T(2, 3))]),
    OpSpec(
        "narrow_copy",
        lambda m, x, *a: x.narrow_copy(*a),
        lambda x, d, s, n: np.take(x, np.arange(s, s + n), axis=d),
        [S(T(3, 4), 1, 1, 2)],
    ),
    OpSpec(
        "repeat_interleave",
        lambda m, x, r, *a: m.repeat_interleave(x, r, *a),
        lambda x, r, d=None: np.repeat(x, r, axis=d),
        [
            S(T(2, 3), 2),
            S(T(2, 3), 2, 1),
            S(T(2, 3), np.array([1, 0, 2]), 1),
            S(T(3), np.array([2]), 0),
        ],
    ),
    # torch 2.13's own vander backward fails (an in-place cumprod on a saved view)
    OpSpec(
        "vander",
        lambda m, x, *a: m.vander(x, *a),
        lambda x, n=None, inc=False: np.vander(x, n, inc),
        [S(T(3)), S(T(3), 4), S(T(3), 2, True), S(T(3, kind="int"), 3)],
        torch_grad=False,
    ),
    OpSpec(
        "sum_to_size",
        lambda m, x, size: x.sum_to_size(size),
        _np_sum_to_size,
        [S(T(2, 3, 4), (3, 1)), S(T(2, 3), (1, 3)), S(T(2, 3), (2, 3))],
    ),
    # -- indexing --
    *[
        OpSpec(
            f"scatter_reduce_{r}" + ("" if inc else "_noself"),
            _scatter_reduce_call(r, inc),
            _scatter_reduce_ref(r, inc),
            [
                S(T(3, 5, kind=kind), 1, Idx(3, 4, high=5), T(3, 4, kind=kind)),
                S(T(4, 3, kind=kind), 0, Idx(2, 3, high=4), T(2, 3, kind=kind)),
                S(T(5, kind=kind), 0, np.array([0, 0, 0, 3]), T(4, kind=kind)),
            ],
            gradgrad=r != "prod",
        )
        for r, kind in [
            ("sum", "float"),
            ("mean", "float"),
            ("prod", "away"),
            ("amax", "distinct"),
            ("amin", "distinct"),
        ]
        for inc in (True, False)
    ],
    # src larger than index: only its leading block is used (torch's backward fails there)
    OpSpec(
        "scatter_reduce_src_larger",
        lambda m, x, d, i, s: m.scatter_reduce(x, d, i, s, "amax", include_self=False),
        lambda x, d, i, s: _np_scatter_reduce(x, d, i, s, "amax", False),
        [S(T(4, 3, kind="distinct"), 0, Idx(2, 3, high=4), T(3, 3, kind="distinct"))],
        torch_grad=False,
    ),
    OpSpec(
        "scatter_multiply",
        lambda m, x, d, i, s: m.scatter(x, d, i, s, reduce="multiply"),
        lambda x, d, i, s: _np_scatter_reduce(x, d, i, s, "prod"),
        [S(T(3, 5, kind="away"), 1, Idx(3, 2, high=5), T(3, 2, kind="away"))],
        torch_grad=False,
        gradgrad=False,
    ),
    OpSpec(
        "index_copy",
        lambda m, x, d, i, s: m.index_copy(x, d, i, s),
        _np_index_copy,
        [
            S(T(5, 3), 0, np.array([4, 1]), T(2, 3)),
            S(T(2, 5), 1, Idx(3, high=5, unique_dim=0), T(2, 3)),
        ],
    ),
    OpSpec(
        "index_fill",
        lambda m, x, d, i, v: m.index_fill(x, d, i, v),
        _np_index_fill,
        [S(T(4, 3), 0, _ROWS, -1.5), S(T(2, 5), 1, np.array([0, 3]), T())],
    ),
    OpSpec(
        "index_reduce",
        lambda m, x, d, i, s, r, **kw: m.index_reduce(x, d, i, s, r, **kw),
        _np_index_reduce,
        [
            S(T(4, 3, kind="away"), 0, _ROWS, T(3, 3, kind="away"), "prod"),
            S(T(4, 3), 0, _ROWS, T(3, 3), "mean"),
            S(
                T(4, 3, kind="distinct"),
                0,
                _ROWS,
                T(3, 3, kind="distinct"),
                "amax",
                include_self=False,
            ),
            S(T(2, 5, kind="distinct"), 1, np.array([1, 1]), T(2, 2, kind="distinct"), "amin"),
        ],
        gradgrad=False,
    ),
    OpSpec(
        "index_put",
        lambda m, x, i, j, v, acc=False: m.index_put(x, (i, j), v, acc),
        lambda x, i, j, v, acc=False: _np_index_put(x, (i, j), v, acc),
        [
            S(T(4, 3), np.array([0, 2]), np.array([1, 1]), T(2)),
            S(T(4, 3), np.array([0, 0, 3]), np.array([1, 1, 2]), T(3), True),
            S(T(4, 3), np.array([1]), np.array([2]), T(), True),
        ],
    ),
    OpSpec(
        "put",
        lambda m, x, i, s, *a: m.put(x, i, s, *a),
        _np_put,
        [
            S(T(3, 4), np.array([[0, 11], [5, -2]]), T(2, 2)),
            S(T(3, 4), np.array([1, 1, 2]), T(3), True),
        ],
    ),
    OpSpec(
        "take",
        lambda m, x, i: m.take(x, i),
        lambda x, i: np.take(x, i),
        [S(T(3, 4), np.array([[0, 11], [5, -1]])), S(T(2, 3), Idx(4, high=6))],
    ),
    OpSpec(
        "masked_scatter",
        lambda m, x, mask, s: m.masked_scatter(x, mask, s),
        _np_masked_scatter,
        [S(T(3, 4), Mask(3, 4), T(12)), S(T(3, 4), Mask(4), T(4, 4))],
    ),
]


def _np_as_strided_scatter(x, s, size, stride, offset=0):
    out = np.ascontiguousarray(x).copy()
    flat = out.reshape(-1)
    np.lib.stride_tricks.as_strided(flat[offset:], size, [st * flat.itemsize for st in stride])[
        ...
    ] = s
    return out
