"""v2's further transforms, kernels and helpers (Identity, RGB, RandomChannelPermutation,
GaussianNoise, JPEG, AugMix, LinearTransformation, RandomResize, RandomShortestSize,
ScaleJitter, UniformTemporalSubsample; the per-type kernel names; query_size & co.; the
DIoU / CIoU losses), against torch references written from torchvision's code (checked there
against torchvision 0.28 itself, tests/vision/test_torchvision_parity.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.vision import ops
from ember.vision import transforms as T
from ember.vision import tv_tensors as tv
from ember.vision.transforms import v2
from ember.vision.transforms.v2 import functional as F

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
IMG = (RNG.random((3, 37, 53)) * 255).astype(np.uint8)
BOXES = np.array([[3, 4, 20, 30], [10.5, 2.2, 40.7, 33.1]], np.float32)


def _sample():
    return (
        tv.Image(IMG),
        tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(37, 53)),
        tv.Mask(IMG[0] > 127),
    )


def test_identity_rgb_and_channel_permutation():
    x = ember.tensor(IMG)
    assert v2.Identity()(x) is x
    gray = tv.Image(IMG[:1])
    rgb = v2.RGB()(gray)
    assert isinstance(rgb, tv.Image) and tuple(rgb.shape) == (3, 37, 53)
    np.testing.assert_array_equal(rgb.numpy(), np.repeat(IMG[:1], 3, 0))
    assert v2.RGB()(x) is x
    torch.manual_seed(4)
    perm = torch.randperm(3).tolist()
    ember.manual_seed(4)
    out = v2.RandomChannelPermutation()(x)
    np.testing.assert_array_equal(out.numpy(), IMG[perm])
    with pytest.raises(ValueError, match="Length of permutation"):
        F.permute_channels(x, [0, 1])


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_gaussian_noise_draws_as_torchvision(dtype):
    x = IMG.astype(np.float32) / 255 if dtype == "float32" else IMG
    torch.manual_seed(1)
    t = torch.tensor(x)
    if dtype == "float32":
        ref = torch.clamp(t + (0.0 + torch.randn_like(t) * 0.2), 0, 1)
    else:
        noise = (torch.randn_like(t, dtype=torch.float32) * (0.2 * 255)).to(torch.int16)
        ref = torch.clamp(t + noise, 0, 255).to(torch.uint8)
    ember.manual_seed(1)
    out = v2.GaussianNoise(sigma=0.2)(tv.Image(x))
    assert isinstance(out, tv.Image) and out.dtype == getattr(ember, dtype)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="sigma shouldn't be negative"):
        F.gaussian_noise(ember.tensor(x), sigma=-1.0)


def test_size_jitter_resizes_draw_as_torchvision():
    for seed in range(3):
        torch.manual_seed(seed)
        size = int(torch.randint(20, 60, ()))
        ember.manual_seed(seed)
        img, boxes, mask = v2.RandomResize(20, 60)(*_sample())
        assert min(img.shape[-2:]) == size and boxes.canvas_size == tuple(img.shape[-2:])
        assert tuple(mask.shape) == tuple(img.shape[-2:])

        torch.manual_seed(seed)
        short = [20, 30, 40][int(torch.randint(3, ()))]
        r = min(short / 37, 70 / 53)
        ember.manual_seed(seed)
        img, _, _ = v2.RandomShortestSize([20, 30, 40], max_size=70)(*_sample())
        assert tuple(img.shape[-2:]) == (int(37 * r), int(53 * r))

        torch.manual_seed(seed)
        scale = 0.1 + torch.rand(1) * (2.0 - 0.1)
        r = min(80 / 37, 64 / 53) * scale
        ember.manual_seed(seed)
        img, boxes, _ = v2.ScaleJitter((64, 80))(*_sample())
        assert tuple(img.shape[-2:]) == (int(37 * r), int(53 * r))
        np.testing.assert_allclose(
            boxes.numpy(), BOXES * ([img.shape[-1] / 53, img.shape[-2] / 37] * 2), rtol=1e-5
        )


def test_uniform_temporal_subsample_and_linear_transformation():
    video = RNG.random((10, 3, 4, 4)).astype(np.float32)
    idx = torch.linspace(0, 9, 4).long()
    out = v2.UniformTemporalSubsample(4)(ember.tensor(video))
    np.testing.assert_array_equal(out.numpy(), video[idx.numpy()])
    assert F.get_num_frames(ember.tensor(video)) == 10

    m = RNG.standard_normal((48, 48)).astype(np.float32)
    mean = RNG.standard_normal(48).astype(np.float32)
    x = RNG.random((2, 3, 4, 4)).astype(np.float32)
    ref = torch.mm(torch.tensor(x).view(-1, 48) - torch.tensor(mean), torch.tensor(m)).view(x.shape)
    for t in (T.LinearTransformation, v2.LinearTransformation):
        out = t(ember.tensor(m), ember.tensor(mean))(ember.tensor(x))
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="should be square"):
        T.LinearTransformation(ember.zeros(3, 4), ember.zeros(3))
    with pytest.raises(ValueError, match="incompatible shape"):
        T.LinearTransformation(ember.tensor(m), ember.tensor(mean))(ember.zeros(1, 3, 2, 2))


def test_augmix_mixes_with_dirichlet_weights():
    x = ember.tensor(IMG)
    ember.manual_seed(0)
    a = T.AugMix()(x)
    ember.manual_seed(0)
    b = T.AugMix()(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == ember.uint8 and tuple(a.shape) == IMG.shape
    # one chain of the identity-like op only: the mix is the image (weights sum to one)
    ember.manual_seed(0)
    out = v2.AugMix(mixture_width=1, chain_depth=1, severity=1)(tv.Image(IMG))
    assert isinstance(out, tv.Image)
    with pytest.raises(ValueError, match="severity must be between"):
        T.AugMix(severity=11)
    with pytest.raises(TypeError, match="BoundingBoxes are not supported by AugMix"):
        v2.AugMix()(*_sample())


def test_jpeg_round_trips_through_pillow():
    pytest.importorskip("PIL")
    yy, xx = np.mgrid[0:37, 0:53]
    smooth = np.stack([xx * 4, yy * 6, xx + yy]).astype(np.uint8)
    out = v2.JPEG(quality=(90, 95))(tv.Image(smooth))
    assert isinstance(out, tv.Image) and out.dtype == ember.uint8
    assert np.abs(out.numpy().astype(int) - smooth).mean() < 3  # lossy but close
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100"):
        v2.JPEG(0)
    with pytest.raises(TypeError, match="uint8"):
        F.jpeg(ember.tensor(IMG.astype(np.float32)), 50)


def test_per_type_kernels_take_plain_tensors():
    b = ember.tensor(BOXES)
    out, canvas = F.resize_bounding_boxes(b, (37, 53), [20, 30], format="XYXY")
    assert canvas == (20, 30) and not isinstance(out, tv.TVTensor)
    np.testing.assert_allclose(out.numpy(), BOXES * ([30 / 53, 20 / 37] * 2), rtol=1e-6)
    out, canvas = F.crop_bounding_boxes(b, tv.BoundingBoxFormat.XYXY, 2, 3, 20, 25)
    np.testing.assert_allclose(out.numpy(), [[0, 2, 17, 20], [7.5, 0.2, 25, 20]], atol=1e-5)
    flipped = F.horizontal_flip_bounding_boxes(b, tv.BoundingBoxFormat.XYXY, (37, 53))
    np.testing.assert_allclose(flipped.numpy()[:, [0, 2]], 53 - BOXES[:, [2, 0]], rtol=1e-6)
    m = ember.tensor(IMG[0])
    rm = F.resize_mask(m, [20, 30])
    assert tuple(rm.shape) == (20, 30) and not isinstance(rm, tv.TVTensor)
    img = F.rotate_image(ember.tensor(IMG), 20.0)
    np.testing.assert_array_equal(img.numpy(), T.functional.rotate(ember.tensor(IMG), 20.0).numpy())
    assert F.get_size_bounding_boxes(
        tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(5, 6))
    ) == [5, 6]
    kept, valid = F.sanitize_bounding_boxes(
        ember.tensor(np.array([[0, 0, 5, 5], [3, 3, 3, 8], [0, 0, 60, 5]], np.float32)),
        format="XYXY",
        canvas_size=(37, 53),
    )
    assert valid.tolist() == [True, False, False] and kept.shape[0] == 1


def test_query_helpers():
    img, boxes, mask = _sample()
    flat = [img, boxes, mask, "label"]
    assert v2.query_size(flat) == (37, 53) and v2.query_chw(flat) == (3, 37, 53)
    assert v2.has_any(flat, tv.Mask) and not v2.has_any(
        flat, tv.Video if hasattr(tv, "Video") else int
    )
    assert v2.has_all(flat, tv.Image, tv.BoundingBoxes) and not v2.has_all(flat, tv.Image, float)
    assert v2.check_type(img, (F.is_pure_tensor, tv.Image))
    assert v2.get_bounding_boxes(flat) is boxes
    with pytest.raises(ValueError, match="Found multiple HxW"):
        v2.query_size([img, tv.Mask(np.zeros((5, 5), np.uint8))])
    with pytest.raises(ValueError, match="No bounding boxes"):
        v2.get_bounding_boxes([img])


def _torch_diou_ciou(b1, b2, eps=1e-7):
    x1, y1, x2, y2 = b1.unbind(-1)
    g1, h1, g2, h2 = b2.unbind(-1)
    inter = (torch.min(x2, g2) - torch.max(x1, g1)).clamp(min=0) * (
        torch.min(y2, h2) - torch.max(y1, h1)
    ).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (g2 - g1) * (h2 - h1) - inter
    iou = inter / (union + eps)
    diag = (
        (torch.max(x2, g2) - torch.min(x1, g1)) ** 2
        + (torch.max(y2, h2) - torch.min(y1, h1)) ** 2
        + eps
    )  # noqa: E501
    cd = ((x1 + x2) / 2 - (g1 + g2) / 2) ** 2 + ((y1 + y2) / 2 - (h1 + h2) / 2) ** 2
    diou = 1 - iou + cd / diag
    v = (4 / math.pi**2) * (
        torch.atan((g2 - g1) / (h2 - h1)) - torch.atan((x2 - x1) / (y2 - y1))
    ) ** 2  # noqa: E501
    alpha = (v / (1 - iou + v + eps)).detach()
    return diou, diou + alpha * v


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_distance_and_complete_iou_losses(reduction):
    b1 = np.array([[0, 0, 10, 10], [5, 5, 15, 25], [1, 2, 3, 4]], np.float32)
    b2 = np.array([[1, 1, 9, 12], [20, 20, 30, 30], [1, 2, 3, 4]], np.float32)
    tb1 = torch.tensor(b1, requires_grad=True)
    diou, ciou = _torch_diou_ciou(tb1, torch.tensor(b2))
    red = {"none": lambda t: t, "mean": torch.mean, "sum": torch.sum}[reduction]
    for fn, ref in ((ops.distance_box_iou_loss, diou), (ops.complete_box_iou_loss, ciou)):
        e1 = ember.tensor(b1, requires_grad=True)
        out = fn(e1, ember.tensor(b2), reduction=reduction)
        np.testing.assert_allclose(out.detach().numpy(), red(ref).detach().numpy(), rtol=1e-5)
        out.sum().backward()
        (g,) = torch.autograd.grad(red(ref).sum(), tb1, retain_graph=True)
        np.testing.assert_allclose(e1.grad.numpy(), g.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
        ops.complete_box_iou_loss(ember.tensor(b1), ember.tensor(b2), reduction="avg")


def test_v2_auto_augment_draws_torchvisions_v2_sequence():
    from ember.vision.transforms.autoaugment import _apply_op, _space

    x = ember.tensor(IMG)
    for seed in range(4):
        # torchvision v2's TrivialAugmentWide: op, bin, then a sign by rand() <= 0.5
        torch.manual_seed(seed)
        space = _space(31, (37, 53), wide=True)
        name = list(space)[int(torch.randint(len(space), ()))]
        mags, signed = space[name]
        magnitude = 0.0
        if mags is not None:
            index = int(torch.randint(31, ()))
            magnitude = float(mags[index])
            if name == "Solarize":
                magnitude = 255.0 * float(np.linspace(1.0, 0.0, 31).astype(np.float32)[index])
            if signed and torch.rand(()) <= 0.5:
                magnitude *= -1.0
        ref = _apply_op(x, name, magnitude, T.InterpolationMode.NEAREST, None)
        ember.manual_seed(seed)
        out = v2.TrivialAugmentWide()(x)
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
    with pytest.raises(TypeError, match="BoundingBoxes are not supported by RandAugment"):
        v2.RandAugment()(*_sample())
