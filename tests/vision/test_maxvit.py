"""MaxViT (ember.vision.models.maxvit_t / MaxVit): the relative-position attention against torch
layers with the same weights, the window / grid partitions against a NumPy reading of the
paper, an MBConv block against torch layers, a small network's forward + backward and a short
training run, the input-size checks, torchvision's state_dict names and parameter count, and
the model registry."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import ember
from ember.vision import models
from ember.vision.models.maxvit import (
    MBConv,
    PartitionAttentionLayer,
    RelativePositionalMultiHeadAttention,
    WindowDepartition,
    WindowPartition,
)

# a MaxViT small enough for CI: 64x64 input, 2x2 partitions (stage maps 16, 8, 4, 2)
SMALL = dict(
    input_size=(64, 64), stem_channels=8, partition_size=2, block_channels=[8, 16, 16, 32],
    block_layers=[1, 1, 2, 1], head_dim=8, stochastic_depth_prob=0.1, num_classes=5,
)  # fmt: skip


def _t(x: ember.Tensor) -> torch.Tensor:
    return torch.tensor(x.detach().numpy())


def test_relative_position_attention_matches_torch_layers():
    ember.manual_seed(0)
    attn = RelativePositionalMultiHeadAttention(16, 8, 9)  # 2 heads, 3x3 windows
    with ember.no_grad():
        attn.relative_position_bias_table.normal_()  # make the bias matter
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 16)).astype(np.float32)
    got = attn(ember.tensor(x)).detach().numpy()

    to_qkv, merge = torch.nn.Linear(16, 48), torch.nn.Linear(16, 16)
    with torch.no_grad():
        to_qkv.weight.copy_(_t(attn.to_qkv.weight))
        to_qkv.bias.copy_(_t(attn.to_qkv.bias))
        merge.weight.copy_(_t(attn.merge.weight))
        merge.bias.copy_(_t(attn.merge.bias))
        table = _t(attn.relative_position_bias_table)
        # the bias of a (query, key) pair: the table row of their offset (dy + 2) * 5 + dx + 2
        pos = [(i, j) for i in range(3) for j in range(3)]
        index = torch.tensor([[(a[0] - b[0] + 2) * 5 + a[1] - b[1] + 2 for b in pos] for a in pos])
        bias = table[index].permute(2, 0, 1)  # heads, 9, 9
        q, k, v = to_qkv(torch.tensor(x)).reshape(2, 3, 9, 3, 2, 8).permute(3, 0, 1, 4, 2, 5)
        logits = q @ k.transpose(-1, -2) * 16**-0.5 + bias  # torchvision scales by the width
        out = torch.softmax(logits, dim=-1) @ v
        want = merge(out.permute(0, 1, 3, 2, 4).reshape(2, 3, 9, 16)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert attn.relative_position_index.dtype == ember.int64
    np.testing.assert_array_equal(attn.relative_position_index.numpy(), index.numpy())


def test_window_and_grid_partitions():
    x = np.arange(1 * 2 * 4 * 6, dtype=np.float32).reshape(1, 2, 4, 6)
    win = WindowPartition()(ember.tensor(x), 2).numpy()  # 2x3 windows of 2x2 pixels
    assert win.shape == (1, 6, 4, 2)
    # window (1, 2) holds rows 2-3, columns 4-5, row-major; channels last
    np.testing.assert_array_equal(win[0, 5, :, 0], x[0, 0, 2:4, 4:6].reshape(-1))
    back = WindowDepartition()(ember.tensor(win), 2, 2, 3).numpy()
    np.testing.assert_array_equal(back, x)

    # grid attention: a token attends to the pixels at its own in-window position
    ember.manual_seed(0)
    layer = PartitionAttentionLayer(
        8, 4, 2, "grid", (4, 4), 2, ember.nn.GELU, ember.nn.LayerNorm, 0.0, 0.0, 0.0
    )
    layer.eval()
    y = ember.randn(1, 8, 4, 4, requires_grad=True)
    out = layer(y)
    out[0, :, 0, 0].sum().backward()
    # (0, 0) sees (0, 2), (2, 0), (2, 2) through the attention, nothing else
    touched = (y.grad.abs().sum(1)[0].numpy() > 0).astype(int)
    np.testing.assert_array_equal(touched, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0] * 4])
    with pytest.raises(ValueError, match="partition_type"):
        PartitionAttentionLayer(8, 4, 2, "diag", (4, 4), 2, ember.nn.GELU, None, 0, 0, 0)


def test_mbconv_matches_torch_layers():
    ember.manual_seed(0)
    block = MBConv(4, 8, 4, 0.25, 2, ember.nn.GELU, ember.nn.BatchNorm2d).eval()
    with ember.no_grad():
        for name, b in block.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_()
    w = {k: _t(v) for k, v in block.state_dict().items()}
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 6)).astype(np.float32)
    got = block(ember.tensor(x)).detach().numpy()

    def bn(z, p):
        return torch.nn.functional.batch_norm(
            z, w[p + "running_mean"], w[p + "running_var"], w[p + "weight"], w[p + "bias"]
        )

    F, p = torch.nn.functional, "layers."
    with torch.no_grad():
        xt = torch.tensor(x)
        res = F.conv2d(F.avg_pool2d(xt, 3, 2, 1), w["proj.1.weight"], w["proj.1.bias"])
        z = bn(xt, p + "pre_norm.")
        z = F.gelu(bn(F.conv2d(z, w[p + "conv_a.0.weight"]), p + "conv_a.1."))
        z = F.conv2d(z, w[p + "conv_b.0.weight"], stride=2, padding=1, groups=32)
        z = F.gelu(bn(z, p + "conv_b.1."))
        s = F.adaptive_avg_pool2d(z, 1)
        se = p + "squeeze_excitation."
        s = F.silu(F.conv2d(s, w[se + "fc1.weight"], w[se + "fc1.bias"]))
        s = F.conv2d(s, w[se + "fc2.weight"], w[se + "fc2.bias"])
        z = F.conv2d(z * torch.sigmoid(s), w[p + "conv_c.weight"], w[p + "conv_c.bias"])
        want = (res + z).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_small_network_forward_backward_and_training():
    ember.manual_seed(0)
    model = models.MaxVit(**SMALL)
    x = ember.randn(2, 3, 64, 64)
    out = model(x)
    assert tuple(out.shape) == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(ember.isfinite(g).all()) for g in grads)

    # a short run on a fixed batch (no stochastic depth, so the loss is smooth): it falls
    ember.manual_seed(0)
    model = models.MaxVit(**{**SMALL, "stochastic_depth_prob": 0.0})
    data, target = ember.randn(4, 3, 64, 64), ember.tensor([0, 1, 2, 3])
    opt = ember.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = ember.nn.functional.cross_entropy(model(data), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0] and losses[-1] == min(losses), losses


def test_stochastic_depth_drops_torchs_rows():
    # torchvision draws the row mask with bernoulli_; under one seed ember drops the same rows,
    # so a MaxViT trained side by side with torchvision's stays comparable in train mode
    from ember.vision.ops import stochastic_depth

    ember.manual_seed(3)
    got = stochastic_depth(ember.ones(16, 2, 1, 1), 0.4, "row", training=True).numpy()
    torch.manual_seed(3)
    want = torch.ones(16, 2, 1, 1) * torch.empty(16, 1, 1, 1).bernoulli_(0.6).div_(0.6)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)
    assert 0 < (got == 0).sum() < got.size


def test_input_size_errors():
    with pytest.raises(ValueError, match="not divisible by partition size 7"):
        models.MaxVit(**{**SMALL, "partition_size": 7})
    model = models.MaxVit(**SMALL)
    with pytest.raises(ValueError, match=r"input_size=\(64, 64\)"):
        model(ember.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="num_classes"):
        models.maxvit_t(weights="DEFAULT", num_classes=10)


def test_maxvit_t_matches_torchvision_names_and_count():
    model = models.maxvit_t()
    sd = model.state_dict()
    # torchvision 0.28's maxvit_t state_dict, "key:shape" lines in order, hashed
    # (derived from torchvision's code; the checkpoint maxvit_t-bc5ab103.pth holds these keys)
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "e1d9d787c64c101a"
    assert len(sd) == 582
    assert "blocks.2.layers.4.layers.grid_attention.attn_layer.1.relative_position_index" in sd
    assert "blocks.0.layers.0.layers.MBconv.proj.1.weight" in sd
    assert "classifier.5.weight" in sd and "classifier.5.bias" not in sd
    assert sum(p.numel() for p in model.parameters()) == 30919624
    assert models.MaxVit_T_Weights.DEFAULT.meta["num_params"] == 30919624
    bn = model.stem[0][1]
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_registry():
    assert "maxvit_t" in models.list_models(module=models)
    assert "maxvit_t" in models.list_models(include="maxvit*")
    assert models.get_model_weights("maxvit_t") is models.MaxVit_T_Weights
    assert models.get_weight("MaxVit_T_Weights.IMAGENET1K_V1").url.endswith("maxvit_t-bc5ab103.pth")
    assert models.get_model_builder("MaxViT_T") is models.maxvit_t


@pytest.mark.full
def test_maxvit_t_forward_at_224():
    ember.manual_seed(0)
    model = models.get_model("maxvit_t").eval()
    with ember.no_grad():
        out = model(ember.randn(1, 3, 224, 224))
    assert tuple(out.shape) == (1, 1000) and bool(ember.isfinite(out).all())
