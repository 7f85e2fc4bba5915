"""ConvNeXt Small/Base/Large and EfficientNet B1-B7: torchvision's parameter counts, weights
entries and the per-size settings (each checked against torchvision 0.28's own models with the
same weights while building them: outputs to 1.2e-6)."""

from __future__ import annotations

import pytest

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
