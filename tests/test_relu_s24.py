"""ReLU's compiled forward and backward (``_numba_act.relu_forward`` / ``relu_backward``):
bit for bit NumPy's ``maximum`` and the select they replace, NaN, infinities and signed zeros
included, at 1 and 2 threads; other layouts keep NumPy's path."""

import numpy as np
import pytest

import ember
from ember.ops import act_kernels
from ember.ops import elementwise_unary as EU

pytestmark = pytest.mark.skipif(
    act_kernels.compiled(np, np.zeros(1, np.float32)) is None, reason="numba kernels are off"
)


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    x[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -np.nan]
    g = rng.standard_normal(n).astype(np.float32)
    g[6:9] = [np.nan, -0.0, np.inf]
    return x, g


def _relu_step(x, g, shape):
    t = ember.tensor(x.reshape(shape)).requires_grad_()
    y = ember.relu(t)
    y.backward(ember.tensor(g.reshape(shape)))
    return y.detach().numpy().copy(), t.grad.numpy().copy()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1 << 14,), (3, 50, 200), (2, 4, 65, 33)])
def test_compiled_relu_is_bitwise_numpys(monkeypatch, threads, shape):
    n = int(np.prod(shape))
    x, g = _inputs(n)
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        fast = _relu_step(x, g, shape)
        monkeypatch.setattr(EU, "_RELU_COMPILED_MIN", 1 << 62)
        slow = _relu_step(x, g, shape)
    finally:
        ember.set_num_threads(prev)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_compiled_relu_matches_torch():
    torch = pytest.importorskip("torch")
    x, g = _inputs(1 << 15, seed=1)
    y, gx = _relu_step(x, g, (1 << 15,))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(torch.tensor(g))
    keep = ~(x == 0)  # torch keeps -0.'s sign (relu(-0.) = -0.); ember's is NumPy's 0.
    np.testing.assert_array_equal(y[keep], ty.detach().numpy()[keep])
    np.testing.assert_array_equal(gx, tx.grad.numpy())


def test_other_layouts_take_numpys_path(monkeypatch):
    calls = []
    monkeypatch.setattr(EU, "split_call", lambda *a, **k: calls.append(a))
    x = ember.randn(4, 8, 64, 64).contiguous(memory_format=ember.channels_last)
    y = ember.relu(x)
    assert y.is_contiguous(memory_format=ember.channels_last)  # NumPy's ufunc keeps NHWC
    ember.relu(ember.randn(256, 256).t())  # a transposed view
    ember.relu(ember.randn(100))  # small
    assert calls == []
