"""ember.vision.ops against reference loops written from torchvision's kernels (per-sample
bilinear RoIAlign, per-bin max RoIPool, greedy NMS), closed forms for the box utilities, and
float64 gradchecks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck
from ember.vision import ops

RNG = np.random.default_rng(0)


def _random_boxes(n: int, size: float = 20.0) -> np.ndarray:
    xy = RNG.uniform(0, size, (n, 2))
    wh = RNG.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _ref_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = w * h
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union
    return out


def test_box_area_iou_giou_diou_ciou_match_closed_forms():
    a, b = _random_boxes(5), _random_boxes(4)
    ta, tb = ember.tensor(a), ember.tensor(b)
    np.testing.assert_allclose(ops.box_area(ta).numpy(), (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))
    iou = _ref_iou(a, b)
    np.testing.assert_allclose(ops.box_iou(ta, tb).numpy(), iou, rtol=1e-12)
    # enclosing box
    ex = np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 0], b[None, :, 0])
    ey = np.maximum(a[:, None, 3], b[None, :, 3]) - np.minimum(a[:, None, 1], b[None, :, 1])
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = iou * (area_a[:, None] + area_b[None]) / (1 + iou)
    union = area_a[:, None] + area_b[None] - inter
    giou = iou - (ex * ey - union) / (ex * ey)
    np.testing.assert_allclose(ops.generalized_box_iou(ta, tb).numpy(), giou, rtol=1e-10)
    cx = lambda z: (z[:, 0] + z[:, 2]) / 2  # noqa: E731
    cy = lambda z: (z[:, 1] + z[:, 3]) / 2  # noqa: E731
    dist = (cx(a)[:, None] - cx(b)[None]) ** 2 + (cy(a)[:, None] - cy(b)[None]) ** 2
    diou = iou - dist / (ex**2 + ey**2 + 1e-7)
    np.testing.assert_allclose(ops.distance_box_iou(ta, tb).numpy(), diou, rtol=1e-10)
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    v = 4 / math.pi**2 * (np.arctan(wa / ha)[:, None] - np.arctan(wb / hb)[None]) ** 2
    ciou = diou - v / (1 - iou + v + 1e-7) * v
    np.testing.assert_allclose(ops.complete_box_iou(ta, tb).numpy(), ciou, rtol=1e-10)


def test_box_iou_gradients_flow():
    a = ember.tensor(_random_boxes(3), requires_grad=True)
    b = ember.tensor(_random_boxes(2))
    assert gradcheck(lambda x: ops.generalized_box_iou(x, b), (a,))
    # complete IoU holds alpha constant (no_grad, as the paper): not its true derivative
    assert gradcheck(lambda x: ops.distance_box_iou(x, b), (a,))


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_convert_round_trips(fmt):
    a = ember.tensor(_random_boxes(6))
    there = ops.box_convert(a, "xyxy", fmt)
    if fmt == "xywh":
        np.testing.assert_allclose(there[:, 2].numpy(), (a[:, 2] - a[:, 0]).numpy())
    else:
        np.testing.assert_allclose(there[:, 0].numpy(), ((a[:, 0] + a[:, 2]) / 2).numpy())
    back = ops.box_convert(there, fmt, "xyxy")
    np.testing.assert_allclose(back.numpy(), a.numpy(), rtol=1e-12)
    other = "cxcywh" if fmt == "xywh" else "xywh"
    np.testing.assert_allclose(
        ops.box_convert(there, fmt, other).numpy(), ops.box_convert(a, "xyxy", other).numpy()
    )
    with pytest.raises(ValueError, match="in_fmt='xyzw'"):
        ops.box_convert(a, "xyzw", "xyxy")


def test_clip_remove_small_and_masks_to_boxes():
    b = ember.tensor([[-5.0, 2.0, 30.0, 50.0], [1.0, 1.0, 1.5, 9.0]])
    clipped = ops.clip_boxes_to_image(b, (40, 20))
    assert clipped.tolist() == [[0.0, 2.0, 20.0, 40.0], [1.0, 1.0, 1.5, 9.0]]
    assert ops.remove_small_boxes(b, 1.0).tolist() == [0]
    masks = ember.zeros(2, 6, 7)
    masks[0, 1:4, 2:6] = 1
    masks[1, 5, 0] = 1
    assert ops.masks_to_boxes(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 5.0, 0.0, 5.0]]


def _ref_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(_ref_iou(boxes[[i]], boxes[[j]])[0, 0] <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.7])
def test_nms_and_batched_nms_match_greedy_reference(thr):
    boxes = _random_boxes(40, size=30.0)
    scores = RNG.uniform(size=40)
    kept = ops.nms(ember.tensor(boxes, dtype=ember.float32), ember.tensor(scores), thr)
    assert kept.dtype == ember.int64
    assert kept.tolist() == _ref_nms(boxes.astype(np.float32).astype(np.float64), scores, thr)
    cats = RNG.integers(0, 3, 40)
    got = ops.batched_nms(ember.tensor(boxes), ember.tensor(scores), ember.tensor(cats), thr)
    ref = []
    for c in range(3):
        idx = np.nonzero(cats == c)[0]
        ref += [int(idx[k]) for k in _ref_nms(boxes[idx], scores[idx], thr)]
    assert got.tolist() == sorted(ref, key=lambda i: -scores[i])
    empty = ops.batched_nms(ember.zeros(0, 4), ember.zeros(0), ember.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == ember.int64
    with pytest.raises(ValueError, match="scores must have shape"):
        ops.nms(ember.tensor(boxes), ember.tensor(scores[:3]), 0.5)


def _bilinear(img, y, x):
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    return (
        (1 - ly) * (1 - lx) * img[yl, xl]
        + (1 - ly) * lx * img[yl, xh]
        + ly * (1 - lx) * img[yh, xl]
        + ly * lx * img[yh, xh]
    )


def _ref_roi_align(x, rois, ph, pw, scale, ratio, aligned):
    out = np.zeros((len(rois), x.shape[1], ph, pw))
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for c in range(x.shape[1]):
            for i in range(ph):
                for j in range(pw):
                    acc = 0.0
                    for iy in range(gh):
                        yy = sy + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = sx + j * bw + (ix + 0.5) * bw / gw
                            acc += _bilinear(x[int(b), c], yy, xx)
                    out[k, c, i, j] = acc / count
    return out


@pytest.mark.parametrize("ratio, aligned", [(-1, False), (2, False), (-1, True), (1, True)])
def test_roi_align_matches_reference_and_gradcheck(ratio, aligned):
    x = RNG.standard_normal((2, 3, 9, 11))
    rois = np.array(
        [
            [0, 1.2, 0.5, 7.9, 6.3],
            [1, -2.0, -1.5, 4.0, 3.0],  # partly outside the image
            [0, 3.0, 3.0, 3.4, 3.2],  # smaller than a pixel
            [1, 8.0, 5.0, 14.0, 12.0],  # past the far edges
            [0, 0.0, 0.0, 10.0, 8.0],
        ]
    )
    got = ops.roi_align(ember.tensor(x), ember.tensor(rois), (3, 4), 0.8, ratio, aligned)
    ref = _ref_roi_align(x, rois, 3, 4, 0.8, ratio, aligned)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    # gradients on one channel of a smaller map (each check re-runs the op per input element)
    xt = ember.tensor(x[:, :1, :6, :7], requires_grad=True)
    assert gradcheck(lambda t: ops.roi_align(t, ember.tensor(rois), 2, 0.8, ratio, aligned), (xt,))
    # a list of per-image boxes is the same as the (K, 5) form
    as_list = [ember.tensor(rois[rois[:, 0] == i, 1:]) for i in range(2)]
    order = np.argsort(rois[:, 0], kind="stable")
    np.testing.assert_allclose(
        ops.RoIAlign((3, 4), 0.8, ratio, aligned)(ember.tensor(x), as_list).numpy(), ref[order]
    )


def _ref_roi_pool(x, rois, ph, pw, scale):
    def cround(v):
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)

    n, c, h, w = x.shape
    out = np.zeros((len(rois), c, ph, pw))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh, ew, eh = (cround(v * scale) for v in (x1, y1, x2, y2))
        bh, bw = max(eh - sh + 1, 1) / ph, max(ew - sw + 1, 1) / pw
        for i in range(ph):
            hs = min(max(math.floor(i * bh) + sh, 0), h)
            he = min(max(math.ceil((i + 1) * bh) + sh, 0), h)
            for j in range(pw):
                ws = min(max(math.floor(j * bw) + sw, 0), w)
                we = min(max(math.ceil((j + 1) * bw) + sw, 0), w)
                if he > hs and we > ws:
                    out[k, :, i, j] = x[int(b), :, hs:he, ws:we].max(axis=(1, 2))
    return out


def test_roi_pool_matches_reference_and_gradcheck():
    x = RNG.standard_normal((2, 2, 8, 10))
    rois = np.array([[0, 1, 1, 6, 5], [1, -3, 2, 4, 20], [0, 7.4, 6.6, 9.5, 7.5], [1, 0, 0, 9, 7]])
    got = ops.roi_pool(ember.tensor(x), ember.tensor(rois), (3, 2), 0.9)
    np.testing.assert_allclose(got.numpy(), _ref_roi_pool(x, rois, 3, 2, 0.9))
    xt = ember.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: ops.RoIPool(2, 0.9)(t, ember.tensor(rois)), (xt,))
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        ops.roi_pool(ember.tensor(x), ember.tensor(rois[:, :4]), 2)
    bad = rois.copy()
    bad[0, 0] = 2  # the input has images 0 and 1
    for op in (ops.roi_pool, ops.roi_align):
        with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\), got \[0, 1, 2\]"):
            op(ember.tensor(x), ember.tensor(bad), 2)


def test_multiscale_roi_align_pools_each_box_from_its_level():
    feats = {
        "feat1": ember.randn(1, 2, 32, 32),  # stride 4 of a 128 x 128 image
        "feat2": ember.randn(1, 2, 16, 16),
        "feat3": ember.randn(1, 2, 8, 8),
        "ignored": ember.randn(1, 2, 4, 4),
    }
    boxes = [ember.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 120.0, 120.0], [5, 5, 60, 60.0]])]
    pool = ops.MultiScaleRoIAlign(["feat1", "feat2", "feat3"], 3, 2, canonical_scale=64)
    out = pool(feats, boxes, [(128, 128)])
    assert out.shape == (3, 2, 3, 3)
    assert pool.scales == [0.25, 0.125, 0.0625]
    levels = pool.map_levels(boxes).tolist()
    for k, lvl in enumerate(levels):
        name = f"feat{lvl + 1}"
        ref = ops.roi_align(feats[name], [boxes[0][k : k + 1]], 3, pool.scales[lvl], 2)
        np.testing.assert_allclose(out[k].numpy(), ref[0].numpy(), rtol=1e-6)
    assert sorted(set(levels)) == levels or len(set(levels)) > 1


def test_fpn_shapes_keys_and_extra_blocks():
    fpn = ops.FeaturePyramidNetwork(
        [4, 8, 16], 6, extra_blocks=ops.feature_pyramid_network.LastLevelMaxPool()
    )
    keys = list(fpn.state_dict())
    assert keys[:2] == ["inner_blocks.0.0.weight", "inner_blocks.0.0.bias"]
    assert "layer_blocks.2.0.weight" in keys
    x = {
        "a": ember.randn(1, 4, 16, 16),
        "b": ember.randn(1, 8, 8, 8),
        "c": ember.randn(1, 16, 4, 4),
    }
    out = fpn(x)
    assert list(out) == ["a", "b", "c", "pool"]
    assert [tuple(v.shape) for v in out.values()] == [
        (1, 6, 16, 16),
        (1, 6, 8, 8),
        (1, 6, 4, 4),
        (1, 6, 2, 2),
    ]
    sum(v.sum() for v in out.values()).backward()
    assert fpn.inner_blocks[0][0].weight.grad is not None


def test_frozen_batchnorm_equals_eval_batchnorm_and_loads_its_state():
    bn = ember.nn.BatchNorm2d(3)
    bn.running_mean.copy_(ember.randn(3))
    bn.running_var.copy_(ember.rand(3) + 0.5)
    bn.weight.data.copy_(ember.randn(3))
    bn.eval()
    frozen = ops.FrozenBatchNorm2d(3)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    x = ember.randn(2, 3, 4, 4)
    np.testing.assert_allclose(frozen(x).numpy(), bn(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert repr(frozen) == "FrozenBatchNorm2d(3, eps=1e-05)"
    assert not list(frozen.parameters())


def test_mlp_conv_blocks_and_permute_layouts():
    mlp = ops.MLP(4, [8, 8, 2], norm_layer=ember.nn.LayerNorm, dropout=0.1)
    assert [type(m).__name__ for m in mlp] == [
        "Linear", "LayerNorm", "ReLU", "Dropout", "Linear", "LayerNorm", "ReLU", "Dropout",
        "Linear", "Dropout",
    ]  # fmt: skip
    assert mlp(ember.randn(3, 4)).shape == (3, 2)
    block = ops.Conv2dNormActivation(3, 5, kernel_size=(3, 5), dilation=(1, 2))
    assert block[0].padding == (1, 4) and block(ember.randn(1, 3, 9, 9)).shape == (1, 5, 9, 9)
    assert ops.Conv3dNormActivation(2, 4)(ember.randn(1, 2, 4, 4, 4)).shape == (1, 4, 4, 4, 4)
    assert ops.Permute([0, 2, 3, 1])(ember.randn(1, 2, 3, 4)).shape == (1, 3, 4, 2)


def test_sigmoid_focal_loss_formula():
    logits, targets = RNG.standard_normal((4, 5)), (RNG.uniform(size=(4, 5)) > 0.5) * 1.0
    p = 1 / (1 + np.exp(-logits))
    ce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    p_t = p * targets + (1 - p) * (1 - targets)
    ref = (0.25 * targets + 0.75 * (1 - targets)) * ce * (1 - p_t) ** 2
    got = ops.sigmoid_focal_loss(ember.tensor(logits), ember.tensor(targets), reduction="sum")
    np.testing.assert_allclose(got.item(), ref.sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="reduction"):
        ops.sigmoid_focal_loss(ember.tensor(logits), ember.tensor(targets), reduction="avg")


def test_stochastic_depth_and_drop_block():
    x = ember.ones(400, 3)
    ember.manual_seed(0)
    y = ops.stochastic_depth(x, 0.25, "row")
    rows = y[:, 0].numpy()
    assert set(np.unique(rows)) <= {np.float32(0.0), np.float32(1 / 0.75)}
    assert abs((rows == 0).mean() - 0.25) < 0.08
    assert ops.stochastic_depth(x, 0.5, "batch", training=False) is x
    layer = ops.DropBlock2d(0.2, 3).train()
    out = layer(ember.ones(4, 2, 16, 16))
    dropped = (out == 0).float().mean().item()
    assert 0.05 < dropped < 0.4
    assert abs(out.mean().item() - 1.0) < 1e-4  # survivors rescaled to keep the mean
    assert layer.eval()(ember.ones(1, 1, 4, 4)).eq(1).all()
    with pytest.raises(ValueError, match="4 dimensional"):
        ops.drop_block2d(ember.ones(2, 3), 0.1, 3)
