"""DenseNet, SqueezeNet, Inception v3, ShuffleNet V2, MNASNet and RegNet in ember.vision.models.

Structure: parameter counts equal torchvision's published ``num_params`` and builders take
torchvision's arguments. Numerics: small PyTorch modules written here with torchvision's
module names (a Fire module, the ShuffleNet / MNASNet units, a RegNet block with
squeeze-excitation, a dense block, Inception's asymmetric-kernel blocks, SqueezeNet 1.1 whole)
get the same weights as ember's, and eval outputs plus one training step's gradients must agree.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
import torch.nn as tnn

import ember
import ember.nn.functional as F
from ember.vision import models
from ember.vision.models import densenet, inception, mnasnet, regnet, shufflenetv2

sys.path.insert(0, os.path.dirname(__file__))
from zoo_twins import (  # noqa: E402
    TDenseBlock,
    TInceptionE,
    TLRASPPHead,
    TMnasUnit,
    TRegNetBlock,
    TShuffleUnit,
    TSqueezeNet11,
    TSwin,
    _seq,
    _torch_block_params,
    t_deeplab_head,
)

# torchvision's published parameter counts (the weights enums' meta["num_params"])
PARAMS = {
    "densenet121": 7978856,
    "densenet161": 28681000,
    "densenet169": 14149480,
    "densenet201": 20013928,
    "squeezenet1_0": 1248424,
    "squeezenet1_1": 1235496,
    "inception_v3": 27161264,
    "shufflenet_v2_x0_5": 1366792,
    "shufflenet_v2_x1_0": 2278604,
    "shufflenet_v2_x1_5": 3503624,
    "shufflenet_v2_x2_0": 7393996,
    "mnasnet0_5": 2218512,
    "mnasnet0_75": 3170208,
    "mnasnet1_0": 4383312,
    "mnasnet1_3": 6282256,
    "regnet_y_400mf": 4344144,
    "regnet_y_800mf": 6432512,
    "regnet_y_1_6gf": 11202430,
    "regnet_x_400mf": 5495976,
    "regnet_x_800mf": 7259656,
    "regnet_x_1_6gf": 9190136,
    "swin_t": 28288354,
    "swin_s": 49606258,
    "mobilenet_v3_large": 5483032,
}
SEGMENTATION = {  # with the auxiliary head, as torchvision's COCO checkpoints
    "fcn_resnet50": 35322218,
    "deeplabv3_resnet50": 42004074,
    "lraspp_mobilenet_v3_large": 3221538,
    "fcn_resnet101": 54314346,
    "deeplabv3_resnet101": 60996202,
    "deeplabv3_mobilenet_v3_large": 11029328,
}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _weights_enum(name: str):
    """The builder's ``*_Weights`` enum by torchvision's naming scheme."""
    special = {"inception_v3": "Inception_V3", "densenet": "DenseNet", "squeezenet": "SqueezeNet"}
    special |= {"mnasnet": "MNASNet", "shufflenet_v2_": "ShuffleNet_V2_", "regnet_": "RegNet_"}
    special |= {"swin_": "Swin_", "mobilenet_v3_": "MobileNet_V3_"}
    for prefix, enum_prefix in special.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            rest = rest.upper() if prefix in ("shufflenet_v2_", "regnet_", "swin_") else rest
            rest = rest.capitalize() if prefix == "mobilenet_v3_" else rest
            return getattr(models, enum_prefix + rest + "_Weights")
    raise KeyError(name)


# the larger siblings build in several seconds each: full runs only
_FULL = {"densenet161", "densenet169", "densenet201", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"}
_FULL |= {
    "swin_t",
    "swin_s",
    "mnasnet0_75",
    "mnasnet1_3",
    "regnet_y_1_6gf",
    "regnet_x_800mf",
    "regnet_x_1_6gf",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.full] if n in _FULL else []) for n in sorted(PARAMS)],
)
def test_parameter_count_matches_torchvision(name):
    kwargs = {"init_weights": False} if name == "inception_v3" else {}
    model = getattr(models, name)(**kwargs)
    assert _count(model) == PARAMS[name]
    assert _weights_enum(name).DEFAULT.meta["num_params"] == PARAMS[name]


# ---- numerics against small PyTorch twins -------------------------------------------------


def _randomize(tmodel: tnn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in tmodel.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
        for m in tmodel.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.75 + 0.5 * torch.rand(m.num_features, generator=g))


def _compare(emodel, tmodel, shape, seed: int = 0, rtol: float = 1e-5, grad_rtol: float = 1e-4):
    """Same weights; eval outputs, then a training step's input and parameter gradients."""
    _randomize(tmodel, seed)
    tsd = tmodel.state_dict()
    assert list(emodel.state_dict()) == list(tsd)
    emodel.load_state_dict({k: ember.from_numpy(v.numpy().copy()) for k, v in tsd.items()})
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    tmodel.eval()
    emodel.eval()
    with torch.no_grad():
        yt = tmodel(torch.from_numpy(x)).numpy()
    with ember.no_grad():
        ye = emodel(ember.from_numpy(x)).numpy()
    np.testing.assert_allclose(ye, yt, rtol=rtol, atol=rtol * np.abs(yt).max())

    for m in [*tmodel.modules(), *emodel.modules()]:  # dropout draws differ between libraries
        if isinstance(m, (tnn.Dropout, ember.nn.Dropout)):
            m.p = 0.0
    tmodel.train()
    emodel.train()
    w = np.random.default_rng(seed + 1).standard_normal(yt.shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    xe = ember.from_numpy(x).requires_grad_()
    (tmodel(xt) * torch.from_numpy(w)).sum().backward()
    (emodel(xe) * ember.from_numpy(w)).sum().backward()
    pairs = [("input", xe.grad.numpy(), xt.grad.numpy())]
    tgrads = dict(tmodel.named_parameters())
    pairs += [(n, p.grad.numpy(), tgrads[n].grad.numpy()) for n, p in emodel.named_parameters()]
    scale = max(np.abs(b).max() for _, _, b in pairs)
    for n, a, b in pairs:
        # a BN bias feeding another BN has a ~0 true gradient: measure it on the model's scale
        np.testing.assert_allclose(
            a, b, rtol=0, atol=grad_rtol * max(np.abs(b).max(), 1e-2 * scale), err_msg=n
        )


def test_squeezenet1_1_matches_torch_twin():
    em = models.squeezenet1_1(num_classes=7, dropout=0.0)
    _compare(em, TSqueezeNet11(7), (2, 3, 32, 32))


@pytest.mark.parametrize("inp,oup,stride", [(8, 16, 2), (16, 16, 1)])
def test_shufflenet_unit_matches_torch_twin(inp, oup, stride):
    em = ember.nn.Sequential(shufflenetv2.InvertedResidual(inp, oup, stride))
    _compare(em, _seq(TShuffleUnit(inp, oup, stride)), (2, inp, 8, 8))


@pytest.mark.parametrize("cin,cout,k,stride", [(8, 8, 5, 1), (8, 16, 3, 2)])
def test_mnasnet_unit_matches_torch_twin(cin, cout, k, stride):
    em = mnasnet._InvertedResidual(cin, cout, k, stride, 3, bn_momentum=0.1)
    _compare(em, TMnasUnit(cin, cout, k, stride, 3), (2, cin, 8, 8))


def test_regnet_y_block_matches_torch_twin():
    em = regnet.ResBottleneckBlock(8, 16, 2, ember.nn.BatchNorm2d, ember.nn.ReLU, 4, 1.0, 0.25)
    _compare(em, TRegNetBlock(8, 16, 2, 4, 0.25), (2, 8, 8, 8))


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_dense_block_matches_torch_twin(memory_efficient):
    em = densenet._DenseBlock(3, 8, 2, 4, 0.0, memory_efficient=memory_efficient)
    _compare(em, TDenseBlock(3, 8, 2, 4), (2, 8, 6, 6))


def test_inception_e_matches_torch_twin():
    _compare(inception.InceptionE(16), TInceptionE(16), (2, 16, 5, 5), grad_rtol=1e-3)


@pytest.mark.parametrize(
    "name",
    [
        n if "101" not in n else pytest.param(n, marks=pytest.mark.full)
        for n in sorted(SEGMENTATION)
    ],
)
def test_segmentation_models(name):
    from ember.vision.models import segmentation

    kwargs = {} if name.startswith("lraspp") else {"aux_loss": True}
    model = getattr(segmentation, name)(weights_backbone=None, **kwargs)
    assert _count(model) == SEGMENTATION[name]
    enum = {
        "fcn_resnet50": "FCN_ResNet50",
        "fcn_resnet101": "FCN_ResNet101",
        "deeplabv3_resnet50": "DeepLabV3_ResNet50",
        "deeplabv3_resnet101": "DeepLabV3_ResNet101",
        "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large",
        "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large",
    }[name]
    enum = getattr(segmentation, enum + "_Weights")
    assert enum.DEFAULT.meta["num_params"] == SEGMENTATION[name]
    model.eval()
    with ember.no_grad():
        out = model(ember.randn(1, 3, 40, 48))
    assert list(out) == (["out", "aux"] if kwargs else ["out"])
    assert all(tuple(v.shape) == (1, 21, 40, 48) for v in out.values())
    with pytest.raises(ValueError, match="num_classes"):
        getattr(segmentation, name)(weights="DEFAULT", num_classes=3)


def test_deeplab_and_lraspp_heads_match_torch_twins():
    from ember.vision.models.segmentation import deeplabv3, lraspp

    em = deeplabv3.DeepLabHead(16, 5, atrous_rates=(1, 2, 3))
    _compare(em, t_deeplab_head(16, 5, (1, 2, 3)), (2, 16, 6, 6), grad_rtol=1e-3)

    class Pair(ember.nn.Module):  # the head takes {"low", "high"}; the twin a tuple
        def __init__(self):
            super().__init__()
            self.head = lraspp.LRASPPHead(8, 16, 5, 12)

        def forward(self, x):
            return self.head({"low": x, "high": x.repeat(1, 2, 1, 1)[:, :, ::2, ::2]})

    class TPair(tnn.Module):
        def __init__(self):
            super().__init__()
            self.head = TLRASPPHead(8, 16, 5, 12)

        def forward(self, x):
            return self.head((x, x.repeat(1, 2, 1, 1)[:, :, ::2, ::2]))

    _compare(Pair(), TPair(), (2, 8, 8, 8), grad_rtol=1e-3)


@pytest.mark.parametrize("size", [32, 44])  # 44: padding to the window and odd merges
def test_swin_matches_torch_twin(size):
    # window 4 on 8x8 / 11x11 maps: the odd blocks run shifted windows with the region mask
    em = models.SwinTransformer(
        [4, 4], 8, [2, 2], [2, 4], [4, 4], stochastic_depth_prob=0.0, num_classes=5
    )
    tm = TSwin(8, [2, 2], [2, 4], 4, num_classes=5)
    _compare(em, tm, (2, 3, size, size), grad_rtol=1e-4)


@pytest.mark.parametrize("name", sorted(regnet._CONFIGS))
def test_regnet_block_params_match_torch_arithmetic(name):
    depth, w_0, w_a, w_m, gw, se, _, _ = regnet._CONFIGS[name]
    bp = regnet.BlockParams.from_init_params(depth, w_0, w_a, w_m, gw, se_ratio=se)
    widths, depths = _torch_block_params(depth, w_0, w_a, w_m)
    assert bp.depths == depths
    groups = [min(gw, w) for w in widths]  # then widths become multiples of the group width
    rounded = [max(g, int(w + g / 2) // g * g) for w, g in zip(widths, groups)]
    rounded = [r + g if r < 0.9 * w else r for r, w, g in zip(rounded, widths, groups)]
    assert (bp.widths, bp.group_widths) == (rounded, groups)


# ---- whole models: outputs, options, errors ------------------------------------------------


@pytest.mark.parametrize(
    "name", ["shufflenet_v2_x0_5", "mnasnet0_5", "regnet_y_400mf", "squeezenet1_0"]
)
def test_small_models_forward_and_backward(name):
    model = getattr(models, name)(num_classes=5)
    x = ember.randn(2, 3, 32, 32)
    out = model(x)
    assert tuple(out.shape) == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with ember.no_grad():
        assert tuple(model(x[:1]).shape) == (1, 5)


def test_inception_v3_outputs_aux_and_transform_input():
    ember.manual_seed(0)
    model = models.inception_v3(num_classes=5, init_weights=False)
    # the auxiliary head takes Mixed_6e's 17x17 map (299x299 input); training mode returns both
    with ember.no_grad():
        aux = model.AuxLogits(ember.randn(2, 768, 17, 17))
    assert tuple(aux.shape) == (2, 5)
    out = model.eager_outputs(ember.zeros(2, 5), aux)
    assert isinstance(out, models.InceptionOutputs) and out.aux_logits is aux
    model.eval()
    x = ember.randn(1, 3, 75, 75)  # torchvision's minimum size
    with ember.no_grad():
        mean = ember.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
        std = ember.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
        expect = model(((x * std + mean) - 0.5) / 0.5)  # what transform_input feeds the network
        model.transform_input = True
        y = model(x)
    assert tuple(y.shape) == (1, 5)
    np.testing.assert_allclose(y.numpy(), expect.numpy(), rtol=1e-4, atol=1e-5)
    no_aux = models.inception_v3(num_classes=5, aux_logits=False, init_weights=False)
    assert no_aux.AuxLogits is None and "AuxLogits.fc.weight" not in no_aux.state_dict()
    with pytest.warns(FutureWarning, match="init_weights=True"):
        models.Inception3(num_classes=2, aux_logits=False, inception_blocks=None)


@pytest.mark.full
def test_inception_v3_training_step_at_299():
    model = models.inception_v3(num_classes=5, init_weights=False)
    out = model(ember.randn(2, 3, 299, 299))
    assert isinstance(out, models.InceptionOutputs)
    assert tuple(out.logits.shape) == (2, 5) and tuple(out.aux_logits.shape) == (2, 5)
    loss = F.cross_entropy(out.logits, ember.tensor([0, 1])) + 0.4 * F.cross_entropy(
        out.aux_logits, ember.tensor([0, 1])
    )
    loss.backward()
    assert model.AuxLogits.fc.weight.grad is not None


def test_densenet_loads_old_checkpoint_key_names():
    model = models.densenet121(num_classes=3)
    sd = model.state_dict()
    old = {}
    for k, v in sd.items():  # the original checkpoints: "norm.1"-style names, no step counters
        if k.endswith("num_batches_tracked"):
            continue
        old[k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")] = v * 1
    assert any(".norm.1." in k for k in old)

    class _Stub:
        def get_state_dict(self, progress=True, check_hash=True):
            return dict(old)

    fresh = models.densenet121(num_classes=3)
    densenet._load_state_dict(fresh, _Stub(), progress=False)
    for k, v in fresh.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v.numpy(), sd[k].numpy())


def test_mnasnet_loads_version1_checkpoint_with_warning():
    v2 = models.mnasnet0_5(num_classes=3)
    sd = v2.state_dict()
    sd._metadata[""]["version"] = 1
    v1 = models.mnasnet0_5(num_classes=3)
    with pytest.warns(UserWarning, match="new version of MNASNet"), pytest.raises(RuntimeError):
        v1.load_state_dict(sd)  # the stem becomes version 1's (32 / 16 channels): shapes differ
    assert v1.layers[0].out_channels == 32 and v1._version == 1
    v1_sd = v1.state_dict()
    again = models.mnasnet0_5(num_classes=3)
    with pytest.warns(UserWarning, match="new version of MNASNet"):
        again.load_state_dict(v1_sd)
    x = ember.randn(1, 3, 32, 32)
    v1.eval()
    again.eval()
    with ember.no_grad():
        np.testing.assert_allclose(again(x).numpy(), v1(x).numpy(), rtol=1e-6)


def test_builders_follow_torchvision_api():
    with pytest.warns(UserWarning, match="pretrained"):
        model = models.squeezenet1_1(pretrained=False, num_classes=4)
    assert model.classifier[1].out_channels == 4
    with pytest.raises(ValueError, match="num_classes"):
        models.densenet121(weights="IMAGENET1K_V1", num_classes=10)  # checked before downloading
    assert models.get_weight("RegNet_Y_400MF_Weights.IMAGENET1K_V1").url.endswith(
        "regnet_y_400mf-c65dace8.pth"
    )
    assert models.ShuffleNet_V2_X1_0_Weights.DEFAULT.meta["num_params"] == 2278604
    with pytest.raises(ValueError, match="version"):
        models.SqueezeNet("2_0")
    with pytest.raises(ValueError, match="stages_repeats"):
        models.ShuffleNetV2([4, 8], [24, 116, 232, 464, 1024])
    with pytest.raises(ValueError, match="alpha"):
        models.MNASNet(0.0)
    with pytest.raises(ValueError, match="Invalid RegNet settings"):
        models.BlockParams.from_init_params(depth=4, w_0=30, w_a=1.0, w_m=2.0, group_width=8)
    with pytest.raises(ValueError, match="no pretrained weights"):
        models.regnet_y_128gf(weights="IMAGENET1K_V1")
