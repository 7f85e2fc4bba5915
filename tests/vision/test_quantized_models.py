"""ember.vision.models.quantization (torchvision's quantizable models), the ResNeXt / wide
ResNet builders, and the quantization pieces they rely on (the quantized engine, quantized
``mean``, convert of a module that saw no data).

No torchvision here: structure is checked against torchvision's published parameter counts
and its quantized checkpoints' key names; numerics by what quantization promises (fusing
leaves a float model's outputs unchanged; the int8 model stays close to the float one it was
calibrated from); ``mean`` of a quantized tensor against torch's own.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ember
from ember import nn
from ember.ao import quantization as tq
from ember.vision import models
from ember.vision.models import quantization as q

full = pytest.mark.full


@pytest.fixture(autouse=True)
def _restore_engine():
    # torchvision's quantize=True builders set the global engine (MobileNets: qnnpack)
    engine = ember.backends.quantized.engine
    yield
    ember.backends.quantized.engine = engine


# torchvision's published num_params (the float and quantized weights enums agree)
PARAMS = {
    "resnet18": 11689512,
    "resnet50": 25557032,
    "resnext101_32x8d": 88791336,
    "resnext101_64x4d": 83455272,
    "mobilenet_v2": 3504872,
    "mobilenet_v3_large": 5483032,
    "shufflenet_v2_x0_5": 1366792,
    "shufflenet_v2_x1_0": 2278604,
    "shufflenet_v2_x1_5": 3503624,
    "shufflenet_v2_x2_0": 7393996,
    "googlenet": 6624904,
    "inception_v3": 27161264,
}
CI_PARAMS = ("resnet18", "mobilenet_v2", "shufflenet_v2_x0_5")


def _build(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet / Inception's init_weights FutureWarning
        return getattr(q, name)(**kwargs)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name", [n if n in CI_PARAMS else pytest.param(n, marks=full) for n in PARAMS]
)
def test_quantizable_float_models_have_torchvisions_parameter_counts(name):
    # torchvision counts Inception v3 with its auxiliary head, GoogLeNet without its two
    kwargs = {"inception_v3": {"aux_logits": True}, "googlenet": {"aux_logits": False}}
    kwargs = kwargs.get(name, {})
    assert _count(_build(name, **kwargs)) == PARAMS[name]


@pytest.mark.parametrize(
    "name, n",
    [
        ("resnext50_32x4d", 25028904),
        pytest.param("resnext101_32x8d", 88791336, marks=full),
        pytest.param("resnext101_64x4d", 83455272, marks=full),
        pytest.param("wide_resnet50_2", 68883240, marks=full),
        pytest.param("wide_resnet101_2", 126886696, marks=full),
    ],
)
def test_resnext_and_wide_resnet_builders(name, n):
    model = getattr(models, name)(num_classes=1000)
    assert _count(model) == n
    enum = {
        "resnext50_32x4d": models.ResNeXt50_32X4D_Weights,
        "resnext101_32x8d": models.ResNeXt101_32X8D_Weights,
        "resnext101_64x4d": models.ResNeXt101_64X4D_Weights,
        "wide_resnet50_2": models.Wide_ResNet50_2_Weights,
        "wide_resnet101_2": models.Wide_ResNet101_2_Weights,
    }[name]
    assert enum.DEFAULT.meta["num_params"] == n
    with pytest.raises(ValueError, match="groups"):
        getattr(models, name)(groups=3)


def _calibrated_pair(name, x):
    """A float quantizable model with batch-norm statistics from ``x``, its eval output, and
    the same model fused (its output too)."""
    model = _build(name)
    model.train()
    with ember.no_grad():
        model(x)  # running statistics, so that eval-mode activations stay in range
    model.eval()
    with ember.no_grad():
        ref = model(x)
    model.fuse_model()
    with ember.no_grad():
        fused = model(x)
    return model, ref, fused


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        pytest.param("shufflenet_v2_x0_5", marks=full),
        pytest.param("resnet50", marks=full),
        pytest.param("mobilenet_v2", marks=full),
        pytest.param("mobilenet_v3_large", marks=full),
        pytest.param("googlenet", marks=full),
    ],
)
def test_fuse_keeps_outputs_and_int8_model_stays_close(name):
    ember.manual_seed(0)
    x = ember.rand(2, 3, 32, 32) if name != "googlenet" else ember.rand(2, 3, 64, 64)
    model, ref, fused = _calibrated_pair(name, x)
    scale = ref.abs().max().item()
    assert (fused - ref).abs().max().item() <= 1e-5 * scale  # conv + bn folding: rounding only
    model.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(model, inplace=True)
    with ember.no_grad():
        model(x)  # calibration
    tq.convert(model, inplace=True)
    with ember.no_grad():
        out = model(x)
    assert out.dtype == ember.float32 and out.shape == ref.shape
    cosine = (out * ref).sum() / (out.norm() * ref.norm())
    assert cosine.item() > 0.99, cosine.item()


@pytest.fixture(scope="module")
def int8_resnet18():
    ember.manual_seed(0)
    return _build("resnet18", quantize=True)  # fuse, observe one random 299 x 299 image, convert


def test_quantize_true_returns_torchvisions_int8_layout(int8_resnet18):
    m = int8_resnet18
    assert m.conv1._get_name() == "QuantizedConvReLU2d"  # torch's printed name
    assert type(m.layer1[0].add_relu).__name__ == "QFunctional"
    assert isinstance(m.layer1[0].bn1, nn.Identity) and not m.training
    keys = list(m.state_dict())
    # the key names of torchvision's resnet18_fbgemm checkpoint
    for k in (
        "conv1.weight",
        "conv1.scale",
        "conv1.zero_point",
        "layer1.0.add_relu.scale",
        "layer2.0.downsample.0.weight",
        "fc._packed_params._packed_params",
        "quant.scale",
    ):
        assert k in keys, k
    with ember.no_grad():
        out = m(ember.rand(2, 3, 64, 64))
    assert out.shape == (2, 1000) and out.dtype == ember.float32
    assert m.fc.in_features == 512


def test_quantized_weights_load_from_the_hub_cache(tmp_path, monkeypatch, int8_resnet18):
    """``weights=`` (and the legacy ``pretrained=True``) on a ``quantize=True`` build load the
    quantized checkpoint (here the file torchvision's URL names, placed in the hub cache)."""
    monkeypatch.setattr(ember.hub, "_hub_dir", str(tmp_path))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    ember.save(int8_resnet18.state_dict(), folder / "resnet18_fbgemm_16fa66dd.pth")
    x = ember.rand(1, 3, 48, 48)
    with ember.no_grad():
        ref = int8_resnet18(x)
    ember.manual_seed(1)  # another random init and calibration: the file must replace both
    with pytest.warns(UserWarning, match="ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1"):
        loaded = q.resnet18(pretrained=True, quantize=True)
    with ember.no_grad():
        np.testing.assert_array_equal(loaded(x).numpy(), ref.numpy())
    assert loaded.fc.scale == int8_resnet18.fc.scale
    with pytest.raises(TypeError, match="ResNet18_QuantizedWeights"):
        q.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1, quantize=True)
    assert q.ResNet50_QuantizedWeights.DEFAULT.meta["unquantized"] is (
        models.ResNet50_Weights.IMAGENET1K_V2
    )


