"""Session 25 (issue 23, h3): the cnn workload's step memory at one and two threads.

A large float32 ReLU whose gradient is wanted saves a byte mask of its live units instead of its
float output (``Relu`` in ``ops/elementwise_unary.py``, kernels ``relu_forward_live`` and
``relu_backward_live`` in ``ops/_numba_act.py``). These tests check that the results are bitwise
those of the float-output path and of PyTorch, that PyTorch's in-place check still fires, that
double backward works, and that the cnn workload's step keeps the masks.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import ember
from ember.autograd.graph import saved_tensors_hooks
from ember.ops import elementwise_unary as eu

torch = pytest.importorskip("torch")

# sizes on both sides of the compiled path (16K elements) and one that splits over 2 threads
SHAPES = [(8, 1000), (64, 32, 28, 28)]


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    flat_x, flat_g = x.reshape(-1), g.reshape(-1)
    flat_x[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45]
    flat_g[:6] = [-1.0, np.nan, -0.0, np.inf, -2.0, -3.0]
    return x, g


@pytest.fixture(params=[1, 2], ids=["1t", "2t"])
def threads(request):
    before = ember.get_num_threads()
    ember.set_num_threads(request.param)
    yield request.param
    ember.set_num_threads(before)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu_mask_bitwise(shape, threads):
    x, g = _data(shape)
    t = ember.tensor(x, requires_grad=True)
    y = ember.relu(t)
    saved = y.grad_fn._saved[0]
    assert saved.dtype == (bool if x.size >= 1 << 14 else np.float32)
    y.backward(ember.tensor(g))
    # the float-output path (saved-tensor hooks keep it) gives the same bits
    t2 = ember.tensor(x, requires_grad=True)
    with saved_tensors_hooks(lambda a: a, lambda a: a):
        y2 = ember.relu(t2)
    assert y2.grad_fn._saved[0].dtype != bool
    y2.backward(ember.tensor(g))
    assert y.detach().numpy().tobytes() == y2.detach().numpy().tobytes()
    assert t.grad.numpy().tobytes() == t2.grad.numpy().tobytes()
    # and PyTorch's gradient (NaN, inf and -0. gradients included)
    tt = torch.tensor(x, requires_grad=True)
    torch.relu(tt).backward(torch.tensor(g))
    assert t.grad.numpy().tobytes() == tt.grad.numpy().tobytes()
    np.testing.assert_array_equal(y.detach().numpy(), np.maximum(x, 0))


def test_relu_mask_fallback_layouts():
    # a gradient the compiled kernel does not take (non-contiguous, float64) takes NumPy's
    x, g = _data((64, 512))
    live = ~(np.maximum(x, 0) <= 0)
    ctx = types.SimpleNamespace(_tensor_mode=False, xp=np)
    want = np.where(np.maximum(x, 0) <= 0, 0, g)
    g_t = np.ascontiguousarray(g.T).T  # same values, column-major
    got = eu._relu_backward_live(ctx, live, g_t)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()
    got64 = eu._relu_backward_live(ctx, live, g.astype(np.float64))
    np.testing.assert_array_equal(got64, np.where(live, g.astype(np.float64), 0))


def test_relu_mask_inplace_check():
    x, _ = _data((64, 512))
    msgs = []
    for lib in (ember, torch):
        t = lib.tensor(x, requires_grad=True)
        y = lib.relu(t)
        y.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as e:
            y.sum().backward()
        msgs.append(str(e.value))
    assert "[ember.float32 [64, 512]]" in msgs[0] and "[torch.FloatTensor [64, 512]]" in msgs[1]


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_mask_double_backward(inplace):
    x, g = _data((64, 300))
    x.reshape(-1)[:6] = 0.5  # (no NaN: the second derivative compares values)
    res = []
    for lib in (ember, torch):
        t = lib.tensor(x, requires_grad=True)
        y = lib.nn.functional.relu(t * 1, inplace=inplace) * t
        (gx,) = lib.autograd.grad(y, t, lib.tensor(g), create_graph=True)
        (gg,) = lib.autograd.grad((gx * gx).sum(), t)
        res.append((gx.detach().numpy(), gg.numpy()))
    for a, b in zip(*res):
        assert a.tobytes() == b.tobytes()


def test_relu_float64_gradcheck():
    # float64 keeps the float-output path (the compiled kernels are float32): gradcheck both
    # orders at a size past the compiled threshold
    w = ember.tensor(np.random.default_rng(1).standard_normal((1024, 16)))
    a = ember.tensor(np.random.default_rng(2).standard_normal(16), requires_grad=True)

    def f(a):
        return (ember.relu(a * w) * a).sum(0)

    assert ember.autograd.gradcheck(f, (a,))
    assert ember.autograd.gradgradcheck(f, (a,))


def _cnn_grads(lib, hooks):
    from distributed.experiment.workloads import build

    lib.manual_seed(0)
    model, x, y, loss_fn = build(lib, "cnn", 16)
    if hooks:
        with saved_tensors_hooks(lambda a: a, lambda a: a):
            loss = loss_fn(model(x), y)
    else:
        loss = loss_fn(model(x), y)
        relus = [n for n in _nodes(loss.grad_fn) if type(n).__name__ == "Relu"]
        big = [n for n in relus if n._saved[0].size >= 1 << 14]
        assert len(big) == 2 and all(n._saved[0].dtype == bool for n in big)
    loss.backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def _nodes(root):
    seen, stack, out = set(), [root], []
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        stack.extend(e[0] for e in getattr(n, "_edges", ()) if e is not None)
    return out


def test_cnn_step_mask_bitwise(threads):
    # the cnn workload's gradients with the masks are bitwise those with the float outputs
    a = _cnn_grads(ember, hooks=False)
    b = _cnn_grads(ember, hooks=True)
    for ga, gb in zip(a, b):
        assert ga.tobytes() == gb.tobytes()
