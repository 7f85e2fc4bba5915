"""Op-table records of the sorting family (assembled into tests/op_table.py's OPS).

Samples that take gradients use distinct values ("distinct"): at a tie the selected element,
and so the gradient, is a matter of convention. Ties are covered by forward-only samples.
"""

from __future__ import annotations

import numpy as np
from op_support import OpSpec, S, T

NAN = np.nan
_WITH_NAN = np.array(
    [[1.5, NAN, -0.5, 2.0], [0.3, 0.7, -1.2, 0.1], [NAN, NAN, NAN, NAN]], np.float32
)
_TIES = np.array([[2, 2, 1, 1, 5], [0, 0, 0, 1, 1], [4, 3, 3, 4, 4]], np.int64)


def _along(x, dim):
    return dim if x.ndim else None


def np_sort(x, dim=-1, descending=False, stable=False):
    if x.ndim == 0:
        return x, np.array(0)
    idx = np.argsort(-x if descending else x, axis=dim, kind="stable")
    return np.take_along_axis(x, idx, dim), idx


def np_topk(x, k, dim=-1, largest=True):
    v, i = np_sort(x, dim, descending=largest)
    sl = (slice(None),) * (dim % x.ndim) + (slice(0, k),)
    return v[sl], i[sl]


def np_kthvalue(x, k, dim=-1, keepdim=False):
    v, i = np_sort(x, dim)
    sl = (slice(None),) * (dim % x.ndim) + (slice(k - 1, k),)
    v, i = v[sl], i[sl]
    return (v, i) if keepdim else (v.squeeze(dim), i.squeeze(dim))


