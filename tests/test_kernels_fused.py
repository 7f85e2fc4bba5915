"""The tuned kernels of issue 23 (norm rows, GELU / SiLU, last-dim softmax, pooling fast paths):
forward against a float64 NumPy reference, gradients against torch, float64 gradcheck, on
both the compiled (numba, when installed) and the NumPy path, with block sizes shrunk so that
small inputs cross the block boundaries where the algorithm switches."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.ops import act_kernels, norm_group_rms, norm_rows

torch = pytest.importorskip("torch")
F, TF = ember.nn.functional, torch.nn.functional

try:
    import numba  # noqa: F401

    _PATHS = ["numpy", "numba"] if os.environ.get("EMBER_NUMBA", "1") != "0" else ["numpy"]
except ImportError:
    _PATHS = ["numpy"]


@pytest.fixture(params=_PATHS)
def norm_path(request, monkeypatch):
    """Run with the compiled row kernels or force the blocked NumPy ones (tiny blocks)."""
    monkeypatch.setattr(norm_rows, "_BLOCK_ELEMS", 64)
    if request.param == "numpy":
        monkeypatch.setattr(norm_rows, "_numba", False)
        monkeypatch.setattr(norm_group_rms, "_numba", False)  # group norm on the row kernels
    else:
        monkeypatch.setattr(norm_rows, "_numba", None)
        assert norm_rows._compiled(np, np.zeros((1, 1), np.float32)) is not None
        monkeypatch.setattr(norm_group_rms, "_numba", None)
        assert norm_group_rms._group_compiled(np, np.zeros((1, 1), np.float32)) is not None
    return request.param


def _pair(a, grad=True):
    return ember.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _check(fe, ft, arrays, rtol=1e-5, atol=1e-5, seed=0):
    """Forward and every input gradient of ember vs torch for the same float arrays."""
    es, ts = zip(*[_pair(a) if a is not None else (None, None) for a in arrays])
    ye, yt = fe(*es), ft(*ts)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(seed).standard_normal(tuple(yt.shape)).astype(arrays[0].dtype)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    for e, t in zip(es, ts):
        if e is not None:
            scale = max(1.0, float(np.abs(t.grad.numpy()).max()))
            np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol * scale)


def _ref_layer_norm(x, w, b, eps, center=True):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True) if center else 0.0
    xc = x - mu
    y = xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


# ---- layer / RMS / group norm ------------------------------------------------------------
@pytest.mark.parametrize("shape,affine", [((5, 7, 24), True), ((40, 3), False), ((2, 200), True)])
def test_layer_norm_rows(norm_path, shape, affine):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    d = shape[-1]
    w = rng.standard_normal(d).astype(np.float32) if affine else None
    b = rng.standard_normal(d).astype(np.float32) if affine else None
    got = F.layer_norm(
        ember.tensor(x),
        (d,),
        None if w is None else ember.tensor(w),
        None if b is None else ember.tensor(b),
    ).numpy()
    np.testing.assert_allclose(got, _ref_layer_norm(x, w, b, 1e-5), rtol=1e-5, atol=1e-5)
    _check(
        lambda x, w, b: F.layer_norm(x, (d,), w, b),
        lambda x, w, b: TF.layer_norm(x, (d,), w, b),
        [x, w, b],
    )


@pytest.mark.parametrize("shape,affine", [((6, 5, 16), True), ((30, 9), False)])
def test_rms_norm_rows(norm_path, shape, affine):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    d = shape[-1]
    w = rng.standard_normal(d).astype(np.float32) if affine else None
    got = F.rms_norm(ember.tensor(x), (d,), None if w is None else ember.tensor(w), 1e-6)
    np.testing.assert_allclose(
        got.numpy(), _ref_layer_norm(x, w, None, 1e-6, center=False), rtol=1e-5, atol=1e-5
    )
    _check(lambda x, w: F.rms_norm(x, (d,), w), lambda x, w: TF.rms_norm(x, (d,), w), [x, w])


@pytest.mark.parametrize(
    "shape,groups,affine", [((3, 8, 5, 4), 4, True), ((4, 6, 7), 3, False), ((2, 4), 2, True)]
)
def test_group_norm_fused(norm_path, shape, groups, affine):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    w = rng.standard_normal(c).astype(np.float32) if affine else None
    b = rng.standard_normal(c).astype(np.float32) if affine else None
    _check(
        lambda x, w, b: F.group_norm(x, groups, w, b),
        lambda x, w, b: TF.group_norm(x, groups, w, b),
        [x, w, b],
    )


def test_norms_gradcheck_float64(norm_path):
    rng = np.random.default_rng(4)
    x = ember.tensor(rng.standard_normal((2, 6, 3)), requires_grad=True)
    w6 = ember.tensor(rng.standard_normal(6), requires_grad=True)
    b6 = ember.tensor(rng.standard_normal(6), requires_grad=True)
    w3 = ember.tensor(rng.standard_normal(3), requires_grad=True)
    b3 = ember.tensor(rng.standard_normal(3), requires_grad=True)
    cases = [
        (lambda a, w, b: F.layer_norm(a, (3,), w, b), (x, w3, b3)),
        (lambda a, w: F.rms_norm(a, (3,), w), (x, w3)),
        (lambda a, w, b: F.group_norm(a, 3, w, b), (x, w6, b6)),
    ]
    for fn, args in cases:
        assert gradcheck(fn, args)
        assert gradgradcheck(fn, args)


def test_layer_norm_output_may_be_modified_in_place(norm_path):
    """The saved state is not the output (PyTorch allows in-place ops on layer_norm's output)."""
    x = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
    xe, xt = _pair(x)
    ye, yt = F.layer_norm(xe, (8,)), TF.layer_norm(xt, (8,))
    ye.mul_(2).sum().backward()
    yt.mul_(2).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), atol=1e-5)


