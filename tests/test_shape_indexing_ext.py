"""shape_ext family beyond the op table: creation functions, window functions, views that
write through, in-place view/shape methods, random fills, and PyTorch's errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# ---- creation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.tril_indices(3, 4, 1),
        lambda m: m.triu_indices(4, 3, -1),
        lambda m: m.tril_indices(0, 3),
        lambda m: m.range(1, 4),
        lambda m: m.range(0, -1, -0.3),
        lambda m: m.scalar_tensor(3),
        lambda m: m.scalar_tensor(2, dtype=m.int64),
        lambda m: m.repeat_interleave(m.tensor([1, 0, 2])),
        lambda m: m.asarray([1.0, 2.0]),
        lambda m: m.asarray(np.arange(3.0)),
        lambda m: m.frombuffer(bytearray(b"\x01\x00\x00\x00\x02\x00\x00\x00"), dtype=m.int32),
        lambda m: m.stack(m.unravel_index(m.tensor([4, 5, -1]), (2, 3))),
        lambda m: m.ones(2, 3).new_tensor([1, 2]),
        lambda m: m.ones(2, 3).new_full((2,), 3),
        lambda m: m.ones(2, 3, dtype=m.float64).new_ones(2),
        lambda m: m.ones(2).new_zeros((1, 2)),
        lambda m: m.ones(2, dtype=m.int32).new([1, 2]),
        lambda m: m.full((2,), True),
        lambda m: m.full((2,), 3),
    ],
    ids=lambda _: "",
)
def test_creation_matches_torch(call, torch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e, t = call(ember), call(torch)
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    np.testing.assert_allclose(_np(e), _np(t), rtol=1e-6)


def test_empty_strided_and_permuted_strides(torch):
    assert ember.empty_strided((2, 3), (1, 2)).stride() == (1, 2)
    e = ember.empty_permuted((2, 3, 4), (0, 2, 1))
    assert e.shape == (2, 3, 4)
    assert e.stride() == torch.empty_permuted((2, 3, 4), (0, 2, 1)).stride()
    assert ember.ones(2).new_empty_strided((2, 2), (2, 1)).stride() == (2, 1)
    assert ember.ones(3).new().shape == (0,) and ember.ones(3).new(2, 3).shape == (2, 3)


def test_asarray_and_frombuffer_share_memory():
    a = np.arange(3.0)
    t = ember.asarray(a)
    a[0] = 7.0
    assert t[0].item() == 7.0 and t.dtype == ember.float64
    assert ember.asarray(a, copy=True)._data is not a
    buf = bytearray(8)
    f = ember.frombuffer(buf, dtype=ember.int32)
    f[1] = 5
    assert bytes(buf[4:]) == b"\x05\x00\x00\x00"
    with pytest.raises(ValueError):
        ember.frombuffer(bytearray(3), dtype=ember.int32)


@pytest.mark.parametrize(
    "name", ["hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window"]
)
@pytest.mark.parametrize("n", [0, 1, 5, 8])
def test_windows_match_torch(name, n, torch):
    for periodic in (True, False):
        e = getattr(ember, name)(n, periodic)
        t = getattr(torch, name)(n, periodic)
        assert e.dtype == ember.float32 and e.shape == tuple(t.shape)
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-5, atol=1e-6)
    e = getattr(ember, name)(6, dtype=ember.float64)
    np.testing.assert_allclose(
        _np(e), _np(getattr(torch, name)(6, dtype=torch.float64)), rtol=1e-12, atol=1e-12
    )


# ---- views write through; in-place forms ---------------------------------------------------
def test_views_share_memory():
    x = ember.zeros(3, 4)
    x.diagonal().fill_(1.0)
    x.t().diagonal(1).add_(2.0)  # a view of a non-contiguous view
    want = np.zeros((3, 4))
    want[np.arange(3), np.arange(3)] = 1
    want[[1, 2], [0, 1]] += 2
    np.testing.assert_array_equal(_np(x), want)
    y = ember.arange(7.0)
    w = y.unfold(0, 3, 2)
    w[1, 0] = 50.0
    assert y[2].item() == 50.0 and w[0, 2].item() == 50.0
    s = ember.as_strided(y, (2, 2), (1, 2), 1)
    s[0, 0] = -1.0
    assert y[1].item() == -1.0
    assert ember.select(y, 0, 3)._base is y


@pytest.mark.parametrize(
    "wrap,shape",
    [(False, (3, 3)), (True, (7, 3)), (False, (7, 3)), (True, (3, 7)), (False, (2, 2, 2))],
)
def test_fill_diagonal_(wrap, shape, torch):
    e, t = ember.zeros(*shape), torch.zeros(*shape)
    e.fill_diagonal_(2.0, wrap=wrap)
    t.fill_diagonal_(2.0, wrap=wrap)
    np.testing.assert_array_equal(_np(e), _np(t))


def test_fill_diagonal_gradient():
    x = ember.ones(3, 3, requires_grad=True)
    y = x * 2
    y.fill_diagonal_(0.0)
    y.sum().backward()
    np.testing.assert_array_equal(_np(x.grad), 2 * (1 - np.eye(3)))


def test_inplace_shape_methods_and_gradients():
    x = ember.arange(6.0).reshape(2, 3).requires_grad_()
    y = x * 1
    assert y.t_() is y and y.shape == (3, 2)
    y.unsqueeze_(0)
    assert y.shape == (1, 3, 2)
    y.squeeze_(0)
    y.transpose_(0, 1)
    y.swapaxes_(0, 1)
    y.swapdims_(0, 1)
    assert y.shape == (2, 3)
    (y * ember.arange(6.0).reshape(2, 3)).sum().backward()
    np.testing.assert_array_equal(_np(x.grad), np.arange(6.0).reshape(2, 3))
    with pytest.raises(RuntimeError, match="leaf Variable"):
        ember.ones(2, 1, requires_grad=True).squeeze_()
    z = ember.ones(3, 3)
    z.tril_(-1)
    np.testing.assert_array_equal(_np(z), np.tril(np.ones((3, 3)), -1))
    z.as_strided_((2,), (4,))
    assert z.shape == (2,)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: x.scatter_reduce_(0, m.tensor([0, 0, 2]), m.tensor([1.0, 2.0, 3.0]), "amax"),
        lambda m, x: x.index_put_((m.tensor([0, 0]),), m.tensor([1.0, 2.0]), accumulate=True),
        lambda m, x: m.index_put_(x, (m.tensor([1]),), m.tensor(9.0)),
        lambda m, x: x.index_copy_(0, m.tensor([3, 1]), m.tensor([5.0, 6.0])),
        lambda m, x: x.index_fill_(0, m.tensor([2]), -1.0),
        lambda m, x: x.index_reduce_(0, m.tensor([1, 1]), m.tensor([5.0, 6.0]), "amin"),
        lambda m, x: x.masked_scatter_(x > 1, m.tensor([7.0, 8.0, 9.0])),
        lambda m, x: x.put_(m.tensor([0, 3]), m.tensor([4.0, 5.0])),
        lambda m, x: x.resize_(2, 3),
        lambda m, x: x.resize_(1, 2),
        lambda m, x: x.resize_as_(m.ones(2, 2)),
    ],
    ids=lambda _: "",
)
def test_inplace_indexing_matches_torch(call, torch):
    e, t = ember.arange(4.0), torch.arange(4.0)
    re_, rt = call(ember, e), call(torch, t)
    assert re_ is e and rt is t and e.shape == tuple(t.shape)
    n = min(e.numel(), 4)  # torch leaves grown memory uninitialised
    np.testing.assert_array_equal(_np(e).reshape(-1)[:n], _np(t).reshape(-1)[:n])


def test_tensor_unfold_and_bernoulli_methods():
    ember.manual_seed(0)
    p = ember.full((1000,), 0.3)
    b = p.bernoulli()
    assert b.dtype == ember.float32 and 0.2 < b.mean().item() < 0.4
    s = ember.tensor([0.0, 1.0, 0.0]).multinomial(4, replacement=True)
    assert s.tolist() == [1, 1, 1, 1]


# ---- random fills ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fill,args,mean",
    [
        ("exponential_", (2.0,), 0.5),
        ("geometric_", (0.25,), 4.0),
        ("log_normal_", (0.0, 0.5), float(np.exp(0.125))),
        ("cauchy_", (1.0, 0.1), None),
    ],
)
def test_random_fills(fill, args, mean):
    ember.manual_seed(3)
    a = getattr(ember.empty(20000, dtype=ember.float64), fill)(*args)
    ember.manual_seed(3)
    b = getattr(ember.empty(20000, dtype=ember.float64), fill)(*args)
    np.testing.assert_array_equal(_np(a), _np(b))  # reproducible under manual_seed
    g = ember.Generator().manual_seed(3)
    c = getattr(ember.empty(20000, dtype=ember.float64), fill)(*args, generator=g)
    np.testing.assert_array_equal(_np(a), _np(c))
    if mean is None:  # Cauchy has no mean: its median
        assert abs(np.median(_np(a)) - args[0]) < 0.01
    else:
        assert abs(_np(a).mean() - mean) / mean < 0.05
    if fill == "geometric_":
        assert _np(a).min() >= 1 and np.all(_np(a) == np.round(_np(a)))


def test_apply_and_map():
    x = ember.arange(4.0)
    x.apply_(lambda v: v * 2)
    x.map_(ember.ones(1), lambda a, b: a + b)
    np.testing.assert_array_equal(_np(x), [1.0, 3.0, 5.0, 7.0])


# ---- PyTorch's errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.diagonal(m.ones(2, 2), 0, 1, 1),
        lambda m: m.diag(m.ones(2, 2, 2)),
        lambda m: m.select(m.ones(2, 3), 1, 3),
        lambda m: m.rot90(m.ones(2, 3), 1, [0, 0]),
        lambda m: m.hsplit(m.ones(2, 5), 2),
        lambda m: m.vsplit(m.ones(3), 1),
        lambda m: m.repeat_interleave(m.ones(3), m.tensor([1, 2])),
        lambda m: m.scatter_reduce(m.ones(3), 0, m.tensor([0]), m.ones(1), "maximum"),
        lambda m: m.ones(3).unfold(0, 4, 1),
        lambda m: m.as_strided(m.ones(4), (3, 3), (1, 1)),
        lambda m: m.ones(3, 4).sum_to_size(2, 4),
        lambda m: m.combinations(m.ones(2, 2)),
        lambda m: m.ones(2, requires_grad=True).resize_(3),
    ],
    ids=lambda _: "",
)
def test_errors_match_torch(call, torch):
    with pytest.raises(Exception) as te:
        call(torch)
    with pytest.raises(type(te.value)):
        call(ember)


def test_broadcast_shapes_and_meshgrid_warning(torch):
    assert ember.broadcast_shapes((2, 1), (3,)) == (2, 3)
    assert ember.broadcast_shapes(2, (3, 1)) == tuple(torch.broadcast_shapes(2, (3, 1)))
    with pytest.raises(RuntimeError, match="must match"):
        ember.broadcast_shapes((2,), (3,))
    with pytest.warns(UserWarning, match="indexing"):
        a, b = ember.meshgrid(ember.ones(2), ember.ones(3))
    assert a.shape == (2, 3) and b.shape == (2, 3)


_IDX = object()  # stands for the index tensor [0, 2]


@pytest.mark.parametrize(
    "key",
    [
        (1, slice(None), _IDX),
        (_IDX, slice(None), 1),
        (1, None, slice(None), _IDX),
        (Ellipsis, 1, _IDX),
        (2, slice(1, 3), _IDX),
        (_IDX, 1, _IDX),
        (1, True, slice(None), _IDX),
    ],
    ids=[
        "int-slice-idx",
        "idx-slice-int",
        "int-none-slice-idx",
        "ellipsis-int-idx",
        "int-range-idx",
        "idx-int-idx",
        "int-true-slice-idx",
    ],
)
def test_integers_beside_index_tensors_select_first_as_torch(key):
    """torch applies integers before advanced indices (NumPy counts them as advanced, which moves
    the broadcast dimension first): reads, writes and both gradients follow torch."""
    torch = pytest.importorskip("torch")
    e_key = tuple(ember.tensor([0, 2]) if k is _IDX else k for k in key)
    t_key = tuple(torch.tensor([0, 2]) if k is _IDX else k for k in key)
    x = ember.arange(60.0).reshape(4, 5, 3).requires_grad_()
    t = torch.arange(60.0).reshape(4, 5, 3).requires_grad_()
    out, ref = x[e_key], t[t_key]
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    w = np.arange(ref.numel(), dtype=np.float32).reshape(tuple(ref.shape))
    (out * ember.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())
    y, u = x.detach() * 1, t.detach() * 1
    v = ember.tensor(w, requires_grad=True)
    vt = torch.tensor(w, requires_grad=True)
    y[e_key], u[t_key] = v * 2, vt * 2
    np.testing.assert_array_equal(y.detach().numpy(), u.detach().numpy())
    (y * y).sum().backward()
    (u * u).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), vt.grad.numpy())
