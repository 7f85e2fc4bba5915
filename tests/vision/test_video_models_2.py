"""ember.vision.models.video's S3D, MViT (v1, v2) and Video Swin (3-D) models: torchvision's
published parameter counts and key names, blocks against PyTorch written out with the same
weights (an S3D Inception block, MViT pooling-attention blocks, a shifted 3-D window attention
as one dense masked attention), forward and backward of each model on a small clip, clear
errors for clips a model cannot take, the model registry, and short training runs."""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings

import numpy as np
import pytest
import torch

import ember
import ember.vision.models as models
from ember.vision.models import video
from ember.vision.models.video import mvit as mvit_mod
from ember.vision.models.video import swin_transformer as swin3d_mod

sys.path.insert(0, os.path.dirname(__file__))
from video_twins import (  # noqa: E402
    torch_dense_window_attention,
    torch_mvit_block,
    torch_sep_inception,
)

COUNTS = {
    "s3d": 8320048,
    "mvit_v1_b": 36610672,
    "mvit_v2_s": 34537744,
    "swin3d_t": 28158070,
    "swin3d_s": 49816678,
    "swin3d_b": 88048984,
}
ENUMS = {
    "s3d": video.S3D_Weights,
    "mvit_v1_b": video.MViT_V1_B_Weights,
    "mvit_v2_s": video.MViT_V2_S_Weights,
    "swin3d_t": video.Swin3D_T_Weights,
    "swin3d_s": video.Swin3D_S_Weights,
    "swin3d_b": video.Swin3D_B_Weights,
}


@pytest.fixture(autouse=True)
def _seed():
    ember.manual_seed(0)  # the models' random init: the same numbers every run


@functools.cache
def _built(name: str):
    """One default build per model on the meta device (shapes only: the random init of the
    tens of millions of parameters is the cost) for the count and key-name tests."""
    with ember.device("meta"):
        return models.get_model(name)


def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x.detach().numpy()))


