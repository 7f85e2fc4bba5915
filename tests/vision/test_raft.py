"""RAFT (ember.vision.models.optical_flow): the correlation lookup against
torch.nn.functional.grid_sample, the convex upsampling and the ConvGRU against torch layers with
the same weights, torchvision's state_dict names and parameter counts, forward + backward and
the input checks, a short training run of a small RAFT whose loss falls, the OpticalFlow preset
and ``flow_to_image`` against a NumPy reference."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import ember
from ember.vision import models
from ember.vision.models import optical_flow
from ember.vision.models.optical_flow._utils import make_coords_grid, upsample_flow
from ember.vision.models.optical_flow.raft import (
    ConvGRU,
    CorrBlock,
    FeatureEncoder,
    FlowHead,
    MotionEncoder,
    RecurrentBlock,
    UpdateBlock,
)
from ember.vision.transforms._presets import OpticalFlow
from ember.vision.utils import flow_to_image

TF = torch.nn.functional


def _t(x) -> torch.Tensor:
    return torch.tensor(x.detach().numpy() if isinstance(x, ember.Tensor) else x)


def test_correlation_pyramid_and_lookup_match_torch_grid_sample():
    rng = np.random.default_rng(0)
    f1, f2 = (rng.normal(size=(2, 8, 8, 12)).astype(np.float32) for _ in range(2))
    coords = make_coords_grid(2, 8, 12).numpy() + rng.normal(scale=2.0, size=(2, 2, 8, 12))
    coords = coords.astype(np.float32)  # off-grid and partly outside the map
    block = CorrBlock(num_levels=2, radius=2)
    block.build_pyramid(ember.tensor(f1), ember.tensor(f2))
    got = block.index_pyramid(ember.tensor(coords)).numpy()
    assert got.shape == (2, 2 * 25, 8, 12)

    # the same lookup with torch: all-pairs volume, 2x2 pooling, grid_sample at x + (dx, dy)
    corr = torch.einsum("bchw,bcuv->bhwuv", _t(f1), _t(f2)) / 8**0.5
    volumes = [corr.reshape(2 * 96, 1, 8, 12)]
    volumes.append(TF.avg_pool2d(volumes[0], 2, 2))
    d = torch.linspace(-2, 2, 5)
    delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 5, 5, 2)
    centre = _t(coords).permute(0, 2, 3, 1).reshape(2 * 96, 1, 1, 2)
    levels = []
    for vol in volumes:
        h, w = vol.shape[-2:]
        xy = centre + delta
        grid = torch.stack([2 * xy[..., 0] / (w - 1) - 1, 2 * xy[..., 1] / (h - 1) - 1], -1)
        levels.append(TF.grid_sample(vol, grid, align_corners=True).view(2, 8, 12, -1))
        centre = centre / 2
    want = torch.cat(levels, -1).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    with pytest.raises(ValueError, match="at least 4"):
        block.build_pyramid(ember.zeros(1, 8, 3, 8), ember.zeros(1, 8, 3, 8))
    with pytest.raises(ValueError, match="same shape"):
        block.build_pyramid(ember.zeros(1, 8, 8, 8), ember.zeros(1, 8, 8, 16))


def test_convex_upsampling_matches_torch():
    rng = np.random.default_rng(1)
    flow = rng.normal(size=(2, 2, 3, 5)).astype(np.float32)
    mask = rng.normal(size=(2, 9 * 16, 3, 5)).astype(np.float32)
    got = upsample_flow(ember.tensor(flow), ember.tensor(mask), factor=4).numpy()
    # torch: softmax over the 9 neighbours, weighted sum of the unfolded 3x3 neighbourhoods
    w = torch.softmax(_t(mask).view(2, 1, 9, 4, 4, 3, 5), dim=2)
    nb = TF.unfold(4 * _t(flow), 3, padding=1).view(2, 2, 9, 1, 1, 3, 5)
    want = (w * nb).sum(2).permute(0, 1, 4, 2, 5, 3).reshape(2, 2, 12, 20).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # no mask: bilinear, values scaled by the factor
    got = upsample_flow(ember.tensor(flow), None, factor=4).numpy()
    want = 4 * TF.interpolate(_t(flow), size=(12, 20), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="up_mask should have shape"):
        upsample_flow(ember.tensor(flow), ember.tensor(mask[:, :9]), factor=4)


def test_conv_gru_matches_torch_layers():
    ember.manual_seed(0)
    gru = ConvGRU(input_size=3, hidden_size=4, kernel_size=(1, 5), padding=(0, 2))
    rng = np.random.default_rng(2)
    h, x = rng.normal(size=(2, 4, 5, 6)).astype(np.float32), rng.normal(size=(2, 3, 5, 6))
    x = x.astype(np.float32)
    got = gru(ember.tensor(h), ember.tensor(x)).detach().numpy()
    w = {k: _t(v) for k, v in gru.state_dict().items()}

    def conv(name, z):
        return TF.conv2d(z, w[name + ".weight"], w[name + ".bias"], padding=(0, 2))

    ht, xt = _t(h), _t(x)
    z = torch.sigmoid(conv("convz", torch.cat([ht, xt], 1)))
    r = torch.sigmoid(conv("convr", torch.cat([ht, xt], 1)))
    q = torch.tanh(conv("convq", torch.cat([r * ht, xt], 1)))
    want = ((1 - z) * ht + z * q).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# torchvision 0.28's state_dicts as ordered "key:shape" lines, hashed (derived from its code;
# the published raft_*_C_T_*.pth checkpoints hold these keys)
@pytest.mark.parametrize(
    "name, n_params, n_keys, digest",
    [
        ("raft_small", 990162, 106, "5d5a1d21930d59e4"),
        ("raft_large", 5257536, 169, "c467f20f8593eda1"),
    ],
)
def test_torchvision_names_and_parameter_counts(name, n_params, n_keys, digest):
    model = models.get_model(name)
    sd = model.state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    assert (len(sd), hashlib.sha256(text.encode()).hexdigest()[:16]) == (n_keys, digest)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert models.get_model_weights(name).DEFAULT.meta["num_params"] == n_params


def test_registry_and_weights():
    assert models.list_models(module=optical_flow) == ["raft_large", "raft_small"]
    assert optical_flow.Raft_Large_Weights.DEFAULT is optical_flow.Raft_Large_Weights.C_T_SKHT_V2
    assert optical_flow.Raft_Small_Weights.DEFAULT.url.endswith("raft_small_C_T_V2-01064c6d.pth")
    assert optical_flow.Raft_Large_Weights.C_T_V1.transforms is OpticalFlow
    with pytest.raises(ValueError, match="Failed to find Weights"):
        optical_flow.raft_small(weights="C_T_SKHT_V2")


def test_raft_small_forward_backward_and_input_checks():
    ember.manual_seed(0)
    model = optical_flow.raft_small()
    a = ember.rand(1, 3, 128, 128) * 2 - 1
    b = ember.roll(a, 2, dims=3)
    a.requires_grad_(True)
    flows = model(a, b, num_flow_updates=2)
    assert len(flows) == 2 and all(tuple(f.shape) == (1, 2, 128, 128) for f in flows)
    sum(f.abs().mean() for f in flows).backward()
    assert a.grad is not None and bool(ember.isfinite(a.grad).all())
    assert all(p.grad is not None for p in model.update_block.parameters())

    with pytest.raises(ValueError, match="divisible by 8"):
        model(ember.zeros(1, 3, 132, 128), ember.zeros(1, 3, 132, 128))
    with pytest.raises(ValueError, match="same shape"):
        model(ember.zeros(1, 3, 128, 128), ember.zeros(1, 3, 128, 136))
    with pytest.raises(ValueError, match="should be at least 8 \\* 16 = 128"):
        model(ember.zeros(1, 3, 64, 128), ember.zeros(1, 3, 64, 128))


def _tiny_raft():
    # a RAFT small enough to train in CI: 2 pyramid levels, so 32x32 inputs are enough
    fe = FeatureEncoder(layers=(8, 8, 12, 16, 16), norm_layer=ember.nn.InstanceNorm2d)
    ce = FeatureEncoder(layers=(8, 8, 12, 16, 24), norm_layer=None)
    corr = CorrBlock(num_levels=2, radius=2)
    motion = MotionEncoder(in_channels_corr=corr.out_channels, corr_layers=(16,),
                           flow_layers=(16, 8), out_channels=18)  # fmt: skip
    rec = RecurrentBlock(input_size=18 + 8, hidden_size=16, kernel_size=(3,), padding=(1,))
    update = UpdateBlock(motion_encoder=motion, recurrent_block=rec,
                         flow_head=FlowHead(in_channels=16, hidden_size=16))  # fmt: skip
    return optical_flow.RAFT(feature_encoder=fe, context_encoder=ce, corr_block=corr,
                             update_block=update)  # fmt: skip


def test_tiny_raft_learns_a_translation():
    ember.manual_seed(0)
    model = _tiny_raft()
    img = ember.nn.functional.avg_pool2d(ember.rand(4, 3, 40, 40), 3, 1, 1) * 2 - 1
    # a[x] = img[x + 4] and b[x] = img[x + 2]: a's pixel at x is at x + 2 in b, flow (2, 0)
    a, b = img[..., 4:36, 4:36], img[..., 4:36, 2:34]
    target = ember.zeros(4, 2, 32, 32)
    target[:, 0] = 2.0
    opt = ember.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        flows = model(a, b, num_flow_updates=3)
        # RAFT's sequence loss: later predictions weigh more
        loss = sum(0.8 ** (2 - i) * (f - target).abs().mean() for i, f in enumerate(flows))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


def _flow_to_image_numpy(flow: np.ndarray) -> np.ndarray:
    # Baker et al.'s colour wheel, written from the paper's ramp lengths
    # (hues, start colour, the channel that ramps, up or down)
    ramps = [
        (15, [255, 0, 0], 1, 1),
        (6, [255, 255, 0], 0, -1),
        (4, [0, 255, 0], 2, 1),
        (11, [0, 255, 255], 1, -1),
        (13, [0, 0, 255], 0, 1),
        (6, [255, 0, 255], 2, -1),
    ]
    wheel = []
    for n, start, ch, sign in ramps:
        for i in range(n):
            c = list(start)
            c[ch] = np.floor(255 * i / n) if sign > 0 else 255 - np.floor(255 * i / n)
            wheel.append(c)
    wheel = np.array(wheel, dtype=np.float64)
    u, v = flow[:, 0].astype(np.float64), flow[:, 1].astype(np.float64)
    rad = np.sqrt(u**2 + v**2)
    scale = rad.max() + np.finfo(np.float32).eps
    u, v, rad = u / scale, v / scale, rad / scale
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
    k0 = np.floor(fk).astype(int)
    k1 = np.where(k0 + 1 == len(wheel), 0, k0 + 1)
    f = fk - k0
    col = (1 - f)[..., None] * wheel[k0] / 255 + f[..., None] * wheel[k1] / 255
    col = 1 - rad[..., None] * (1 - col)
    return np.floor(255 * col).astype(np.uint8).transpose(0, 3, 1, 2)


def test_flow_to_image_matches_numpy_reference():
    flow = np.random.default_rng(3).normal(scale=3.0, size=(2, 2, 9, 11)).astype(np.float32)
    flow[0, :, 0, 0] = 0.0  # no motion: white
    got = flow_to_image(ember.tensor(flow)).numpy()
    want = _flow_to_image_numpy(flow)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 9, 11)
    # float32 vs float64 rounding may move a value across an integer by one
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got != want).mean() < 0.01
    np.testing.assert_array_equal(got[0, :, 0, 0], [255, 255, 255])
    assert tuple(flow_to_image(ember.tensor(flow[1])).shape) == (3, 9, 11)
    with pytest.raises(ValueError, match="dtype"):
        flow_to_image(ember.tensor(flow, dtype=ember.float64))
    with pytest.raises(ValueError, match="shape"):
        flow_to_image(ember.zeros(3, 4, 4))


def test_optical_flow_preset():
    img = ember.tensor(np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4) % 256, dtype=ember.uint8)
    a, b = OpticalFlow()(img, img[0])
    assert a.dtype == ember.float32 and tuple(a.shape) == (2, 3, 4, 4)
    np.testing.assert_allclose(a.numpy(), img.numpy() / 255.0 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), a.numpy()[0], atol=1e-6)
    assert repr(OpticalFlow()) == "OpticalFlow()"


@pytest.mark.full
def test_raft_large_twelve_updates():
    ember.manual_seed(0)
    model = optical_flow.raft_large().eval()
    a = ember.rand(1, 3, 128, 160) * 2 - 1
    with ember.no_grad():
        flows = model(a, ember.roll(a, 3, dims=3))
    assert len(flows) == 12 and tuple(flows[-1].shape) == (1, 2, 128, 160)
    assert bool(ember.isfinite(flows[-1]).all())