def np_median_all(x, ignore_nan=False):
    f = np.sort(x.reshape(-1))
    if ignore_nan:
        f = f[~np.isnan(f)]
    elif np.isnan(f).any():
        return np.array(NAN)
    return np.array(f[(f.size - 1) // 2] if f.size else NAN)


def np_median_dim(x, dim, keepdim=False, ignore_nan=False):
    x = np.moveaxis(x, dim, -1)
    vals, idxs = [], []
    for row in x.reshape(-1, x.shape[-1]):
        order = np.argsort(row, kind="stable")
        nan = np.isnan(row) if row.dtype.kind == "f" else np.zeros(row.shape, bool)
        c = int((~nan).sum())
        if ignore_nan:
            pos = (c - 1) // 2 if c else 0
        else:
            pos = c if c < row.size else (row.size - 1) // 2
        idxs.append(order[pos])
        vals.append(row[order[pos]])
    shape = x.shape[:-1]
    v, i = np.array(vals).reshape(shape), np.array(idxs).reshape(shape)
    if keepdim:
        v, i = np.expand_dims(v, dim), np.expand_dims(i, dim)
    return v, i


def np_mode(x, dim=-1):
    x = np.moveaxis(x, dim, -1)
    vals, idxs = [], []
    for row in x.reshape(-1, x.shape[-1]):
        values, counts = np.unique(row, return_counts=True)
        v = values[np.argmax(counts)]  # the first maximum: the smallest value
        vals.append(v)
        idxs.append(np.nonzero(row == v)[0][-1])
    return np.array(vals).reshape(x.shape[:-1]), np.array(idxs).reshape(x.shape[:-1])


def np_cum_extreme(x, dim, is_max):
    x = np.moveaxis(x, dim, -1)
    vals, idxs = np.empty_like(x), np.empty(x.shape, np.int64)
    for r in np.ndindex(x.shape[:-1]):
        best = 0
        for j in range(x.shape[-1]):
            a, b = x[r + (j,)], x[r + (best,)]
            if (a >= b if is_max else a <= b) or np.isnan(a):
                best = j
            vals[r + (j,)], idxs[r + (j,)] = x[r + (best,)], best
    return np.moveaxis(vals, -1, dim), np.moveaxis(idxs, -1, dim)


def np_quantile(x, q, dim=None, keepdim=False, interpolation="linear", ignore_nan=False):
    fn = np.nanquantile if ignore_nan else np.quantile
    return fn(x, q, axis=dim, keepdims=keepdim, method=interpolation)


def np_diff(x, n=1, dim=-1, prepend=None, append=None):
    kw = {k: v for k, v in (("prepend", prepend), ("append", append)) if v is not None}
    return np.diff(x, n=n, axis=dim, **kw)


def np_cumulative_trapezoid(y, dim=-1):
    mid = np.take(y, range(1, y.shape[dim]), dim) + np.take(y, range(y.shape[dim] - 1), dim)
    return np.cumsum(mid / 2, axis=dim)


def np_renorm(x, p, dim, maxnorm):
    others = tuple(i for i in range(x.ndim) if i != dim)
    norms = np.sum(np.abs(x) ** p, axis=others, keepdims=True) ** (1 / p)
    return x * np.where(norms > maxnorm, maxnorm / (norms + 1e-7), 1.0)


def np_unique(x, return_inverse=False, return_counts=False, dim=None):
    out = np.unique(
        x, return_inverse=return_inverse, return_counts=return_counts, axis=dim, equal_nan=False
    )
    if isinstance(out, tuple) and return_inverse:
        out = (out[0], out[1].reshape(x.shape) if dim is None else out[1].reshape(-1)) + out[2:]
    return out


def np_unique_consecutive(x, return_counts=False):
    keep = np.ones(x.size, bool)
    keep[1:] = x[1:] != x[:-1]
    out = x[keep]
    if not return_counts:
        return out
    return out, np.diff(np.append(np.nonzero(keep)[0], x.size))


def np_searchsorted(seq, v, right=False):
    side = "right" if right else "left"
    if seq.ndim == 1:
        return np.searchsorted(seq, v, side=side)
    return np.stack([np.searchsorted(s, r, side=side) for s, r in zip(seq, v)])


_SORTED = np.array([[-1.0, 0.0, 0.5, 2.0], [0.0, 1.0, 1.0, 3.0]], np.float32)
_PROBES = np.array([[0.0, 1.5, 3.0], [1.0, -2.0, 4.0]], np.float32)
_Q = [0.0, 0.3, 0.5, 1.0]  # (a list: a tensor q is built in the call, not differentiated)


def _q(m, x, q):
    return m.tensor(q, dtype=x.dtype) if isinstance(q, list) else q


OPS: list[OpSpec] = [
    # -- sorting and selection --
    OpSpec(
        "sort",
        lambda m, x, *a, **kw: m.sort(x, *a, **kw),
        np_sort,
        [
            S(T(3, 4, kind="distinct"), 1),
            S(T(3, 4, kind="distinct"), 0, True),
            S(T(kind="distinct"), 0),
            S(T(0, 3), 1),
            S(_TIES, dim=1, descending=True, stable=True),
            S(_TIES, dim=0, stable=True),
        ],
    ),
    OpSpec(
        "argsort",
        lambda m, x, *a, **kw: m.argsort(x, *a, **kw),
        lambda x, *a, **kw: np_sort(x, *a, **kw)[1],
        [
            S(T(3, 4, kind="distinct"), 1),
            S(T(3, 4, kind="distinct"), 0, True),
            S(_TIES, dim=1, stable=True),
        ],
        grad=False,
    ),
    OpSpec(
        "msort",
        lambda m, x: m.msort(x),
        lambda x: np.sort(x, axis=0),
        [S(T(3, 4, kind="distinct"))],
    ),
    OpSpec(
        "topk",
        lambda m, x, k, **kw: m.topk(x, k, **kw),
        np_topk,
        [
            S(T(3, 5, kind="distinct"), 2),
            S(T(4, 3, kind="distinct"), 3, dim=0),
            S(T(3, 5, kind="distinct"), 1, largest=False),
            S(T(2, 3), 0),
        ],
    ),
    OpSpec(
        "kthvalue",
        lambda m, x, k, **kw: m.kthvalue(x, k, **kw),
        np_kthvalue,
        [S(T(3, 5, kind="distinct"), 2), S(T(4, 3, kind="distinct"), 4, dim=0, keepdim=True)],
    ),
    OpSpec(
        "median_all",
        lambda m, x: m.median(x),
        np_median_all,
        [
            S(T(3, 4, kind="distinct")),
            S(T(5, kind="distinct")),
            S(np.array([1.0, 2.0, 2.0, 3.0], np.float32), fd=False),
            S(_WITH_NAN[:2], fd=False),
        ],
    ),
    OpSpec(
        "median_dim",
        lambda m, x, d, **kw: m.median(x, d, **kw),
        np_median_dim,
        [
            S(T(3, 4, kind="distinct"), 1),
            S(T(4, 3, kind="distinct"), 0, keepdim=True),
            S(_WITH_NAN, 1, fd=False),
            S(_TIES, 1),
        ],
    ),
    OpSpec(
        "nanmedian",
        lambda m, x, *a: m.nanmedian(x, *a),
        lambda x, *a: (
            np_median_dim(x, *a, ignore_nan=True) if a else np_median_all(x, ignore_nan=True)
        ),
        # (an all-NaN row's index is an artifact of torch's selection algorithm: not here)
        [S(_WITH_NAN[:2], 1, fd=False), S(_WITH_NAN, fd=False), S(T(3, 4, kind="distinct"), 0)],
    ),
    OpSpec(
        "mode",
        lambda m, x, *a: m.mode(x, *a),
        np_mode,
        [
            S(_TIES, 1),
            S(_TIES.T.copy(), 0),
            S(_TIES.astype(np.float32) * 0.5, 1, fd=False),
            S(T(3, 4, kind="distinct"), 1),
        ],
    ),
    OpSpec(
        "cummax",
        lambda m, x, d: m.cummax(x, d),
        lambda x, d: np_cum_extreme(x, d, True),
        [
            S(T(3, 5, kind="distinct"), 1),
            S(T(4, 2, kind="distinct"), 0),
            S(np.array([1.0, 3.0, 3.0, 2.0, NAN, 5.0], np.float32), 0, fd=False),
            S(_TIES, 1),
        ],
    ),
    OpSpec(
        "cummin",
        lambda m, x, d: m.cummin(x, d),
        lambda x, d: np_cum_extreme(x, d, False),
        [S(T(3, 5, kind="distinct"), 1), S(_TIES, 1)],
    ),
    OpSpec(
        "logcumsumexp",
        lambda m, x, d: m.logcumsumexp(x, d),
        lambda x, d: np.logaddexp.accumulate(x, axis=d),
        [S(T(3, 5), 1), S(T(4, 2), 0), S(np.array([-200.0, 0.0, 3.0], np.float32), 0)],
    ),
    OpSpec(
        "aminmax",
        lambda m, x, **kw: m.aminmax(x, **kw),
        lambda x, dim=None, keepdim=False: (
            np.amin(x, axis=dim, keepdims=keepdim),
            np.amax(x, axis=dim, keepdims=keepdim),
        ),
        [
            S(T(3, 4, kind="distinct")),
            S(T(3, 4, kind="distinct"), dim=1),
            S(T(3, 4, kind="distinct"), dim=0, keepdim=True),
            S(_TIES, dim=1),
        ],
    ),
    # -- NaN-aware reductions and quantiles --
    OpSpec(
        "nansum",
        lambda m, x, **kw: m.nansum(x, **kw),
        lambda x, dim=None, keepdim=False: np.nansum(x, axis=dim, keepdims=keepdim),
        [S(_WITH_NAN[:2]), S(_WITH_NAN[:2], dim=1, keepdim=True), S(T(3, 4), dim=0), S(_TIES)],
    ),
    OpSpec(
        "nanmean",
        lambda m, x, **kw: m.nanmean(x, **kw),
        lambda x, dim=None, keepdim=False: np.nanmean(x, axis=dim, keepdims=keepdim),
        [S(_WITH_NAN[:2]), S(_WITH_NAN[:2], dim=1), S(T(3, 4), dim=0, keepdim=True)],
    ),
    *[
        OpSpec(
            f"quantile_{mode}",
            (lambda md: lambda m, x, q, **kw: m.quantile(x, _q(m, x, q), interpolation=md, **kw))(
                mode
            ),
            (lambda md: lambda x, q, **kw: np_quantile(x, q, interpolation=md, **kw))(mode),
            [
                S(T(3, 5, kind="distinct"), 0.3, dim=1),
                S(T(4, 3, kind="distinct"), _Q, dim=0),
                S(T(3, 4, kind="distinct"), 0.625),
                S(T(3, 4, kind="distinct"), _Q, dim=1, keepdim=True),
                S(_WITH_NAN[:2], 0.4, dim=1, fd=False),
            ],
        )
        for mode in ("linear", "lower", "higher", "midpoint", "nearest")
    ],
    OpSpec(
        "nanquantile",
        lambda m, x, q, **kw: m.nanquantile(x, _q(m, x, q), **kw),
        lambda x, q, **kw: np_quantile(x, q, ignore_nan=True, **kw),
        [
            S(_WITH_NAN[:2], 0.4, dim=1, fd=False),
            S(_WITH_NAN[:2], _Q, fd=False),
            S(T(3, 4, kind="distinct"), 0.5),
        ],
    ),
    # -- differences, integrals, covariance, distances --
    OpSpec(
        "diff",
        lambda m, x, **kw: m.diff(x, **kw),
        np_diff,
        [
            S(T(3, 5)),
            S(T(4, 3), n=2, dim=0),
            S(T(2, 3), n=4),
            S(_TIES, dim=1),
            S(np.array([True, False, False, True])),
        ],
    ),
    OpSpec(
        "diff_prepend_append",
        lambda m, x, p, a: m.diff(x, prepend=p, append=a),
        lambda x, p, a: np.diff(x, prepend=p, append=a),
        [S(T(3, 4), T(3, 1), T(3, 2))],
    ),
    OpSpec(
        "gradient",
        lambda m, x, **kw: m.gradient(x, **kw),
        lambda x, spacing=1, dim=None, edge_order=1: np.gradient(
            x, *([spacing] * (x.ndim if dim is None else 1)), axis=dim, edge_order=edge_order
        ),
        [
            S(T(5)),
            S(T(3, 4)),
            S(T(3, 5), spacing=2.0, dim=1, edge_order=2),
            S(T(4, 3), dim=0, edge_order=2),
        ],
    ),
    OpSpec(
        "gradient_coords",
        lambda m, x, c, **kw: m.gradient(x, spacing=(m.tensor(c, dtype=x.dtype),), **kw),
        lambda x, c, **kw: np.gradient(
            x, c, **{"axis": kw.get("dim"), "edge_order": kw.get("edge_order", 1)}
        ),
        [
            S(T(5), [0.0, 1.0, 1.5, 3.5, 4.0], dim=0),
            S(T(2, 5), [0.0, 1.0, 1.5, 3.5, 4.0], dim=1, edge_order=2),
        ],
    ),
    OpSpec(
        "trapezoid",
        lambda m, y, *a, **kw: m.trapezoid(y, *a, **kw),
        lambda y, x=None, dx=None, dim=-1: np.trapezoid(y, x, dx=1 if dx is None else dx, axis=dim),
        [
            S(T(3, 5)),
            S(T(4, 3), dim=0, dx=0.5),
            S(T(2, 4), np.array([0.0, 0.5, 1.5, 4.0])),
            S(_TIES),
        ],
    ),
    OpSpec(
        "trapz",
        lambda m, y, **kw: m.trapz(y, **kw),
        lambda y, dx=1, dim=-1: np.trapezoid(y, dx=dx, axis=dim),
        [S(T(3, 4), dx=2.0)],
    ),
    OpSpec(
        "cumulative_trapezoid",
        lambda m, y, **kw: m.cumulative_trapezoid(y, **kw),
        np_cumulative_trapezoid,
        [S(T(3, 5)), S(T(4, 3), dim=0)],
    ),
    OpSpec(
        "cov",
        lambda m, x, **kw: m.cov(x, **kw),
        lambda x, correction=1, fweights=None, aweights=None: np.cov(
            x, ddof=correction, fweights=fweights, aweights=aweights
        ),
        [S(T(3, 5)), S(T(6)), S(T(2, 4), correction=0)],
        rtol=1e-5,
    ),
    OpSpec(
        "cov_weights",
        lambda m, x, f, a: m.cov(x, fweights=f, aweights=a),
        lambda x, f, a: np.cov(x, fweights=f, aweights=a),
        [S(T(2, 3), np.array([1, 2, 1]), np.array([0.5, 1.0, 1.0]))],
        rtol=1e-5,
    ),
    OpSpec("corrcoef", lambda m, x: m.corrcoef(x), np.corrcoef, [S(T(3, 5))], rtol=1e-5),
    OpSpec(
        "dist",
        lambda m, a, b, *p: m.dist(a, b, *p),
        lambda a, b, p=2: np.linalg.norm((a - b).reshape(-1), ord=p),
        [S(T(3, 4), T(3, 4)), S(T(3, 4), T(4), 1.0), S(T(2, 3), T(2, 3), 3.0)],
        rtol=1e-5,
    ),
    OpSpec(
        "renorm",
        lambda m, x, p, d, mx: m.renorm(x, p, d, mx),
        np_renorm,
        [S(T(3, 4), 2.0, 0, 1.0), S(T(2, 3, 2), 1.0, 1, 1.5)],
        rtol=1e-5,
    ),
    # -- sets, searching and counting (no gradients) --
    OpSpec(
        "unique",
        lambda m, x, **kw: m.unique(x, **kw),
        np_unique,
        [
            S(_TIES),
            S(_TIES, return_inverse=True, return_counts=True),
            S(np.array([[1, 2], [1, 2], [0, 5]]), return_inverse=True, return_counts=True, dim=0),
            S(_TIES, return_counts=True, dim=1),
        ],
        grad=False,
    ),
    OpSpec(
        "unique_consecutive",
        lambda m, x, **kw: m.unique_consecutive(x, **kw),
        np_unique_consecutive,
        [
            S(np.array([1, 1, 2, 2, 3, 1, 1, 2])),
            S(np.array([1, 1, 2, 2, 3, 1, 1, 2]), return_counts=True),
        ],
        grad=False,
    ),
    OpSpec(
        "isin",
        lambda m, a, b, **kw: m.isin(a, b, **kw),
        lambda a, b, invert=False: np.isin(a, b, invert=invert),
        [S(_TIES, np.array([1, 4])), S(_TIES, np.array([0, 5]), invert=True)],
        grad=False,
    ),
    OpSpec(
        "searchsorted",
        lambda m, s, v, **kw: m.searchsorted(s, v, **kw),
        np_searchsorted,
        [
            S(_SORTED[1], _PROBES),
            S(_SORTED[1], _PROBES, right=True),
            S(_SORTED, _PROBES),
            S(_SORTED, _PROBES, right=True),
        ],
        grad=False,
    ),
    OpSpec(
        "bucketize",
        lambda m, v, b, **kw: m.bucketize(v, b, **kw),
        lambda v, b, right=False: np.searchsorted(b, v, side="right" if right else "left"),
        [S(_PROBES, _SORTED[1]), S(_PROBES, _SORTED[1], right=True)],
        grad=False,
    ),
    OpSpec(
        "bincount",
        lambda m, x, *w, **kw: m.bincount(x, *w, **kw),
        lambda x, *w, minlength=0: np.bincount(x, *w, minlength=minlength),
        [
            S(np.array([0, 1, 1, 3, 2, 1])),
            S(np.array([0, 1, 1, 3]), minlength=6),
            S(np.array([0, 1, 1, 3]), np.array([0.5, 1.0, 2.0, -1.0], np.float32)),
        ],
        grad=False,
    ),
    OpSpec(
        "histc",
        lambda m, x, **kw: m.histc(x, **kw),
        lambda x, bins=100, min=0, max=0: np.histogram(
            x, bins, range=(min, max) if min != max else None
        )[0],
        [S(T(4, 5), bins=4, min=-1.0, max=1.0), S(T(20), bins=5)],
        grad=False,
    ),
    OpSpec(
        "histogram",
        lambda m, x, *a, **kw: tuple(m.histogram(x, *a, **kw)),
        lambda x, bins, range=None, density=False: np.histogram(
            x, bins, range=range, density=density
        ),
        [
            S(T(4, 5), 4, range=(-1.0, 1.0)),
            S(T(20), 3, density=True),
            S(T(10), np.array([-2.0, -0.5, 0.0, 2.0], np.float32)),
        ],
        grad=False,
    ),
]
