"""The segmentation references' v2 idioms (``v2_extras.py``, ``--use-v2``) and the detection
references' padding, as programs of our own: a ``v2.Transform`` subclass padding with a fill
per input type through v2's private fill helpers, and one that overrides ``forward`` whole
(torchvision's ``Transform`` is an ``nn.Module``). See ``test_vision_references_idioms.py``.
"""

from __future__ import annotations

import pytest

import ember
from ember.vision import tv_tensors
from ember.vision.transforms import v2


class _PadIfSmaller(v2.Transform):
    def __init__(self, size, fill=0):
        super().__init__()
        self.size = size
        self.fill = v2._utils._setup_fill_arg(fill)

    def make_params(self, sample):
        _, height, width = v2._utils.query_chw(sample)
        padding = [0, 0, max(self.size - width, 0), max(self.size - height, 0)]
        return dict(padding=padding, needs_padding=any(padding))

    def transform(self, inpt, params):
        if not params["needs_padding"]:
            return inpt
        fill = v2._utils._convert_fill_arg(v2._utils._get_fill(self.fill, type(inpt)))
        return v2.functional.pad(inpt, padding=params["padding"], fill=fill)


class _ToSegmentationMask(v2.Transform):
    # overrides forward: the (image, target dict) pair becomes (image, Mask)
    def forward(self, image, target):
        mask = ember.zeros(v2.functional.get_size(image), dtype=ember.uint8)
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x1, y1, x2, y2 = (int(v) for v in box)
            mask[y1:y2, x1:x2] = label
        return image, tv_tensors.Mask(mask)


def test_fill_helpers():
    fill = v2._utils._setup_fill_arg({tv_tensors.Mask: 255, "others": (1, 2, 3)})
    assert v2._utils._get_fill(fill, tv_tensors.Mask) == 255
    assert v2._utils._get_fill(fill, tv_tensors.Image) == [1.0, 2.0, 3.0]
    assert v2._utils._setup_fill_arg(0) == {"others": 0}
    assert v2._utils._convert_fill_arg(None) is None
    with pytest.raises(TypeError, match="Got inappropriate fill arg"):
        v2._utils._setup_fill_arg("white")


def test_segmentation_v2_pipeline():
    image = tv_tensors.Image(ember.ones(3, 5, 6))
    target = {"boxes": ember.tensor([[1.0, 1.0, 4.0, 3.0]]), "labels": ember.tensor([7])}
    pipeline = v2.Compose(
        [_ToSegmentationMask(), _PadIfSmaller(8, fill={tv_tensors.Mask: 255, "others": 0})]
    )
    img, mask = pipeline(image, target)
    assert isinstance(mask, tv_tensors.Mask) and tuple(mask.shape) == (8, 8)
    assert tuple(img.shape) == (3, 8, 8) and float(img[:, 5:, :].sum()) == 0.0
    assert mask[1, 1].item() == 7 and mask[0, 0].item() == 0 and mask[7, 7].item() == 255
    assert _PadIfSmaller(4)(image) is image  # nothing to pad: the input comes back


def test_tensor_pad_rejects_a_per_channel_fill_as_torchvision():
    # detection's FixedSizeCrop pads with fill=mean (a list): PIL only, TypeError on tensors
    from PIL import Image

    from ember.vision.transforms import functional as F

    with pytest.raises(TypeError, match="Got inappropriate fill arg"):
        F.pad(ember.zeros(3, 4, 4), [1, 1], fill=[0.5, 0.4, 0.3])
    assert F.pad(Image.new("RGB", (4, 4)), [1, 1], fill=(1, 2, 3)).size == (6, 6)
