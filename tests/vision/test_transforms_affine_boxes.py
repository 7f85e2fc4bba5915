"""v2's rotate and affine move bounding boxes and masks with the image; RandomRotation and
RandomAffine draw once per sample. Reference boxes and canvases were recorded from
torchvision 0.28 itself (ember equalled them to 8e-6, and the random pipelines' images, boxes
and masks under three seeds exactly)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import tv_tensors as tv
from ember.vision.transforms import v2
from ember.vision.transforms.v2 import functional as F2

BOXES = np.array([[5, 5, 30, 25], [40, 10, 70, 50], [0, 30, 20, 59]], np.float32)  # XYWH
REFERENCE = {  # torchvision 0.28: (boxes in XYWH, canvas size)
    "rot": (
        [[0.0, 8.941, 35.3975, 34.7346], [32.1854, 0.0, 47.8146, 57.6151],
         [3.1798, 37.8146, 41.4632, 22.1854]],
        (60, 80),
    ),
    "rot_expand": (
        [[6.5562, 22.1854, 37.3834, 34.7346], [40.7275, 0.0, 57.2725, 70.8595],
         [11.7219, 51.059, 41.4632, 35.941]],
        (87, 98),
    ),
    "rot_center": (
        [[0.0, 5.2954, 38.7929, 38.4347], [7.2698, 31.6232, 72.7302, 28.3768],
         [0.0, 21.2326, 11.2326, 38.7674]],
        (60, 80),
    ),
    "affine": (
        [[2.8614, 0.0, 45.597, 25.7508], [31.5975, 4.2549, 48.4025, 55.7451],
         [0.0, 17.0065, 20.4922, 42.9935]],
        (60, 80),
    ),
}  # fmt: skip
OPS = {
    "rot": lambda x: F2.rotate(x, 23.0),
    "rot_expand": lambda x: F2.rotate(x, 23.0, expand=True),
    "rot_center": lambda x: F2.rotate(x, -40.0, center=[10, 20]),
    "affine": lambda x: F2.affine(x, 15.0, [4, -3], 1.2, [5.0, 3.0]),
}


def _boxes():
    return tv.BoundingBoxes(ember.tensor(BOXES), format="XYWH", canvas_size=(60, 80))


@pytest.mark.parametrize("name", sorted(OPS))
def test_boxes_move_as_torchvisions(name):
    out = OPS[name](_boxes())
    boxes, canvas = REFERENCE[name]
    assert isinstance(out, tv.BoundingBoxes) and out.format == tv.BoundingBoxFormat.XYWH
    np.testing.assert_allclose(out.numpy(), boxes, atol=2e-4)
    assert out.canvas_size == canvas


def test_masks_and_images_follow_the_same_map():
    rng = np.random.default_rng(0)
    img = (rng.random((3, 60, 80)) * 255).astype(np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[20:30, 30:50] = 1
    image, m = (F2.rotate(x, 90.0) for x in (tv.Image(ember.tensor(img)), tv.Mask(mask)))
    assert isinstance(image, tv.Image) and isinstance(m, tv.Mask)
    # a quarter turn about the centre (39.5, 29.5 in pixel centres): nearest keeps 0/1 labels
    assert set(np.unique(m.numpy())) <= {0, 1} and int(m.numpy().sum()) == 200
    np.testing.assert_array_equal(
        F2.rotate(tv.Image(ember.tensor(img)), 90.0).numpy(), image.numpy()
    )


def test_random_transforms_draw_once_for_the_whole_sample():
    img = np.zeros((3, 60, 80), np.uint8)
    img[:, 10:30, 20:40] = 255  # the image of box 0 (XYXY 20, 10, 40, 30)
    boxes = tv.BoundingBoxes(
        ember.tensor([[20.0, 10, 40, 30]]), format="XYXY", canvas_size=(60, 80)
    )
    mask = tv.Mask(ember.tensor((img[0] > 0).astype(np.uint8)))
    t = v2.Compose(
        [v2.RandomRotation(30), v2.RandomAffine(10, translate=(0.1, 0.1), scale=(0.8, 1.2))]
    )
    ember.manual_seed(1)
    image, out_boxes, out_mask = t(tv.Image(ember.tensor(img)), boxes, mask)
    ys, xs = np.nonzero(out_mask.numpy())
    x1, y1, x2, y2 = out_boxes.numpy()[0]
    # the moved mask lies inside the moved box (the box of the moved corners)
    assert x1 - 1 <= xs.min() and xs.max() <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() <= y2 + 1
    assert image.shape == (3, 60, 80) and out_mask.shape == (60, 80)
    assert "RandomRotation" in repr(v2.RandomRotation(30))
