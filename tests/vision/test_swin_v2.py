"""Swin Transformer V2 (ember.vision.models.swin_v2_t/s/b): the scaled cosine window attention
and its continuous position bias against a NumPy loop written from the paper's formulas, the
gradients against finite differences, the post-norm block, torchvision's state_dict names and
(as a `full` test) its published parameter counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision import models
from ember.vision.models.swin_transformer_v2 import (
    PatchMergingV2,
    ShiftedWindowAttentionV2,
    SwinTransformerBlockV2,
)


def _attention_loop(x, attn, window):
    # one unshifted window covering the whole (H, W) map, token by token
    w = {k: v.detach().numpy().astype(np.float64) for k, v in attn.state_dict().items()}
    b, h, wd, c = x.shape
    heads = attn.num_heads
    d = c // heads
    qkv_bias = w["qkv.bias"].copy()
    qkv_bias[c : 2 * c] = 0.0  # no key bias in V2
    tokens = x.reshape(b, h * wd, c)
    qkv = tokens @ w["qkv.weight"].T + qkv_bias
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    scale = np.exp(np.minimum(w["logit_scale"].reshape(heads), math.log(100.0)))
    out = np.zeros_like(tokens)
    coords = [(i, j) for i in range(window[0]) for j in range(window[1])]
    for n in range(b):
        for hd in range(heads):
            sl = slice(hd * d, (hd + 1) * d)
            logits = np.zeros((len(coords), len(coords)))
            for a, (ya, xa) in enumerate(coords):
                for bb, (yb, xb) in enumerate(coords):
                    qa, kb = q[n, a, sl], k[n, bb, sl]
                    cos = qa @ kb / max(np.linalg.norm(qa), 1e-12) / max(np.linalg.norm(kb), 1e-12)
                    # the offset's log-spaced coordinates through the MLP, 16 sigmoid
                    t = np.array([(ya - yb) / (window[0] - 1), (xa - xb) / (window[1] - 1)]) * 8
                    t = np.sign(t) * np.log2(np.abs(t) + 1) / 3
                    hidden = np.maximum(w["cpb_mlp.0.weight"] @ t + w["cpb_mlp.0.bias"], 0)
                    bias = 16 / (1 + np.exp(-(w["cpb_mlp.2.weight"] @ hidden)[hd]))
                    logits[a, bb] = cos * scale[hd] + bias
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            out[n, :, sl] = p @ v[n, :, sl]
    out = out @ w["proj.weight"].T + w["proj.bias"]
    return out.reshape(b, h, wd, c)


def test_cosine_attention_and_position_bias_match_loop():
    ember.manual_seed(0)
    attn = ShiftedWindowAttentionV2(8, [3, 4], [0, 0], num_heads=2).double()
    with ember.no_grad():
        for p in attn.parameters():
            p.normal_(0.0, 0.5)  # non-zero key bias too: V2 must ignore it
        attn.logit_scale.copy_(ember.tensor([[[1.0]], [[5.0]]], dtype=ember.float64))  # 5: capped
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 8))
    got = attn(ember.tensor(x)).detach().numpy()
    # 1e-6: the coordinate table is computed in float32 (as torchvision's) before .double()
    np.testing.assert_allclose(got, _attention_loop(x, attn, [3, 4]), rtol=1e-6, atol=1e-6)
    # the key bias was zeroed at construction, as torchvision does
    fresh = ShiftedWindowAttentionV2(8, [3, 4], [0, 0], num_heads=2)
    assert float(fresh.qkv.bias[8:16].abs().sum()) == 0.0
    assert tuple(fresh.relative_coords_table.shape) == (1, 5, 7, 2)


def test_shifted_window_attention_gradcheck():
    ember.manual_seed(1)
    attn = ShiftedWindowAttentionV2(4, [2, 2], [1, 1], num_heads=2).double()
    with ember.no_grad():
        attn.qkv.bias.normal_()
    x = ember.randn(1, 5, 4, 4, dtype=ember.float64, requires_grad=True)  # padded + shifted
    assert ember.autograd.gradcheck(lambda t: attn(t), (x,), atol=1e-6)
    params = [attn.logit_scale, attn.cpb_mlp[0].weight, attn.qkv.bias]
    attn(x).pow(2).sum().backward()
    assert float(attn.qkv.bias.grad[4:8].abs().sum()) == 0.0  # the key bias gets no gradient
    assert all(float(p.grad.abs().sum()) > 0 for p in params[:2])


def test_post_norm_block_and_patch_merging():
    ember.manual_seed(2)
    block = SwinTransformerBlockV2(8, 2, [4, 4], [0, 0], norm_layer=nn.LayerNorm).eval()
    x = ember.randn(2, 4, 4, 8)
    with ember.no_grad():
        y = x + block.norm1(block.attn(x))
        want = y + block.norm2(block.mlp(y))
        np.testing.assert_allclose(block(x).numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    merge = PatchMergingV2(8)
    assert tuple(merge.norm.weight.shape) == (16,)  # normalizes after the reduction
    assert tuple(merge(ember.randn(2, 5, 6, 8)).shape) == (2, 3, 3, 16)


def test_small_v2_network_trains_and_has_torchvision_names():
    ember.manual_seed(3)
    model = models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
        num_classes=3, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2,
    )  # fmt: skip
    keys = set(model.state_dict())
    for name in ("features.1.1.attn.logit_scale", "features.1.1.attn.cpb_mlp.2.weight",
                 "features.1.0.attn.relative_coords_table", "features.2.norm.weight",
                 "features.3.0.attn.relative_position_index"):  # fmt: skip
        assert name in keys, name
    assert not any("relative_position_bias_table" in k for k in keys)
    x, y = ember.randn(4, 3, 32, 32), ember.tensor([0, 1, 2, 1])
    opt = ember.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert models.Swin_V2_T_Weights.DEFAULT.url.endswith("swin_v2_t-b137f0e2.pth")
    assert models.Swin_V2_B_Weights.IMAGENET1K_V1.meta["min_size"] == (256, 256)


@pytest.mark.full
@pytest.mark.parametrize(
    "builder, weights, n",
    [("swin_v2_t", "Swin_V2_T_Weights", 28351570), ("swin_v2_s", "Swin_V2_S_Weights", 49737442),
     ("swin_v2_b", "Swin_V2_B_Weights", 87930848)],
)  # fmt: skip
def test_published_parameter_counts(builder, weights, n):
    model = getattr(models, builder)()
    assert sum(p.numel() for p in model.parameters()) == n
    assert getattr(models, weights).IMAGENET1K_V1.meta["num_params"] == n
    model.eval()
    with ember.no_grad():
        assert tuple(model(ember.randn(1, 3, 256, 256)).shape) == (1, 1000)
