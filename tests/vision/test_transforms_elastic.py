"""ElasticTransform and functional.elastic_transform, as torchvision's (checked there against
torchvision 0.28 itself: the same displacement fields under one seed and the same outputs on
PIL images, uint8 and float tensors)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import transforms as T
from ember.vision.transforms import functional as F
from ember.vision.transforms import v2

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")
IMG = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)


def test_unsmoothed_fields_are_torchs_draws():
    ember.manual_seed(4)
    d = T.ElasticTransform.get_params([10.0, 20.0], [0.0, 0.0], [37, 53])
    torch.manual_seed(4)
    dx = (torch.rand([1, 1, 37, 53]) * 2 - 1) * 10.0 / 53
    dy = (torch.rand([1, 1, 37, 53]) * 2 - 1) * 20.0 / 37
    ref = torch.cat([dx, dy], 1).permute(0, 2, 3, 1)
    assert tuple(d.shape) == (1, 37, 53, 2)
    np.testing.assert_allclose(d.numpy(), ref.numpy(), atol=1e-7)


def test_warp_is_grid_sample_of_identity_plus_displacement():
    x = IMG.transpose(2, 0, 1).astype(np.float32)[None] / 255
    ember.manual_seed(1)
    d = T.ElasticTransform.get_params([30.0, 30.0], [3.0, 3.0], [37, 53])
    out = F.elastic_transform(ember.tensor(x[0]), d).numpy()
    ys = torch.linspace(-36 / 37, 36 / 37, 37)
    xs = torch.linspace(-52 / 53, 52 / 53, 53)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None] + torch.tensor(d.numpy())
    ref = torch.nn.functional.grid_sample(torch.tensor(x), grid, align_corners=False)[0]
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5)
    zero = F.elastic_transform(ember.tensor(x[0]), ember.zeros(1, 37, 53, 2))
    np.testing.assert_allclose(zero.numpy(), x[0], atol=1e-5)  # identity (float32 grid)


def test_transform_on_pil_uint8_and_v2():
    t = T.ElasticTransform(alpha=30.0, sigma=3.0, fill=4)
    out = t(PIL.fromarray(IMG))
    assert out.size == (53, 37) and out.mode == "RGB"
    x = ember.tensor(IMG).permute(2, 0, 1).contiguous()
    assert t(x).dtype == ember.uint8 and t(x).shape == x.shape
    assert v2.ElasticTransform(alpha=20.0)(x).shape == x.shape
    with pytest.raises(ValueError, match="length should be 2"):
        T.ElasticTransform(alpha=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="displacement shape"):
        F.elastic_transform(x, ember.zeros(1, 5, 5, 2))
