"""The compiled activation kernels of issue 23 (``ops/_numba_act.py``): GELU exact / tanh, SiLU,
sigmoid, softmax and log_softmax over the last dim, forward and backward. Forward against a float64
NumPy reference, gradients against torch, float64 gradcheck / gradgradcheck through the same
kernels (float64 is added to the compiled dtypes), special values (overflow and underflow of
the exponential, infinities, NaN) against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.ops import act_kernels, elementwise_unary

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
F, TF = ember.nn.functional, torch.nn.functional

# values that cross the exponential's clamps (+-87.3, 88.7), the GELU / SiLU kink, the far tails
_EDGES = [-120.0, -88.0, -87.5, -30.0, -9.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 88.5, 89.0, 120.0]


@pytest.fixture
def compiled(monkeypatch):
    """The compiled kernels, for float32 and float64, from any size."""
    monkeypatch.setattr(act_kernels, "_numba", None)
    monkeypatch.setattr(elementwise_unary, "_COMPILED_MIN", 1)
    monkeypatch.setattr(
        act_kernels, "_COMPILED_DTYPES", (np.dtype(np.float32), np.dtype(np.float64))
    )
    kern = act_kernels.compiled(np, np.zeros(1, np.float64))
    if kern is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")
    return kern


_ACTS = {
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (
        lambda a: F.gelu(a, approximate="tanh"),
        lambda a: TF.gelu(a, approximate="tanh"),
    ),
    "silu": (F.silu, TF.silu),
    "sigmoid": (ember.sigmoid, torch.sigmoid),
    "softmax": (lambda a: F.softmax(a, -1), lambda a: TF.softmax(a, -1)),
    "log_softmax": (lambda a: F.log_softmax(a, -1), lambda a: TF.log_softmax(a, -1)),
}


def _ref(name, x):
    from scipy.special import ndtr

    x = x.astype(np.float64)
    if name == "gelu":
        return x * ndtr(x)
    if name == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-x))
    z = x - x.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return lp if name == "log_softmax" else np.exp(lp)


def _x(shape, seed=0, scale=4.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("name", list(_ACTS))
def test_forward_and_grad_match_reference_and_torch(compiled, name):
    x = _x((7, 53))
    if name not in ("softmax", "log_softmax"):
        x.flat[: len(_EDGES)] = _EDGES
    fe, ft = _ACTS[name]
    xe = ember.tensor(x, requires_grad=True)
    ye = fe(xe)
    ref = _ref(name, x)
    np.testing.assert_allclose(ye.detach().numpy(), ref, rtol=2e-6, atol=2e-6)
    g = _x(x.shape, seed=1, scale=1.0)
    ye.backward(ember.tensor(g))
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    ft(xt).backward(torch.tensor(g.astype(np.float64)))
    want = xt.grad.numpy()
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(xe.grad.numpy(), want, rtol=1e-5, atol=2e-6 * scale)


@pytest.mark.parametrize("name", list(_ACTS))
def test_non_contiguous_and_no_grad(compiled, name):
    fe, ft = _ACTS[name]
    x = _x((6, 10, 4), seed=2)
    got = fe(ember.tensor(x).transpose(0, 2)).numpy()  # a copy is made for the kernel
    want = ft(torch.tensor(x).transpose(0, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", list(_ACTS))
def test_float64_gradcheck_through_kernels(compiled, name):
    fe, _ = _ACTS[name]
    x = ember.tensor(np.random.default_rng(3).standard_normal((3, 5)) * 2, requires_grad=True)
    assert gradcheck(fe, (x,))
    assert gradgradcheck(fe, (x,))


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu", "sigmoid"])
def test_special_values_match_torch(compiled, name):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30], np.float32)
    fe, ft = _ACTS[name]
    got = fe(ember.tensor(x)).numpy()
    want = ft(torch.tensor(x)).numpy()
    # torch's float32 AVX-512 gelu gives NaN at +-inf (its vectorised erf); its scalar and
    # float64 paths, and the other CPUs' vector paths, give the limits: compare with those.
    inf = np.isinf(x)
    want[inf] = ft(torch.tensor(x[inf], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_masks_and_nan(compiled, name):
    x = _x((4, 9), seed=4)
    x[0, 3:] = -np.inf  # masked logits: probability exactly 0
    x[1, :] = -np.inf  # a fully masked row: NaN, as torch
    x[2, 5] = np.nan  # NaN poisons its row
    x[3, 0] = 1e4  # a huge logit: the others underflow to 0
    fe, ft = _ACTS[name]
    got = fe(ember.tensor(x)).numpy()
    want = ft(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=2e-6, atol=1e-7)
    if name == "softmax":
        assert (got[0, 3:] == 0).all() and (got[3, 1:] == 0).all()


def test_exp32_accuracy(compiled):
    """The vectorised float32 exp against float64 exp over its whole finite range."""
    x = np.linspace(-87.3, 88.7, 200001, dtype=np.float32).reshape(1, -1)
    p = np.empty_like(x)
    # softmax of the row [x_j ..., 0-offset] is exp(x_j - max) / sum: read the exp off the
    # log_softmax backward with g = 0 at every column but one, where it is -1 (sum g = -1)
    g = np.zeros_like(x)
    compiled.log_softmax_backward(g, x, p, compiled.consts(np.float32))
    np.testing.assert_array_equal(p, 0)  # g = 0: nothing leaks
    g[0, 0] = -1.0
    compiled.log_softmax_backward(g, x, p, compiled.consts(np.float32))
    e = p.astype(np.float64)
    e[0, 0] += 1.0  # g_0 - exp(x_0) * (-1)
    rel = np.abs(e - np.exp(x.astype(np.float64))) / np.exp(x.astype(np.float64))
    assert rel[0, 1:].max() < 5e-7  # ~4 ulp


def test_double_backward_gelu_tanh(compiled):
    x = _x((5, 6), seed=5, scale=1.0)
    xe = ember.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    (ge,) = ember.autograd.grad(F.gelu(xe, approximate="tanh").sum(), xe, create_graph=True)
    (gt,) = torch.autograd.grad(TF.gelu(xt, approximate="tanh").sum(), xt, create_graph=True)
    ge.pow(2).sum().backward()
    gt.pow(2).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_disabled_by_env(monkeypatch):
    monkeypatch.setattr(act_kernels, "_numba", None)
    monkeypatch.setenv("EMBER_NUMBA", "0")
    assert act_kernels.compiled(np, np.zeros(3, np.float32)) is None
    monkeypatch.setattr(act_kernels, "_numba", None)  # reload on the next call


# ---- group norm (ops/_numba_group_norm.py) -------------------------------------------------
@pytest.mark.parametrize("shape,groups", [((2, 6, 33, 5), 3), ((3, 8, 2), 4)])
def test_group_norm_compiled_offset_input(monkeypatch, shape, groups):
    """Statistics accumulate in float64: a large common offset keeps float32 accuracy."""
    from ember.ops import norm_group_rms

    monkeypatch.setattr(norm_group_rms, "_numba", None)
    x = _x(shape, seed=6, scale=1.0) + np.float32(1e3)
    assert norm_group_rms._group_compiled(np, x) is not None
    rng = np.random.default_rng(7)
    w, b = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    g = rng.standard_normal(shape).astype(np.float32)
    es = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    ye, yt = F.group_norm(*es[:1], groups, *es[1:]), TF.group_norm(ts[0], groups, *ts[1:])
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-4, atol=5e-4)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g.astype(np.float64)))
    for e, t in zip(es, ts):
        want = t.grad.numpy()
        np.testing.assert_allclose(e.grad.numpy(), want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


# ---- split across threads (ops/_kernel_split.py) -------------------------------------------
@pytest.mark.parametrize("name", ["gelu", "softmax", "group_norm"])
def test_thread_split_matches_one_thread(compiled, monkeypatch, name):
    from ember.backend import threads
    from ember.ops import _kernel_split, norm_group_rms

    monkeypatch.setattr(norm_group_rms, "_numba", None)
    x = _x((5, 6, 7), seed=8)
    fn = {
        "gelu": F.gelu,
        "softmax": lambda a: F.softmax(a, -1),
        "group_norm": lambda a: F.group_norm(a, 3),
    }[name]

    def run():
        xe = ember.tensor(x, requires_grad=True)
        y = fn(xe)
        y.backward(ember.tensor(_x(x.shape, seed=9)))
        return y.detach().numpy(), xe.grad.numpy()

    monkeypatch.setattr(threads, "_cached", 1)
    one = run()
    monkeypatch.setattr(threads, "_cached", 3)  # 3 ranges over 5 rows / samples / 210 elements
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    three = run()
    assert calls  # the work was split
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


# ---- batch norm, training (ops/_numba_group_norm.py) ---------------------------------------
@pytest.mark.parametrize("compiled_bn", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("shape,affine", [((4, 6, 5, 3), True), ((5, 4), False)])
def test_batch_norm_training_paths(monkeypatch, compiled_bn, shape, affine):
    from ember.ops import norm_group_rms

    monkeypatch.setattr(norm_group_rms, "_numba", None if compiled_bn else False)
    rng = np.random.default_rng(10)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    c = shape[1]
    w, b = (rng.standard_normal(c).astype(np.float32) if affine else None for _ in range(2))
    g = rng.standard_normal(shape).astype(np.float32)
    stats = {m: (m.zeros(c), m.ones(c)) for m in (ember, torch)}
    ys, xs, params = {}, {}, {}
    for m, fn in ((ember, F.batch_norm), (torch, TF.batch_norm)):
        xs[m] = m.tensor(x, requires_grad=True)
        params[m] = [None if a is None else m.tensor(a, requires_grad=True) for a in (w, b)]
        ys[m] = fn(xs[m], *stats[m], *params[m], training=True, momentum=0.3)
        ys[m].backward(m.tensor(g))
    assert (norm_group_rms._numba not in (None, False)) == compiled_bn
    np.testing.assert_allclose(ys[ember].detach().numpy(), ys[torch].detach().numpy(), atol=2e-6)
    for a, t in zip([xs[ember], *params[ember]], [xs[torch], *params[torch]]):
        if a is not None:
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-5)
    for a, t in zip(stats[ember], stats[torch]):
        np.testing.assert_allclose(a.numpy(), t.numpy(), rtol=1e-6, atol=1e-7)


def test_batch_norm_compiled_gradcheck_float64(monkeypatch):
    from ember.ops import norm_group_rms

    monkeypatch.setattr(norm_group_rms, "_numba", None)
    rng = np.random.default_rng(12)
    args = [
        ember.tensor(rng.standard_normal(s), requires_grad=True) for s in [(3, 4, 2), (4,), (4,)]
    ]

    def fn(x, w, b):
        return F.batch_norm(x, None, None, w, b, training=True)

    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)
    assert norm_group_rms._numba


def test_docs_compiled_activations_snippet_runs():
    """The compiled-activations snippet of docs/kernels.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "act_kernels.compiled" in b)
    exec(compile(code, "docs/kernels.md", "exec"), {})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name, fn",
    [
        ("gelu", lambda t: ember.nn.functional.gelu(t)),
        ("gelu_tanh", lambda t: ember.nn.functional.gelu(t, approximate="tanh")),
        ("silu", lambda t: ember.nn.functional.silu(t)),
    ],
)
def test_output_same_with_and_without_grad(name, fn, dtype):
    """The output-only kernel (no grad) and the output+derivative kernel of each activation
    give bitwise the same values, signed zeros and results near the subnormal range included:
    a checkpointed region recomputes its forward with grad and must match."""
    x = (ember.randn(200_003) * 6).to(getattr(ember, dtype))
    with ember.no_grad():
        plain = fn(x).numpy()
    with_grad = fn(x.clone().requires_grad_()).detach().numpy()
    np.testing.assert_array_equal(plain.view(np.uint8), with_grad.view(np.uint8))


