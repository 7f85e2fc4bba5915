"""Convolution, pooling, interpolation, fold/unfold, padding and pixel shuffle.

float64 gradcheck (and gradgradcheck: every op here supports double backward) on small shapes,
then parity with PyTorch in float32: outputs and the gradients of every input.
Tolerances (float32): convolutions atol 1e-4 / rtol 1e-4 (sums of up to ~100 products of
N(0, 1) values); pooling, padding, fold and shuffles atol 1e-6 (pure selections and sums of a
few terms); interpolation atol 1e-5 / rtol 1e-5 (weights rounded in float32 like PyTorch's).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.autograd.gradcheck import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional

CONV_TOL = {"atol": 1e-4, "rtol": 1e-4}
EXACT_TOL = {"atol": 1e-6, "rtol": 1e-6}
INTERP_TOL = {"atol": 1e-5, "rtol": 1e-5}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _e(a, requires_grad=False):
    t = ember.tensor(np.asarray(a))
    t.requires_grad = requires_grad
    return t


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def _parity(name, arrays, kwargs, tol, grads=True, seed=1):
    """Run F.<name> in both frameworks on the same float32 arrays (None stays None); compare the
    output(s) and, with a random upstream gradient, the gradient of every array input."""
    ex = [None if a is None else _e(a, grads) for a in arrays]
    tx = [None if a is None else _t(a, grads) for a in arrays]
    ey = getattr(F, name)(*ex, **kwargs)
    ty = getattr(TF, name)(*tx, **kwargs)
    if isinstance(ty, tuple):  # (values, indices)
        np.testing.assert_array_equal(ey[1].numpy(), ty[1].numpy(), err_msg=f"{name} indices")
        assert ey[1].dtype == ember.int64
        ey, ty = ey[0], ty[0]
    assert tuple(ey.shape) == tuple(ty.shape)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), err_msg=name, **tol)
    if not grads:
        return
    g = _rng(seed).standard_normal(tuple(ty.shape)).astype(np.float32)
    ey.backward(_e(g))
    ty.backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(ex, tx)):
        if a is not None:
            np.testing.assert_allclose(
                a.grad.numpy(), b.grad.numpy(), err_msg=f"{name} grad {i}", **tol
            )


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _f64(rng, *shape):
    return _e(rng.standard_normal(shape), True)


# ---- gradcheck (float64) ----------------------------------------------------------------------
GRADCHECK_CASES = [
    ("conv1d", [(2, 2, 5), (3, 2, 2), (3,)], {"stride": 2, "padding": 1}),
    (
        "conv2d",
        [(1, 2, 4, 4), (2, 1, 2, 3), (2,)],
        {"padding": (1, 0), "groups": 2, "dilation": (1, 1)},
    ),
    (
        "conv2d",
        [(1, 2, 5, 4), (2, 2, 2, 2), None],
        {"stride": (2, 1), "dilation": 2, "padding": "valid"},
    ),
    ("conv2d", [(1, 1, 4, 4), (2, 1, 2, 3), (2,)], {"padding": "same"}),
    ("conv3d", [(1, 1, 3, 3, 3), (2, 1, 2, 2, 2), (2,)], {"padding": 1, "stride": 2}),
    (
        "conv_transpose1d",
        [(1, 2, 4), (2, 2, 3), (2,)],
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    (
        "conv_transpose2d",
        [(1, 2, 3, 3), (2, 1, 2, 3), (2,)],
        {"stride": (2, 1), "groups": 2, "dilation": (1, 2)},
    ),
    (
        "max_pool2d",
        [(1, 2, 5, 5)],
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    ),
    ("max_pool1d", [(1, 2, 7)], {"kernel_size": 2, "dilation": 2}),
    ("max_pool2d", [(2, 2, 4, 6)], {"kernel_size": 2}),  # windows tiling the input
    (
        "avg_pool2d",
        [(1, 2, 5, 4)],
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "count_include_pad": False,
            "ceil_mode": True,
        },
    ),
    ("avg_pool3d", [(1, 1, 4, 4, 4)], {"kernel_size": 2}),
    ("adaptive_avg_pool2d", [(1, 2, 5, 7)], {"output_size": (3, 4)}),
    ("adaptive_max_pool2d", [(1, 2, 5, 7)], {"output_size": (3, 4)}),
    ("interpolate", [(1, 2, 3, 4)], {"scale_factor": 1.5, "mode": "bilinear"}),
    ("interpolate", [(1, 2, 3, 4)], {"size": (5, 3), "mode": "bicubic", "align_corners": True}),
    ("interpolate", [(1, 2, 3, 4)], {"size": (6, 5), "mode": "nearest"}),
    ("pad", [(1, 2, 3, 4)], {"pad": (2, 1, 1, 2), "mode": "reflect"}),
    ("pad", [(1, 2, 3)], {"pad": (3, 2), "mode": "replicate"}),
    ("pad", [(1, 2, 3, 4)], {"pad": (2, 1, 1, 2), "mode": "circular"}),
    ("unfold", [(1, 2, 4, 5)], {"kernel_size": (2, 3), "padding": 1, "stride": (1, 2)}),
    ("fold", [(1, 8, 6)], {"output_size": (3, 4), "kernel_size": 2}),
    ("pixel_shuffle", [(1, 8, 2, 3)], {"upscale_factor": 2}),
    # depthwise (one channel per group) runs through its own tap loop
    (
        "conv2d",
        [(1, 3, 4, 5), (3, 1, 2, 3), (3,)],
        {"groups": 3, "stride": (2, 1), "padding": 1, "dilation": (1, 2)},
    ),
    (
        "conv_transpose2d",
        [(1, 2, 3, 3), (2, 1, 3, 2), (2,)],
        {"groups": 2, "stride": 2, "output_padding": 1},
    ),
]


@pytest.mark.parametrize(
    "name,shapes,kwargs",
    GRADCHECK_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(GRADCHECK_CASES)],
)
def test_gradcheck(name, shapes, kwargs):
    rng = _rng(3)
    inputs = [None if s is None else _f64(rng, *s) for s in shapes]
    fn = getattr(F, name)

    def call(*xs):
        return fn(*xs, **kwargs)

    assert gradcheck(call, inputs, eps=1e-6, atol=1e-6)


DOUBLE = [1, 5, 7, 9, 11, 12, 13, 16, 19, 20, 22, 23]


@pytest.mark.parametrize(
    "name,shapes,kwargs",
    [GRADCHECK_CASES[i] for i in DOUBLE],
    ids=[f"{GRADCHECK_CASES[i][0]}-{i}" for i in DOUBLE],
)
def test_gradgradcheck(name, shapes, kwargs):
    rng = _rng(4)
    inputs = [None if s is None else _f64(rng, *s) for s in shapes]
    fn = getattr(F, name)

    def call(*xs):
        y = fn(*xs, **kwargs)
        # a nonlinearity after the op, so that second derivatives are not all zero
        return y * y

    assert gradgradcheck(call, inputs, atol=1e-5)


# ---- convolution parity -------------------------------------------------------------------------
CONV_CASES = [
    ("conv2d", (2, 3, 8, 8), (4, 3, 3, 3), True, {"padding": 1}),
    (
        "conv2d",
        (2, 4, 9, 7),
        (6, 2, 3, 2),
        True,
        {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2},
    ),
    ("conv2d", (2, 4, 9, 7), (6, 4, 4, 3), True, {"padding": "same", "dilation": (1, 2)}),
    ("conv2d", (2, 4, 9, 7), (6, 4, 4, 3), False, {"padding": "valid"}),
    ("conv2d", (2, 6, 8, 8), (6, 1, 3, 3), True, {"padding": 1, "groups": 6}),
    ("conv2d", (3, 7, 7), (5, 3, 1, 1), True, {}),
    ("conv2d", (2, 1, 28, 28), (8, 1, 3, 3), True, {"padding": 1}),
    ("conv1d", (2, 4, 11), (6, 4, 3), True, {"stride": 3, "padding": 2}),
    ("conv1d", (4, 11), (6, 2, 5), True, {"padding": "same", "groups": 2}),
    ("conv3d", (2, 2, 5, 6, 7), (3, 2, 2, 3, 2), True, {"stride": (1, 2, 1), "padding": 1}),
    (
        "conv_transpose2d",
        (2, 4, 5, 6),
        (4, 3, 3, 3),
        True,
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    (
        "conv_transpose2d",
        (2, 4, 5, 6),
        (4, 3, 3, 2),
        True,
        {
            "stride": (2, 3),
            "padding": (1, 0),
            "output_padding": (1, 2),
            "groups": 2,
            "dilation": (1, 2),
        },
    ),
    ("conv_transpose2d", (4, 5, 6), (4, 2, 2, 2), False, {"stride": 2}),
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3), True, {"output_padding": 1, "dilation": 2}),
    ("conv_transpose3d", (2, 4, 3, 4, 3), (4, 2, 3, 2, 2), True, {"stride": 2, "padding": 1}),
    (
        "conv1d",
        (2, 5, 13),
        (5, 1, 3),
        True,
        {"groups": 5, "stride": 2, "dilation": 2, "padding": 3},
    ),
    (
        "conv_transpose2d",
        (2, 4, 5, 6),
        (4, 1, 3, 3),
        True,
        {"groups": 4, "stride": 2, "padding": 1, "output_padding": 1},
    ),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "name,xs,ws,bias,kwargs", CONV_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_CASES)]
)
def test_conv_parity(name, xs, ws, bias, kwargs):
    rng = _rng(0)
    out_ch = ws[1] * kwargs.get("groups", 1) if "transpose" in name else ws[0]
    arrays = [_f32(rng, *xs), _f32(rng, *ws), _f32(rng, out_ch) if bias else None]
    _parity(name, arrays, kwargs, CONV_TOL)


def test_conv_weight_only_gradient():
    """A first layer: the input does not require grad, only weight and bias get gradients."""
    rng = _rng(5)
    x, w, b = _f32(rng, 2, 1, 6, 6), _f32(rng, 4, 1, 3, 3), _f32(rng, 4)
    ew, eb = _e(w, True), _e(b, True)
    tw, tb = _t(w, True), _t(b, True)
    F.conv2d(_e(x), ew, eb, padding=1).sum().backward()
    TF.conv2d(_t(x), tw, tb, padding=1).sum().backward()
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), **CONV_TOL)
    np.testing.assert_allclose(eb.grad.numpy(), tb.grad.numpy(), **CONV_TOL)


@pytest.mark.parametrize("nd", [1, 2])
def test_conv_transpose_output_padding_below_dilation_writes_every_position(nd):
    """Stride 1, output_padding < dilation: the last output position reads no input. The direct
    (flipped-kernel) path must still produce it (it once read uninitialised memory there), so
    its geometry yields exactly the transposed output size and the position holds the bias."""
    from ember.ops.conv import ConvGeom, _direct_transpose_geom

    x = ember.ones((1, 2) + (5,) * nd)
    w = ember.ones((2, 3) + (3,) * nd)
    y = getattr(F, f"conv_transpose{nd}d")(
        x, w, ember.full((3,), 0.5), dilation=2, output_padding=1
    )
    assert tuple(y.shape[2:]) == (10,) * nd
    assert (y.numpy()[(...,) + (-1,) * nd] == 0.5).all()
    geom = ConvGeom((1,) * nd, ((0, 0),) * nd, (2,) * nd, 1, (3,) * nd, (10,) * nd, (5,) * nd)
    direct = _direct_transpose_geom(tuple(w.shape), geom)
    assert (
        ConvGeom(
            direct.stride, direct.pad, direct.dilation, 1, direct.kernel, direct.in_size
        ).out_size
        == (10,) * nd
    )


def test_conv_retain_graph_twice():
    rng = _rng(6)
    x, w = _e(_f32(rng, 1, 2, 5, 5), True), _e(_f32(rng, 3, 2, 3, 3), True)
    y = F.conv2d(x, w).sum()
    y.backward(retain_graph=True)
    first = w.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * first, rtol=1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda x, w: F.conv2d(_e(np.zeros((2, 3), np.float32)), w),
            r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input of size: "
            r"\[2, 3\]",
        ),
        (
            lambda x, w: F.conv2d(x, _e(np.zeros((4, 2, 3, 3), np.float32))),
            r"Given groups=1, weight of size \[4, 2, 3, 3\], expected input\[2, 3, 8, 8\] "
            "to have 2 channels, but got 3 channels instead",
        ),
        (
            lambda x, w: F.conv2d(x, w, groups=2),
            r"Given groups=2, weight of size \[4, 3, 3, 3\], expected input\[2, 3, 8, 8\] "
            "to have 6",
        ),
        (
            lambda x, w: F.conv2d(_e(np.zeros((2, 3, 2, 2), np.float32)), w),
            r"Calculated padded input size per channel: \(2 x 2\). Kernel size: \(3 x 3\). Kernel "
            "size can't be greater than actual input size",
        ),
        (lambda x, w: F.conv2d(x.double(), w), "expected scalar type Double but found Float"),
        (
            lambda x, w: F.conv2d(x, w, _e(np.zeros(5, np.float32))),
            r"expected bias to be 1-dimensional with 4 elements, but got bias of size \[5\]",
        ),
        (
            lambda x, w: F.conv2d(x, w, stride=2, padding="same"),
            "padding='same' is not supported for strided convolutions",
        ),
        (lambda x, w: F.conv2d(x, w, padding="foo"), "Invalid padding string: 'foo'"),
        (lambda x, w: F.conv2d(x, w, stride=0), "non-positive stride is not supported"),
        (lambda x, w: F.conv2d(x, w, padding=-1), "negative padding is not supported"),
        (
            lambda x, w: F.conv2d(x, w, stride=(1, 1, 1)),
            "expected stride to be a single integer value or a list of 2 values",
        ),
        (
            lambda x, w: F.conv_transpose2d(
                x, _e(np.zeros((3, 4, 3, 3), np.float32)), output_padding=2
            ),
            "output padding must be smaller than either stride or dilation",
        ),
    ],
)
def test_conv_errors(call, match):
    x = _e(np.zeros((2, 3, 8, 8), np.float32))
    w = _e(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(RuntimeError, match=match):
        call(x, w)


# ---- pooling parity -----------------------------------------------------------------------------
POOL_CASES = [
    ("max_pool2d", (2, 3, 8, 8), {"kernel_size": 2}),
    ("max_pool2d", (2, 3, 8, 8), {"kernel_size": 2, "return_indices": True}),
    (
        "max_pool2d",
        (2, 3, 9, 7),
        {"kernel_size": 3, "stride": 2, "padding": 1, "return_indices": True},
    ),
    (
        "max_pool2d",
        (2, 3, 9, 7),
        {
            "kernel_size": (3, 2),
            "stride": (2, 1),
            "padding": 1,
            "dilation": (2, 1),
            "ceil_mode": True,
            "return_indices": True,
        },
    ),
    ("max_pool2d", (3, 9, 7), {"kernel_size": 2, "ceil_mode": True}),
    (
        "max_pool1d",
        (2, 3, 11),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "dilation": 2,
            "ceil_mode": True,
            "return_indices": True,
        },
    ),
    ("max_pool3d", (2, 2, 5, 6, 7), {"kernel_size": 2, "ceil_mode": True, "return_indices": True}),
    ("avg_pool2d", (2, 3, 8, 8), {"kernel_size": 2}),
    ("avg_pool2d", (2, 3, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    (
        "avg_pool2d",
        (2, 3, 9, 7),
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    ("avg_pool2d", (2, 3, 9, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (
        "avg_pool2d",
        (2, 3, 9, 7),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    (
        "avg_pool2d",
        (2, 3, 9, 7),
        {
            "kernel_size": (3, 2),
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "divisor_override": 5,
        },
    ),
    ("avg_pool1d", (2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (
        "avg_pool3d",
        (2, 2, 5, 6, 7),
        {
            "kernel_size": (2, 3, 2),
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    ("adaptive_avg_pool2d", (2, 3, 9, 7), {"output_size": (4, 3)}),
    ("adaptive_avg_pool2d", (2, 3, 8, 9), {"output_size": (4, 3)}),
    ("adaptive_avg_pool2d", (2, 3, 8, 9), {"output_size": 1}),
    ("adaptive_avg_pool2d", (3, 3, 2), {"output_size": (5, None)}),
    ("adaptive_avg_pool1d", (2, 3, 10), {"output_size": 4}),
    ("adaptive_max_pool2d", (2, 3, 9, 7), {"output_size": (4, 3), "return_indices": True}),
    ("adaptive_max_pool2d", (3, 3, 5), {"output_size": (7, 2)}),
    ("adaptive_max_pool1d", (2, 3, 9), {"output_size": 4, "return_indices": True}),
]


@pytest.mark.parametrize(
    "name,xs,kwargs", POOL_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(POOL_CASES)]
)
def test_pool_parity(name, xs, kwargs):
    _parity(name, [_f32(_rng(0), *xs)], kwargs, EXACT_TOL)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("max_pool2d", {"kernel_size": 2, "return_indices": True}),
        ("max_pool2d", {"kernel_size": 3, "stride": 1, "padding": 1, "return_indices": True}),
        ("adaptive_max_pool2d", {"output_size": (3, 2), "return_indices": True}),
    ],
)
def test_max_pool_ties_pick_the_first_maximum(name, kwargs):
    """Rounded inputs have many ties: PyTorch routes the gradient to the first maximum only."""
    x = np.round(_f32(_rng(2), 2, 2, 6, 6))
    _parity(name, [x], kwargs, EXACT_TOL)


def test_max_pool_nan_wins():
    x = np.array([[[1.0, np.nan, 3.0, np.nan, 2.0, 0.0]]], np.float32)
    ey, ei = F.max_pool1d(_e(x), 3, return_indices=True)
    ty, ti = TF.max_pool1d(_t(x), 3, return_indices=True)
    np.testing.assert_array_equal(ey.numpy(), ty.numpy())
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())
    # 2x2 windows tiling the input (their own path): one NaN, two NaNs, a NaN among ties
    x = np.round(_f32(_rng(3), 1, 2, 4, 6))
    x[0, 0, 0, 1] = x[0, 0, 2, 2] = x[0, 0, 3, 3] = x[0, 1, 1, 4] = np.nan
    ey, ei = F.max_pool2d(_e(x), 2, return_indices=True)
    ty, ti = TF.max_pool2d(_t(x), 2, return_indices=True)
    np.testing.assert_array_equal(ey.numpy(), ty.numpy())
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda x: F.max_pool2d(x, 2, padding=2),
            "pad should be at most half of effective kernel size, but got pad=2, kernel_size=2 and "
            "dilation=1",
        ),
        (lambda x: F.avg_pool2d(x, 2, padding=2), "pad should be at most half"),
        (
            lambda x: F.max_pool2d(x[:, :, :1, :1], 3),
            r"Given input size: \(3x1x1\). Calculated output size: \(3x0x0\). Output size is too "
            "small",
        ),
        (lambda x: F.max_pool2d(x.reshape(-1), 3), "3D or 4D"),
        (lambda x: F.max_pool2d(x, 2, stride=0), "stride should not be zero"),
        (lambda x: F.max_pool2d(x, 0), "kernel size should be greater than zero"),
        (
            lambda x: F.adaptive_avg_pool2d(x.reshape(-1), 3),
            r"adaptive_avg_pool2d\(\): Expected 3D or 4D tensor",
        ),
    ],
)
def test_pool_errors(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(_e(np.zeros((2, 3, 8, 8), np.float32)))


# ---- interpolation, padding, fold, shuffles ------------------------------------------------------
INTERP_CASES = []
for _mode in ("nearest", "nearest-exact"):
    INTERP_CASES += [
        ((2, 3, 5, 7), {"size": (9, 4), "mode": _mode}),
        ((2, 3, 5, 7), {"scale_factor": 2, "mode": _mode}),
        ((2, 3, 5, 7), {"scale_factor": (1.7, 0.6), "mode": _mode}),
        ((2, 3, 6), {"scale_factor": 1 / 3, "mode": _mode}),
        ((2, 2, 3, 4, 5), {"size": (6, 3, 7), "mode": _mode}),
    ]
for _ac in (False, True):
    INTERP_CASES += [
        ((2, 3, 5, 7), {"size": (9, 4), "mode": "bilinear", "align_corners": _ac}),
        ((2, 3, 5, 7), {"scale_factor": 2, "mode": "bilinear", "align_corners": _ac}),
        ((2, 3, 5, 7), {"scale_factor": (1.7, 0.6), "mode": "bilinear", "align_corners": _ac}),
        (
            (2, 3, 5, 7),
            {
                "scale_factor": (1.7, 0.6),
                "mode": "bilinear",
                "align_corners": _ac,
                "recompute_scale_factor": True,
            },
        ),
        ((2, 3, 5, 7), {"size": (1, 1), "mode": "bilinear", "align_corners": _ac}),
        ((2, 3, 6), {"size": 13, "mode": "linear", "align_corners": _ac}),
        ((2, 2, 3, 4, 5), {"size": (6, 3, 7), "mode": "trilinear", "align_corners": _ac}),
        ((2, 3, 5, 7), {"size": (9, 4), "mode": "bicubic", "align_corners": _ac}),
        ((2, 3, 5, 7), {"scale_factor": 2.5, "mode": "bicubic", "align_corners": _ac}),
    ]
INTERP_CASES.append(((2, 3, 5, 7), {"size": (3, 4), "mode": "area"}))


@pytest.mark.parametrize(
    "xs,kwargs", INTERP_CASES, ids=[f"{c[1]['mode']}-{i}" for i, c in enumerate(INTERP_CASES)]
)
def test_interpolate_parity(xs, kwargs):
    _parity("interpolate", [_f32(_rng(0), *xs)], kwargs, INTERP_TOL)


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"size": 4, "scale_factor": 2}, ValueError, "only one of size or scale_factor"),
        ({}, ValueError, "either size or scale_factor should be defined"),
        (
            {"size": 4, "mode": "nearest", "align_corners": True},
            ValueError,
            "align_corners option can only be set with the interpolating modes",
        ),
        (
            {"size": 4, "mode": "linear"},
            NotImplementedError,
            "Got 4D input, but linear mode needs 3D input",
        ),
        (
            {"size": (4, 4, 4)},
            ValueError,
            "Input and output must have the same number of spatial dimensions",
        ),
    ],
)
def test_interpolate_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        F.interpolate(_e(np.zeros((2, 3, 8, 8), np.float32)), **kwargs)


PAD_CASES = []
for _mode in ("reflect", "replicate", "circular"):
    PAD_CASES += [
        ((2, 3, 5, 7), (1, 2, 3, 4), _mode),
        ((3, 5, 7), (1, 2, 3, 4), _mode),
        ((2, 3, 5), (4, 4), _mode),
        ((2, 3, 5), (-2, 3), _mode),
        ((2, 2, 3, 4, 5), (1, 2, 2, 2, 1, 1), _mode),
    ]
PAD_CASES += [
    ((2, 3, 5), (7, 6), "replicate"),
    ((2, 3, 5), (5, 5), "circular"),
    ((2, 3, 5), (2, -3), "circular"),
]


@pytest.mark.parametrize(
    "xs,pad,mode", PAD_CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(PAD_CASES)]
)
def test_pad_parity(xs, pad, mode):
    _parity("pad", [_f32(_rng(0), *xs)], {"pad": pad, "mode": mode}, EXACT_TOL)


def test_pad_constant_and_ops_pad_route():
    _parity("pad", [_f32(_rng(0), 2, 3, 5)], {"pad": (1, 2), "value": 3.0}, EXACT_TOL)
    # ember.pad (ops.shape.pad) sends the non-constant modes to the same implementation
    x = _f32(_rng(1), 2, 3, 5)
    np.testing.assert_array_equal(
        ember.pad(_e(x), (2, 1), mode="reflect").numpy(),
        TF.pad(_t(x), (2, 1), mode="reflect").numpy(),
    )


@pytest.mark.parametrize(
    "xs,pad,mode,err,match",
    [
        (
            (2, 3, 8, 8),
            (4, 4),
            "reflect",
            NotImplementedError,
            "Padding size 2 is not supported for 4D input tensor",
        ),
        (
            (6, 8, 8),
            (9, 9),
            "reflect",
            RuntimeError,
            r"Argument #4: Padding size should be less than the corresponding input dimension, but "
            r"got: padding \(9, 9\) at dimension 2 of input \[6, 8, 8\]",
        ),
        (
            (6, 8, 8),
            (9, 9),
            "circular",
            RuntimeError,
            "Padding value causes wrapping around more than once",
        ),
        ((6, 8, 8), (1, 1), "foo", NotImplementedError, "Unrecognised padding mode foo"),
    ],
)
def test_pad_errors(xs, pad, mode, err, match):
    with pytest.raises(err, match=match):
        F.pad(_e(np.zeros(xs, np.float32)), pad, mode=mode)


@pytest.mark.parametrize(
    "name,xs,kwargs",
    [
        (
            "unfold",
            (2, 3, 8, 7),
            {"kernel_size": (3, 2), "dilation": (1, 2), "padding": 1, "stride": (2, 1)},
        ),
        ("unfold", (3, 8, 7), {"kernel_size": 2}),
        ("fold", (2, 12, 20), {"output_size": (5, 6), "kernel_size": 2}),
        (
            "fold",
            (18, 16),
            {
                "output_size": (7, 8),
                "kernel_size": (3, 2),
                "dilation": (1, 2),
                "padding": 1,
                "stride": 2,
            },
        ),
        ("pixel_shuffle", (2, 12, 3, 4), {"upscale_factor": 2}),
        ("pixel_shuffle", (5, 2, 18, 3, 4), {"upscale_factor": 3}),
        ("pixel_unshuffle", (2, 3, 4, 6), {"downscale_factor": 2}),
    ],
)
def test_fold_and_shuffle_parity(name, xs, kwargs):
    _parity(name, [_f32(_rng(0), *xs)], kwargs, EXACT_TOL)


def test_fold_errors():
    with pytest.raises(
        RuntimeError,
        match="expected size of input's dimension 2 to match the "
        r"calculated number of sliding blocks 4 \* 5 = 20",
    ):
        F.fold(_e(np.zeros((2, 12, 10), np.float32)), (5, 6), 2)
    with pytest.raises(RuntimeError, match="divisible by the product of kernel_size"):
        F.fold(_e(np.zeros((2, 13, 20), np.float32)), (5, 6), 2)
    with pytest.raises(RuntimeError, match="divisible by the square of upscale_factor"):
        F.pixel_shuffle(_e(np.zeros((2, 3, 4, 4), np.float32)), 2)


# ---- modules ------------------------------------------------------------------------------------
def _copy_weights(src, dst):
    """torch module -> ember module through the state dict (names must match exactly)."""
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys


MODULE_CASES = [
    ("Conv1d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 9)),
    ("Conv2d", (3, 4, 3), {}, (2, 3, 8, 8)),
    (
        "Conv2d",
        (4, 6, (3, 2)),
        {"stride": (2, 1), "padding": 1, "dilation": 2, "groups": 2, "bias": False},
        (2, 4, 9, 8),
    ),
    ("Conv2d", (3, 4, 4), {"padding": "same"}, (2, 3, 7, 6)),
    ("Conv2d", (3, 4, 3), {"padding": 2, "padding_mode": "reflect"}, (2, 3, 7, 6)),
    ("Conv2d", (3, 4, 3), {"padding": (1, 2), "padding_mode": "replicate"}, (3, 7, 6)),
    ("Conv2d", (3, 4, 3), {"padding": 1, "padding_mode": "circular"}, (2, 3, 7, 6)),
    ("Conv3d", (2, 3, 2), {"padding": 1}, (2, 2, 4, 5, 3)),
    ("ConvTranspose1d", (3, 4, 3), {"stride": 2, "output_padding": 1}, (2, 3, 5)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "groups": 2}, (2, 4, 5, 4)),
    ("ConvTranspose3d", (2, 3, 2), {"stride": 2}, (2, 2, 3, 2, 3)),
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}, (2, 3, 9)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 8)),
    ("MaxPool2d", (3, 2, 1), {"ceil_mode": True}, (2, 3, 8, 7)),
    ("MaxPool3d", (2,), {}, (2, 2, 4, 4, 4)),
    ("AvgPool1d", (3,), {"stride": 2, "padding": 1}, (2, 3, 9)),
    ("AvgPool2d", (3, 2, 1), {"count_include_pad": False, "ceil_mode": True}, (2, 3, 8, 7)),
    ("AvgPool3d", (2,), {"divisor_override": 3}, (2, 2, 4, 4, 4)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 9)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 8, 7)),
    ("AdaptiveMaxPool2d", (3,), {}, (2, 3, 8, 7)),
    ("Upsample", (), {"scale_factor": 2}, (2, 3, 4, 5)),
    ("Upsample", (), {"size": (7, 3), "mode": "bilinear"}, (2, 3, 4, 5)),
    ("UpsamplingBilinear2d", (), {"scale_factor": 2}, (2, 3, 4, 5)),
    ("UpsamplingNearest2d", (), {"size": 7}, (2, 3, 4, 5)),
    ("Unfold", (2,), {"padding": 1}, (2, 3, 4, 5)),
    ("Fold", ((4, 5), 2), {}, (2, 12, 12)),
    ("ZeroPad2d", ((1, 2, 3, 4),), {}, (2, 3, 4, 5)),
    ("ConstantPad1d", (2, 3.5), {}, (2, 3, 4)),
    ("ConstantPad3d", (1, 2.0), {}, (2, 2, 3, 4, 5)),
    ("ReflectionPad1d", (2,), {}, (2, 3, 4)),
    ("ReflectionPad2d", ((1, 1, 2, 0),), {}, (2, 3, 4, 5)),
    ("ReplicationPad2d", (2,), {}, (3, 4, 5)),
    ("ReplicationPad3d", (1,), {}, (2, 2, 3, 4, 5)),
    ("CircularPad2d", (1,), {}, (2, 3, 4, 5)),
    ("PixelShuffle", (2,), {}, (2, 8, 3, 4)),
    ("PixelUnshuffle", (2,), {}, (2, 2, 4, 6)),
]


@pytest.mark.parametrize(
    "cls,args,kwargs,xs", MODULE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(MODULE_CASES)]
)
def test_module_parity(cls, args, kwargs, xs):
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    em = getattr(nn, cls)(*args, **kwargs)
    assert repr(em) == repr(tm)
    assert sorted(em.state_dict()) == sorted(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(em.state_dict()[k].shape) == tuple(v.shape), k
    _copy_weights(tm, em)
    x = _f32(_rng(0), *xs)
    ex, tx = _e(x, True), _t(x, True)
    ey, ty = em(ex), tm(tx)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), **CONV_TOL)
    g = _f32(_rng(1), *ty.shape)
    ey.backward(_e(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), **CONV_TOL)
    tparams = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), tparams[name].grad.numpy(), err_msg=name, **CONV_TOL
        )


def test_conv_transpose_output_size():
    tm = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    em = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    _copy_weights(tm, em)
    x = _f32(_rng(0), 1, 3, 4, 5)
    for size in [(7, 9), (8, 10), (1, 2, 8, 9)]:
        np.testing.assert_allclose(
            em(_e(x), output_size=size).detach().numpy(),
            tm(_t(x), output_size=size).detach().numpy(),
            **CONV_TOL,
        )
    with pytest.raises(
        ValueError,
        match=r"requested an output size of \[9, 9\], but valid "
        r"sizes range from \[7, 9\] to \[8, 10\]",
    ):
        em(_e(x), output_size=(9, 9))


def test_conv_module_argument_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(
        ValueError, match='Only "zeros" padding mode is supported for ConvTranspose2d'
    ):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")


def test_conv_default_init_matches_pytorch_distribution():
    """kaiming_uniform_(a=sqrt(5)) for the weight and U(+-1/sqrt(fan_in)) for the bias."""
    ember.manual_seed(0)
    m = nn.Conv2d(16, 64, 3)
    bound = 1 / np.sqrt(16 * 9)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # uniform on [-bound, bound]: std bound / sqrt(3); 9216 draws give ~1% relative error
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.05
    assert abs(w.mean()) < 0.05 * bound
    t = nn.ConvTranspose2d(16, 8, 3)  # fan_in of a transposed weight is (out/groups) * k
    assert np.abs(t.bias.detach().numpy()).max() <= 1 / np.sqrt(8 * 9)


def test_module_pickle_roundtrip():
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
        nn.MaxPool2d(2),
        nn.Upsample(scale_factor=2.0),
        nn.ReflectionPad2d(1),
    )
    m2 = pickle.loads(pickle.dumps(m))
    x = _e(_f32(_rng(0), 1, 1, 6, 6))
    np.testing.assert_array_equal(m(x).detach().numpy(), m2(x).detach().numpy())
    assert repr(m) == repr(m2)


def test_cnn_workload_parity():
    """DESIGN.md §7 cnn model (smaller batch): outputs and every parameter gradient."""

    def build(lib):
        return lib.nn.Sequential(
            lib.nn.Conv2d(1, 32, 3, padding=1),
            lib.nn.ReLU(),
            lib.nn.MaxPool2d(2),
            lib.nn.Conv2d(32, 64, 3, padding=1),
            lib.nn.ReLU(),
            lib.nn.MaxPool2d(2),
            lib.nn.Flatten(),
            lib.nn.Linear(3136, 128),
            lib.nn.ReLU(),
            lib.nn.Linear(128, 10),
        )

    tm, em = build(torch), build(ember)
    _copy_weights(tm, em)
    x = _f32(_rng(0), 8, 1, 28, 28)
    labels = _rng(1).integers(0, 10, 8)
    ey = em(_e(x))
    ty = tm(_t(x))
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), **CONV_TOL)
    F.cross_entropy(ey, _e(labels)).backward()
    TF.cross_entropy(ty, torch.tensor(labels)).backward()
    tparams = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), tparams[name].grad.numpy(), err_msg=name, atol=1e-5, rtol=1e-4
        )


def test_non_contiguous_inputs():
    """Strided views (a transposed batch) go through the same window arithmetic."""
    rng = _rng(7)
    base = _f32(rng, 3, 2, 9, 8)
    w, b = _f32(rng, 4, 3, 3, 3), _f32(rng, 4)
    ex = _e(base, True)
    tx = _t(base, True)
    ey = F.max_pool2d(F.conv2d(ex.transpose(0, 1), _e(w), _e(b), padding=1), 2).transpose(2, 3)
    ty = TF.max_pool2d(TF.conv2d(tx.transpose(0, 1), _t(w), _t(b), padding=1), 2).transpose(2, 3)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), **CONV_TOL)
    ey.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), **CONV_TOL)


@pytest.mark.parametrize(
    "xs,kwargs",
    [
        ((2, 3, 5, 7), {"size": (9, 4), "mode": "bilinear"}),
        ((2, 3, 5, 7), {"scale_factor": 2.5, "mode": "bicubic", "align_corners": True}),
        ((2, 3, 5, 7), {"scale_factor": (1.7, 0.6), "mode": "nearest"}),
        ((2, 2, 3, 4, 5), {"size": (6, 3, 7), "mode": "trilinear"}),
    ],
)
def test_interpolate_sparse_path(monkeypatch, xs, kwargs):
    """Long axes (and non-finite arrays) use gathers and the run-by-run adjoint instead of the
    dense matrix product; force that path on small shapes."""
    from ember.ops import resample

    monkeypatch.setattr(resample, "_DENSE_MAX_IN", 0)
    _parity("interpolate", [_f32(_rng(0), *xs)], kwargs, INTERP_TOL)
    x = _f64(_rng(1), 1, 1, *xs[2:])
    assert gradcheck(lambda t: F.interpolate(t, **kwargs), [x], atol=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_interpolate_long_axis_and_non_finite():
    _parity("interpolate", [_f32(_rng(0), 1, 2, 300)], {"size": 451, "mode": "linear"}, INTERP_TOL)
    x = _f32(_rng(1), 1, 1, 4, 5)
    x[0, 0, 1, 2] = np.inf
    x[0, 0, 3, 0] = np.nan
    ey = F.interpolate(_e(x), size=(7, 9), mode="bilinear").numpy()
    ty = TF.interpolate(_t(x), size=(7, 9), mode="bilinear").numpy()
    np.testing.assert_array_equal(np.isnan(ey), np.isnan(ty))
    np.testing.assert_array_equal(np.isinf(ey), np.isinf(ty))
    finite = np.isfinite(ty)
    np.testing.assert_allclose(ey[finite], ty[finite], **INTERP_TOL)
