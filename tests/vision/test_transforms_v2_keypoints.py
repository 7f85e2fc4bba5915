"""``tv_tensors.KeyPoints`` through transforms.v2: torchvision 0.28's kernels (no clamping;
flips map ``x -> W - 1 - x``), checked against torch references of its formulas (and against
torchvision itself in tests/vision/test_torchvision_parity.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.vision import tv_tensors as tv
from ember.vision.transforms import v2
from ember.vision.transforms.v2 import functional as F

torch = pytest.importorskip("torch")

H, W = 37, 53
KP = np.array([[[3, 4], [20, 30], [50.5, 2.2]], [[10, 36], [0, 0], [52, 36]]], np.float32)


def _kp(a=KP):
    return tv.KeyPoints(a, canvas_size=(H, W))


def test_construction_and_simple_kernels():
    assert tuple(tv.KeyPoints([3.0, 4.0], canvas_size=(5, 6)).shape) == (1, 2)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        tv.KeyPoints(np.zeros((2, 3)), canvas_size=(5, 6))
    out = F.horizontal_flip(_kp())
    assert isinstance(out, tv.KeyPoints) and out.canvas_size == (H, W)
    np.testing.assert_allclose(out.numpy()[..., 0], W - 1 - KP[..., 0])
    np.testing.assert_allclose(F.vertical_flip(_kp()).numpy()[..., 1], H - 1 - KP[..., 1])
    out = F.resize(_kp(), [20, 30])
    ratios = torch.tensor([30 / W, 20 / H])
    np.testing.assert_allclose(out.numpy(), (torch.tensor(KP) * ratios).numpy())
    assert out.canvas_size == (20, 30)
    out = F.crop(_kp(), 2, 3, 20, 25)  # not clamped, as torchvision's
    np.testing.assert_allclose(out.numpy(), KP - [3, 2])
    assert out.canvas_size == (20, 25)
    out = F.pad(_kp(), [1, 2, 3, 4])
    np.testing.assert_allclose(out.numpy(), KP + [1, 2])
    assert out.canvas_size == (H + 6, W + 4)
    clamped = F.clamp_keypoints(_kp(KP - 5))
    assert clamped.numpy()[..., 0].min() == 0 and clamped.numpy()[..., 0].max() <= W - 1


def test_rotate_with_expand_moves_points_with_the_canvas():
    out = F.rotate(_kp(), 30.0, expand=True)
    a = math.radians(-30.0)
    c, s = math.cos(a), math.sin(a)
    cx, cy = W / 2, H / 2
    m = torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])
    pts = torch.cat([torch.tensor(KP).reshape(-1, 2), torch.ones(6, 1)], 1) @ m.T
    corners = torch.tensor([[0.0, 0, 1], [0, H, 1], [W, H, 1], [W, 0, 1]]) @ m.T
    ref = (pts - corners.amin(0)).reshape(KP.shape)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-4)
    img = F.rotate(tv.Image(np.zeros((3, H, W), np.uint8)), 30.0, expand=True)
    assert out.canvas_size == tuple(img.shape[-2:])


def test_sample_transforms_move_keypoints():
    img = tv.Image(np.zeros((3, H, W), np.uint8))
    ember.manual_seed(0)
    out_img, out_kp = v2.RandomResizedCrop(24)(img, _kp())
    assert isinstance(out_kp, tv.KeyPoints) and out_kp.canvas_size == (24, 24)
    out = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.ClampKeyPoints(), v2.ToPureTensor()])(
        img, _kp()
    )
    assert not isinstance(out[1], tv.TVTensor)
    assert v2.get_keypoints([img, _kp(), 3]).canvas_size == (H, W)
    assert v2.query_size([_kp()]) == (H, W)
    pts, canvas = F.resize_keypoints(ember.tensor(KP), [20, 30], (H, W))
    assert canvas == (20, 30) and not isinstance(pts, tv.TVTensor)


def test_sanitize_keypoints_drops_groups_outside_the_canvas():
    kp = np.array([[[3, 4], [20, 30]], [[10, 36], [-1, 0]], [[1, 1], [52, 37]]], np.float32)
    out = v2.SanitizeKeyPoints(labels_getter="default")(
        {"kp": tv.KeyPoints(kp, canvas_size=(H, W)), "labels": ember.tensor([1, 2, 3])}
    )
    assert out["labels"].tolist() == [1] and isinstance(out["kp"], tv.KeyPoints)
    np.testing.assert_array_equal(out["kp"].numpy(), kp[:1])
    kept, valid = F.sanitize_keypoints(ember.tensor(kp.reshape(-1, 2)), canvas_size=(H, W))
    assert valid.tolist() == [True, True, True, False, True, False] and kept.shape[0] == 4
    with pytest.raises(ValueError, match="canvas_size cannot be None"):
        F.sanitize_keypoints(ember.tensor(kp))