def _close(a, b, rtol=1e-4, atol=1e-5):
    a = a.detach().numpy() if isinstance(a, ember.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts_and_weights_are_torchvisions(name):
    model = _built(name)
    assert sum(p.numel() for p in model.parameters()) == COUNTS[name]
    enum = ENUMS[name]
    assert models.get_model_weights(name) is enum
    assert enum.DEFAULT.meta["num_params"] == COUNTS[name]
    assert enum.DEFAULT.url.startswith("https://download.pytorch.org/models/")
    with pytest.raises(ValueError, match="num_classes"):
        getattr(video, name)(weights="DEFAULT", num_classes=10)


def test_registry_lists_and_builds_the_video_models():
    assert models.list_models(module=video) == sorted(
        ["mc3_18", "r2plus1d_18", "r3d_18", "s3d", "mvit_v1_b", "mvit_v2_s"]
        + ["swin3d_t", "swin3d_s", "swin3d_b"]
    )
    assert models.list_models(module=video, include="swin3d_*", exclude="*_b") == [
        "swin3d_s", "swin3d_t",
    ]  # fmt: skip
    assert "resnet18" in models.list_models() and "s3d" not in models.list_models(models)
    assert isinstance(models.get_model("s3d", num_classes=7), video.S3D)
    assert models.get_weight("MViT_V2_S_Weights.DEFAULT") is video.MViT_V2_S_Weights.KINETICS400_V1
    assert video.Swin3D_B_Weights.KINETICS400_IMAGENET22K_V1.url.endswith(
        "swin3d_b_22k-7c6ae6fa.pth"
    )
    with pytest.raises(ValueError, match="Unknown model"):
        models.get_model("swin3d_xl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video.s3d(pretrained=False)
    assert any("'pretrained' is deprecated" in str(w.message) for w in caught)


def test_key_names_are_torchvisions():
    # torchvision's module tree: Conv3dNormActivation (0: conv, 1: norm) inside
    # TemporalSeparableConv (0: spatial, 1: temporal); MViT's Pool (pool, norm_act.0), MLP (0, 3)
    s3d_keys = list(_built("s3d").state_dict())
    assert s3d_keys[:3] == ["features.0.0.0.weight", "features.0.0.1.weight", "features.0.0.1.bias"]
    assert "features.5.branch1.1.1.0.weight" in s3d_keys
    assert "features.15.branch3.1.1.running_var" in s3d_keys
    assert s3d_keys[-2:] == ["classifier.1.weight", "classifier.1.bias"]
    v2 = _built("mvit_v2_s").state_dict()
    assert [k for k in v2 if k.startswith("blocks.14.attn.")][:6] == [
        "blocks.14.attn.rel_pos_h", "blocks.14.attn.rel_pos_w", "blocks.14.attn.rel_pos_t",
        "blocks.14.attn.qkv.weight", "blocks.14.attn.qkv.bias", "blocks.14.attn.project.0.weight",
    ]  # fmt: skip
    assert tuple(v2["blocks.0.attn.rel_pos_h"].shape) == (111, 96)  # 2 * 56 - 1 rows
    assert tuple(v2["blocks.0.attn.rel_pos_t"].shape) == (15, 96)
    assert "blocks.1.attn.pool_q.norm_act.0.weight" in v2 and "blocks.1.project.weight" in v2
    assert [k for k in v2 if not k.startswith("blocks.")] == [
        "conv_proj.weight", "conv_proj.bias", "pos_encoding.class_token",
        "norm.weight", "norm.bias", "head.1.weight", "head.1.bias",
    ]  # fmt: skip
    v1 = _built("mvit_v1_b").state_dict()
    assert tuple(v1["pos_encoding.spatial_pos"].shape) == (3136, 96)
    assert tuple(v1["pos_encoding.temporal_pos"].shape) == (8, 96)
    assert "blocks.0.attn.pool_q.pool.weight" not in v1 and "blocks.13.project.weight" in v1
    sw = _built("swin3d_t").state_dict()
    assert list(sw)[:4] == [
        "patch_embed.proj.weight", "patch_embed.proj.bias",
        "patch_embed.norm.weight", "patch_embed.norm.bias",
    ]  # fmt: skip
    assert tuple(sw["features.0.1.attn.relative_position_index"].shape) == (392, 392)
    idx = swin3d_mod.ShiftedWindowAttention3d(96, [8, 7, 7], [4, 3, 3], 3).relative_position_index
    assert int(idx.min()) == 0 and int(idx.max()) == 15 * 13 * 13 - 1
    assert int(idx[0, 0]) == 7 * 13 * 13 + 6 * 13 + 6  # offset (0, 0, 0): the table's middle
    assert tuple(sw["features.0.1.attn.relative_position_bias_table"].shape) == (2535, 3)
    assert "features.1.reduction.weight" in sw and "features.5.norm.weight" in sw
    assert list(sw)[-4:] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]


# --- S3D ---------------------------------------------------------------------------------


def test_s3d_inception_block_matches_torch_layers():
    model = video.s3d()
    block = model.features[5]  # SepInceptionBlock3D(192, 64, 96, 128, 16, 32, 32)
    twin = torch_sep_inception(192, 64, 96, 128, 16, 32, 32)
    twin.load_state_dict({k: _t(v) for k, v in block.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 192, 3, 5, 5)).astype(np.float32)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ey, ty = block(ex), twin(tx)
    assert tuple(ey.shape) == (2, 256, 3, 5, 5)
    _close(ey, ty, 1e-4, 1e-4)
    g = rng.standard_normal(ty.shape).astype(np.float32)
    ey.backward(ember.tensor(g)), ty.backward(torch.tensor(g))
    _close(ex.grad, tx.grad, 1e-3, 1e-4)
    _close(block.branch1[1][1][0].weight.grad, twin.branch1[1][1][0].weight.grad, 1e-3, 1e-3)
    _close(block.branch3[1][1].running_mean, twin.branch3[1][1].running_mean, 1e-4, 1e-6)


def test_s3d_small_clips_get_a_clear_error_and_its_features_train():
    model = video.s3d(num_classes=3)
    with pytest.raises(ValueError, match="at least 13 frames of 209x209"):
        model(ember.randn(1, 3, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, T, H, W\)"):
        model(ember.randn(3, 32, 32))
    x = ember.randn(1, 3, 4, 32, 32, requires_grad=True)
    y = model.features[:9](x)  # through the first stride-2 3x3x3 pool and one more block
    assert tuple(y.shape) == (1, 512, 1, 2, 2)
    y.mean().backward()
    assert x.grad is not None and model.features[0][0][0].weight.grad is not None


@pytest.mark.full
def test_s3d_forward_backward_at_its_smallest_clip():
    model = video.s3d(num_classes=4)
    x = ember.randn(1, 3, 13, 209, 209)
    y = model(x)
    assert tuple(y.shape) == (1, 4)
    y.sum().backward()
    assert model.classifier[1].weight.grad is not None


# --- MViT --------------------------------------------------------------------------------


@pytest.mark.parametrize("v2", [False, True])
def test_mvit_pooling_attention_block_matches_a_torch_reference(v2):
    cnf = mvit_mod.MSBlockConfig(2, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 4, 4])
    block = mvit_mod.MultiscaleBlock(
        [2, 8, 8], cnf, residual_pool=v2, residual_with_cls_embed=False, rel_pos_embed=v2,
        proj_after_attn=v2, norm_layer=lambda d: ember.nn.LayerNorm(d, eps=1e-6),
    )  # fmt: skip
    rng = np.random.default_rng(1)
    with ember.no_grad():  # non-trivial norms, so their gradients are tested too
        for name, prm in block.named_parameters():
            if "norm" in name:
                prm.copy_(ember.tensor(rng.uniform(0.5, 1.5, prm.shape).astype(np.float32)))
    params = {k: _t(v).requires_grad_() for k, v in block.state_dict().items()}
    x = rng.standard_normal((2, 1 + 2 * 8 * 8, 16)).astype(np.float32)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ey, e_thw = block(ex, (2, 8, 8))
    ty, t_thw = torch_mvit_block(params, tx, (2, 8, 8), cnf, v2)
    assert tuple(e_thw) == t_thw == (2, 4, 4) and tuple(ey.shape) == (2, 1 + 32, 32)
    _close(ey, ty, 1e-4, 1e-4)
    g = rng.standard_normal(ty.shape).astype(np.float32)
    ey.backward(ember.tensor(g)), ty.backward(torch.tensor(g))
    _close(ex.grad, tx.grad, 1e-3, 1e-4)
    grads = dict(block.named_parameters())
    names = [
        "attn.qkv.weight",
        "attn.pool_q.pool.weight",
        "attn.pool_k.norm_act.0.weight",
        "mlp.0.weight",
    ]
    names += ["attn.rel_pos_h", "attn.rel_pos_t", "project.weight"] if v2 else ["project.weight"]
    for name in names:
        _close(grads[name].grad, params[name].grad, 1e-3, 1e-4)


@pytest.mark.parametrize("q, k", [(8, 1), (4, 8), (7, 3), (3, 7), (5, 5)])
def test_mvit_relative_offsets_are_torchvisions(q, k):
    qr, kr = max(k / q, 1.0), max(q / k, 1.0)
    ref = (torch.arange(q)[:, None] * qr - (torch.arange(k)[None, :] + (1.0 - k)) * kr).long()
    np.testing.assert_array_equal(mvit_mod._rel_index(q, k), ref.numpy())


@pytest.mark.parametrize("name", ["mvit_v1_b", "mvit_v2_s"])
def test_mvit_forward_backward_on_a_small_clip(name):
    model = getattr(video, name)(spatial_size=(32, 32), temporal_size=4, num_classes=5)
    x = ember.randn(1, 3, 4, 32, 32, requires_grad=True)
    y = model(x)
    assert tuple(y.shape) == (1, 5)
    y.sum().backward()
    assert x.grad is not None and model.conv_proj.weight.grad is not None
    assert all(p.grad is not None for p in model.blocks[14].parameters())
    with pytest.raises(ValueError, match=r"built for \(2, 8, 8\) patches.*\(2, 12, 8\)"):
        model(ember.randn(1, 3, 4, 48, 32))


# --- Video Swin --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, window, shift",
    [
        ((3, 5, 6), [2, 3, 3], [1, 1, 1]),
        ((4, 6, 6), [2, 3, 3], [0, 0, 0]),
        ((2, 5, 4), [4, 3, 3], [2, 1, 1]),
    ],
)
def test_3d_window_attention_matches_a_dense_torch_reference(size, window, shift):
    attn = swin3d_mod.ShiftedWindowAttention3d(8, window, shift, num_heads=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, *size, 8)).astype(np.float32)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    p = {k: _t(v) for k, v in attn.state_dict().items()}
    for k in p:
        p[k].requires_grad_(k != "relative_position_index")
    # a window longer than the clip shrinks to it and is not shifted along that axis
    eff_w = [min(wi, s) for wi, s in zip(window, size)]
    eff_s = [0 if s <= wi else sh for wi, s, sh in zip(window, size, shift)]
    ey = attn(ex)
    ty = torch_dense_window_attention(
        tx, p["qkv.weight"], p["qkv.bias"], p["proj.weight"], p["proj.bias"],
        p["relative_position_bias_table"], p["relative_position_index"], eff_w, eff_s, 2,
    )  # fmt: skip
    _close(ey, ty, 1e-4, 1e-5)
    g = rng.standard_normal(ty.shape).astype(np.float32)
    ey.backward(ember.tensor(g)), ty.backward(torch.tensor(g))
    _close(ex.grad, tx.grad, 1e-3, 1e-5)
    _close(
        attn.relative_position_bias_table.grad, p["relative_position_bias_table"].grad, 1e-3, 1e-5
    )
    _close(attn.qkv.weight.grad, p["qkv.weight"].grad, 1e-3, 1e-4)