def test_norm_weight_shape_errors():
    x = ember.randn(2, 4, 3)
    with pytest.raises(RuntimeError, match="weight"):
        F.group_norm(x, 2, ember.ones(3))
    with pytest.raises(RuntimeError, match="normalized_shape"):
        F.rms_norm(x, (3,), ember.ones(4))


# ---- GELU / SiLU -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_blocked_activations_match_torch(name, monkeypatch):
    monkeypatch.setattr(act_kernels, "_BLOCK", 100)
    monkeypatch.setattr(act_kernels, "_numba", False)  # the NumPy kernels (numba: own tests)
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((7, 53)) * 4).astype(np.float32)  # 371 elements: 4 blocks
    x.flat[:4] = [-120.0, 120.0, 0.0, -9.0]  # exp over/underflow, the kink, the far tail
    _check(getattr(F, name), getattr(TF, name), [x], rtol=2e-6, atol=1e-6)
    _check(
        lambda a: getattr(F, name)(a.t()[::2]),
        lambda a: getattr(TF, name)(a.t()[::2]),
        [x],
        rtol=2e-6,
        atol=1e-6,
    )  # non-contiguous input


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_blocked_activations_double_backward(name):
    x = np.random.default_rng(7).standard_normal((5, 6)).astype(np.float32)
    xe, xt = _pair(x)
    (ge,) = ember.autograd.grad(getattr(F, name)(xe).sum(), xe, create_graph=True)
    (gt,) = torch.autograd.grad(getattr(TF, name)(xt).sum(), xt, create_graph=True)
    ge.pow(2).sum().backward()
    gt.pow(2).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_gelu_float64_is_exact():
    from scipy.special import ndtr

    x = np.linspace(-8, 8, 101)
    np.testing.assert_allclose(F.gelu(ember.tensor(x)).numpy(), x * ndtr(x), rtol=1e-12, atol=1e-15)


