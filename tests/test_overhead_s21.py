"""The small-norm fast paths of session 21: layer and RMS norm save the input once (not its
row view and the flattened weight too), group norm calls its compiled kernels directly below
the thread split's size, and the row kernels' scalar and fill-vector caches. Each must give
torch's results and gradients, keep the in-place check on the saved input and double
backward, and agree bit for bit with the general (split) path."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ops import _kernel_split, norm_rows

torch = pytest.importorskip("torch")


def _pair(shape, dtype="float32", seed=0):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _close(e, t, tol):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def _step(lib, kind, x, dtype, transpose, affine=True):
    nn = lib.nn
    lib.manual_seed(0)
    if kind == "layer":
        m = nn.LayerNorm(x.shape[-2 if transpose else -1], elementwise_affine=affine)
    elif kind == "rms":
        m = nn.RMSNorm(x.shape[-2 if transpose else -1], eps=1e-6, elementwise_affine=affine)
    else:
        m = nn.GroupNorm(4, x.shape[1], affine=affine)
    m = m.to(getattr(lib, dtype))
    for p in m.parameters():  # non-trivial affine, the same in both libraries
        with lib.no_grad():
            p.copy_(lib.linspace(0.5, 1.5, p.numel(), dtype=p.dtype).reshape(p.shape))
    inp = x.transpose(-1, -2) if transpose else x
    out = m(inp)
    (out * lib.arange(out.numel(), dtype=out.dtype).reshape(out.shape).cos()).sum().backward()
    return out, list(m.parameters())


@pytest.mark.parametrize("kind", ["layer", "rms", "group"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_small_norms_match_torch(kind, dtype, transpose, affine):
    tol = 2e-5 if dtype == "float32" else 1e-10
    shape = (2, 8, 4, 6) if kind == "group" else (8, 64)
    ex, tx = _pair(shape, dtype)
    eo, eps_ = _step(ember, kind, ex, dtype, transpose, affine)
    to, tps = _step(torch, kind, tx, dtype, transpose, affine)
    _close(eo, to, tol)
    _close(ex.grad, tx.grad, tol)
    for ep, tp in zip(eps_, tps):
        _close(ep.grad, tp.grad, tol)


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_row_norm_inplace_on_saved_input_is_caught(kind):
    x = ember.randn(4, 8, requires_grad=True)
    h = x * 1.0
    m = ember.nn.LayerNorm(8) if kind == "layer" else ember.nn.RMSNorm(8)
    out = m(h)
    h.add_(1.0)  # the input is saved (as torch saves it): backward must refuse
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_row_norm_double_backward(kind):
    x = ember.randn(3, 5, dtype=ember.float64, requires_grad=True)
    w = ember.randn(5, dtype=ember.float64, requires_grad=True)
    if kind == "layer":
        b = ember.randn(5, dtype=ember.float64, requires_grad=True)
        fn = lambda x, w, b: ember.nn.functional.layer_norm(x, (5,), w, b)  # noqa: E731
        inputs = (x, w, b)
    else:
        fn = lambda x, w: ember.nn.functional.rms_norm(x, (5,), w, 1e-6)  # noqa: E731
        inputs = (x, w)
    assert ember.autograd.gradcheck(fn, inputs)
    assert ember.autograd.gradgradcheck(fn, inputs)


def test_row_norm_half_input_matches_torch():
    # float16 runs in float32 (float32_compute): the saved input is the float32 copy
    a = np.random.default_rng(1).standard_normal((6, 32)).astype(np.float16)
    res = []
    for lib in (ember, torch):
        x = lib.tensor(a, requires_grad=True)
        m = lib.nn.LayerNorm(32).to(lib.float16)
        m(x).float().square().sum().backward()
        res.append((x.grad.float().numpy(), m.weight.grad.float().numpy()))
    for e, t in zip(*res):
        np.testing.assert_allclose(e, t, rtol=2e-2, atol=2e-2)


def test_group_norm_direct_call_matches_split_path(monkeypatch):
    # below 2 * _MIN_PER_THREAD elements the kernels are called directly; with the threshold
    # lowered the same input goes through split_call over two threads: the same bits
    ex, _ = _pair((4, 8, 3, 5), "float32", seed=2)
    gn = ember.nn.GroupNorm(4, 8)

    def run():
        x = ex.detach().requires_grad_()
        out = gn(x)
        (out * out).sum().backward()
        grads = [x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in gn.parameters()]
        gn.zero_grad()
        return [out.detach().numpy()] + grads

    direct = run()
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 16)
    prev = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        split = run()
    finally:
        ember.set_num_threads(prev)
    for a, b in zip(direct, split):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_kernel_caches_follow_width_eps_and_dtype(dtype):
    # the cached eps / 1/d scalars and fill vectors are per dtype, value and width: widths
    # and eps values alternate, each call must match torch
    for d, eps in ((64, 1e-5), (96, 0.5), (64, 0.5), (96, 1e-5), (64, 1e-5)):
        a = np.random.default_rng(d).standard_normal((5, d)).astype(dtype)
        outs = []
        for lib in (ember, torch):
            x = lib.tensor(a, requires_grad=True)
            y = lib.nn.functional.rms_norm(x, (d,), None, eps)
            z = lib.nn.functional.layer_norm(x, (d,), None, None, eps)
            (y * z).sum().backward()
            outs.append((y.detach().numpy(), z.detach().numpy(), x.grad.numpy()))
        for e, t in zip(*outs):
            np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-5)
    assert len(norm_rows._FILLS) <= 65 and len(norm_rows._SCALARS) <= 513


def test_group_norm_argument_errors_in_torch_words():
    F = ember.nn.functional
    with pytest.raises(RuntimeError, match="Expected at least 2 dimensions for input tensor"):
        F.group_norm(ember.ones(4), 2)
    with pytest.raises(RuntimeError, match=r"input of shape \[2, 4, 3\] and num_groups=3"):
        F.group_norm(ember.ones(2, 4, 3), 3)
    for w in (ember.ones(3), ember.ones(2, 2)):  # torch refuses a (2, 2) weight for C = 4
        msg = (
            "Expected weight to be a vector of size equal to the number of channels in input, "
            rf"but got weight of shape \[{', '.join(str(s) for s in w.shape)}\] and input of "
            r"shape \[2, 4, 3\]"
        )
        with pytest.raises(RuntimeError, match=msg):
            F.group_norm(ember.ones(2, 4, 3), 2, w)
        with pytest.raises(RuntimeError, match="Expected bias to be a vector"):
            F.group_norm(ember.ones(2, 4, 3), 2, None, w)


def test_group_norm_meta_and_empty():
    x = ember.empty(2, 4, 3, device="meta")
    assert ember.nn.GroupNorm(2, 4).to("meta")(x).shape == (2, 4, 3)
    e = ember.nn.GroupNorm(2, 4)(ember.zeros(0, 4, 3))
    assert e.shape == (0, 4, 3)


def test_nonpositive_exp_matches_the_general_exp_bitwise():
    # the softmax kernels' exponential for t <= 0 (one 2^n scale, no clamps) gives the bits of
    # the general float32 exponential from the smallest normal result's argument up to 0
    numba = pytest.importorskip("numba")
    from ember.ops import _numba_act, _numba_attention

    if not _numba_attention.AVAILABLE:
        pytest.skip("numba kernels unavailable")

    @numba.njit(fastmath=_numba_act._FLAGS, error_model="numpy")
    def both(t, a, b):
        for i in range(t.size):
            a[i] = _numba_act.fexp(t[i])
            b[i] = _numba_attention._exp_nonpos(t[i])

    rng = np.random.default_rng(0)
    t = np.concatenate(
        [
            np.linspace(-87.0, 0.0, 200_001, dtype=np.float32),
            -rng.exponential(5.0, 100_000).astype(np.float32).clip(0, 87),
            np.array([0.0, -0.0, -1e-30, -87.0], np.float32),
        ]
    )
    a, b = np.empty_like(t), np.empty_like(t)
    both(t, a, b)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_causal_exp_rows_with_extremes(dtype):
    # large scores (results flushed to zero below the smallest normal), -inf and NaN keys:
    # exp(s - rowmax) over each row's causal keys, zeros after, NaN rows stay NaN
    from ember.ops import attention_kernels

    if not attention_kernels.available(np, dtype):
        pytest.skip("numba kernels unavailable")
    rng = np.random.default_rng(3)
    i0, rows, keys = 64, 16, 80
    s = (rng.standard_normal((rows, keys)) * 60).astype(dtype)
    s[2, 10] = np.nan
    s[5, :30] = -np.inf
    inv = np.empty(rows, dtype)
    out = s.copy()
    assert attention_kernels.causal_exp_(out, i0, inv, split=False)
    lo = float(attention_kernels._UNDER[np.dtype(dtype)])
    for r in range(rows):
        end = i0 + r + 1
        row = s[r, :end]
        if np.isnan(row).any():
            assert np.isnan(out[r, 10])
            continue
        t = (row - row.max()).astype(np.float64)  # (the difference rounded as the kernel's)
        ref = np.where(t < lo, 0.0, np.exp(t))
        np.testing.assert_allclose(out[r, :end], ref, rtol=1e-6, atol=0)
        np.testing.assert_allclose(inv[r], 1 / ref.sum(), rtol=1e-6)
        assert (out[r, end:] == 0).all()
