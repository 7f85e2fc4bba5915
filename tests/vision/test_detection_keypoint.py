"""ember.vision.models.detection's Keypoint R-CNN: the keypoint targets, loss and decoding
against hand loops and closed forms written from torchvision's formulas, torchvision's
state_dict layout and published parameter count, and a few SGD steps plus eval outputs
(``keypoints``, ``keypoints_scores``) on a tiny synthetic set."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision.models import detection as det
from ember.vision.models.detection.backbone_utils import resnet_fpn_backbone
from ember.vision.models.detection.roi_heads import (
    heatmaps_to_keypoints,
    keypointrcnn_loss,
    keypoints_to_heatmap,
)
from ember.vision.models.detection.transform import resize_keypoints
from ember.vision.ops import MultiScaleRoIAlign


def test_keypoints_to_heatmap_matches_hand_loop():
    rois = ember.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 8.0, 8.0]])
    kps = ember.tensor([
        [[10.0, 20.0, 2.0], [30.0, 60.0, 1.0], [29.9, 21.0, 0.0], [5.0, 30.0, 2.0]],
        [[7.99, 0.5, 1.0], [8.0, 4.0, 2.0], [4.0, 8.5, 2.0], [3.3, 3.3, 1.0]],
    ])  # fmt: skip
    size = 4
    got_idx, got_valid = keypoints_to_heatmap(kps, rois, size)
    for r in range(2):
        x1, y1, x2, y2 = rois[r].tolist()
        for k in range(4):
            x, y, vis = kps[r, k].tolist()
            cx = size - 1 if x == x2 else math.floor((x - x1) * size / (x2 - x1))
            cy = size - 1 if y == y2 else math.floor((y - y1) * size / (y2 - y1))
            ok = vis > 0 and 0 <= cx < size and 0 <= cy < size
            assert int(got_valid[r, k]) == int(ok), (r, k)
            assert int(got_idx[r, k]) == (cy * size + cx if ok else 0), (r, k)


def test_heatmaps_to_keypoints_closed_form():
    maps = ember.full((2, 3, 8, 8), -5.0)
    peaks = [(1, 6), (7, 0), (4, 4)]  # (y, x) per keypoint
    for k, (py, px) in enumerate(peaks):
        maps[:, k, py, px] = 5.0
    # RoI 0 spans 8 x 8 pixels (no resize); RoI 1 spans 16.0 x 8.0 (x stretched 2x)
    rois = ember.tensor([[3.0, 4.0, 11.0, 12.0], [0.0, 0.0, 16.0, 8.0]])
    xy, scores = heatmaps_to_keypoints(maps, rois)
    assert tuple(xy.shape) == (2, 3, 3) and tuple(scores.shape) == (2, 3)
    for k, (py, px) in enumerate(peaks):
        np.testing.assert_allclose(xy[0, k].numpy(), [3 + px + 0.5, 4 + py + 0.5, 1.0], 1e-6)
        np.testing.assert_allclose(float(scores[0, k]), 5.0, rtol=1e-5)
        # bicubic upsampling by 2 along x: the peak's cells are 2 px + its neighbours
        assert abs(float(xy[1, k, 0]) - (2 * px + 1)) <= 1.0
        np.testing.assert_allclose(float(xy[1, k, 1]), py + 0.5)


def test_keypoint_loss_matches_cross_entropy_by_hand_and_gradcheck():
    rng = np.random.default_rng(0)
    logits = ember.tensor(rng.normal(size=(3, 2, 4, 4)), requires_grad=True)
    proposals = [ember.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 10.0, 6.0]], dtype=ember.float64),
                 ember.tensor([[4.0, 4.0, 12.0, 12.0]], dtype=ember.float64)]  # fmt: skip
    gt = [ember.tensor([[[1.0, 1.0, 1.0], [7.5, 3.0, 1.0]], [[3.0, 5.0, 0.0], [9.0, 5.9, 2.0]]],
                       dtype=ember.float64),
          ember.tensor([[[5.0, 11.0, 1.0], [20.0, 5.0, 1.0]]], dtype=ember.float64)]  # fmt: skip
    matched = [ember.tensor([0, 1]), ember.tensor([0])]
    loss = keypointrcnn_loss(logits, proposals, gt, matched)
    terms = []
    lg = logits.detach().numpy().reshape(3, 2, 16)
    rois = ember.cat(proposals).numpy()
    kps = np.concatenate([gt[0].numpy(), gt[1].numpy()])
    for r in range(3):
        x1, y1, x2, y2 = rois[r]
        for k in range(2):
            x, y, vis = kps[r, k]
            cx, cy = math.floor((x - x1) * 4 / (x2 - x1)), math.floor((y - y1) * 4 / (y2 - y1))
            if vis > 0 and 0 <= cx < 4 and 0 <= cy < 4:
                row = lg[r, k]
                terms.append(np.log(np.exp(row).sum()) - row[cy * 4 + cx])
    assert len(terms) == 4  # one invisible, one outside its RoI
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-10)
    assert ember.autograd.gradcheck(
        lambda t: keypointrcnn_loss(t, proposals, gt, matched), (logits,)
    )
    # no usable keypoint: 0 that keeps the graph
    gt_none = [g.clone() for g in gt]
    for g in gt_none:
        g[..., 2] = 0
    zero = keypointrcnn_loss(logits, proposals, gt_none, matched)
    assert float(zero) == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="should be equal"):
        keypointrcnn_loss(logits[:, :, :3], proposals, gt, matched)


def test_resize_keypoints():
    kps = ember.tensor([[[10.0, 20.0, 1.0], [0.0, 5.0, 0.0]]])
    out = resize_keypoints(kps, (100, 50), (200, 25))
    np.testing.assert_allclose(out.numpy(), [[[5.0, 40.0, 1.0], [0.0, 10.0, 0.0]]])


def test_state_dict_keys_and_published_parameter_count():
    model = det.KeypointRCNN(resnet_fpn_backbone(backbone_name="resnet50", weights=None), 2)
    n = det.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]
    assert sum(p.numel() for p in model.parameters()) == n == 59137258
    keys = [k for k in model.state_dict() if "keypoint" in k]
    want = [f"roi_heads.keypoint_head.{2 * i}.{w}" for i in range(8) for w in ("weight", "bias")]
    want += [f"roi_heads.keypoint_predictor.kps_score_lowres.{w}" for w in ("weight", "bias")]
    assert keys == want
    assert model.transform.min_size == (640, 672, 704, 736, 768, 800)
    assert len(det.KeypointRCNN_ResNet50_FPN_Weights.DEFAULT.meta["keypoint_names"]) == 17
    # the pre-0.13 (COCO_LEGACY) names of the head's convs load
    head = det.KeypointRCNNHeads(8, (8, 8))
    old = {f"conv_fcn{i + 1}.{w}": ember.full_like(head[2 * i].weight if w == "weight"
                                                   else head[2 * i].bias, float(i + 1))
           for i in range(2) for w in ("weight", "bias")}  # fmt: skip
    head.load_state_dict(old)
    assert float(head[2].bias[0]) == 2.0
    with pytest.raises(ValueError, match="num_keypoints should be None"):
        det.KeypointRCNN(_Tiny(), 2, num_keypoints=5, keypoint_predictor=nn.Identity())


class _Tiny(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1),
                         nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())  # fmt: skip
        self.out_channels = 32


def _tiny_keypoint_rcnn():
    return det.KeypointRCNN(
        _Tiny(), min_size=128, max_size=160,
        rpn_anchor_generator=det.AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        keypoint_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        keypoint_head=det.KeypointRCNNHeads(32, (32, 32)),
        keypoint_predictor=det.KeypointRCNNPredictor(32, 5),
        box_head=det.TwoMLPHead(32 * 7 * 7, 128), box_predictor=det.FastRCNNPredictor(128, 2),
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=200, rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100, box_batch_size_per_image=64, box_detections_per_img=10,
        box_score_thresh=0.0,
    )  # fmt: skip


def _synthetic():
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(2):
        img = rng.uniform(0.0, 0.3, (3, 128, 128 + 8 * i)).astype(np.float32)
        boxes, kps = [], []
        for _ in range(1 + i):
            x1, y1 = rng.integers(4, 60, 2)
            w, h = rng.integers(30, 60, 2)
            img[:, y1 : y1 + h, x1 : x1 + w] += 0.5
            pts = np.stack([rng.uniform(x1, x1 + w, 5), rng.uniform(y1, y1 + h, 5), np.ones(5)], 1)
            for px, py, _ in pts:
                img[:, int(py), int(px)] = 1.0  # a bright dot marks each keypoint
            boxes.append([x1, y1, x1 + w, y1 + h])
            kps.append(pts)
        images.append(ember.tensor(img))
        targets.append({"boxes": ember.tensor(np.array(boxes, np.float32)),
                        "labels": ember.ones(len(boxes), dtype=ember.int64),
                        "keypoints": ember.tensor(np.array(kps, np.float32))})  # fmt: skip
    return images, targets


def test_keypoint_rcnn_trains_and_detects():
    ember.manual_seed(0)
    model = _tiny_keypoint_rcnn()
    images, targets = _synthetic()
    optimizer = ember.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9)  # fmt: skip
    model.train()
    totals = []
    for _ in range(6):
        ember.manual_seed(len(totals))
        loss_dict = model(images, targets)
        assert set(loss_dict) == {"loss_classifier", "loss_box_reg", "loss_keypoint",
                                  "loss_objectness", "loss_rpn_box_reg"}  # fmt: skip
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(float(loss))
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[3:]) < sum(totals[:3]), totals
    with pytest.raises(ValueError, match="'keypoints'"):
        model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    model.eval()
    with ember.no_grad():
        out = model([ember.rand(3, 100, 120), images[1]])
    for o in out:
        assert set(o) == {"boxes", "labels", "scores", "keypoints", "keypoints_scores"}
        n = o["boxes"].shape[0]
        assert n > 0 and tuple(o["keypoints"].shape) == (n, 5, 3)
        assert tuple(o["keypoints_scores"].shape) == (n, 5)
        kp = o["keypoints"]
        # each keypoint lies in its box (original image coordinates), visibility 1
        assert bool((kp[..., 0] >= o["boxes"][:, None, 0] - 1e-3).all())
        assert bool((kp[..., 0] <= o["boxes"][:, None, 2] + 1e-3).all())
        assert bool((kp[..., 1] <= o["boxes"][:, None, 3] + 1e-3).all())
        assert bool((kp[..., 2] == 1).all())


@pytest.mark.full
def test_keypointrcnn_resnet50_fpn_builder_trains():
    ember.manual_seed(0)
    with pytest.warns(UserWarning, match="deprecated since 0.13"):
        model = det.keypointrcnn_resnet50_fpn(pretrained=False, pretrained_backbone=False,
                                              min_size=128, max_size=160)  # fmt: skip
    images, targets = _synthetic()
    for t in targets:
        t["keypoints"] = ember.cat([t["keypoints"]] * 4, dim=1)[:, :17]
    model.train()
    loss = sum(model(images, targets).values())
    loss.backward()
    assert math.isfinite(float(loss))
    model.eval()
    with ember.no_grad():
        out = model(images[:1])
    assert out[0]["keypoints"].shape[1:] == (17, 3)