# ---- softmax / log_softmax over the last dim ---------------------------------------------
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_last_dim_softmax_blocked(name, monkeypatch):
    monkeypatch.setattr(norm_rows, "_BLOCK_ELEMS", 64)
    monkeypatch.setattr(act_kernels, "_numba", False)  # the NumPy kernels (numba: own tests)
    x = (np.random.default_rng(8).standard_normal((3, 11, 20)) * 5).astype(np.float32)
    ref = x.astype(np.float64) - x.max(-1, keepdims=True)
    ref = ref - np.log(np.exp(ref).sum(-1, keepdims=True))
    got = getattr(F, name)(ember.tensor(x), -1).numpy()
    np.testing.assert_allclose(
        got, ref if name == "log_softmax" else np.exp(ref), rtol=1e-5, atol=1e-6
    )
    _check(lambda a: getattr(F, name)(a, -1), lambda a: getattr(TF, name)(a, -1), [x])
    xd = ember.tensor(np.random.default_rng(9).standard_normal((3, 5)), requires_grad=True)
    assert gradcheck(lambda a: getattr(F, name)(a, 1), (xd,))
    assert gradgradcheck(lambda a: getattr(F, name)(a, 1), (xd,))


# ---- pooling fast paths ------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,out", [((2, 5, 7, 7), 1), ((2, 3, 8, 6), (4, 3)), ((2, 3, 7, 5), (3, 2))]
)
def test_adaptive_avg_pool_paths(shape, out):
    x = np.random.default_rng(10).standard_normal(shape).astype(np.float32)
    _check(lambda a: F.adaptive_avg_pool2d(a, out), lambda a: TF.adaptive_avg_pool2d(a, out), [x])
    xd = ember.tensor(x[:1, :2].astype(np.float64), requires_grad=True)
    assert gradcheck(lambda a: F.adaptive_avg_pool2d(a, out), (xd,))
    assert gradgradcheck(lambda a: F.adaptive_avg_pool2d(a, out), (xd,))


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 6), 2), ((1, 2, 9, 9), 3), ((1, 2, 20, 10), 10)])
def test_avg_pool_tiling_path(shape, k):
    x = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
    _check(lambda a: F.avg_pool2d(a, k), lambda a: TF.avg_pool2d(a, k), [x])
    xd = ember.tensor(x[:1, :1].astype(np.float64), requires_grad=True)
    assert gradcheck(lambda a: F.avg_pool2d(a, k), (xd,))
    assert gradgradcheck(lambda a: F.avg_pool2d(a, k), (xd,))


def test_norm_row_blocks_cover_rows():
    for m, d in [(0, 5), (1, 1), (7, 10), (100, 3)]:
        blocks = norm_rows.row_blocks(np, m, d)
        covered = [i for s in blocks for i in range(s.start, s.stop)]
        assert covered == list(range(m))
        assert all(
            s.stop - s.start <= max(1, math.ceil(norm_rows._BLOCK_ELEMS / d)) for s in blocks
        )


# ---- blocked causal attention ------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,kv_heads", [((2, 3, 21, 5), 3), ((1, 4, 16, 4), 2), ((1, 1, 7, 3), 1)]
)
def test_causal_attention_blocks(shape, kv_heads, monkeypatch):
    from ember.ops import attention_causal

    monkeypatch.setattr(attention_causal, "BLOCK", 4)  # 21 rows: 6 blocks, a ragged last one
    rng = np.random.default_rng(12)
    q = rng.standard_normal(shape).astype(np.float32)
    kv_shape = shape[:1] + (kv_heads,) + shape[2:]
    k, v = (rng.standard_normal(kv_shape).astype(np.float32) for _ in range(2))
    gqa = kv_heads != shape[1]
    _check(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True, enable_gqa=gqa),
        lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, is_causal=True, enable_gqa=gqa),
        [q, k, v],
    )


def test_causal_attention_blocks_gradcheck(monkeypatch):
    from ember.ops import attention_causal

    monkeypatch.setattr(attention_causal, "BLOCK", 4)
    rng = np.random.default_rng(13)
    args = [ember.tensor(rng.standard_normal((1, 2, 10, 3)), requires_grad=True) for _ in range(3)]
    assert attention_causal.applies(np, args[0]._data, args[1]._data, None, 0.0, True, False)

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def test_docs_kernels_snippet_runs():
    """The numba / NumPy snippet of docs/kernels.md (its second python block)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "norm_rows" in b)
    exec(compile(code, "docs/kernels.md", "exec"), {})
