"""v2's perspective and elastic warps on bounding boxes and masks (``RandomPerspective`` and
``ElasticTransform`` on whole samples), against torch references written from torchvision's
formulas (checked there against torchvision 0.28 itself: equal boxes, images and masks under
the same seeds, tests/vision/test_torchvision_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import tv_tensors as tv
from ember.vision.transforms import InterpolationMode, v2
from ember.vision.transforms import functional as F1
from ember.vision.transforms.v2 import functional as F

torch = pytest.importorskip("torch")

H, W = 37, 53
START = [[0, 0], [52, 0], [52, 36], [0, 36]]
END = [[3, 2], [49, 4], [47, 35], [2, 31]]
BOXES = np.array([[3, 4, 20, 30], [10.5, 2.2, 40.7, 33.1], [30, 20, 52, 36]], np.float32)


def _torch_perspective_boxes(boxes: np.ndarray, c: list[float]) -> np.ndarray:
    # torchvision's perspective_bounding_boxes on XYXY float boxes, in torch ops
    d = c[0] * c[4] - c[1] * c[3]
    inv = [
        (c[4] - c[5] * c[7]) / d,
        (-c[1] + c[2] * c[7]) / d,
        (c[1] * c[5] - c[2] * c[4]) / d,
        (-c[3] + c[5] * c[6]) / d,
        (c[0] - c[2] * c[6]) / d,
        (-c[0] * c[5] + c[2] * c[3]) / d,
        (-c[4] * c[6] + c[3] * c[7]) / d,
        (-c[0] * c[7] + c[1] * c[6]) / d,
    ]
    t1 = torch.tensor([inv[0:3], inv[3:6]])
    t2 = torch.tensor([[inv[6], inv[7], 1.0]] * 2)
    b = torch.tensor(boxes)
    pts = b[:, [[0, 1], [2, 1], [2, 3], [0, 3]]].reshape(-1, 2)
    pts = torch.cat([pts, torch.ones(pts.shape[0], 1)], -1)
    moved = (pts @ t1.T / (pts @ t2.T)).reshape(-1, 4, 2)
    out = torch.cat([moved.amin(1), moved.amax(1)], 1)
    out[:, 0::2] = out[:, 0::2].clamp(0, W)
    out[:, 1::2] = out[:, 1::2].clamp(0, H)
    return out.numpy()


def _torch_elastic_boxes(boxes: np.ndarray, disp: np.ndarray) -> np.ndarray:
    xs = torch.linspace((-W + 1) / W, (W - 1) / W, W)
    ys = torch.linspace((-H + 1) / H, (H - 1) / H, H)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # H, W, 2
    inv = grid - torch.tensor(disp[0])
    pts = torch.tensor(boxes)[:, [[0, 1], [2, 1], [2, 3], [0, 3]]].reshape(-1, 2).ceil().long()
    ix, iy = pts[:, 0].clamp(0, W - 1), pts[:, 1].clamp(0, H - 1)
    moved = ((inv[iy, ix] + 1) * (0.5 * torch.tensor([W, H])) - 0.5).reshape(-1, 4, 2)
    out = torch.cat([moved.amin(1), moved.amax(1)], 1)
    out[:, 0::2] = out[:, 0::2].clamp(0, W)
    out[:, 1::2] = out[:, 1::2].clamp(0, H)
    return out.numpy()


def test_perspective_moves_boxes_by_their_corners():
    from ember.vision.transforms._geometry import perspective_coeffs

    boxes = tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W))
    out = F.perspective(boxes, START, END)
    assert isinstance(out, tv.BoundingBoxes) and out.canvas_size == (H, W)
    ref = _torch_perspective_boxes(BOXES, perspective_coeffs(START, END))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-4)
    # the same through the coefficients, and in another format
    c = perspective_coeffs(START, END)
    cxcywh = F.convert_bounding_box_format(boxes, new_format="CXCYWH")
    out2 = F.perspective(cxcywh, None, None, coefficients=c)
    assert out2.format == tv.BoundingBoxFormat.CXCYWH
    back = F.convert_bounding_box_format(out2, new_format="XYXY").numpy()
    np.testing.assert_allclose(back, ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="shouldn't be defined concurrently"):
        F.perspective(boxes, START, END, coefficients=c)
    with pytest.raises(ValueError, match="8 float values"):
        F.perspective(boxes, None, None, coefficients=c[:7])


def test_elastic_moves_boxes_through_the_inverse_grid():
    ember.manual_seed(0)
    disp = v2.ElasticTransform(alpha=30.0, sigma=3.0).get_params([30.0, 30.0], [3.0, 3.0], [H, W])
    boxes = tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W))
    out = F.elastic(boxes, disp)
    ref = _torch_elastic_boxes(BOXES, disp.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="displacement shape"):
        F.elastic(boxes, ember.zeros(1, H, W + 1, 2))
    with pytest.raises(TypeError, match="displacement should be a Tensor"):
        F.elastic(boxes, disp.numpy())


def test_integer_boxes_truncate_as_torchvision():
    boxes = tv.BoundingBoxes(BOXES.astype(np.int64), format="XYWH", canvas_size=(H, W))
    out = F.perspective(boxes, START, END)
    assert out.dtype == ember.int64 and out.format == tv.BoundingBoxFormat.XYWH
    xyxy = BOXES.astype(np.int64).copy()
    xyxy[:, 2:] += xyxy[:, :2]
    from ember.vision.transforms._geometry import perspective_coeffs

    ref = _torch_perspective_boxes(xyxy.astype(np.float32), perspective_coeffs(START, END))
    ref[:, 2:] -= ref[:, :2]
    np.testing.assert_allclose(out.numpy(), np.trunc(ref), atol=1)  # one ulp may flip a unit


@pytest.mark.parametrize("op", ["perspective", "elastic"])
def test_masks_warp_with_nearest_and_keep_their_shape(op):
    rng = np.random.default_rng(0)
    m = (rng.random((H, W)) * 4).astype(np.uint8)
    if op == "perspective":
        out = F.perspective(tv.Mask(m), START, END)
        ref = F1.perspective(ember.tensor(m[None]), START, END, InterpolationMode.NEAREST)
    else:
        disp = ember.tensor(rng.uniform(-0.05, 0.05, (1, H, W, 2)).astype(np.float32))
        out = F.elastic(tv.Mask(m), disp)
        ref = F1.elastic_transform(ember.tensor(m[None]), disp, InterpolationMode.NEAREST)
    assert isinstance(out, tv.Mask) and tuple(out.shape) == (H, W)
    np.testing.assert_array_equal(out.numpy(), ref.numpy()[0])
    assert set(np.unique(out.numpy())) <= set(np.unique(m))


def test_random_perspective_moves_the_whole_sample_with_one_draw():
    rng = np.random.default_rng(1)
    img = (rng.random((3, H, W)) * 255).astype(np.uint8)
    t = v2.RandomPerspective(distortion_scale=0.6, p=1.0)
    ember.manual_seed(3)
    out_img, out_boxes, out_mask = t(
        tv.Image(img), tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W)), tv.Mask(img[0])
    )
    # the same draws by hand: p, then the corners (torchvision's order)
    ember.manual_seed(3)
    from ember.vision.transforms import RandomPerspective

    float(ember.rand(1))
    start, end = RandomPerspective.get_params(W, H, 0.6)
    ref_img = F1.perspective(ember.tensor(img), start, end, fill=[0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out_img.numpy(), ref_img.numpy())
    ref_boxes = F.perspective(
        tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W)), start, end
    )
    np.testing.assert_allclose(out_boxes.numpy(), ref_boxes.numpy())
    ref_mask = F.perspective(tv.Mask(img[0]), start, end, fill=0)
    np.testing.assert_array_equal(out_mask.numpy(), ref_mask.numpy())
    assert isinstance(out_img, tv.Image) and isinstance(out_mask, tv.Mask)
    # p=0 leaves the sample alone
    same = v2.RandomPerspective(p=0.0)(tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W)))
    np.testing.assert_array_equal(same.numpy(), BOXES)


def test_elastic_transform_moves_boxes_and_masks_with_the_image():
    rng = np.random.default_rng(2)
    img = (rng.random((3, H, W)) * 255).astype(np.uint8)
    t = v2.ElasticTransform(alpha=40.0, sigma=4.0)
    ember.manual_seed(5)
    out = t(
        {
            "image": tv.Image(img),
            "boxes": tv.BoundingBoxes(BOXES, format="XYXY", canvas_size=(H, W)),
            "mask": tv.Mask(img[0]),
            "label": 7,
        }
    )  # noqa: E501
    ember.manual_seed(5)
    disp = t.get_params(t.alpha, t.sigma, [H, W])
    np.testing.assert_array_equal(
        out["image"].numpy(), F1.elastic_transform(ember.tensor(img), disp, fill=[0.0]).numpy()
    )
    np.testing.assert_allclose(
        out["boxes"].numpy(), _torch_elastic_boxes(BOXES, disp.numpy()), atol=1e-4
    )
    assert isinstance(out["mask"], tv.Mask) and out["label"] == 7
