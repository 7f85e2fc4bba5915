"""ember.vision.models.detection: Faster / Mask R-CNN parts against closed forms and hand
loops written from torchvision's formulas, and torchvision's state_dict layout and checkpoint
names (the end-to-end runs are in test_detection_e2e.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.vision.models import detection as det
from ember.vision.models.detection import _utils as det_utils
from ember.vision.models.detection.backbone_utils import resnet_fpn_backbone
from ember.vision.models.detection.roi_heads import fastrcnn_loss, paste_masks_in_image

# --------------------------------------------------------------------------- box coder


def test_box_coder_known_values_and_round_trip():
    coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = ember.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = ember.tensor([[2.0, 4.0, 22.0, 24.0]])
    (t,) = coder.encode([gt], [proposals])
    # centres (5, 10) -> (12, 14); sizes (10, 20) -> (20, 20)
    want = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]
    np.testing.assert_allclose(t.numpy()[0], want, rtol=1e-6)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (6, 2))
    boxes = ember.tensor(
        np.concatenate([xy, xy + rng.uniform(1, 30, (6, 2))], 1), dtype=ember.float64
    )
    xy = rng.uniform(0, 50, (6, 2))
    refs = ember.tensor(
        np.concatenate([xy, xy + rng.uniform(1, 30, (6, 2))], 1), dtype=ember.float64
    )
    codes = coder.encode_single(refs, boxes)
    back = coder.decode(codes, [boxes])
    assert tuple(back.shape) == (6, 1, 4)
    np.testing.assert_allclose(back[:, 0].numpy(), refs.numpy(), rtol=1e-9, atol=1e-9)


def test_box_coder_clamps_size_deltas():
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    out = coder.decode_single(
        ember.tensor([[0.0, 0.0, 50.0, 50.0]]), ember.tensor([[0.0, 0.0, 16.0, 16.0]])
    )
    # exp(clip) * 16 = 1000: a 1000 x 1000 box about the centre (8, 8)
    np.testing.assert_allclose(out.numpy()[0], [-492.0, -492.0, 508.0, 508.0], rtol=1e-5)


def test_box_coder_decode_gradcheck():
    coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    boxes = ember.tensor([[1.0, 2.0, 8.0, 9.0], [3.0, 1.0, 12.0, 6.0]], dtype=ember.float64)
    codes = ember.tensor(np.random.default_rng(1).normal(size=(2, 8)) * 0.3, dtype=ember.float64)
    codes.requires_grad_(True)
    assert ember.autograd.gradcheck(lambda c: coder.decode_single(c, boxes), (codes,))


# --------------------------------------------------------------------------- matcher, sampler


def test_matcher_thresholds_and_low_quality_matches():
    q = ember.tensor([[0.9, 0.5, 0.2, 0.1], [0.1, 0.6, 0.35, 0.05]])  # 2 gt x 4 predictions
    m = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=False)
    assert m(q).tolist() == [0, -2, -2, -1]
    m = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)
    # gt 1's best prediction (column 1, IoU 0.6) is kept although below 0.7
    assert m(q).tolist() == [0, 1, -2, -1]
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        m(ember.zeros((0, 3)))
    with pytest.raises(ValueError, match="No proposal boxes"):
        m(ember.zeros((2, 0)))


def test_sampler_counts():
    ember.manual_seed(0)
    labels = ember.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    sampler = det_utils.BalancedPositiveNegativeSampler(32, 0.25)
    (pos,), (neg,) = sampler([labels])
    assert int(pos.sum()) == 8 and int(neg.sum()) == 24
    assert bool((labels[pos.bool()] == 1).all()) and bool((labels[neg.bool()] == 0).all())
    (pos,), (neg,) = sampler([ember.tensor([1, 1, 0, 0, 0, -1])])  # few: take what there is
    assert int(pos.sum()) == 2 and int(neg.sum()) == 3


# --------------------------------------------------------------------------- anchors


def test_anchor_generator_matches_formula():
    gen = det.AnchorGenerator(sizes=((32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
    images = det.ImageList(ember.zeros(1, 3, 32, 48), [(32, 48)])
    (anchors,) = gen(images, [ember.zeros(1, 8, 2, 3)])
    base = []
    for r in (0.5, 1.0, 2.0):
        for s in (32, 64):
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            base.append([round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)])
    want = [
        [x * 16 + b[0], y * 16 + b[1], x * 16 + b[2], y * 16 + b[3]]
        for y in range(2) for x in range(3) for b in base
    ]  # fmt: skip
    np.testing.assert_array_equal(anchors.numpy(), np.array(want, dtype=np.float32))
    assert gen.num_anchors_per_location() == [6]


# --------------------------------------------------------------------------- transform


def test_transform_resize_pad_and_postprocess():
    t = det.GeneralizedRCNNTransform(128, 160, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    t.eval()
    img_a, img_b = ember.rand(3, 100, 200), ember.rand(3, 128, 128)
    masks = ember.zeros(1, 100, 200, dtype=ember.uint8)
    targets = [{"boxes": ember.tensor([[20.0, 10.0, 120.0, 60.0]]), "masks": masks}, None]
    il, out_t = t([img_a], [targets[0]])
    # scale = min(128 / 100, 160 / 200) = 0.8: 80 x 160, padded to 96 x 160
    assert il.image_sizes == [(80, 160)] and tuple(il.tensors.shape) == (1, 3, 96, 160)
    np.testing.assert_allclose(out_t[0]["boxes"].numpy(), [[16.0, 8.0, 96.0, 48.0]], rtol=1e-6)
    assert tuple(out_t[0]["masks"].shape) == (1, 80, 160) and "masks" in targets[0]
    assert tuple(targets[0]["masks"].shape) == (1, 100, 200)  # the caller's dict is untouched
    il, _ = t([img_a, img_b])
    assert il.image_sizes == [(80, 160), (128, 128)] and tuple(il.tensors.shape) == (2, 3, 128, 160)
    np.testing.assert_allclose(
        il.tensors[1, :, :128, :128].numpy(), ((img_b - 0.5) / 0.25).numpy(), rtol=1e-6
    )
    assert float(il.tensors[1, :, :, 128:].abs().sum()) == 0.0
    res = t.postprocess(
        [{"boxes": ember.tensor([[16.0, 8.0, 96.0, 48.0]])}], [(80, 160)], [(100, 200)]
    )
    np.testing.assert_allclose(res[0]["boxes"].numpy(), [[20.0, 10.0, 120.0, 60.0]], rtol=1e-6)
    with pytest.raises(TypeError, match="floating type"):
        t([ember.zeros(3, 8, 8, dtype=ember.uint8)])


def test_paste_masks_matches_hand_loop():
    masks = ember.rand(2, 1, 6, 6)
    boxes = ember.tensor([[2.0, 3.0, 12.0, 9.0], [-4.0, 5.0, 7.0, 30.0]])
    out = paste_masks_in_image(masks, boxes, (20, 16)).numpy()
    assert out.shape == (2, 1, 20, 16)
    for i in range(2):
        padded = np.pad(masks.numpy()[i, 0], 1)
        scale = 8 / 6
        x1, y1, x2, y2 = boxes.numpy()[i]
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        b = [int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh)]
        w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
        res = ember.nn.functional.interpolate(
            ember.tensor(padded)[None, None], size=(h, w), mode="bilinear", align_corners=False
        ).numpy()[0, 0]
        want = np.zeros((20, 16), np.float32)
        for y in range(max(b[1], 0), min(b[3] + 1, 20)):
            for x in range(max(b[0], 0), min(b[2] + 1, 16)):
                want[y, x] = res[y - b[1], x - b[0]]
        np.testing.assert_allclose(out[i, 0], want, rtol=1e-6)


def test_fastrcnn_loss_closed_form_and_gradcheck():
    logits = ember.tensor(
        np.random.default_rng(2).normal(size=(3, 3)), dtype=ember.float64, requires_grad=True
    )
    deltas = ember.tensor(
        np.random.default_rng(3).normal(size=(3, 12)) * 0.05,
        dtype=ember.float64,
        requires_grad=True,
    )
    labels = [ember.tensor([2, 0]), ember.tensor([1])]
    targets = [ember.zeros(2, 4, dtype=ember.float64), ember.zeros(1, 4, dtype=ember.float64)]
    cls, box = fastrcnn_loss(logits, deltas, labels, targets)
    lg = logits.detach().numpy()
    lse = np.log(np.exp(lg).sum(1))
    np.testing.assert_allclose(float(cls), np.mean(lse - lg[[0, 1, 2], [2, 0, 1]]), rtol=1e-9)
    d = deltas.detach().numpy().reshape(3, 3, 4)
    sel = np.abs(np.concatenate([d[0, 2], d[2, 1]]))
    beta = 1 / 9
    want = np.where(sel < beta, 0.5 * sel**2 / beta, sel - 0.5 * beta).sum() / 3
    np.testing.assert_allclose(float(box), want, rtol=1e-9)
    assert ember.autograd.gradcheck(
        lambda a, b: sum(fastrcnn_loss(a, b, labels, targets)), (logits, deltas)
    )


# --------------------------------------------------------------------------- state_dict layout


def _resnet50_keys(prefix: str) -> list[str]:
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = [f"{prefix}conv1.weight"] + [f"{prefix}bn1.{k}" for k in bn]
    for li, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"{prefix}layer{li}.{b}."
            for c in (1, 2, 3):
                keys += [f"{p}conv{c}.weight"] + [f"{p}bn{c}.{k}" for k in bn]
            if b == 0:
                keys += [f"{p}downsample.0.weight"] + [f"{p}downsample.1.{k}" for k in bn]
    return keys


def _expected_keys(mask: bool) -> list[str]:
    keys = _resnet50_keys("backbone.body.")
    for kind in ("inner_blocks", "layer_blocks"):
        keys += [f"backbone.fpn.{kind}.{i}.0.{w}" for i in range(4) for w in ("weight", "bias")]
    keys += [
        f"rpn.head.{m}.{w}"
        for m in ("conv.0.0", "cls_logits", "bbox_pred")
        for w in ("weight", "bias")
    ]
    keys += [
        f"roi_heads.{m}.{w}"
        for m in ("box_head.fc6", "box_head.fc7", "box_predictor.cls_score",
                  "box_predictor.bbox_pred")
        for w in ("weight", "bias")
    ]  # fmt: skip
    if mask:
        keys += [f"roi_heads.mask_head.{i}.0.{w}" for i in range(4) for w in ("weight", "bias")]
        keys += [
            f"roi_heads.mask_predictor.{m}.{w}"
            for m in ("conv5_mask", "mask_fcn_logits") for w in ("weight", "bias")
        ]  # fmt: skip
    return keys


@pytest.fixture(scope="module")
def frozen_backbone():
    # resnet_fpn_backbone's default FrozenBatchNorm2d is what the COCO checkpoints hold
    return resnet_fpn_backbone(backbone_name="resnet50", weights=None)


@pytest.mark.parametrize(
    "cls, mask, n_params", [(det.FasterRCNN, False, 41755286), (det.MaskRCNN, True, 44401393)]
)
def test_state_dict_keys_match_torchvision(frozen_backbone, cls, mask, n_params):
    model = cls(frozen_backbone, num_classes=91)
    sd = model.state_dict()
    want = _expected_keys(mask)
    assert sorted(sd) == sorted(want)
    # torchvision's published parameter count (meta["num_params"]; frozen norms are buffers)
    assert sum(p.numel() for p in model.parameters()) == n_params
    # checkpoints written before torchvision 0.13 use the old names of the RPN and mask convs
    old = dict(sd)
    old["rpn.head.conv.weight"] = old.pop("rpn.head.conv.0.0.weight")
    old["rpn.head.conv.bias"] = old.pop("rpn.head.conv.0.0.bias")
    if mask:
        old["roi_heads.mask_head.mask_fcn1.weight"] = old.pop("roi_heads.mask_head.0.0.weight")
    model.load_state_dict(old)


def test_coco_v1_checkpoint_layout_loads_through_the_builder(frozen_backbone, monkeypatch):
    # the COCO_V1 files predate torchvision 0.13's key names; nothing downloads here, so the
    # download is replaced by a state_dict of that layout (the loading itself is real)
    src = det.MaskRCNN(frozen_backbone, num_classes=91)
    sd = dict(src.state_dict())
    for kind in ("weight", "bias"):
        sd[f"rpn.head.conv.{kind}"] = sd.pop(f"rpn.head.conv.0.0.{kind}")
        for i in range(4):
            sd[f"roi_heads.mask_head.mask_fcn{i + 1}.{kind}"] = sd.pop(
                f"roi_heads.mask_head.{i}.0.{kind}"
            )
    weights = det.MaskRCNN_ResNet50_FPN_Weights
    monkeypatch.setattr(weights, "get_state_dict", lambda self, **kwargs: dict(sd))
    model = det.maskrcnn_resnet50_fpn(weights="DEFAULT")
    assert isinstance(model.backbone.body.bn1, ember.vision.ops.FrozenBatchNorm2d)
    assert model.backbone.body.bn1.eps == 0.0  # overwrite_eps for the COCO_V1 entries
    assert ember.equal(model.roi_heads.mask_head[3][0].weight, src.roi_heads.mask_head[3][0].weight)
    with pytest.raises(ValueError, match="num_classes"):
        det.maskrcnn_resnet50_fpn(weights="DEFAULT", num_classes=2)