def test_swin3d_t_forward_backward_on_small_clips():
    model = video.swin3d_t(num_classes=6)
    # 2x8x8 tokens (the 8x7x7 window shrinks to 2 frames); then a clip padded to whole
    # patches (4x32x32) and windows
    for shape in [(1, 3, 4, 32, 32), (2, 3, 3, 30, 29)]:
        model.zero_grad()
        x = ember.randn(*shape, requires_grad=True)
        y = model(x)
        assert tuple(y.shape) == (shape[0], 6)
        y.sum().backward()
        assert x.grad is not None and tuple(x.grad.shape) == shape
        assert model.features[0][1].attn.relative_position_bias_table.grad is not None
    with pytest.raises(ValueError, match=r"clips \(N, C, T, H, W\)"):
        model(ember.randn(3, 32, 32))


@pytest.mark.full
@pytest.mark.parametrize(
    "name, shape", [("swin3d_s", (1, 3, 4, 32, 32)), ("swin3d_b", (1, 3, 16, 64, 64))]
)
def test_swin3d_s_b_forward_backward(name, shape):
    model = getattr(video, name)(num_classes=6)
    y = model(ember.randn(*shape))
    assert tuple(y.shape) == (1, 6)
    y.sum().backward()
    assert model.head.weight.grad is not None


