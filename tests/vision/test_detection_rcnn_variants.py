"""Faster R-CNN v2, Mask R-CNN v2 and the MobileNetV3-Large-FPN Faster R-CNNs: torchvision's
published parameter counts, its builder rules (frozen batch norms and trainable stages with
pretrained weights, the 320 variant's defaults), the v2 box head's layout against a NumPy
loop, and a few SGD steps plus eval-mode outputs on a tiny synthetic set."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision.models import detection as det
from ember.vision.models.detection.backbone_utils import _mobilenet_extractor
from ember.vision.models.mobilenetv3 import mobilenet_v3_large
from ember.vision.ops.misc import FrozenBatchNorm2d


def _count(model, skip_batch_norm=False) -> int:
    n = sum(p.numel() for p in model.parameters())
    if skip_batch_norm:  # torchvision counts these models with frozen (buffer-only) norms
        n -= sum(
            p.numel()
            for m in model.backbone.modules()
            if isinstance(m, nn.BatchNorm2d)
            for p in m.parameters()
        )
    return n


@pytest.mark.parametrize(
    "name, n, frozen",
    [
        ("fasterrcnn_mobilenet_v3_large_fpn", 19386354, True),
        ("fasterrcnn_resnet50_fpn_v2", 43712278, False),
        ("maskrcnn_resnet50_fpn_v2", 46359409, False),
    ],
)
def test_parameter_counts_are_torchvisions(name, n, frozen):
    model = getattr(det, name)(weights_backbone=None)
    assert _count(model, skip_batch_norm=frozen) == n
    enum = {
        "fasterrcnn_mobilenet_v3_large_fpn": det.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        "fasterrcnn_resnet50_fpn_v2": det.FasterRCNN_ResNet50_FPN_V2_Weights,
        "maskrcnn_resnet50_fpn_v2": det.MaskRCNN_ResNet50_FPN_V2_Weights,
    }[name]
    assert enum.DEFAULT.meta["num_params"] == n
    with pytest.raises(ValueError, match="num_classes"):
        getattr(det, name)(weights="DEFAULT", num_classes=3)


def test_v2_box_head_is_four_batch_normed_convs_and_a_linear():
    ember.manual_seed(0)
    head = det.FastRCNNConvFCHead((8, 3, 3), [6, 6], [5], norm_layer=nn.BatchNorm2d).eval()
    names = [k for k, _ in head.state_dict().items()]
    assert names[:3] == ["0.0.weight", "0.1.weight", "0.1.bias"] and "3.weight" in names
    x = ember.randn(2, 8, 3, 3)
    with ember.no_grad():
        out = head(x).numpy()
    a = x.numpy()
    for i in range(2):  # conv 3x3 (padding 1, no bias) -> batch norm (eval: identity) -> ReLU
        w = head[i][0].weight.detach().numpy()
        p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(2, 3))
        a = np.maximum(np.einsum("nchwij,ocij->nohw", win, w) / np.sqrt(1 + 1e-5), 0)
    lin = head[3]
    want = np.maximum(
        a.reshape(2, -1) @ lin.weight.detach().numpy().T + lin.bias.detach().numpy(), 0
    )
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_mobilenet_fpn_extractor_freezes_the_early_stages():
    backbone = mobilenet_v3_large(norm_layer=FrozenBatchNorm2d)
    body = _mobilenet_extractor(backbone, True, trainable_layers=3)
    # stages start at features 0, 2, 4, 7, 13, 16; the last three train
    trainable = {n.split(".")[0] for n, p in body.body.named_parameters() if p.requires_grad}
    assert min(int(i) for i in trainable) == 7
    assert body.out_channels == 256 and list(body.body.return_layers) == ["13", "16"]
    with pytest.raises(ValueError, match="Trainable layers"):
        _mobilenet_extractor(mobilenet_v3_large(), True, trainable_layers=7)
    plain = _mobilenet_extractor(mobilenet_v3_large(), False, trainable_layers=6).eval()
    assert plain.out_channels == 256 and tuple(plain(ember.rand(1, 3, 32, 32)).shape) == (
        1, 256, 1, 1,
    )  # fmt: skip


def test_mobilenet_320_defaults_train_and_predict():
    ember.manual_seed(0)
    model = det.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None, num_classes=3)
    assert model.transform.min_size == (320,) and model.transform.max_size == 640
    assert model.rpn._pre_nms_top_n["testing"] == 150 and model.rpn.score_thresh == 0.05
    big = det.fasterrcnn_mobilenet_v3_large_fpn(weights_backbone=None, num_classes=3, min_size=96)
    assert big.rpn._pre_nms_top_n["testing"] == 1000  # torchvision's default, unlike the 320
    model.transform.min_size, model.transform.max_size = (96,), 128  # small and fast
    images = [ember.rand(3, 96, 112), ember.rand(3, 80, 96)]
    targets = [
        {"boxes": ember.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": ember.tensor([1])},
        {"boxes": ember.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": ember.tensor([2])},
    ]
    opt = ember.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    for _ in range(2):
        losses = model(images, targets)
        assert set(losses) == {
            "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg",
        }  # fmt: skip
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    model.eval()
    with ember.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_legacy_pretrained_flags_pick_the_coco_and_imagenet_entries(monkeypatch):
    seen = {}

    def fake(weights, *a, **k):  # record the entries instead of downloading them
        seen.setdefault("w", weights)
        raise RuntimeError("stop")

    from ember.vision.models.detection import _rcnn_variants

    monkeypatch.setattr(_rcnn_variants, "_mobilenet_fpn", fake)
    with pytest.warns(UserWarning, match="pretrained"), pytest.raises(RuntimeError, match="stop"):
        det.fasterrcnn_mobilenet_v3_large_fpn(pretrained=True)
    assert seen["w"] is det.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
