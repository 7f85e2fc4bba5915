"""ember.vision.models.video (torchvision's R3D-18, MC3-18, R(2+1)D-18): torchvision's
published parameter counts and key names, a block and a stem against PyTorch layers with the
same weights (forward and gradients), the video preset, and a training step on a tiny clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as tnn

import ember
from ember.vision.models import video
from ember.vision.transforms._presets import VideoClassification


@pytest.mark.parametrize(
    "name, n",
    [
        ("mc3_18", 11695440),
        pytest.param("r3d_18", 33371472, marks=pytest.mark.full),
        pytest.param("r2plus1d_18", 31505325, marks=pytest.mark.full),
    ],
)
def test_parameter_counts_are_torchvisions(name, n):
    model = getattr(video, name)()
    assert sum(p.numel() for p in model.parameters()) == n
    enum = {"mc3_18": video.MC3_18_Weights, "r3d_18": video.R3D_18_Weights}.get(
        name, video.R2Plus1D_18_Weights
    )
    assert enum.DEFAULT.meta["num_params"] == n
    with pytest.raises(ValueError, match="num_classes"):
        getattr(video, name)(weights="DEFAULT", num_classes=10)


def _torch_r2plus1d_block():
    """torchvision's R(2+1)D BasicBlock (64 -> 128, stride 2), written with torch layers."""

    def conv21(i, o, mid, s):
        return tnn.Sequential(
            tnn.Conv3d(i, mid, (1, 3, 3), (1, s, s), (0, 1, 1), bias=False),
            tnn.BatchNorm3d(mid),
            tnn.ReLU(),
            tnn.Conv3d(mid, o, (3, 1, 1), (s, 1, 1), (1, 0, 0), bias=False),
        )

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            mid = (64 * 128 * 27) // (64 * 9 + 3 * 128)
            self.conv1 = tnn.Sequential(conv21(64, 128, mid, 2), tnn.BatchNorm3d(128), tnn.ReLU())
            mid = (64 * 128 * 27) // (64 * 9 + 3 * 128)  # torchvision uses inplanes for both
            self.conv2 = tnn.Sequential(conv21(128, 128, mid, 1), tnn.BatchNorm3d(128))
            self.downsample = tnn.Sequential(
                tnn.Conv3d(64, 128, 1, stride=(2, 2, 2), bias=False), tnn.BatchNorm3d(128)
            )

        def forward(self, x):
            return torch.relu(self.conv2(self.conv1(x)) + self.downsample(x))

    return Block()


def test_r2plus1d_block_matches_torch_layers():
    model = video.r2plus1d_18()
    block = model.layer2[0]
    assert [k for k, _ in block.state_dict().items()][:3] == [
        "conv1.0.0.weight", "conv1.0.1.weight", "conv1.0.1.bias",
    ]  # fmt: skip
    twin = _torch_r2plus1d_block()
    twin.load_state_dict({k: torch.tensor(v.numpy()) for k, v in block.state_dict().items()})
    block.train(), twin.train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 4, 6, 6)).astype(np.float32)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ey, ty = block(ex), twin(tx)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(ty.shape).astype(np.float32)
    ey.backward(ember.tensor(g)), ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    w_e = block.conv1[0][0].weight.grad.numpy()
    np.testing.assert_allclose(w_e, twin.conv1[0][0].weight.grad.numpy(), rtol=1e-3, atol=1e-3)


def test_video_preset_and_a_training_step():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 3, 20, 24), dtype=np.uint8)  # (T, C, H, W)
    preset = VideoClassification(crop_size=(16, 16), resize_size=(20, 24))
    clip = preset(ember.tensor(frames))
    assert tuple(clip.shape) == (3, 4, 16, 16)  # (C, T, H, W)
    # no resize at this size: a centre crop, scaled and normalized per channel
    want = frames[:, :, 2:18, 4:20].astype(np.float32) / 255
    mean, std = np.array(preset.mean), np.array(preset.std)
    want = ((want - mean[None, :, None, None]) / std[None, :, None, None]).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(clip.numpy(), want, rtol=1e-5, atol=1e-5)
    ember.manual_seed(0)
    model = video.mc3_18(num_classes=3)
    opt = ember.optim.SGD(model.parameters(), lr=0.01)
    x = ember.stack([clip, clip.flip(-1)])
    loss = ember.nn.functional.cross_entropy(model(x), ember.tensor([0, 2]))
    loss.backward()
    opt.step()
    assert model.stem[0].weight.grad is not None and np.isfinite(loss.item())
