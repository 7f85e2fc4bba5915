"""Feature extraction on the video models: torchvision 0.28's node names (recorded here from
its get_graph_node_names: CI has no torchvision) and the extracted tensors against the
models' own forward (hooks)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision.models import video
from ember.vision.models.feature_extraction import (
    create_feature_extractor,
    get_graph_node_names,
)
from ember.vision.models.video.swin_transformer import SwinTransformer3d

# torchvision's r3d_18 (85 names): the shortcut after the main path, as its BasicBlock runs it
R3D_BLOCK = [
    "layer1.1.add", "layer1.1.relu", "layer2.0.conv1.0.layer2_0_conv1_0_weight",
    "layer2.0.conv1.0.conv3d", "layer2.0.conv1.1", "layer2.0.conv1.2",
    "layer2.0.conv2.0.layer2_0_conv2_0_weight", "layer2.0.conv2.0.conv3d", "layer2.0.conv2.1",
    "layer2.0.downsample.0", "layer2.0.downsample.1", "layer2.0.add", "layer2.0.relu",
]  # fmt: skip
S3D_HEAD = [
    "x", "features.0.0", "features.0.1", "features.1", "features.2", "features.3.0",
    "features.3.1", "features.4", "features.5.branch0", "features.5.branch1.0",
    "features.5.branch1.1.0", "features.5.branch1.1.1",
]  # fmt: skip
S3D_TAIL = [
    "features.15.branch3.1",
    "features.15.cat",
    "avgpool",
    "classifier.0",
    "classifier.1",
    "mean",
]  # noqa: E501


def _swin_block(p: str) -> list[str]:
    a = f"{p}.attn"
    w = p.replace(".", "_") + "_attn"
    return [
        f"{p}.norm1", f"{a}.getattr", *(f"{a}.getitem" + s for s in ("", "_1", "_2", "_3", "_4")),
        f"{a}._get_window_and_shift_size", f"{a}.getitem_5", f"{a}.getitem_6",
        f"{a}.{w}_relative_position_bias_table", f"{a}._get_relative_position_bias",
        f"{a}.{w}_qkv_weight", f"{a}.{w}_proj_weight", f"{a}.{w}_qkv_bias", f"{a}.{w}_proj_bias",
        f"{a}.shifted_window_attention_3d", f"{p}.stochastic_depth", f"{p}.add", f"{p}.norm2",
        f"{p}.mlp", f"{p}.stochastic_depth_1", f"{p}.add_1",
    ]  # fmt: skip


# torchvision's names for SwinTransformer3d([2, 4, 4], 8, [2, 1], [1, 2], [2, 2, 2], 5)
SWIN3D = [
    "x", "patch_embed.size", *(f"patch_embed.getitem{s}" for s in ("", "_1", "_2", "_3", "_4")),
    "patch_embed._compute_pad_size_3d", "patch_embed.getitem_5", "patch_embed.getitem_6",
    "patch_embed.getitem_7", "patch_embed.pad", "patch_embed.proj", "patch_embed.permute",
    "patch_embed.norm", "pos_drop", *_swin_block("features.0.0"), *_swin_block("features.0.1"),
    "features.1._patch_merging_pad", "features.1.norm", "features.1.reduction",
    *_swin_block("features.2.0"), "norm", "permute", "avgpool", "flatten", "head",
]  # fmt: skip


def _r3d_block(i: int, downsample: bool) -> list[str]:
    p = f"layer{i}.0"
    names = []
    for conv in ("conv1", "conv2"):
        names += [f"{p}.{conv}.0.layer{i}_0_{conv}_0_weight", f"{p}.{conv}.0.conv3d"]
        names += [f"{p}.{conv}.1"] + ([f"{p}.{conv}.2"] if conv == "conv1" else [])
    names += [f"{p}.downsample.0", f"{p}.downsample.1"] if downsample else []
    return names + [f"{p}.add", f"{p}.relu"]


# torchvision's names for VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem)
R3D_SMALL = ["x", "stem.0", "stem.1", "stem.2", *_r3d_block(1, False)]
R3D_SMALL += [n for i in (2, 3, 4) for n in _r3d_block(i, True)] + ["avgpool", "flatten", "fc"]


def _small_r3d():
    from ember.vision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    ember.manual_seed(0)
    return VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=3)


def test_resnet3d_names_are_torchvisions():
    train, ev = get_graph_node_names(_small_r3d())
    assert train == ev == R3D_SMALL
    # the shortcut after the main path, as torchvision's BasicBlock runs it
    i = ev.index(R3D_BLOCK[2])
    assert ev[i : i + len(R3D_BLOCK) - 2] == R3D_BLOCK[2:]


def test_s3d_names_are_torchvisions():
    _, names = get_graph_node_names(video.s3d())
    assert len(names) == 104 and names[:12] == S3D_HEAD and names[-6:] == S3D_TAIL


def _small_swin3d():
    ember.manual_seed(0)
    return SwinTransformer3d([2, 4, 4], 8, [2, 1], [1, 2], [2, 2, 2], num_classes=5).eval()


def test_swin3d_names_are_torchvisions():
    train, ev = get_graph_node_names(_small_swin3d())
    assert train == ev == SWIN3D


@pytest.mark.parametrize("which", ["swin3d", "r3d"])
def test_video_extractors_return_the_blocks_outputs(which):
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 16, 16)).astype(np.float32)
    x = ember.tensor(x)
    if which == "swin3d":
        model = _small_swin3d()
        nodes = {"features.0.1.add_1": "features.0.1", "features.2.0.add_1": "features.2.0"}
    else:
        model = _small_r3d().eval()
        nodes = {"layer2.0.relu": "layer2.0", "layer4": "layer4"}
    seen = {}
    hooks = [
        model.get_submodule(m).register_forward_hook(lambda _, i, o, m=m: seen.__setitem__(m, o))
        for m in nodes.values()
    ]
    with ember.no_grad():
        ref = model(x)
    for h in hooks:
        h.remove()
    extractor = create_feature_extractor(
        model, return_nodes={**nodes, list(get_graph_node_names(model)[1])[-1]: "out"}
    )  # noqa: E501
    with ember.no_grad():
        got = extractor(x)
    np.testing.assert_allclose(got["out"].numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    for m in nodes.values():
        np.testing.assert_allclose(got[m].numpy(), seen[m].numpy(), rtol=1e-5, atol=1e-6)


def test_checks_still_guard_tensor_inputs():
    with pytest.raises(ValueError, match="S3D expects clips"):
        video.s3d()(ember.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="PatchEmbed3d expects clips"):
        _small_swin3d()(ember.zeros(1, 3, 16, 16))


def test_tensor_split_takes_indices_as_torch():
    # (MViT's Pool splits the class token off with tensor_split(x, (1,), dim=2))
    torch = pytest.importorskip("torch")
    x = np.arange(24.0).reshape(2, 6, 2)
    for arg in ((1,), [1, 4], [0, 6], [2, 2, 5], 4):
        ref = torch.tensor(x).tensor_split(arg, dim=1)
        out = ember.tensor(x).tensor_split(arg, dim=1)
        assert [o.numpy().tolist() for o in out] == [r.numpy().tolist() for r in ref]