def test_transfer_learning_on_a_quantized_feature_extractor(int8_resnet18):
    """The quantized transfer-learning tutorial's first idiom: the int8 trunk as a frozen
    feature extractor, a float head trained on top."""
    m = int8_resnet18
    trunk = nn.Sequential(
        m.quant, m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4,
        m.avgpool, m.dequant,
    )  # fmt: skip
    head = nn.Sequential(nn.Flatten(1), nn.Dropout(0.5), nn.Linear(m.fc.in_features, 2))
    model = nn.Sequential(trunk, head)
    assert [p.shape for p in model.parameters()] == [(2, 512), (2,)]  # int8 weights are not
    ember.manual_seed(0)
    x, y = ember.rand(4, 3, 32, 32), ember.tensor([0, 1, 0, 1])
    out = model(x)
    assert out.shape == (4, 2) and out.requires_grad
    features = trunk(x)  # frozen: computed once, the head trained on them
    assert features.shape == (4, 512, 1, 1) and not features.requires_grad
    opt = ember.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)

    def eval_loss():
        head.eval()
        with ember.no_grad():
            loss = nn.functional.cross_entropy(head(features), y).item()
        head.train()
        return loss

    before = eval_loss()
    for _ in range(10):
        opt.zero_grad()
        nn.functional.cross_entropy(head(features), y).backward()
        opt.step()
    assert eval_loss() < before


