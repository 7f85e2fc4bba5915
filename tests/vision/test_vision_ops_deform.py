"""torchvision.ops' deformable convolution and position-sensitive RoI ops on ember, checked
against per-element loops written from torchvision's CPU kernels, against convolution where the
offsets vanish, and by float64 gradchecks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ember
from ember.vision.ops import (
    DeformConv2d,
    PSRoIAlign,
    PSRoIPool,
    deform_conv2d,
    ps_roi_align,
    ps_roi_pool,
)

RNG = np.random.default_rng(0)


def _t(a, grad=False):
    return ember.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# --- loops from torchvision's kernels --------------------------------------------------------


def _deform_bilinear(img, y, x):
    h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    val = 0.0
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy <= h - 1 and 0 <= xx <= w - 1:
                val += wy * wx * img[yy, xx]
    return val


def _deform_loop(x, off, wgt, bias, stride, pad, dil, mask):
    n, c, h, w = x.shape
    co, cig, kh, kw = wgt.shape
    groups, og = c // cig, off.shape[1] // (2 * kh * kw)
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, co, ho, wo))
    for b in range(n):
        cols = np.zeros((c, kh * kw, ho, wo))
        for ch in range(c):
            g = ch // (c // og)
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oy in range(ho):
                        for ox in range(wo):
                            dy = off[b, g * 2 * kh * kw + 2 * k, oy, ox]
                            dx = off[b, g * 2 * kh * kw + 2 * k + 1, oy, ox]
                            y = oy * stride[0] - pad[0] + i * dil[0] + dy
                            xx = ox * stride[1] - pad[1] + j * dil[1] + dx
                            v = _deform_bilinear(x[b, ch], y, xx)
                            if mask is not None:
                                v *= mask[b, g * kh * kw + k, oy, ox]
                            cols[ch, k, oy, ox] = v
        for o in range(co):
            gi = o // (co // groups)
            block = cols[gi * cig : (gi + 1) * cig].reshape(cig * kh * kw, ho, wo)
            out[b, o] = np.tensordot(wgt[o].reshape(-1), block, axes=1) + bias[o]
    return out


def _align_bilinear(img, y, x):
    h, w = img.shape
    if not (-1.0 <= y <= h and -1.0 <= x <= w):
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * img[y0, x0]
        + hy * lx * img[y0, x1]
        + ly * hx * img[y1, x0]
        + ly * lx * img[y1, x1]
    )


def _ps_align_loop(x, rois, ph, pw, scale, ratio):
    c_out = x.shape[1] // (ph * pw)
    out = np.zeros((len(rois), c_out, ph, pw))
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * scale - 0.5, y1 * scale - 0.5
        rw, rh = x2 * scale - 0.5 - sx, y2 * scale - 0.5 - sy
        bh, bw = rh / ph, rw / pw
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        for co in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    img = x[int(b), (co * ph + i) * pw + j]
                    s = sum(
                        _align_bilinear(img, sy + i * bh + (iy + 0.5) * bh / gh,
                                        sx + j * bw + (ix + 0.5) * bw / gw)
                        for iy in range(gh) for ix in range(gw)
                    )  # fmt: skip
                    out[r, co, i, j] = s / (gh * gw)
    return out


def _c_round(v):
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def _ps_pool_loop(x, rois, ph, pw, scale):
    _, c, h, w = x.shape
    c_out = c // (ph * pw)
    out = np.zeros((len(rois), c_out, ph, pw))
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh = _c_round(x1 * scale), _c_round(y1 * scale)
        rw = max(_c_round(x2 * scale) - sw, 1)
        rh = max(_c_round(y2 * scale) - sh, 1)
        for co in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    hs = min(max(math.floor(i * rh / ph) + sh, 0), h - 1)
                    he = min(max(math.ceil((i + 1) * rh / ph) + sh, 0), h - 1)
                    ws = min(max(math.floor(j * rw / pw) + sw, 0), w - 1)
                    we = min(max(math.ceil((j + 1) * rw / pw) + sw, 0), w - 1)
                    if he <= hs or we <= ws:
                        continue
                    out[r, co, i, j] = x[int(b), (co * ph + i) * pw + j, hs:he, ws:we].mean()
    return out


# --- deformable convolution ------------------------------------------------------------------

CASES = [  # (C_in, C_out, k, stride, pad, dil, groups, offset groups)
    (4, 6, 3, 1, 1, 1, 1, 1),
    (4, 6, 3, 2, 1, 2, 2, 2),
    (2, 3, (2, 3), (1, 2), (0, 1), 1, 1, 2),
]


@pytest.mark.parametrize("case", CASES)
def test_deform_conv2d_matches_torchvisions_kernel_and_conv_at_zero_offset(case):
    ci, co, k, stride, pad, dil, groups, og = case
    kh, kw = (k, k) if isinstance(k, int) else k
    st, pd, dl = (np.broadcast_to(v, 2).tolist() for v in (stride, pad, dil))
    x = RNG.standard_normal((2, ci, 7, 8))
    wgt = RNG.standard_normal((co, ci // groups, kh, kw))
    bias = RNG.standard_normal(co)
    ho = (7 + 2 * pd[0] - dl[0] * (kh - 1) - 1) // st[0] + 1
    wo = (8 + 2 * pd[1] - dl[1] * (kw - 1) - 1) // st[1] + 1
    # offsets up to two pixels, so samples leave the image on the borders
    off = RNG.uniform(-2, 2, (2, 2 * og * kh * kw, ho, wo))
    mask = RNG.uniform(0, 1, (2, og * kh * kw, ho, wo))
    args = dict(stride=stride, padding=pad, dilation=dil)
    ours = deform_conv2d(_t(x), _t(off), _t(wgt), _t(bias), mask=_t(mask), **args)
    ref = _deform_loop(x, off, wgt, bias, st, pd, dl, mask)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-10)
    plain = deform_conv2d(_t(x), _t(np.zeros_like(off)), _t(wgt), _t(bias), **args)
    conv = torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(wgt), torch.tensor(bias), st, pd, dl, groups
    )
    np.testing.assert_allclose(plain.numpy(), conv.numpy(), rtol=1e-10, atol=1e-10)


def test_deform_conv2d_integer_offsets_shift_the_image():
    # every tap moved one row down: the convolution of the image shifted up by one row
    x = RNG.standard_normal((1, 2, 6, 6))
    wgt = RNG.standard_normal((3, 2, 3, 3))
    off = np.zeros((1, 18, 6, 6))
    off[:, 0::2] = 1.0
    ours = deform_conv2d(_t(x), _t(off), _t(wgt), padding=1).numpy()
    shifted = np.zeros_like(x)
    shifted[:, :, :-1] = x[:, :, 1:]
    ref = torch.nn.functional.conv2d(torch.tensor(shifted), torch.tensor(wgt), padding=1)
    # (row 0 differs: its top taps now read image row 0 where the shifted image has padding)
    np.testing.assert_allclose(ours[:, :, 1:], ref.numpy()[:, :, 1:], rtol=1e-10, atol=1e-10)


def test_deform_conv2d_gradcheck_through_input_offset_mask_weight_bias():
    x = _t(RNG.standard_normal((1, 2, 4, 4)), True)
    # offsets away from integers: the bilinear weights are smooth there
    off = _t(RNG.uniform(-1.4, 1.4, (1, 2 * 9, 2, 2)) + 0.25, True)
    mask = _t(RNG.uniform(0.2, 1, (1, 9, 2, 2)), True)
    wgt = _t(RNG.standard_normal((2, 2, 3, 3)), True)
    bias = _t(RNG.standard_normal(2), True)

    def f(x, off, mask, wgt, bias):
        return deform_conv2d(x, off, wgt, bias, stride=1, padding=0, mask=mask)

    assert ember.autograd.gradcheck(f, (x, off, mask, wgt, bias), eps=1e-6, atol=1e-5)


def test_deform_conv2d_layer_and_bad_shapes():
    ember.manual_seed(0)
    layer = DeformConv2d(4, 8, 3, padding=1, groups=2)
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert tuple(layer.weight.shape) == (8, 2, 3, 3)
    assert (
        repr(layer)
        == "DeformConv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=2)"
    )
    offsets = ember.nn.Conv2d(4, 18, 3, padding=1)  # the usual offset predictor
    x = ember.randn(2, 4, 6, 6)
    out = layer(x, offsets(x))
    out.square().mean().backward()
    assert out.shape == (2, 8, 6, 6)
    assert offsets.weight.grad is not None and layer.weight.grad is not None
    with pytest.raises(ValueError, match=r"offset must have shape \(2, 18, 6, 6\)"):
        layer(x, ember.zeros(2, 18, 5, 6))
    with pytest.raises(ValueError, match="offset_groups dividing"):
        layer(x, ember.zeros(2, 17, 6, 6))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 9, 6, 6\)"):
        layer(x, ember.zeros(2, 18, 6, 6), ember.ones(2, 8, 6, 6))


# --- position-sensitive RoI ops --------------------------------------------------------------

ROIS = np.array(
    [[0, 1.0, 1.5, 9.2, 8.0], [1, 0.0, 0.0, 11.0, 9.0], [0, 3.3, 2.1, 4.0, 7.7], [1, -2, -1, 5, 4]]
)


@pytest.mark.parametrize("ratio", [-1, 2])
def test_ps_roi_align_matches_torchvisions_kernel(ratio):
    x = RNG.standard_normal((2, 3 * 3 * 2, 10, 12))
    ours = ps_roi_align(_t(x), _t(ROIS), (3, 2), spatial_scale=0.8, sampling_ratio=ratio)
    np.testing.assert_allclose(ours.numpy(), _ps_align_loop(x, ROIS, 3, 2, 0.8, ratio), atol=1e-12)
    boxes = [_t(ROIS[ROIS[:, 0] == b, 1:]) for b in (0, 1)]
    layer = PSRoIAlign((3, 2), 0.8, ratio)
    listed = layer(_t(x), boxes).numpy()
    order = np.argsort(ROIS[:, 0], kind="stable")
    np.testing.assert_allclose(listed, ours.numpy()[order], atol=1e-12)


def test_ps_roi_pool_matches_torchvisions_kernel():
    x = RNG.standard_normal((2, 2 * 2 * 2, 10, 12))
    ours = PSRoIPool(2, 0.5)(_t(x), _t(ROIS))
    np.testing.assert_allclose(ours.numpy(), _ps_pool_loop(x, ROIS, 2, 2, 0.5), atol=1e-12)


def test_ps_roi_gradients_and_errors():
    x = _t(RNG.standard_normal((2, 8, 4, 5)), True)
    rois = _t(ROIS * 0.4)
    assert ember.autograd.gradcheck(lambda t: ps_roi_align(t, rois, 2, 1.0, 2), (x,))
    assert ember.autograd.gradcheck(lambda t: ps_roi_pool(t, rois, 2, 1.0), (x,))
    with pytest.raises(ValueError, match="multiple of output_size"):
        ps_roi_align(ember.zeros(1, 6, 4, 4), ember.zeros(1, 5), (2, 2))
    assert ps_roi_pool(ember.zeros(1, 8, 4, 4), ember.zeros(0, 5), 2).shape == (0, 2, 2, 2)
