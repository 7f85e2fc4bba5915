"""ember.vision.models.feature_extraction: torchvision's node names and feature extractors.

The expected names are torchvision 0.28's own (get_graph_node_names on its models, recorded
here: CI has no torchvision); the extracted tensors are checked against forward hooks."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision import models, ops
from ember.vision.models.feature_extraction import (
    create_feature_extractor,
    get_graph_node_names,
)
from ember.vision.models.vision_transformer import VisionTransformer

# torchvision's get_graph_node_names(resnet18()): the start and the end of its 70 names
RESNET18_HEAD = [
    "x", "conv1", "bn1", "relu", "maxpool",
    "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2", "layer1.0.bn2",
    "layer1.0.add", "layer1.0.relu_1",
]  # fmt: skip
RESNET18_TAIL = [
    "layer4.1.relu", "layer4.1.conv2", "layer4.1.bn2", "layer4.1.add", "layer4.1.relu_1",
    "avgpool", "flatten", "fc",
]  # fmt: skip
# torchvision's names for a one-layer VisionTransformer(32, 16, 1, 2, 8, 16): its module names
# lose a trailing number too ("ln_1" -> "ln", "ln_2" -> "ln_1")
VIT = [
    "x", "getattr", "getitem", "getitem_1", "getitem_2", "getitem_3", "eq", "_assert", "eq_1",
    "_assert_1", "floordiv", "floordiv_1", "conv_proj", "mul", "reshape", "permute",
    "getattr_1", "getitem_4", "class_token", "expand", "cat", "encoder.dim", "encoder.eq",
    "encoder.getattr", "encoder._assert", "encoder.encoder_pos_embedding", "encoder.add",
    "encoder.dropout", "encoder.layers.encoder_layer_0.dim", "encoder.layers.encoder_layer_0.eq",
    "encoder.layers.encoder_layer_0.getattr", "encoder.layers.encoder_layer_0._assert",
    "encoder.layers.encoder_layer_0.ln", "encoder.layers.encoder_layer_0.self_attention",
    "encoder.layers.encoder_layer_0.getitem", "encoder.layers.encoder_layer_0.getitem_1",
    "encoder.layers.encoder_layer_0.dropout", "encoder.layers.encoder_layer_0.add",
    "encoder.layers.encoder_layer_0.ln_1", "encoder.layers.encoder_layer_0.mlp",
    "encoder.layers.encoder_layer_0.add_1", "encoder.ln", "getitem_5", "heads.head",
]  # fmt: skip


@pytest.fixture(scope="module")
def resnet():
    ember.manual_seed(0)
    return models.resnet18(num_classes=5).eval()


def _hooked(model, names, x):
    got = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o))
        for n in names
    ]
    with ember.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    return got, out


def test_resnet_names_are_torchvisions(resnet):
    train, eval_ = get_graph_node_names(resnet)
    assert train == eval_ and len(eval_) == 70
    assert eval_[: len(RESNET18_HEAD)] == RESNET18_HEAD
    assert eval_[-len(RESNET18_TAIL) :] == RESNET18_TAIL
    assert resnet.training is False  # the mode is restored


def test_vit_names_are_torchvisions():
    vit = VisionTransformer(32, 16, 1, 2, 8, 16)
    assert get_graph_node_names(vit)[1] == VIT


def test_leaf_ops_modules_are_single_nodes():
    # Conv2dNormActivation / SqueezeExcitation / StochasticDepth (ember.vision.ops) are leaves
    names = get_graph_node_names(models.mobilenet_v3_small())[1]
    assert names[:3] == ["x", "features.0", "features.1.block.0"]
    assert "features.1.block.1" in names and "features.1.block.1.fc1" not in names


def test_extractor_returns_the_nodes_and_module_outputs(resnet):
    x = ember.randn(2, 3, 64, 64)
    nodes = {"layer1": "feat1", "layer3.1.add": "add", "flatten": "pooled"}
    extractor = create_feature_extractor(resnet, return_nodes=nodes).eval()
    with ember.no_grad():
        out = extractor(x)
    assert list(out) == ["feat1", "add", "pooled"]
    hooked, _ = _hooked(resnet, ["layer1", "layer3.1.bn2", "avgpool"], x)
    np.testing.assert_allclose(out["feat1"].numpy(), hooked["layer1"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        out["pooled"].numpy(), hooked["avgpool"].flatten(1).numpy(), rtol=1e-6
    )
    assert out["add"].shape == hooked["layer3.1.bn2"].shape
    # nothing after the last node asked for is kept
    assert not hasattr(extractor, "fc") and hasattr(extractor, "layer4")
    assert type(extractor).__name__ == "ResNet"


def test_extractor_feeds_an_fpn_and_trains():
    ember.manual_seed(0)
    backbone = models.resnet18()
    body = create_feature_extractor(backbone, return_nodes=["layer2", "layer3", "layer4"])
    fpn = ops.FeaturePyramidNetwork([128, 256, 512], 16)
    feats = fpn(body(ember.randn(1, 3, 64, 64)))
    assert [tuple(v.shape) for v in feats.values()] == [(1, 16, 8, 8), (1, 16, 4, 4), (1, 16, 2, 2)]
    sum(v.sum() for v in feats.values()).backward()
    weight = body.get_submodule("layer2.0.conv1").weight
    assert weight is backbone.layer2[0].conv1.weight  # shares the backbone's parameters
    assert weight.grad is not None
    assert not hasattr(body, "avgpool")


def test_train_and_eval_graphs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            x = self.a(x)
            if self.training:  # a training-only branch: the two traces differ
                x = x * 2
            return self.b(x)

    net = Net()
    with pytest.warns(UserWarning, match="eval mode"):
        train, eval_ = get_graph_node_names(net)
    assert train == ["x", "a", "mul", "b"] and eval_ == ["x", "a", "b"]
    ext = create_feature_extractor(
        net,
        train_return_nodes=["mul"],
        eval_return_nodes=["a"],
        suppress_diff_warning=True,
    )
    x = ember.randn(3, 4)
    assert ext.training
    np.testing.assert_allclose(ext(x)["mul"].detach().numpy(), 2 * net.a(x).detach().numpy())
    ext.eval()
    np.testing.assert_allclose(ext(x)["a"].detach().numpy(), net.a(x).detach().numpy())
    ext.train()
    assert list(ext(x)) == ["mul"]


def test_bad_requests(resnet):
    with pytest.raises(ValueError, match="node: 'layer9' is not present"):
        create_feature_extractor(resnet, return_nodes=["layer9"])
    with pytest.raises(ValueError, match="should be specified"):
        create_feature_extractor(resnet)
    with pytest.raises(ValueError, match="both should be specified"):
        create_feature_extractor(resnet, return_nodes=["layer1"], train_return_nodes=["layer1"])
