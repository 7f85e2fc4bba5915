"""Session 22's per-op fast paths (issue 23, docs/kernels.md "Session 22: per-op overhead"):
each gives what the general path gives (values, grad_fn names, versions, errors, dispatch)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import ops
from ember.ops import norm_rows
from ember.ops.shape_views import _shape_arg


def _t(shape, seed=0, grad=True, dtype=np.float32):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ember.tensor(a, requires_grad=grad)


# ---- Tensor.__matmul__: two plain Tensors skip the outer __torch_function__ wrapper ----------
def test_matmul_operator_matches_the_function():
    a, b = _t((3, 4)), _t((4, 5), 1)
    out = a @ b
    ref = ops.matmul(a, b)
    np.testing.assert_array_equal(out._data, ref._data)
    assert out.grad_fn.name() == ref.grad_fn.name() == "MatmulBackward0"
    out.sum().backward()
    np.testing.assert_allclose(a.grad._data, np.ones((3, 5)) @ b._data.T, rtol=1e-6)
    v = _t((4,), 2)
    assert (a @ v).grad_fn.name() == ops.matmul(a, v).grad_fn.name()
    assert (a @ v).shape == (3,)


def test_matmul_operator_errors_and_autocast():
    a = _t((3, 4))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        a @ _t((5, 2))
    with ember.autocast("cpu", dtype=ember.bfloat16):
        assert (a @ _t((4, 2))).dtype == ember.bfloat16  # the autocast op still runs


def test_matmul_operator_still_dispatches():
    seen = []

    class Logged(ember.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", func))
            return super().__torch_function__(func, types, args, kwargs or {})

    a = _t((2, 2))
    b = _t((2, 2), 1).as_subclass(Logged)
    a @ b  # the other operand is not a plain Tensor: the general path
    assert seen

    class Pair(tuple):
        def __rmatmul__(self, other):
            return "reflected"

    assert a @ Pair((1, 2)) == "reflected"  # NotImplemented for a tuple subclass, as before


# ---- _PLAIN: shape tuples, lists, Parameters and Buffers skip the dispatch test --------------
def test_plain_types_include_parameters():
    from ember.overrides import _PLAIN

    assert {tuple, list, ember.nn.Parameter, ember.nn.Buffer} <= _PLAIN


def test_parameter_subclass_with_a_handler_still_dispatches():
    calls = []

    class P(ember.nn.Parameter):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            calls.append(func)
            with ember._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))

    w = P(ember.ones(4))
    out = F.layer_norm(_t((2, 4)), (4,), w)
    assert calls and out.shape == (2, 4)


# ---- view / reshape ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, want",
    [
        ((4, 6), (4, 6)),
        (([4, 6],), (4, 6)),
        (((4, -1),), (4, -1)),
        ((ember.Size([2, 12]),), (2, 12)),
        ((ember.tensor(4), 6), (4, 6)),
        ((np.int64(4), 6), (4, 6)),
    ],
)
def test_shape_arg(args, want):
    got = _shape_arg(args)
    assert got == want and type(got) is tuple and all(type(s) is int for s in got)


def test_view_and_reshape_as_before():
    x = _t((4, 6))
    v = x.view(2, 12)
    assert v._version_counter is x._version_counter and v._base is x
    assert v.grad_fn.name() == "ReshapeBackward0"  # (ember names its view node so)
    assert x.view(-1).shape == (24,) and x.view([3, 8]).shape == (3, 8)
    r = x.t().reshape(24)  # a copy: its own counter
    assert r._version_counter is not x._version_counter and r._base is None
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        x.t().view(24)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.view(-1, -1)
    with pytest.raises(RuntimeError, match=r"shape '\[5, 5\]' is invalid for input of size 24"):
        x.view(5, 5)
    e = ember.zeros(0, 3)
    assert e.view(3, 0).shape == (3, 0)
    m = ember.empty(4, 6, device="meta")
    assert m.view(2, 12).shape == (2, 12) and m.view(2, 12).is_meta


def test_view_backward_and_version():
    x = _t((4, 6))
    y = x.view(24) * 2
    y.sum().backward()
    np.testing.assert_array_equal(x.grad._data, np.full((4, 6), 2, np.float32))
    v = x.detach().view(24)
    v.add_(1)
    assert x._version == 1


# ---- sum -----------------------------------------------------------------------------------
def test_sum_paths():
    x = _t((3, 4))
    assert x.sum().grad_fn.name() == "SumBackward0"
    assert x.sum(axis=1, keepdims=True).shape == (3, 1)
    assert x.sum(1, True).shape == (3, 1)
    assert ember.tensor([1, 2, 3]).sum().dtype == ember.int64
    assert ember.tensor([True, True]).sum().item() == 2
    assert x.sum(dtype=ember.float64).dtype == ember.float64
    with pytest.raises(TypeError, match="unexpected keyword"):
        x.sum(bogus=1)


# ---- layer norm: 2-D rows and 1-D affine used without reshapes --------------------------------
@pytest.mark.parametrize(
    "shape, nd, transposed",
    [((8, 64), 1, False), ((8, 64), 1, True), ((2, 3, 16), 1, False), ((4, 3, 5), 2, False)],
)
def test_layer_norm_against_torch(shape, nd, transposed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal(shape[::-1] if transposed else shape).astype(np.float32)
    if transposed:
        xs = xs.T
    ns = shape[len(shape) - nd :]
    ws, bs = (rng.standard_normal(ns).astype(np.float32) for _ in range(2))
    gs = rng.standard_normal(shape).astype(np.float32)
    outs = []
    for lib in (ember, torch):
        x = lib.tensor(xs.T.copy()).t() if transposed else lib.tensor(xs)
        x = x.detach().requires_grad_()  # (a transposed leaf: the non-contiguous rows)
        w, b = lib.tensor(ws, requires_grad=True), lib.tensor(bs, requires_grad=True)
        y = lib.nn.functional.layer_norm(x, ns, w, b)
        y.backward(lib.tensor(gs))
        outs.append([t.detach().numpy() for t in (y, x.grad, w.grad, b.grad)])
    for e, t in zip(*outs):
        np.testing.assert_allclose(e, t, rtol=2e-5, atol=2e-5)


def test_layer_norm_output_is_fresh_and_checks_saves():
    x, w = _t((8, 16)), _t((16,), 1)
    y = F.layer_norm(x, (16,), w)
    assert y.grad_fn.name() == "LayerNormBackward0"
    assert y._data.base is None and not np.shares_memory(y._data, x._data)
    y.add_(1)  # the caller may write into the output (layer norm does not save it)
    y.sum().backward()
    np.testing.assert_allclose(w.grad._data, (y._data - 1).sum(0) / w._data, rtol=1e-4)
    z = F.layer_norm(x, (16,), w)
    with ember.no_grad():
        w.mul_(2)  # a saved input modified in place: backward refuses, as before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_layer_norm_gradcheck_2d():
    x = _t((3, 5), dtype=np.float64)
    w, b = _t((5,), 1, dtype=np.float64), _t((5,), 2, dtype=np.float64)
    fn = lambda x, w, b: F.layer_norm(x, (5,), w, b)  # noqa: E731
    assert ember.autograd.gradcheck(fn, (x, w, b))
    assert ember.autograd.gradgradcheck(fn, (x, w, b))


# ---- rms norm: the default eps by dtype from a cache ----------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rms_norm_default_eps_against_torch(dtype):
    torch = pytest.importorskip("torch")
    xs = (np.random.default_rng(0).standard_normal((4, 8)) * 1e-5).astype(dtype)
    ws = np.random.default_rng(1).standard_normal(8).astype(dtype)
    e = F.rms_norm(ember.tensor(xs), (8,), ember.tensor(ws))
    t = torch.nn.functional.rms_norm(torch.tensor(xs), (8,), torch.tensor(ws))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12)
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 8\]"):
        F.rms_norm(ember.zeros(4, 7), (8,))
    with pytest.raises(RuntimeError, match="Expected weight to be of same shape"):
        F.rms_norm(ember.zeros(4, 8), (8,), ember.ones(4))
    assert F.rms_norm(ember.zeros(0, 8), (8,)).shape == (0, 8)


def test_row_scalars_cache_bits():
    for dt in (np.dtype(np.float32), np.dtype(np.float64)):
        for eps, d in ((1e-5, 64), (1e-6, 3), (1e-5, 7)):
            e, inv = norm_rows._scalars(dt, eps, d)
            assert type(e) is dt.type and e == dt.type(eps)
            assert type(inv) is dt.type and inv == dt.type(1.0 / d)


# ---- Mul / Matmul save nothing when no gradient is needed -----------------------------------
def test_mul_and_matmul_saves():
    a, b = _t((3, 3)), _t((3, 3), 1, grad=False)
    assert (a * b).grad_fn._saved[0] is None  # only b is needed (for a's gradient)
    assert (a @ b).grad_fn._saved[0] is None
    with ember.no_grad():
        assert (a * b).grad_fn is None and (a @ b).grad_fn is None
    y = a * b
    y.sum().backward()
    np.testing.assert_array_equal(a.grad._data, b._data)


def test_layer_norm_zero_width_rows():
    # (8, 0) rows: torch returns the empty result (the old reshape(-1, 0) raised ValueError)
    x = ember.zeros(8, 0, requires_grad=True)
    y = F.layer_norm(x, (0,))
    y.sum().backward()
    assert y.shape == (8, 0) and x.grad.shape == (8, 0)


@pytest.mark.parametrize(
    "shape, op, shares",
    [
        ((4, 6), lambda x: x.t(), True),
        ((4, 6), lambda x: x.permute(1, 0), True),
        ((4, 6), lambda x: x[None].expand(2, 4, 6), True),
        ((4, 6), lambda x: x.unsqueeze(0).squeeze(0), True),
        ((4, 6), lambda x: x.t().reshape(24), False),
        ((0, 4), lambda x: x.view(4, 0), False),  # no memory: shares nothing (as before)
    ],
)
def test_view_ops_share_the_version_counter(shape, op, shares):
    # _share_version's direct C call of may_share_memory for two plain ndarrays
    x = _t(shape)
    y = op(x)
    assert (y._version_counter is x._version_counter) is shares
    assert (y._base is x) is shares
