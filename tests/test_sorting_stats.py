"""Sorting, selection and statistics beyond the op table: named-tuple returns, tie and NaN
conventions, PyTorch's errors, gradients at ties, in-place scans (torch parity where it
matters; the op table covers values and gradients of every op)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _both(values, dtype="float32"):
    a = np.asarray(values, dtype=dtype)
    return ember.tensor(a), torch.from_numpy(a.copy())


def _eq(e, t):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name,args",
    [
        ("sort", ()),
        ("topk", (2,)),
        ("kthvalue", (2,)),
        ("median", (0,)),
        ("nanmedian", (0,)),
        ("mode", (0,)),
        ("cummax", (0,)),
        ("cummin", (0,)),
        ("max", (0,)),
        ("min", (0,)),
    ],
)
def test_named_tuples(name, args):
    e, t = _both([3.0, 1.0, 2.0, 1.0])
    got, want = getattr(ember, name)(e, *args), getattr(torch, name)(t, *args)
    assert type(got).__name__ == type(want).__name__
    assert repr(got).startswith(f"ember.return_types.{name}(\nvalues=tensor(")
    assert got._fields == ("values", "indices")
    values, indices = got
    _eq(values, want.values)
    assert indices.tolist() == want.indices.tolist() and indices.dtype == ember.int64
    assert isinstance(got, getattr(ember.return_types, name))


def test_other_named_tuples():
    e, t = _both([[3.0, 1.0], [2.0, 5.0]])
    mm = ember.aminmax(e, dim=1)
    assert type(mm).__name__ == "aminmax" and mm._fields == ("min", "max")
    _eq(mm.min, torch.aminmax(t, dim=1).min)
    h = ember.histogram(e, 3)
    assert type(h).__name__ == "histogram" and h._fields == ("hist", "bin_edges")
    _eq(h.bin_edges, torch.histogram(t, 3).bin_edges)
    hd = ember.histogramdd(e, [2, 2])
    thd = torch.histogramdd(t, [2, 2])
    _eq(hd.hist, thd.hist)
    for a, b in zip(hd.bin_edges, thd.bin_edges):
        _eq(a, b)


def test_conventions_match_torch():
    """Ties and NaNs: sort is stable, mode picks the smallest most frequent value and its last
    index, cummax/cummin prefer the later of equal values, NaN propagates."""
    e, t = _both([1.0, 3.0, 3.0, 2.0, 3.0, 1.0, 1.0])
    for fn in (
        lambda m, x: m.sort(x, descending=True, stable=True),
        lambda m, x: m.mode(x),
        lambda m, x: m.cummax(x, 0),
        lambda m, x: m.cummin(x, 0),
        lambda m, x: m.median(x, 0),
    ):
        got, want = fn(ember, e), fn(torch, t)
        _eq(got[0], want[0])
        assert got[1].tolist() == want[1].tolist()
    e, t = _both([1.0, np.nan, 3.0, np.nan, 0.5])
    for fn in (
        lambda m, x: m.median(x, 0),
        lambda m, x: m.nanmedian(x, 0),
        lambda m, x: m.cummax(x, 0),
        lambda m, x: m.sort(x, descending=True),
    ):
        got, want = fn(ember, e), fn(torch, t)
        np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())
        assert got[1].tolist() == want[1].tolist()
    assert np.isnan(ember.median(e).item()) and ember.nanmedian(e).item() == 1.0


def test_median_all_gradient_is_shared_at_ties():
    for values in ([1.0, 2.0, 2.0, 3.0], [1.0, np.nan, 3.0, np.nan]):
        e, t = _both(values)
        e.requires_grad_(True)
        t.requires_grad_(True)
        ember.median(e).backward()
        torch.median(t).backward()
        _eq(e.grad, t.grad)


def test_unique_and_friends_match_torch():
    e, t = _both([[1, 2], [1, 2], [0, 5]], "int64")
    for kw in (
        {},
        {"return_inverse": True},
        {"return_counts": True, "dim": 0},
        {"return_inverse": True, "return_counts": True, "dim": 1},
    ):
        got, want = ember.unique(e, **kw), torch.unique(t, **kw)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert [g.tolist() for g in got] == [w.tolist() for w in want], kw
    assert e.unique().tolist() == t.unique().tolist()
    x, tx = _both([1, 1, 2, 2, 3, 1], "int64")
    got = ember.unique_consecutive(x, return_inverse=True, return_counts=True)
    want = torch.unique_consecutive(tx, return_inverse=True, return_counts=True)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    assert (
        ember.isin(2, x).item() is True
        and ember.isin(x, 2).tolist() == [False] * 2 + [True] * 2 + [False] * 2
    )
    assert ember.searchsorted(x, 2).tolist() == torch.searchsorted(tx, 2).tolist()
    got = ember.searchsorted(
        ember.tensor([1, 3, 5]), ember.tensor([3, 6]), side="right", out_int32=True
    )
    assert got.tolist() == [2, 3] and got.dtype == ember.int32
    w = ember.tensor([1, 2, 3, 4])
    assert ember.bincount(ember.tensor([0, 1, 1, 3]), w).dtype == ember.float64


def test_statistics_dtypes_match_torch():
    ei, ti = _both([1, 2, 4], "int64")
    for fn in (
        lambda m, x: m.trapezoid(x),
        lambda m, x: m.cumulative_trapezoid(x),
        lambda m, x: m.cov(x),
        lambda m, x: m.nansum(x),
        lambda m, x: m.diff(x),
        lambda m, x: m.gradient(x)[0],
        lambda m, x: m.aminmax(x).max,
    ):
        got, want = fn(ember, ei), fn(torch, ti)
        assert got.dtype.name == str(want.dtype).replace("torch.", "")
        _eq(got, want)
    e, t = _both([[0.0, 1.0, 2.0], [2.0, 1.0, 0.5]])
    _eq(
        ember.cov(e, fweights=ember.tensor([1, 2, 1]), aweights=ember.tensor([0.5, 1.0, 1.0])),
        torch.cov(t, fweights=torch.tensor([1, 2, 1]), aweights=torch.tensor([0.5, 1.0, 1.0])),
    )
    _eq(ember.histc(e, bins=4), torch.histc(t, bins=4))
    _eq(ember.dist(e, e * 2, 0), torch.dist(t, t * 2, 0))
    _eq(ember.dist(e, e * 2, float("inf")), torch.dist(t, t * 2, float("inf")))
    q = ember.quantile(e, ember.tensor([0.25, 0.5]), dim=1, keepdim=True)
    assert tuple(q.shape) == tuple(
        torch.quantile(t, torch.tensor([0.25, 0.5]), dim=1, keepdim=True).shape
    )


def test_logcumsumexp_is_stable_and_differentiable():
    e, t = _both([-1000.0, 0.0, 1000.0, -5.0], "float64")
    e.requires_grad_(True)
    t.requires_grad_(True)
    got, want = ember.logcumsumexp(e, 0), torch.logcumsumexp(t, 0)
    _eq(got, want)
    g = np.array([1.0, -2.0, 0.5, 3.0])
    got.backward(ember.tensor(g))
    want.backward(torch.from_numpy(g))
    _eq(e.grad, t.grad)


def test_inplace_scans_and_renorm():
    e, t = _both([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    for name, args in (("cumsum_", (1,)), ("cumprod_", (0,)), ("renorm_", (2, 0, 5.0))):
        a, b = e.clone(), t.clone()
        assert getattr(a, name)(*args) is a
        getattr(b, name)(*args)
        _eq(a, b)
    leaf = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        leaf.cumsum_(0)
    x = ember.ones(3, requires_grad=True)
    y = x * 2
    y.cumsum_(0)
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 4.0, 2.0]


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda m: m.topk(m.tensor([1.0, 2.0]), 3), "selected index k out of range"),
        (lambda m: m.kthvalue(m.tensor([1.0, 2.0]), 3), "selected number k out of range"),
        (lambda m: m.quantile(m.tensor([1, 2]), 0.5), "input tensor must be either float"),
        (lambda m: m.quantile(m.tensor([1.0, 2.0]), 1.5), r"q must be in the range \[0, 1\]"),
        (lambda m: m.bincount(m.tensor([[1]])), "bincount only supports 1-d non-negative"),
        (lambda m: m.bincount(m.tensor([-1])), "bincount only supports 1-d non-negative"),
        (lambda m: m.diff(m.tensor(1.0)), "diff expects input to be at least one-dimensional"),
        (
            lambda m: m.searchsorted(m.tensor([1, 2]), m.tensor([1]), right=True, side="left"),
            "side and right can't be set to opposites",
        ),
        (lambda m: m.nanmean(m.tensor([1, 2])), "nanmean\\(\\): expected input to have floating"),
        (lambda m: m.bucketize(m.tensor([1]), m.tensor([[1, 2]])), "boundaries tensor must be 1"),
    ],
)
def test_errors_match_torch(call, error):
    with pytest.raises(RuntimeError, match=error):
        call(torch)
    with pytest.raises(RuntimeError, match=error):
        call(ember)
