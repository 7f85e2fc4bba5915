"""ConvNeXt Small/Base/Large and EfficientNet B1-B7: torchvision's parameter counts, weights
entries and the per-size settings (each checked against torchvision 0.28's own models with the
same weights while building them: outputs to 1.2e-6)."""

from __future__ import annotations

import pytest

import ember
from ember import nn
from ember.vision import models

# torchvision's published counts (its meta["num_params"])
PARAMS = {
    "convnext_small": 50223688,
    "convnext_base": 88591464,
    "convnext_large": 197767336,
    "efficientnet_b1": 7794184,
    "efficientnet_b2": 9109994,
    "efficientnet_b3": 12233232,
    "efficientnet_b4": 19341616,
    "efficientnet_b5": 30389784,
    "efficientnet_b6": 43040704,
    "efficientnet_b7": 66347960,
}
_CI = {"efficientnet_b1", "efficientnet_b5"}  # the others build for seconds each: full runs


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in _CI else [pytest.mark.full]) for n in PARAMS]
)
def test_parameter_counts_are_torchvisions(name):
    model = models.get_model(name, weights=None)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    enum = models.get_model_weights(name)
    assert enum.IMAGENET1K_V1.meta["num_params"] == PARAMS[name]
    assert enum.IMAGENET1K_V1.url.startswith(f"https://download.pytorch.org/models/{name}")


def test_weights_entries_and_presets():
    assert models.EfficientNet_B1_Weights.DEFAULT is models.EfficientNet_B1_Weights.IMAGENET1K_V2
    preset = models.EfficientNet_B7_Weights.DEFAULT.transforms()
    assert (preset.crop_size, preset.resize_size) == ([600], [600])
    preset = models.ConvNeXt_Base_Weights.DEFAULT.transforms()
    assert (preset.crop_size, preset.resize_size) == ([224], [232])
    assert models.efficientnet_b4.__name__ == "efficientnet_b4"
    assert "efficientnet_b6" in models.list_models(module=models)


def test_per_size_settings():
    b5 = models.efficientnet_b5(num_classes=3)
    bn = next(m for m in b5.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (0.001, 0.01)  # B5-B7 keep the ported checkpoints' norms
    b2 = models.efficientnet_b2(num_classes=3)
    assert b2.classifier[0].p == 0.3 and b2.classifier[1].out_features == 3
    bn = next(m for m in b2.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)
    small = models.convnext_small(stochastic_depth_prob=0.0, num_classes=2)
    assert len(small.features[5]) == 27 and small.classifier[2].out_features == 2


def test_legacy_pretrained_flag_needs_no_download_for_false():
    with pytest.warns(UserWarning, match="pretrained"):
        model = models.convnext_small(pretrained=False, num_classes=4)
    assert model.classifier[2].out_features == 4


VIT = {
    "vit_b_32": 88224232,
    "vit_l_16": 304326632,
    "vit_l_32": 306535400,
    "vit_h_14": 632045800,
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "vit_b_32" else [pytest.mark.full]) for n in VIT]
)
def test_vit_parameter_counts_are_torchvisions(name):
    model = models.get_model(name)
    assert sum(p.numel() for p in model.parameters()) == VIT[name]
    enum = models.get_model_weights(name)
    linear = getattr(enum, "IMAGENET1K_V1", None) or enum.IMAGENET1K_SWAG_LINEAR_V1
    assert linear.meta["num_params"] == VIT[name]


@pytest.mark.full
def test_vit_swag_entries_are_for_their_image_size():
    # the end-to-end SWAG entry is for 384 px images: more position embeddings
    e2e = models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1
    model = models.vit_b_16(image_size=e2e.meta["min_size"][0])
    assert sum(p.numel() for p in model.parameters()) == e2e.meta["num_params"]
    assert models.ViT_H_14_Weights.DEFAULT is models.ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1
    with pytest.raises(TypeError):  # as torchvision's, vit_h_14 takes no pretrained=
        models.vit_h_14(pretrained=True)


def test_interpolate_embeddings_matches_torch_resampling():
    import numpy as np
    import torch

    from ember.vision.models.vision_transformer import interpolate_embeddings

    rng = np.random.default_rng(0)
    pos = rng.standard_normal((1, 1 + 4 * 4, 8)).astype(np.float32)  # a 4 x 4 grid + class token
    head = rng.standard_normal((3, 8)).astype(np.float32)
    state = {"encoder.pos_embedding": ember.tensor(pos), "heads.head.weight": ember.tensor(head)}
    out = interpolate_embeddings(24, 4, state, "bicubic", reset_heads=True)
    assert list(out) == ["encoder.pos_embedding"]  # resized: the head is left out
    grid = torch.tensor(pos[:, 1:]).permute(0, 2, 1).reshape(1, 8, 4, 4)
    grid = torch.nn.functional.interpolate(grid, size=6, mode="bicubic", align_corners=True)
    ref = torch.cat([torch.tensor(pos[:, :1]), grid.reshape(1, 8, 36).permute(0, 2, 1)], 1)
    np.testing.assert_allclose(out["encoder.pos_embedding"].numpy(), ref.numpy(), atol=1e-6)
    assert state["encoder.pos_embedding"].shape == (1, 37, 8)  # in place, as torchvision
    same = interpolate_embeddings(24, 4, state, reset_heads=True)  # nothing to resize
    assert same is state and "heads.head.weight" in same
    bad = {"encoder.pos_embedding": ember.zeros(1, 1 + 15, 8)}
    with pytest.raises(ValueError, match="not a perfect square"):
        interpolate_embeddings(24, 4, bad)
