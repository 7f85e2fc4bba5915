"""ember.vision.models.detection's SSD: the default boxes and SSD's matcher against hand loops
of the paper's formulas, the loss with hard negative mining against a NumPy version, the VGG
feature extractor's layout, torchvision's state_dict keys and published parameter count, and
a few SGD steps plus eval-mode outputs on a tiny synthetic set."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision.models import detection as det
from ember.vision.models.detection import _utils as det_utils
from ember.vision.models.detection.image_list import ImageList
from ember.vision.models.detection.ssd import SSDFeatureExtractorVGG, _vgg_extractor
from ember.vision.models.vgg import _CFGS, make_layers

_SSD300 = dict(
    aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    steps=[8, 16, 32, 64, 100, 300],
)


def _default_boxes_loop(aspect_ratios, scales, steps, grids, image):
    # the paper's section 2.2, one cell and one box at a time, (x1, y1, x2, y2) in pixels
    out = []
    for k, f in enumerate(grids):
        s_k, s_next = scales[k], scales[k + 1]
        wh = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
        for a in aspect_ratios[k]:
            wh += [
                (s_k * math.sqrt(a), s_k / math.sqrt(a)),
                (s_k / math.sqrt(a), s_k * math.sqrt(a)),
            ]
        f_k = image / steps[k] if steps else f
        for i in range(f):
            for j in range(f):
                cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
                for w, h in wh:
                    w, h = min(w, 1.0), min(h, 1.0)
                    out.append([(cx - w / 2) * image, (cy - h / 2) * image,
                                (cx + w / 2) * image, (cy + h / 2) * image])  # fmt: skip
    return np.array(out)


def test_default_boxes_ssd300_match_hand_loop():
    gen = det.DefaultBoxGenerator(**_SSD300)
    assert gen.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    grids = (38, 19, 10, 5, 3, 1)
    image_list = ImageList(ember.zeros(2, 3, 300, 300), [(300, 300), (300, 280)])
    boxes = gen(image_list, [ember.zeros(1, 1, g, g) for g in grids])
    assert len(boxes) == 2 and tuple(boxes[0].shape) == (8732, 4)  # the paper's 8732 boxes
    want = _default_boxes_loop(_SSD300["aspect_ratios"], _SSD300["scales"], _SSD300["steps"],
                               grids, 300)  # fmt: skip
    np.testing.assert_allclose(boxes[0].numpy(), want, rtol=1e-5, atol=1e-3)
    # no steps: the map size places the centres; default scales 0.15 .. 0.9 then 1
    gen = det.DefaultBoxGenerator([[2], [3]])
    np.testing.assert_allclose(gen.scales, [0.15, 0.9, 1.0])
    got = gen(ImageList(ember.zeros(1, 3, 64, 64), [(64, 64)]),
              [ember.zeros(1, 1, 4, 4), ember.zeros(1, 1, 2, 2)])[0]  # fmt: skip
    want = _default_boxes_loop([[2], [3]], [0.15, 0.9, 1.0], None, (4, 2), 64)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="same length"):
        det.DefaultBoxGenerator([[2], [2]], steps=[8])


def test_ssd_matcher_gives_every_ground_truth_its_best_box():
    iou = ember.tensor([[0.9, 0.55, 0.1, 0.2], [0.1, 0.3, 0.2, 0.4]])
    # column 0: 0.9 >= 0.5 -> gt 0; column 1: gt 0; column 2: below; column 3: gt 1's best box
    np.testing.assert_array_equal(det_utils.SSDMatcher(0.5)(iou).numpy(), [0, 0, -1, 1])
    # a box that is the best of a ground truth goes to it even if another overlaps it more
    iou = ember.tensor([[0.6, 0.2], [0.55, 0.1]])
    np.testing.assert_array_equal(det_utils.SSDMatcher(0.5)(iou).numpy(), [1, -1])


def test_ssd_loss_matches_numpy_hard_negative_mining():
    rng = np.random.default_rng(0)
    model = det.SSD(_Tiny(), det.DefaultBoxGenerator([[2], [2, 3], [2]]), (64, 64), 4)
    n_boxes = 12
    xy = rng.uniform(0, 40, (n_boxes, 2))
    anchors = [ember.tensor(np.concatenate([xy, xy + rng.uniform(5, 20, (n_boxes, 2))], 1))] * 2
    targets = [{"boxes": ember.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 5.0, 40.0, 30.0]]),
                "labels": ember.tensor([3, 1])},
               {"boxes": ember.zeros((0, 4)),
                "labels": ember.zeros(0, dtype=ember.int64)}]  # fmt: skip
    matched = [ember.tensor([0, -1, -1, 1, -1, -1, 0, -1, -1, -1, -1, -1]),
               ember.full((n_boxes,), -1, dtype=ember.int64)]  # fmt: skip
    logits = ember.tensor(rng.normal(size=(2, n_boxes, 4)).astype(np.float32))
    regression = ember.tensor(rng.normal(size=(2, n_boxes, 4)).astype(np.float32) * 0.5)
    got = model.compute_loss(
        targets, {"cls_logits": logits, "bbox_regression": regression}, anchors, matched
    )
    lg = logits.numpy().astype(np.float64)
    ce = np.log(np.exp(lg).sum(-1, keepdims=True)) - lg  # (image, box, class): -log softmax
    coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    cls_total, box_total, n_pos = 0.0, 0.0, 0
    for i in range(2):
        m = matched[i].numpy()
        pos = np.where(m >= 0)[0]
        n_pos += len(pos)
        labels = np.zeros(n_boxes, int)
        labels[pos] = targets[i]["labels"].numpy()[m[pos]]
        loss = ce[i, np.arange(n_boxes), labels]
        neg = [j for j in np.argsort(-loss, kind="stable") if labels[j] == 0][: 3 * len(pos)]
        cls_total += loss[pos].sum() + loss[neg].sum()
        for j in pos:
            code = coder.encode_single(targets[i]["boxes"][m[j] : m[j] + 1], anchors[i][j : j + 1])
            d = np.abs(regression.numpy()[i, j] - code.numpy()[0])
            box_total += np.where(d < 1, 0.5 * d**2, d - 0.5).sum()
    np.testing.assert_allclose(float(got["classification"]), cls_total / n_pos, rtol=1e-5)
    np.testing.assert_allclose(float(got["bbox_regression"]), box_total / n_pos, rtol=1e-5)


def test_vgg_extractor_layout_keys_and_parameter_count():
    features = make_layers(_CFGS["D"])  # vgg16's features, without the 120M-weight classifier
    vgg = nn.Module()
    vgg.features = features
    extractor = _vgg_extractor(vgg, False, 4)
    assert isinstance(extractor, SSDFeatureExtractorVGG)
    assert not extractor.features[0].weight.requires_grad  # first stage frozen (4 of 5 train)
    assert extractor.features[5].weight.requires_grad
    assert extractor.features[16].ceil_mode  # pool3: 75 -> 38 at 300 px
    assert len(extractor.extra) == 5 and float(extractor.scale_weight[0]) == 20.0
    extractor.out_channels = [512, 1024, 512, 256, 256, 256]  # skip retrieve_out_channels' pass
    model = det.SSD(extractor, det.DefaultBoxGenerator(**_SSD300), (300, 300), 91)
    n = sum(p.numel() for p in model.parameters())
    assert n == det.SSD300_VGG16_Weights.COCO_V1.meta["num_params"] == 35641826
    keys = set(model.state_dict())
    for name in ("backbone.scale_weight", "backbone.features.21.weight",
                 "backbone.extra.0.1.weight", "backbone.extra.0.5.bias",
                 "backbone.extra.0.7.1.weight", "backbone.extra.0.7.3.bias",
                 "backbone.extra.4.2.weight", "head.classification_head.module_list.5.weight",
                 "head.regression_head.module_list.0.bias"):  # fmt: skip
        assert name in keys, name
    assert len(keys) == 71
    head = model.head.regression_head.module_list
    assert [m.out_channels for m in head] == [16, 24, 24, 24, 16, 16]


def test_retrieve_out_channels_and_arguments():
    assert det_utils.retrieve_out_channels(_Tiny().train(), (64, 48)) == [16, 32, 32]
    with pytest.raises(ValueError, match="do not match"):
        det.SSD(_Tiny(), det.DefaultBoxGenerator([[2], [2]]), (64, 64), 3)
    with pytest.raises(TypeError, match="DefaultBoxGenerator"):
        det.SSD(_Tiny(), det.AnchorGenerator(), (64, 64), 3)
    w = det.SSD300_VGG16_Weights.verify("COCO_V1")
    assert w.url.endswith("ssd300_vgg16_coco-b556d3b4.pth")
    assert w.meta["_metrics"]["COCO-val2017"]["box_map"] == 25.1


# --------------------------------------------------------------------------- end to end


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                               nn.ReLU())  # fmt: skip
        self.b = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        a = self.a(x)
        b = self.b(a)
        return {"0": a, "1": b, "2": self.c(b)}


def _synthetic():
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(2):
        img = rng.uniform(0.0, 0.3, (3, 128, 140)).astype(np.float32)
        boxes = []
        for _ in range(1 + i):
            x1, y1 = rng.integers(4, 60, 2)
            w, h = rng.integers(24, 60, 2)
            img[:, y1 : y1 + h, x1 : x1 + w] += 0.6
            boxes.append([x1, y1, x1 + w, y1 + h])
        images.append(ember.tensor(img))
        targets.append({"boxes": ember.tensor(np.array(boxes, np.float32)),
                        "labels": ember.tensor([1 + j % 2 for j in range(len(boxes))])},
                       )  # fmt: skip
    return images, targets


def test_ssd_trains_and_detects():
    ember.manual_seed(0)
    model = det.SSD(_Tiny(), det.DefaultBoxGenerator([[2], [2, 3], [2]]), (128, 128), 3,
                    detections_per_img=50)  # fmt: skip
    images, targets = _synthetic()
    optimizer = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    totals = []
    for _ in range(6):
        loss_dict = model(images, targets)
        assert set(loss_dict) == {"bbox_regression", "classification"}
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(float(loss))
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[3:]) < sum(totals[:3]), totals
    # an image without objects: every box is a negative, none mined (no positives)
    empty = [
        targets[1],
        {"boxes": ember.zeros((0, 4)), "labels": ember.zeros(0, dtype=ember.int64)},
    ]
    assert math.isfinite(float(sum(model(images, empty).values())))
    model.eval()
    with ember.no_grad():
        out = model([ember.rand(3, 100, 120), images[1]])
    for o, (h, w) in zip(out, [(100, 120), (128, 140)]):
        assert set(o) == {"boxes", "scores", "labels"}
        n = o["boxes"].shape[0]
        assert 0 < n <= 50 and tuple(o["scores"].shape) == (n,)
        assert float(o["boxes"][:, 2].max()) <= w and float(o["boxes"][:, 3].max()) <= h
        assert bool(((o["labels"] >= 1) & (o["labels"] < 3)).all())  # never the background
        assert bool((o["scores"][:-1] >= o["scores"][1:]).all())


@pytest.mark.full
def test_ssd300_vgg16_builder_trains():
    ember.manual_seed(0)
    with pytest.warns(UserWarning, match="size of the model is already fixed"):
        model = det.ssd300_vgg16(weights_backbone=None, num_classes=3, size=(512, 512))
    images, targets = _synthetic()
    optimizer = ember.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(2):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert math.isfinite(float(loss))
    model.eval()
    with ember.no_grad():
        out = model(images[:1])
    assert set(out[0]) == {"boxes", "scores", "labels"}


def test_ssdlite320_mobilenet_v3_large_layout_and_a_step():
    ember.manual_seed(0)
    model = det.ssdlite320_mobilenet_v3_large(weights_backbone=None)
    n = sum(p.numel() for p in model.parameters())
    assert n == det.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["num_params"] == 3440060
    keys = set(model.state_dict())
    for name in ("backbone.features.0.0.0.weight", "backbone.features.1.0.1.0.weight",
                 "backbone.extra.3.2.1.running_var",
                 "head.classification_head.module_list.5.1.weight",
                 "head.regression_head.module_list.0.0.1.bias"):  # fmt: skip
        assert name in keys, name
    assert model.anchor_generator.num_anchors_per_location() == [6] * 6
    assert model.transform.fixed_size == (320, 320) and model.score_thresh == 0.001
    # fine-tuning as users do: a new classification head for 3 classes, one SGD step
    in_channels = det_utils.retrieve_out_channels(model.backbone, (320, 320))
    assert in_channels == [672, 480, 512, 256, 256, 128]
    model.head.classification_head = det.SSDLiteClassificationHead(
        in_channels, [6] * 6, 3, nn.BatchNorm2d
    )
    images, targets = _synthetic()
    model.train()
    loss = sum(model(images, targets).values())
    loss.backward()
    assert math.isfinite(float(loss))
    model.eval()
    with ember.no_grad():
        out = model(images[:1])
    assert bool((out[0]["labels"] < 3).all()) and out[0]["boxes"].shape[0] <= 300