# --- training ----------------------------------------------------------------------------


def _tiny(kind: str):
    if kind == "swin3d":
        return swin3d_mod.SwinTransformer3d(
            [2, 4, 4], 16, [2, 2], [2, 4], [2, 4, 4], num_classes=2, stochastic_depth_prob=0.0
        )
    blocks = [
        mvit_mod.MSBlockConfig(1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
        mvit_mod.MSBlockConfig(2, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1]),
    ]
    return mvit_mod.MViT(
        (16, 16), 4, blocks, residual_pool=True, residual_with_cls_embed=False,
        rel_pos_embed=True, proj_after_attn=True, dropout=0.0, num_classes=2,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["swin3d", "mvit"])
def test_a_short_training_run_lowers_the_loss(kind):
    ember.manual_seed(0)
    model = _tiny(kind)
    rng = np.random.default_rng(3)
    # two classes: a bright moving square in the top-left or the bottom-right quarter
    x = rng.standard_normal((8, 3, 4, 16, 16)).astype(np.float32) * 0.3
    labels = np.arange(8) % 2
    for i, c in enumerate(labels):
        for f in range(4):
            r = 2 + f if c == 0 else 10 - f
            x[i, :, f, r : r + 4, r : r + 4] += 2.0
    x, y = ember.tensor(x), ember.tensor(labels)
    opt = ember.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = ember.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
