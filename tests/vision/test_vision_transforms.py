"""ember.vision.transforms classes: reproducible draws, same result as the functional op with
the drawn parameters, v2 pipeline, and bad input errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL")

import ember  # noqa: E402
from ember.vision import transforms as T  # noqa: E402
from ember.vision.transforms import functional as F  # noqa: E402
from ember.vision.transforms import v2  # noqa: E402


@pytest.fixture
def img():
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def _np(x):
    return x.numpy() if isinstance(x, ember.Tensor) else np.asarray(x)


@pytest.mark.parametrize(
    "make,params,apply",
    [
        (
            lambda: T.RandomResizedCrop(12),
            lambda t, x: t.get_params(x, t.scale, t.ratio),
            lambda t, x, p: F.resized_crop(x, *p, t.size),
        ),
        (lambda: T.RandomCrop(9, padding=2), None, None),
        (
            lambda: T.RandomRotation(30),
            lambda t, x: t.get_params(t.degrees),
            lambda t, x, p: F.rotate(x, p, fill=0),
        ),
        (lambda: T.ColorJitter(0.4, 0.4, 0.4, 0.1), None, None),
        (lambda: T.RandomErasing(1.0), None, None),
    ],
    ids=["RandomResizedCrop", "RandomCrop", "RandomRotation", "ColorJitter", "RandomErasing"],
)
def test_seeded_draws_repeat(img, make, params, apply):
    x = F.to_tensor(img) if "Erasing" in repr(make()) else img
    t = make()
    ember.manual_seed(5)
    first = _np(t(x))
    ember.manual_seed(5)
    np.testing.assert_array_equal(_np(t(x)), first)
    if params is not None:  # the class applies the functional op with get_params' draw
        ember.manual_seed(5)
        p = params(t, x)
        np.testing.assert_array_equal(_np(apply(t, x, p)), first)


def test_pipeline_v1_and_v2_agree(img):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    v1 = T.Compose([T.Resize(16), T.CenterCrop(14), T.ToTensor(), T.Normalize(mean, std)])
    two = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(16),
            v2.CenterCrop(14),
            v2.ToDtype(ember.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    a, b = v1(img), two(img)
    assert tuple(a.shape) == (3, 14, 14) and a.dtype == ember.float32
    # v1 resizes the PIL image, v2 the uint8 tensor: within one uint8 step after scaling.
    assert np.abs(a.numpy() - b.numpy()).max() <= 1.0 / 255 / min(std) + 1e-5


def test_preset_of_weights(img):
    from ember.vision import models

    t = models.ResNet50_Weights.DEFAULT.transforms()
    out = t(img)
    assert out.shape == (3, 224, 224) and t.resize_size == [232]


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x: F.resize([1, 2], 4), TypeError, "PIL Image or Tensor"),
        (lambda x: F.adjust_hue(x, 0.7), ValueError, r"hue_factor \(0.7\) is not in"),
        (lambda x: F.adjust_brightness(x, -1), ValueError, "brightness_factor"),
        (lambda x: F.normalize(F.to_tensor(x), [0, 0, 0], [1, 0, 1]), ValueError, "std evaluated"),
        (lambda x: F.normalize(F.pil_to_tensor(x), [0], [1]), TypeError, "float tensor"),
        (lambda x: T.RandomCrop(40)(x), ValueError, "larger than input image size"),
        (lambda x: F.pad(x, [1, 2, 3]), ValueError, "Padding must be"),
        (lambda x: F.pad(x, 1, padding_mode="wrap"), ValueError, "Padding mode"),
        (lambda x: F.gaussian_blur(x, 4), ValueError, "odd and positive"),
        (lambda x: F.posterize(F.to_tensor(x), 3), TypeError, "uint8"),
        (lambda x: F.resize(x, [4, 5, 6]), ValueError, "1 or 2 values"),
    ],
    ids=[
        "type",
        "hue",
        "brightness",
        "std0",
        "int-normalize",
        "crop",
        "pad-len",
        "pad-mode",
        "blur-even",
        "posterize-float",
        "resize-3",
    ],
)
def test_bad_input(img, call, exc, match):
    with pytest.raises(exc, match=match):
        call(img)


def test_batched_tensor_and_grayscale(img):
    x = F.pil_to_tensor(img)
    batch = ember.stack([x, F.hflip(x)])
    out = F.resize(batch, [10, 12])
    np.testing.assert_array_equal(out[1].numpy(), F.resize(F.hflip(x), [10, 12]).numpy())
    g = F.rgb_to_grayscale(img)
    assert g.mode == "L" and F.get_dimensions(g) == [1, 20, 24]
    assert F.to_pil_image(F.to_tensor(g)).mode == "L"


@pytest.mark.gpu
@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.resize(x, [9, 11]),
        lambda x: F.rotate(x, 20.0, F.InterpolationMode.BILINEAR),
        lambda x: F.adjust_hue(x, 0.2),
        lambda x: F.gaussian_blur(x, 5),
        lambda x: F.equalize(x),
        lambda x: F.adjust_sharpness(x, 2.0),
        lambda x: F.pad(x, 2, padding_mode="reflect"),
    ],
    ids=["resize", "rotate", "hue", "blur", "equalize", "sharpness", "pad"],
)
def test_cuda_tensors_match_cpu(img, fn):
    x = F.pil_to_tensor(img)
    got = fn(x.to("cuda"))
    assert got.device.type == "cuda"
    np.testing.assert_allclose(
        got.cpu().numpy().astype(np.int64), fn(x).numpy().astype(np.int64), atol=1
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_v2_moves_boxes_and_masks_with_the_image(seed):
    from ember.vision import tv_tensors as tv

    # A rectangle drawn in the image and the mask, and its box: after a random geometric
    # pipeline, the box still frames the mask's rectangle and the image's.
    arr = np.zeros((3, 30, 40), np.uint8)
    arr[:, 6:19, 9:31] = 255
    img = tv.Image(arr)
    mask = tv.Mask(arr[0] // 255)
    boxes = tv.BoundingBoxes(
        [[9, 6, 31, 19]], format="XYXY", canvas_size=(30, 40), dtype=ember.float32
    )
    boxes = v2.functional.convert_bounding_box_format(
        boxes, new_format=("XYXY", "XYWH", "CXCYWH")[seed]
    )
    t = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.Pad([2, 3, 4, 5]),
            v2.RandomCrop(32),
            v2.Resize([64, 48]),
            v2.ColorJitter(0.5),
        ]
    )
    ember.manual_seed(seed)
    out_img, out = t(img, {"boxes": boxes, "masks": mask, "id": 7})
    assert isinstance(out_img, tv.Image) and out["id"] == 7
    b = v2.functional.convert_bounding_box_format(out["boxes"], new_format="XYXY").numpy()[0]
    assert out["boxes"].canvas_size == (64, 48) and out["masks"].shape == (64, 48)
    ys, xs = np.nonzero(out["masks"].numpy())
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], b, atol=1.5)
    assert set(np.unique(out["masks"].numpy())) <= {0, 1}
    ys, xs = np.nonzero(out_img.numpy()[0] > 127)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], b, atol=1.5)


def test_v2_bounding_boxes_check_their_arguments():
    from ember.vision import tv_tensors as tv

    # (v2.RandomPerspective moves boxes now: tests/vision/test_transforms_v2_warps.py)
    with pytest.raises(ValueError, match="format"):
        tv.BoundingBoxes([[1, 1, 4, 4]], format="XYZ", canvas_size=(8, 8))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        tv.BoundingBoxes([[1, 1, 4]], format="XYXY", canvas_size=(8, 8))
