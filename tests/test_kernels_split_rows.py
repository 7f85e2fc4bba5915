"""The thread split of the compiled row kernels (issue 23, 2 threads): layer / RMS norm forward
and backward over slices of rows (the weight and bias gradients through per-part sums), the
softmax / log_softmax forward with NumPy's row max for long rows, and the GELU / SiLU backward
product. Results at several threads must be bitwise those of one thread, and match torch."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import threads
from ember.ops import _kernel_split, act_kernels, norm_rows

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
F, TF = ember.nn.functional, torch.nn.functional


@pytest.fixture
def kernels(monkeypatch):
    """The compiled norm and activation kernels, loaded afresh (skips with EMBER_NUMBA=0)."""
    monkeypatch.setattr(norm_rows, "_numba", None)
    monkeypatch.setattr(act_kernels, "_numba", None)
    if norm_rows._compiled(np, np.zeros((1, 1), np.float32)) is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")


def _x(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _run(fn, arrays, g):
    """Forward + backward in ember: the output and every input's gradient, as NumPy arrays."""
    ts = [None if a is None else ember.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    y.backward(ember.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts if t is not None]


def _split_vs_one(monkeypatch, fn, arrays, g, n_threads=3):
    """Run at 1 and at ``n_threads`` threads (every slice size allowed); check that the work was
    handed to the pool and that the results are bitwise equal; return them."""
    monkeypatch.setattr(threads, "_cached", 1)
    one = _run(fn, arrays, g)
    monkeypatch.setattr(threads, "_cached", n_threads)
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    many = _run(fn, arrays, g)
    assert calls, "the work was not split"
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    return one


def _torch(fn, arrays, g):
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    y.backward(torch.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts if t is not None]


# ---- layer / RMS norm: rows split, column sums per part -------------------------------------
# 7 rows of 16 with parts of 2 rows (_PART_ELEMS 32): 4 parts, the last one row, 3 threads
@pytest.mark.parametrize("part_elems", [32, 1 << 16], ids=["parts", "one_part"])
@pytest.mark.parametrize(
    "kind,affine",
    [("layer", True), ("layer", False), ("rms", True), ("rms", False), ("layer_w", True)],
)
def test_norm_rows_split_bitwise_and_torch(kernels, monkeypatch, part_elems, kind, affine):
    monkeypatch.setattr(norm_rows, "_PART_ELEMS", part_elems)
    d = 16
    x = _x((7, d), 0, 2.0) + 0.5
    w = _x((d,), 1) if affine else None
    b = _x((d,), 2) if affine and kind == "layer" else None
    g = _x((7, d), 3)
    if kind == "rms":
        fns = [lambda x, w, lib=lib: lib.rms_norm(x, (d,), w, 1e-6) for lib in (F, TF)]
        arrays = [x, w]
    elif kind == "layer_w":  # weight without bias
        fns = [lambda x, w, lib=lib: lib.layer_norm(x, (d,), w, None) for lib in (F, TF)]
        arrays = [x, w]
    else:
        fns = [lambda x, w, b, lib=lib: lib.layer_norm(x, (d,), w, b) for lib in (F, TF)]
        arrays = [x, w, b]
    got = _split_vs_one(monkeypatch, fns[0], arrays, g)
    want = _torch(fns[1], arrays, g)
    for a, t in zip(got, want):
        np.testing.assert_allclose(a, t, rtol=1e-5, atol=2e-5 * max(1.0, np.abs(t).max()))


def test_norm_rows_parts_only_input_grad(kernels, monkeypatch):
    """Weight and bias frozen: the per-part sums are scratch, the input gradient unchanged."""
    monkeypatch.setattr(norm_rows, "_PART_ELEMS", 24)
    x, w, b, g = _x((9, 8), 4), _x((8,), 5), _x((8,), 6), _x((9, 8), 7)
    xe = ember.tensor(x, requires_grad=True)
    F.layer_norm(xe, (8,), ember.tensor(w), ember.tensor(b)).backward(ember.tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    TF.layer_norm(xt, (8,), torch.tensor(w), torch.tensor(b)).backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-5)


# ---- softmax / log_softmax: NumPy's row max for long rows -----------------------------------
def _rows_with_specials(d):
    x = _x((6, d), 8, 3.0)
    x[1, d // 2] = np.nan  # a NaN row: all NaN
    x[2, :] = -np.inf  # all -inf: NaN (as torch)
    x[3, 1] = np.inf  # +inf: NaN at it and elsewhere (inf - inf)
    x[4, : d // 2] = -np.inf  # masked half: probability 0 there
    x[5, 0] = 80.0  # near the exp clamp
    return x


@pytest.mark.parametrize("numpy_max", [True, False], ids=["numpy_max", "compiled_max"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_row_max_paths(kernels, monkeypatch, numpy_max, name):
    monkeypatch.setattr(act_kernels, "_NUMPY_MAX_MIN_D", 1 if numpy_max else 1 << 30)
    x = _rows_with_specials(37)
    ye = getattr(F, name)(ember.tensor(x), -1).numpy()
    yt = getattr(TF, name)(torch.tensor(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(ye), np.isnan(yt))
    np.testing.assert_allclose(ye, yt, rtol=2e-6, atol=2e-6)
    # finite rows through forward + backward, split over 3 threads and against torch
    xf, g = _x((5, 37), 9, 3.0), _x((5, 37), 10)
    fn = getattr(F, name)
    got = _split_vs_one(monkeypatch, lambda t: fn(t, -1), [xf], g)
    want = _torch(lambda t: getattr(TF, name)(t, -1), [xf], g)
    for a, t in zip(got, want):
        np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-5)


def test_long_rows_take_numpy_max(kernels):
    """Rows of ``_NUMPY_MAX_MIN_D`` or more (the switch point) against torch."""
    d = act_kernels._NUMPY_MAX_MIN_D
    for cols in (d - 1, d):
        x = _x((3, cols), 11, 4.0)
        for name in ("softmax", "log_softmax"):
            ye = getattr(F, name)(ember.tensor(x), -1).numpy()
            yt = getattr(TF, name)(torch.tensor(x), -1).numpy()
            np.testing.assert_allclose(ye, yt, rtol=1e-5, atol=1e-6)


# ---- GELU / SiLU backward: grad * derivative over threads -----------------------------------
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_activation_backward_split(kernels, monkeypatch, name):
    x, g = _x((4, 25), 12, 2.0), _x((4, 25), 13)
    got = _split_vs_one(monkeypatch, getattr(F, name), [x], g)
    want = _torch(getattr(TF, name), [x], g)
    for a, t in zip(got, want):
        np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-6)


def test_times_falls_back_for_other_layouts():
    a = _x((6, 8), 14)
    b = _x((8, 6), 15).T  # not C-contiguous
    np.testing.assert_array_equal(act_kernels.times(a, b), a * b)
    np.testing.assert_array_equal(act_kernels.times(a, b[:1]), a * b[:1])  # broadcast
    c = act_kernels.times(a, a)
    np.testing.assert_array_equal(c, a * a)
    assert c is not a and c.flags.c_contiguous


# ---- fresh outputs placed away from the input's address (mod 4 KiB) -------------------------
def test_fresh_output_never_4k_aliased():
    n = 5000  # float32: ~20 KB
    buf = np.zeros(n + 1024, np.float32)
    for s in range(0, 1024, 4):  # the input at every 16-byte offset within a page
        x = buf[s : s + n]
        out = _kernel_split.fresh_output((50, 100), np.float32, x)
        assert out.shape == (50, 100) and out.dtype == np.float32 and out.flags.c_contiguous
        assert not _kernel_split._aliased(out, [x])
    small = _kernel_split.fresh_output((3,), np.float64, np.zeros(3))  # under a page: plain
    assert small.base is None and small.shape == (3,)
