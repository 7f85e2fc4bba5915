"""v2's detection augmentations: RandomPhotometricDistort, RandomZoomOut, RandomIoUCrop,
SanitizeBoundingBoxes. The SSD pipeline's outputs under three seeds were recorded from
torchvision 0.28 itself (ember draws torchvision's random calls from torch's CPU stream)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import tv_tensors as tv
from ember.vision.transforms import v2

IMG = (np.random.default_rng(0).random((3, 60, 80)) * 255).astype(np.uint8)
BOXES = np.array([[5, 5, 30, 25], [40, 10, 70, 50], [0, 30, 20, 59], [60, 40, 62, 41]], np.float32)
LABELS = np.array([1, 2, 3, 4])

# torchvision 0.28: (shape, pixel sum, boxes, labels) of the pipeline below after manual_seed(s)
SSD_REFERENCE = {
    0: (
        (3, 132, 176),
        8266780,
        [[144, 17, 169, 37], [104, 22, 134, 62], [154, 42, 174, 71], [112, 52, 114, 53]],
        [1, 2, 3, 4],
    ),
    1: ((3, 28, 25), 264489, [[0, 0, 25, 28]], [2]),
    2: ((3, 44, 24), 395713, [[0, 6, 24, 44], [2, 36, 4, 37]], [2, 4]),
}


def _sample():
    boxes = tv.BoundingBoxes(ember.tensor(BOXES), format="XYXY", canvas_size=(60, 80))
    return tv.Image(ember.tensor(IMG)), {"boxes": boxes, "labels": ember.tensor(LABELS)}


@pytest.mark.parametrize("seed", sorted(SSD_REFERENCE))
def test_ssd_pipeline_equals_torchvisions(seed):
    ssd = v2.Compose(
        [
            v2.RandomPhotometricDistort(),
            v2.RandomZoomOut(fill=[123.0, 117.0, 104.0]),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(),
            v2.SanitizeBoundingBoxes(),
        ]
    )
    ember.manual_seed(seed)
    image, target = ssd(*_sample())
    shape, total, boxes, labels = SSD_REFERENCE[seed]
    assert tuple(image.shape) == shape and isinstance(image, tv.Image)
    assert abs(int(image.numpy().astype(np.int64).sum()) - total) <= 3 * np.prod(shape) // 1000
    np.testing.assert_allclose(target["boxes"].numpy(), boxes)
    assert target["labels"].tolist() == labels
    assert target["boxes"].canvas_size == shape[1:]


def test_zoom_out_places_the_image_on_a_filled_canvas():
    ember.manual_seed(0)
    image, target = v2.RandomZoomOut(fill=[1, 2, 3], side_range=(2.0, 2.0), p=1.0)(*_sample())
    assert tuple(image.shape) == (3, 120, 160)
    left = int(target["boxes"].numpy()[0, 0] - BOXES[0, 0])
    top = int(target["boxes"].numpy()[0, 1] - BOXES[0, 1])
    np.testing.assert_array_equal(image.numpy()[:, top : top + 60, left : left + 80], IMG)
    assert image.numpy()[:, 0, 0].tolist() in ([1, 2, 3], IMG[:, 0, 0].tolist())
    np.testing.assert_allclose(target["boxes"].numpy(), BOXES + [left, top, left, top])
    with pytest.raises(ValueError, match="Invalid side range"):
        v2.RandomZoomOut(side_range=(0.5, 2.0))


def test_iou_crop_zeroes_boxes_outside_and_sanitize_drops_them():
    ember.manual_seed(3)
    image, target = v2.RandomIoUCrop(sampler_options=[0.3])(*_sample())
    h, w = image.shape[-2:]
    boxes = target["boxes"].numpy()
    zero = (boxes == 0).all(1)
    assert not zero.all() and target["boxes"].canvas_size == (h, w)
    image, target = v2.SanitizeBoundingBoxes()(image, target)
    assert len(target["labels"]) == (~zero).sum() == len(target["boxes"])
    # "leave as is" option
    same = v2.RandomIoUCrop(sampler_options=[1.0])(*_sample())
    assert tuple(same[0].shape) == (3, 60, 80)
    with pytest.raises(TypeError, match="bounding boxes"):
        v2.RandomIoUCrop()(tv.Image(ember.tensor(IMG)))


def test_sanitize_drops_degenerate_boxes_with_labels_and_masks():
    boxes = tv.BoundingBoxes(
        ember.tensor([[0, 0, 10, 10], [5, 5, 5.5, 9], [-1, 0, 4, 4], [70, 50, 81, 60]]),
        format="XYXY",
        canvas_size=(60, 80),
    )
    masks = tv.Mask(ember.zeros(4, 60, 80, dtype=ember.uint8))
    out = v2.SanitizeBoundingBoxes()(
        {"boxes": boxes, "masks": masks, "labels": ember.tensor([1, 2, 3, 4]), "id": 7}
    )
    assert out["labels"].tolist() == [1] and out["boxes"].shape == (1, 4)
    assert out["masks"].shape == (1, 60, 80) and out["id"] == 7
    assert isinstance(out["boxes"], tv.BoundingBoxes) and isinstance(out["masks"], tv.Mask)
    kept = v2.SanitizeBoundingBoxes(labels_getter=None)(boxes)
    assert kept.shape == (1, 4)
    with pytest.raises(ValueError, match="must match the number of labels"):
        v2.SanitizeBoundingBoxes()({"boxes": boxes, "labels": ember.tensor([1, 2])})
    with pytest.raises(ValueError, match="min_size must be >= 1"):
        v2.SanitizeBoundingBoxes(min_size=0.5)


def test_photometric_distort_draws_and_applies_in_torchvisions_order():
    torch = pytest.importorskip("torch")
    t = v2.RandomPhotometricDistort(p=1.0)
    ember.manual_seed(5)
    params = t._get_params(ember.tensor(IMG))
    torch.manual_seed(5)
    expected = []
    for r in ((0.875, 1.125), (0.5, 1.5)):  # a torch.rand(1) < p draw before each factor
        assert float(torch.rand(1)) < 1.0
        expected.append(float(torch.empty(1).uniform_(*r)))
    assert [params["brightness"], params["contrast"]] == pytest.approx(expected, abs=0)
    assert sorted(params["permutation"]) == [0, 1, 2]
    assert v2.RandomPhotometricDistort(p=0.0)(ember.tensor(IMG)).numpy().tolist() == IMG.tolist()
