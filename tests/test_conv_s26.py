"""Issue 23, session 26: the layout copies' tiles transposed in vector registers
(``_numba_transpose``), the forward's chunks straight back to channels-first
(``conv_direct_cl.NCHW_OUT``, ``_numba_conv_cl_nchw``), and the channels-last kernel over
``conv_direct``'s from 32 output channels on any plane (``OVER_DIRECT_MIN_OUT``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as DCL

torch = pytest.importorskip("torch")
T = pytest.importorskip("ember.ops._numba_transpose")
if not T.AVAILABLE:
    pytest.skip("numba is not installed", allow_module_level=True)

from _parity import one_thread, restoring  # noqa: E402, F401  (autouse: one thread)
from numba import njit  # noqa: E402

restore = restoring(DCL, "NCHW_OUT", "LAYOUT", "OVER_DIRECT_ANY_PLANE")


@njit
def _t16(src, soff, ss, dst, doff, ds):
    T.t16(src, soff, ss, dst, doff, ds)


@njit
def _t16_bias(src, soff, ss, dst, doff, ds, bias, boff):
    T.t16_bias(src, soff, ss, dst, doff, ds, bias, boff)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
def test_tile_transpose(dtype, bias):
    # dst[doff + j * ds + i] = src[soff + i * ss + j] (+ bias[boff + j]), strides and offsets
    # that are not multiples of the vector, the values around the tile untouched
    rng = np.random.default_rng(0)
    ss, ds, soff, doff, boff = 37, 21, 5, 3, 2
    src = rng.standard_normal(soff + 16 * ss).astype(dtype)
    src[soff] = -0.0  # moved exactly (a sign of zero would be lost by adding 0.0)
    dst = np.full(doff + 16 * ds + 4, 7.0, dtype)
    b = rng.standard_normal(boff + 16).astype(dtype)
    if bias:
        _t16_bias(src, soff, ss, dst, doff, ds, b, boff)
    else:
        _t16(src, soff, ss, dst, doff, ds)
    tile = src[soff : soff + 16 * ss].reshape(16, ss)[:, :16]
    want = tile.T + (b[boff : boff + 16, None] if bias else 0)
    got = dst[doff : doff + 16 * ds].reshape(16, ds)[:, :16]
    np.testing.assert_array_equal(got, want)
    if not bias:
        assert np.signbit(dst[doff])
    mask = np.ones(dst.shape, bool)
    mask[doff : doff + 16 * ds].reshape(16, ds)[:, :16] = False
    assert (dst[mask] == 7.0).all()


def _step(x, w, b, nd=2, stride=1):
    xe, we = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    be = None if b is None else ember.tensor(b, requires_grad=True)
    conv = getattr(F, f"conv{nd}d")
    y = conv(xe, we, be, padding=w.shape[-1] // 2, stride=stride)
    g = np.sin(np.arange(y.numel(), dtype=np.float64)).reshape(y.shape).astype(x.dtype)
    y.backward(ember.tensor(g))
    out = [y.detach().numpy(), xe.grad.numpy(), we.grad.numpy()]
    return out + ([] if b is None else [be.grad.numpy()]), g


def _torch_step(x, w, b, g, nd=2, stride=1):
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    conv = getattr(torch.nn.functional, f"conv{nd}d")
    y = conv(xt, wt, bt, padding=w.shape[-1] // 2, stride=stride)
    y.backward(torch.tensor(g))
    out = [y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()]
    return out + ([] if b is None else [bt.grad.numpy()])


def _spy(monkeypatch):
    seen = []
    orig = DCL._call

    def spy(name, macs, *args, mod=None):
        seen.append(name)
        orig(name, macs, *args, mod=mod)

    monkeypatch.setattr(DCL, "_call", spy)
    return seen


# (N, C, O, plane): positions crossing samples and chunks (CHUNK x CL_P = 384; a parallel
# task's 96), planes not a multiple of the 16-position tile, whole vectors of outputs only
CASES = [
    (3, 32, 64, (13, 11)),  # 429 positions, rows of 11
    (4, 16, 128, (7, 7)),  # 196 positions, 2 vectors
    (2, 64, 64, (16, 16)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[3][0]}x{c[3][1]}")
def test_nchw_out_bitwise_and_torch(case, bias, threads, monkeypatch):
    n, c, o, hw = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c) + hw).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    set_num_threads(threads)
    seen = _spy(monkeypatch)
    on, g = _step(x, w, b)
    assert "forward_cl_nchw" in seen
    DCL.NCHW_OUT = False
    off, _ = _step(x, w, b)
    DCL.LAYOUT = False  # NumPy's transposing copies: the tiles move the same values
    numpy_copies, _ = _step(x, w, b)
    for a, e, f in zip(on, off, numpy_copies):
        np.testing.assert_array_equal(a, e)
        np.testing.assert_array_equal(a, f)
    for a, t in zip(on, _torch_step(x, w, b, g)):
        np.testing.assert_allclose(a, t, rtol=2e-4, atol=2e-4)


def test_nchw_out_gradcheck(monkeypatch):
    # float64: vectors of 32 outputs, so 32 output channels run the whole-vector kernel
    rng = np.random.default_rng(2)
    x = ember.tensor(rng.standard_normal((2, 16, 5, 6)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((32, 16, 3, 3)) * 0.2, requires_grad=True)
    b = ember.tensor(rng.standard_normal(32), requires_grad=True)
    seen = _spy(monkeypatch)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), (x, w, b))
    assert "forward_cl_nchw" in seen


def _uses_cl(x_shape, w_shape):
    """(the channels-last kernel takes it, conv_direct would), at padding k // 2, stride 1."""
    x = np.zeros(x_shape, np.float32)
    nd = len(w_shape) - 2
    pad = tuple((k // 2, k // 2) for k in w_shape[2:])
    geom = C.ConvGeom((1,) * nd, pad, (1,) * nd, 1, w_shape[2:], x_shape[2:])
    return DCL.use_direct_cl(np, x, w_shape, geom), D.use_direct(np, x, w_shape, geom)


@pytest.mark.parametrize(
    "x_shape, w_shape, want",
    [
        ((8, 32, 32, 32), (32, 32, 5, 5), True),  # 32 outputs: this kernel over conv_direct's
        ((2, 16, 16, 16, 16), (32, 16, 3, 3, 3), True),  # 3-D
        ((8, 16, 32, 32), (16, 16, 3, 3), False),  # 16 outputs: conv_direct's kernels
        ((8, 64, 16, 16), (64, 64, 3, 3), True),  # a small plane (as before)
    ],
)
def test_over_direct_rule(x_shape, w_shape, want):
    cl, direct = _uses_cl(x_shape, w_shape)
    assert direct  # conv_direct would take each of these
    assert cl == want
    DCL.OVER_DIRECT_ANY_PLANE = False  # the rule before session 26
    assert _uses_cl(x_shape, w_shape)[0] == (np.prod(x_shape[2:]) <= 256)


@pytest.mark.parametrize("nd", [2, 3])
def test_over_direct_parity_and_gradcheck(nd, monkeypatch):
    # the convolutions the new rule moves: torch parity in float32 at a shape conv_direct
    # takes, float64 gradcheck on a small one
    rng = np.random.default_rng(3)
    size = (20, 18) if nd == 2 else (9, 8, 7)
    x = rng.standard_normal((2, 16) + size).astype(np.float32)
    w = (rng.standard_normal((48, 16) + (3,) * nd) * 0.1).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    seen = _spy(monkeypatch)
    got, g = _step(x, w, b, nd)
    assert any(name.startswith("forward_cl") for name in seen)
    for a, t in zip(got, _torch_step(x, w, b, g, nd)):
        np.testing.assert_allclose(a, t, rtol=2e-4, atol=2e-4)
    seen.clear()
    xs = ember.tensor(rng.standard_normal((1, 16) + (4,) * nd), requires_grad=True)
    ws = ember.tensor(rng.standard_normal((32, 16) + (3,) * nd) * 0.2, requires_grad=True)
    conv = getattr(F, f"conv{nd}d")
    assert gradcheck(lambda x, w: conv(x, w, padding=1), (xs, ws))
    assert any(name.startswith("forward_cl") for name in seen)


def test_over_direct_kernel_threads():
    # 64 -> 16 on 32^2: this kernel at one kernel thread, conv_direct's at two (2-D planes
    # with 16 outputs measured slower here at two); 3-D and 32+ outputs at both
    assert _uses_cl((8, 64, 32, 32), (16, 64, 3, 3)) == (True, True)
    assert D.with_kernel_threads(2, _uses_cl, (8, 64, 32, 32), (16, 64, 3, 3)) == (False, True)
    assert D.with_kernel_threads(2, _uses_cl, (2, 32, 16, 16, 16), (16, 32, 3, 3, 3))[0]
    assert D.with_kernel_threads(2, _uses_cl, (8, 16, 32, 32), (32, 16, 3, 3))[0]


@pytest.mark.parametrize("wgrad_max_in", [1024, 128])  # the kernel, conv_cl's columns + GEMM
@pytest.mark.parametrize("threads", [1, 2])
def test_wide_inputs_and_big_weight(threads, wgrad_max_in, monkeypatch):
    # 320 input channels on 2 x 8^2 = 128 positions: the channels-last kernel (MAX_IN_WIDE;
    # its weight gradient by its kernel, or conv_cl's columns and a GEMM past WGRAD_MAX_IN);
    # at two threads its 1.2 MB weight (over conv_split.MAX_WEIGHT_BYTES) in one part, the
    # kernels' parallel variants, without MKL too
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 320, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((96, 320, 3, 3)) / np.sqrt(9 * 320)).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    monkeypatch.setattr(DCL, "WGRAD_MAX_IN", wgrad_max_in)
    set_num_threads(threads)
    seen = _spy(monkeypatch)
    got, g = _step(x, w, b)
    assert any(name.startswith("forward_cl") for name in seen)
    assert ("weight_grad_cl" in seen) == (wgrad_max_in >= 320)
    for a, t in zip(got, _torch_step(x, w, b, g)):
        np.testing.assert_allclose(a, t, rtol=3e-4, atol=3e-4)


def test_docs_snippet_runs():
    """The snippet of docs/kernels.md's session 26 section; its switches end as they began."""
    import re
    from pathlib import Path

    from ember.ops import rnn_stream

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    section = text[text.index("## Session 26: convolution layout copies") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/kernels.md", "exec"), {})
    assert DCL.OVER_DIRECT_ANY_PLANE and DCL.NCHW_OUT and rnn_stream.STREAM