@pytest.mark.parametrize("grad", ["sum", "scaled sum", "strided", "full"])
def test_sigmoid_backward_kernel_takes_each_gradient_layout(compiled, grad):
    # one compiled pass reads a contiguous gradient, or one value broadcast (a sum's); other
    # layouts take NumPy's expression. Each agrees with torch, and the tails stay exact.
    x = _x((40, 50), seed=4, scale=12.0)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye, yt = ember.sigmoid(xe), torch.sigmoid(xt)
    g = _x((50, 40), seed=5, scale=1.0)
    if grad == "sum":
        ye.sum().backward(), yt.sum().backward()
    elif grad == "scaled sum":
        (ye * 3.0).sum().backward(), (yt * 3.0).sum().backward()
    elif grad == "strided":
        ye.backward(ember.tensor(g).t()), yt.backward(torch.tensor(g).t())
    else:
        ye.backward(ember.tensor(g.T.copy())), yt.backward(torch.tensor(g.T.copy()))
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-30)
    # (1 - s) near s = 1 carries the rounding of s: a few float32 ulps of 1, relative
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("grad", ["sum", "full"])
def test_silu_recompute_path_at_two_threads(compiled, monkeypatch, grad):
    # at 2+ threads a large SiLU saves x, not the derivative, and the backward recomputes it
    # in one compiled pass: values and gradients as torch's, as on the derivative path
    from ember.backend import threads
    from ember.ops import activation_ops

    monkeypatch.setattr(activation_ops, "SILU_RECOMPUTE_MIN", 1)
    monkeypatch.setattr(activation_ops, "num_threads", lambda: 2)
    x = _x((30, 70), seed=6, scale=8.0)
    x.flat[: len(_EDGES)] = _EDGES
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye, yt = F.silu(xe), TF.silu(xt)
    assert ye.grad_fn is not None and threads.num_threads() >= 1
    if grad == "sum":
        ye.sum().backward(), yt.sum().backward()
    else:
        g = _x(x.shape, seed=7, scale=1.0)
        ye.backward(ember.tensor(g)), yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=2e-6)
