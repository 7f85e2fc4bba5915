"""ember.vision.models.detection's single-stage detectors (RetinaNet v1/v2, FCOS): the dense
heads' output layout, losses and location matching against hand loops written from
torchvision's formulas, gradients against finite differences, torchvision's state_dict keys
and published parameter counts, and a few SGD steps plus eval-mode outputs on a tiny
synthetic set."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision import ops
from ember.vision.models import detection as det
from ember.vision.models import resnet50
from ember.vision.models.detection import _utils as det_utils
from ember.vision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from ember.vision.ops.feature_pyramid_network import LastLevelP6P7
from ember.vision.ops.misc import FrozenBatchNorm2d


def _random_boxes(rng, n, lo=0.0, hi=50.0):
    xy = rng.uniform(lo, hi, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], 1)


def _empty_target():
    return {"boxes": ember.zeros((0, 4), dtype=ember.float64),
            "labels": ember.zeros(0, dtype=ember.int64)}  # fmt: skip


# --------------------------------------------------------------------------- heads


def _focal_np(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma


def test_retinanet_head_layout_matches_hand_loop():
    ember.manual_seed(0)
    head = det.RetinaNetHead(8, num_anchors=2, num_classes=3).double()
    bias = head.classification_head.cls_logits.bias.detach().clone()
    feats = [
        ember.randn(2, 8, 4, 5, dtype=ember.float64),
        ember.randn(2, 8, 2, 3, dtype=ember.float64),
    ]
    with ember.no_grad():
        for p in head.parameters():  # distinct outputs per channel and cell
            p.normal_(0.0, 0.3)
        out = head(feats)
    assert tuple(out["cls_logits"].shape) == (2, (20 + 6) * 2, 3)
    assert tuple(out["bbox_regression"].shape) == (2, (20 + 6) * 2, 4)
    # row (level offset + (y W + x) A + a) holds channel a K + k of the conv output at (y, x)
    ch = head.classification_head
    with ember.no_grad():
        raw = ch.cls_logits(ch.conv(feats[1])).numpy()
    row = 20 * 2 + (1 * 3 + 2) * 2 + 1
    np.testing.assert_allclose(out["cls_logits"][1, row].numpy(), raw[1, 3:6, 1, 2])
    # every anchor starts at probability 0.01
    np.testing.assert_allclose(bias.numpy(), -math.log(99), rtol=1e-6)


def test_retinanet_losses_match_hand_loop_and_gradcheck():
    rng = np.random.default_rng(3)
    head = det.RetinaNetHead(8, 1, num_classes=3)
    anchors = [ember.tensor(_random_boxes(rng, 6), dtype=ember.float64) for _ in range(2)]
    targets = [
        {"boxes": ember.tensor(_random_boxes(rng, 2), dtype=ember.float64),
         "labels": ember.tensor([1, 2])},
        _empty_target(),
    ]  # fmt: skip
    matched = [ember.tensor([0, -1, 1, -2, 0, -1]), ember.full((6,), -1, dtype=ember.int64)]
    logits = ember.tensor(rng.normal(size=(2, 6, 3)), requires_grad=True)
    regression = ember.tensor(rng.normal(size=(2, 6, 4)) * 0.3, requires_grad=True)
    outputs = {"cls_logits": logits, "bbox_regression": regression}
    losses = head.compute_loss(targets, outputs, anchors, matched)
    # hand loop: focal loss summed over the anchors not between thresholds / foreground count
    want_cls, want_reg = 0.0, 0.0
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    for i in range(2):
        m = matched[i].numpy()
        cls_total, reg_total = 0.0, 0.0
        for j in range(6):
            if m[j] == -2:
                continue
            t = np.zeros(3)
            if m[j] >= 0:
                t[int(targets[i]["labels"][int(m[j])])] = 1.0
                gt = targets[i]["boxes"][int(m[j]) : int(m[j]) + 1]
                code = coder.encode_single(gt, anchors[i][j : j + 1]).numpy()[0]
                reg_total += np.abs(regression.detach().numpy()[i, j] - code).sum()
            cls_total += _focal_np(logits.detach().numpy()[i, j], t).sum()
        nfg = max(1, int((m >= 0).sum()))
        want_cls += cls_total / nfg / 2
        want_reg += reg_total / nfg / 2
    np.testing.assert_allclose(float(losses["classification"]), want_cls, rtol=1e-10)
    np.testing.assert_allclose(float(losses["bbox_regression"]), want_reg, rtol=1e-10)
    # v2's GIoU box loss and the gradients of both
    head.regression_head._loss_type = "giou"

    def total(lg, rg):
        out = head.compute_loss(
            targets, {"cls_logits": lg, "bbox_regression": rg}, anchors, matched
        )
        return out["classification"] + out["bbox_regression"]

    assert ember.autograd.gradcheck(total, (logits, regression))


def _fcos_match_loop(anchors, gt, n_first, n_last, radius=1.5):
    # torchvision's rule, one (location, box) pair at a time
    out = np.full(len(anchors), -1)
    for i, a in enumerate(anchors):
        cx, cy, size = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, a[2] - a[0]
        lower = 0.0 if i < n_first else 4 * size
        upper = np.inf if i >= len(anchors) - n_last else 8 * size
        best, best_area = -1, None
        for g, b in enumerate(gt):
            gx, gy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            d = [cx - b[0], cy - b[1], b[2] - cx, b[3] - cy]
            ok = max(abs(cx - gx), abs(cy - gy)) < radius * size and min(d) > 0
            ok = ok and lower < max(d) < upper
            area = (b[2] - b[0]) * (b[3] - b[1])
            if ok and (best_area is None or area < best_area):
                best, best_area = g, area
        out[i] = best
    return out


def test_fcos_location_matching_matches_hand_loop():
    model = det.FCOS(_TinyFPN(), 3, min_size=64, max_size=64)
    image_list = det.ImageList(ember.zeros(1, 3, 64, 64), [(64, 64)])
    feats = [ember.zeros(1, 16, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    anchor_gen = det.AnchorGenerator(((4,), (8,), (16,), (32,), (64,)), ((1.0,),) * 5)
    anchors = anchor_gen(image_list, feats)[0]
    per_level = [int(f.shape[2] * f.shape[3]) for f in feats]
    rng = np.random.default_rng(4)
    gt = np.concatenate([_random_boxes(rng, 5, 0, 40), [[2.0, 2.0, 62.0, 60.0], [30, 30, 34, 33]]])
    got = model._match(anchors, ember.tensor(gt, dtype=ember.float32), per_level).numpy()
    want = _fcos_match_loop(anchors.numpy(), gt, per_level[0], per_level[-1])
    np.testing.assert_array_equal(got, want)
    assert (got >= 0).sum() > 10


def test_fcos_losses_match_hand_loop_and_gradcheck():
    rng = np.random.default_rng(5)
    head = det.FCOSHead(32, 1, num_classes=3)
    anchors = [ember.tensor(_random_boxes(rng, 5, 10, 30), dtype=ember.float64) for _ in range(2)]
    targets = [
        {"boxes": ember.tensor([[0.0, 0.0, 60.0, 50.0], [5.0, 8.0, 70.0, 66.0]],
                               dtype=ember.float64),
         "labels": ember.tensor([2, 1])},
        _empty_target(),
    ]  # fmt: skip
    matched = [ember.tensor([0, -1, 1, 1, -1]), ember.full((5,), -1, dtype=ember.int64)]
    logits = ember.tensor(rng.normal(size=(2, 5, 3)), requires_grad=True)
    regression = ember.tensor(rng.uniform(0.2, 1.5, (2, 5, 4)), requires_grad=True)
    ctrness = ember.tensor(rng.normal(size=(2, 5, 1)), requires_grad=True)

    def losses(lg, rg, cn):
        outputs = {"cls_logits": lg, "bbox_regression": rg, "bbox_ctrness": cn}
        return head.compute_loss(targets, outputs, anchors, matched)

    got = losses(logits, regression, ctrness)
    lg, rg, cn = (t.detach().numpy() for t in (logits, regression, ctrness))
    cls, reg, ctr, nfg = _focal_np(lg, np.zeros_like(lg)), 0.0, 0.0, 0
    for j, m in enumerate(matched[0].numpy()):
        if m < 0:
            continue
        nfg += 1
        t = np.zeros(3)
        t[int(targets[0]["labels"][int(m)])] = 1
        cls[0, j] = _focal_np(lg[0, j], t)
        a = anchors[0].numpy()[j]
        b = targets[0]["boxes"].numpy()[m]
        cx, cy, w, h = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, a[2] - a[0], a[3] - a[1]
        d = rg[0, j] * [w, h, w, h]
        pred = ember.tensor([[cx - d[0], cy - d[1], cx + d[2], cy + d[3]]], dtype=ember.float64)
        reg += float(ops.generalized_box_iou_loss(pred, targets[0]["boxes"][m : m + 1]).sum())
        lr, tb = [cx - b[0], b[2] - cx], [cy - b[1], b[3] - cy]
        c = math.sqrt(min(lr) / max(lr) * min(tb) / max(tb))
        p = 1 / (1 + math.exp(-cn[0, j, 0]))
        ctr += -(c * math.log(p) + (1 - c) * math.log(1 - p))
    np.testing.assert_allclose(float(got["classification"]), cls.sum() / nfg, rtol=1e-10)
    np.testing.assert_allclose(float(got["bbox_regression"]), reg / nfg, rtol=1e-10)
    np.testing.assert_allclose(float(got["bbox_ctrness"]), ctr / nfg, rtol=1e-10)
    assert ember.autograd.gradcheck(
        lambda a, b, c: sum(losses(a, b, c).values()), (logits, regression, ctrness)
    )


# --------------------------------------------------------------------------- layouts


def _p6p7_backbone(p6_in: int = 256) -> BackboneWithFPN:
    return _resnet_fpn_extractor(
        resnet50(norm_layer=FrozenBatchNorm2d), 5, returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(p6_in, 256),
    )  # fmt: skip


def test_state_dict_keys_and_published_parameter_counts():
    # torchvision's meta["num_params"] (frozen norms are buffers in v1; v2 trains its norms)
    backbone = _p6p7_backbone()
    retina = det.RetinaNet(backbone, num_classes=91)
    n_retina = det.RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]
    assert sum(p.numel() for p in retina.parameters()) == n_retina == 34014999
    model = det.FCOS(backbone, num_classes=91)
    n_fcos = det.FCOS_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]
    assert sum(p.numel() for p in model.parameters()) == n_fcos == 32269600
    keys = set(retina.state_dict())
    for name in ("backbone.fpn.extra_blocks.p6.weight", "backbone.fpn.extra_blocks.p7.bias",
                 "head.classification_head.conv.3.0.weight",
                 "head.classification_head.cls_logits.bias",
                 "head.regression_head.conv.0.0.bias", "head.regression_head.bbox_reg.weight",
                 "backbone.body.layer4.2.bn3.running_var"):  # fmt: skip
        assert name in keys, name
    assert not any(k.startswith("backbone.body.fc") for k in keys)
    fcos_keys = set(model.state_dict())  # flat towers: conv, GroupNorm, ReLU
    for name in ("head.classification_head.conv.9.weight",
                 "head.classification_head.conv.10.bias",
                 "head.regression_head.bbox_ctrness.weight",
                 "head.regression_head.conv.1.weight"):  # fmt: skip
        assert name in fcos_keys, name
    v2 = det.retinanet_resnet50_fpn_v2()
    n_v2 = det.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1.meta["num_params"]
    assert sum(p.numel() for p in v2.parameters()) == n_v2 == 38198935
    assert v2.backbone.fpn.extra_blocks.p6.in_channels == 2048
    assert isinstance(v2.head.classification_head.conv[0][1], nn.GroupNorm)
    assert v2.head.regression_head._loss_type == "giou"


def test_builders_arguments_and_weight_enums():
    assert (
        det.RetinaNet_ResNet50_FPN_Weights.verify("COCO_V1").meta["_metrics"]["COCO-val2017"][
            "box_map"
        ]
        == 36.4
    )
    assert det.FCOS_ResNet50_FPN_Weights.DEFAULT.url.endswith("fcos_resnet50_fpn_coco-99b0c9b7.pth")
    with pytest.raises(ValueError, match="num_classes"):
        det.retinanet_resnet50_fpn(weights="COCO_V1", num_classes=3)
    # pre-0.13 scripts: retinanet_resnet50_fpn(pretrained=False, pretrained_backbone=False)
    with pytest.warns(UserWarning, match="deprecated since 0.13"):
        model = det.fcos_resnet50_fpn(pretrained=False, pretrained_backbone=False, num_classes=3)
    assert model.head.classification_head.num_classes == 3
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)  # no backbone weights: trainable
    with pytest.raises(ValueError, match="either weights_backbone= or"):
        det.retinanet_resnet50_fpn(pretrained_backbone=False, weights_backbone=None)
    with pytest.raises(TypeError, match="keyword arguments only"):
        det.maskrcnn_resnet50_fpn(False)
    with pytest.raises(ValueError, match="out_channels"):
        det.FCOS(nn.Identity(), 3)
    with pytest.raises(ValueError, match="one anchor per location"):
        det.FCOS(_TinyFPN(), 3, anchor_generator=det.AnchorGenerator(((8, 16),) * 5, ((1.0,),) * 5))


def test_retinanet_loads_pre_0_14_head_keys():
    # the COCO_V1 file names the towers "conv.{0,2,4,6}" (bare convs between ReLUs)
    model = det.RetinaNet(_TinyFPN(), 3, min_size=64, max_size=64, anchor_generator=_anchors())
    sd = model.state_dict()
    old = {}
    for k, v in sd.items():
        for part in ("classification_head", "regression_head"):
            for i in range(4):
                k = k.replace(f"{part}.conv.{i}.0.", f"{part}.conv.{2 * i}.")
        old[k] = v.clone() + 1.0 if "head" in k else v
    assert "head.classification_head.conv.6.weight" in old
    model.load_state_dict(old)
    new = model.state_dict()
    np.testing.assert_array_equal(
        new["head.regression_head.conv.3.0.weight"].numpy(),
        old["head.regression_head.conv.6.weight"].numpy(),
    )


# --------------------------------------------------------------------------- end to end


class _TinyFPN(BackboneWithFPN):
    def __init__(self) -> None:
        body = nn.Sequential()
        body.add_module(
            "stem",
            nn.Sequential(
                nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
            ),
        )
        for i, (cin, cout) in enumerate(((16, 16), (16, 32), (32, 32)), start=2):
            body.add_module(f"layer{i}", nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU()))
        super().__init__(
            body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [16, 32, 32], 32,
            extra_blocks=LastLevelP6P7(32, 32),
        )  # fmt: skip


def _anchors():
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (16, 32, 64, 128, 256))
    return det.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)


def _synthetic(n: int = 2, size: int = 128):
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(n):
        img = rng.uniform(0.0, 0.3, (3, size, size + 8 * i)).astype(np.float32)
        boxes = []
        for _ in range(1 + i):
            x1, y1 = rng.integers(4, size // 2, 2)
            w, h = rng.integers(24, size // 2 - 4, 2)
            img[:, y1 : y1 + h, x1 : x1 + w] += 0.6
            boxes.append([x1, y1, x1 + w, y1 + h])
        images.append(ember.tensor(img))
        targets.append({"boxes": ember.tensor(np.array(boxes, np.float32)),
                        "labels": ember.ones(len(boxes), dtype=ember.int64)})  # fmt: skip
    return images, targets


def _train(model, steps: int, lr: float):
    images, targets = _synthetic()
    optimizer = ember.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9
    )
    model.train()
    history = []
    for _ in range(steps):
        loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({k: float(v) for k, v in loss_dict.items()})
    return history


def _check(history, keys):
    assert all(set(h) == keys for h in history)
    totals = [sum(h.values()) for h in history]
    assert all(math.isfinite(t) for t in totals)
    n = len(totals) // 2
    assert sum(totals[-n:]) < sum(totals[:n]), totals


def _check_eval(model, num_classes):
    model.eval()
    with ember.no_grad():
        out = model([ember.rand(3, 100, 120), _synthetic()[0][1]])
    assert len(out) == 2
    for o, (h, w) in zip(out, [(100, 120), (128, 136)]):
        assert set(o) == {"boxes", "scores", "labels"}
        n = o["boxes"].shape[0]
        assert tuple(o["boxes"].shape) == (n, 4) and o["labels"].dtype == ember.int64
        assert tuple(o["scores"].shape) == (n,) and n <= model.detections_per_img
        if n:
            assert float(o["boxes"][:, 2].max()) <= w and float(o["boxes"][:, 3].max()) <= h
            assert bool(((o["labels"] >= 0) & (o["labels"] < num_classes)).all())
            assert bool((o["scores"][:-1] >= o["scores"][1:]).all())
    return out


@pytest.mark.parametrize("v2", [False, True])
def test_retinanet_trains_and_detects(v2):
    ember.manual_seed(0)
    head = None
    if v2:
        head = det.RetinaNetHead(32, 9, 2, norm_layer=lambda c: nn.GroupNorm(8, c))
        head.regression_head._loss_type = "giou"
    model = det.RetinaNet(_TinyFPN(), 2, min_size=128, max_size=160, anchor_generator=_anchors(),
                          head=head, detections_per_img=50)  # fmt: skip
    _check(_train(model, 6, lr=0.01), {"classification", "bbox_regression"})
    _check_eval(model, 2)


def test_fcos_trains_and_detects():
    ember.manual_seed(0)
    model = det.FCOS(_TinyFPN(), 2, min_size=128, max_size=160, score_thresh=0.05,
                     detections_per_img=50)  # fmt: skip
    _check(_train(model, 6, lr=0.01), {"classification", "bbox_regression", "bbox_ctrness"})
    out = _check_eval(model, 2)
    assert out[1]["boxes"].shape[0] > 0


def test_images_without_objects():
    ember.manual_seed(0)
    images, targets = _synthetic()
    targets[0] = {"boxes": ember.zeros((0, 4)), "labels": ember.zeros(0, dtype=ember.int64)}
    for model in (
        det.RetinaNet(_TinyFPN(), 2, min_size=128, max_size=160, anchor_generator=_anchors()),
        det.FCOS(_TinyFPN(), 2, min_size=128, max_size=160),
    ):
        model.train()
        losses = model(images, targets)
        total = sum(losses.values())
        total.backward()
        assert math.isfinite(float(total))


@pytest.mark.full
@pytest.mark.parametrize("builder", ["retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2",
                                     "fcos_resnet50_fpn"])  # fmt: skip
def test_resnet50_fpn_builders_train(builder):
    ember.manual_seed(0)
    model = getattr(det, builder)(weights_backbone=None, num_classes=2, min_size=160, max_size=192)
    history = _train(model, 4, lr=0.005)
    assert all(math.isfinite(sum(h.values())) for h in history)
    _check_eval(model, 2)