def test_quantization_aware_training_then_convert():
    """The tutorial's second idiom: QAT fusion, ``prepare_qat`` with the default QAT qconfig,
    a few training steps, ``convert``."""
    ember.manual_seed(0)
    model = _build("shufflenet_v2_x0_5", num_classes=3)
    model.train()
    model.fuse_model(is_qat=True)
    assert type(model.conv1[0]).__name__ == "ConvBnReLU2d"  # QAT fusion keeps the batch norm
    model.qconfig = tq.get_default_qat_qconfig("x86")
    tq.prepare_qat(model, inplace=True)
    opt = ember.optim.SGD(model.parameters(), lr=0.01)
    x, y = ember.rand(2, 3, 32, 32), ember.tensor([0, 2])
    for _ in range(1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with ember.no_grad():
        fake_quant = model(x)
    qmodel = tq.convert(model)
    with ember.no_grad():
        out = qmodel(x)
    assert qmodel.conv1[0]._get_name() == "QuantizedConvReLU2d"
    cosine = (out * fake_quant).sum() / (out.norm() * fake_quant.norm())
    assert cosine.item() > 0.99


@full
@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_large", "googlenet", "inception_v3", "resnet50"]
)
def test_quantize_true_builds_every_family(name):
    ember.manual_seed(0)
    m = _build(name, quantize=True)
    size = 299 if name == "inception_v3" else 64
    with ember.no_grad():
        out = m(ember.rand(1, 3, size, size))
    assert out.shape == (1, 1000) and not m.training


def test_mobilenet_v3_quantize_true_is_converted_from_qat():
    """torchvision prepares MobileNetV3 for QAT and converts it (its checkpoint is a QAT
    state); ReLUs are replaced by non-inplace ones and fused, hard-swish stays separate."""
    m = _build("mobilenet_v3_large", quantize=True, width_mult=0.25)
    assert not m.training
    kinds = {mod._get_name() for mod in m.modules()}
    assert {"QuantizedConvReLU2d", "QuantizedConv2d", "QFunctional"} <= kinds
    assert "ReLU6" not in kinds


def test_quantized_engine_is_torchs_setting():
    assert ember.backends.quantized.engine in ember.backends.quantized.supported_engines
    assert set(torch.backends.quantized.supported_engines) <= set(
        ember.backends.quantized.supported_engines
    )
    ember.backends.quantized.engine = "qnnpack"
    assert ember.backends.quantized.engine == "qnnpack"
    with pytest.raises(RuntimeError, match="foo is not a valid value for quantized engine"):
        ember.backends.quantized.engine = "foo"
    assert ember.backends.quantized.engine == "qnnpack"


def test_mean_of_a_quantized_tensor_matches_torch():
    rng = np.random.default_rng(0)
    x = (rng.random((4, 5, 6, 7)) * 4 - 1).astype(np.float32)
    tq_ = torch.quantize_per_tensor(torch.tensor(x), 0.03, 40, torch.quint8)
    eq_ = ember.quantize_per_tensor(ember.tensor(x), 0.03, 40, ember.quint8)
    cases = [
        (lambda t: t.mean([2, 3]), lambda e: e.mean([2, 3])),
        (lambda t: torch.mean(t, dim=(2, 3), keepdim=True), lambda e: ember.mean(e, (2, 3), True)),
        (lambda t: t.mean(1), lambda e: e.mean(1)),
        (lambda t: t.mean(), lambda e: e.mean()),
    ]
    for ft, fe in cases:
        t, e = ft(tq_), fe(eq_)
        assert e.dtype == ember.quint8 and (e.q_scale(), e.q_zero_point()) == (0.03, 40)
        np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype"):
        ember.mean(ember.tensor([1, 2, 3]))
