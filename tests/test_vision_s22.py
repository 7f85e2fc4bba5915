"""ember.vision's session-22 additions, in small programs of our own: every VGG builder's
weights enum, ``tv_tensors.Video``, ``tv_tensors.set_return_type`` and ``wrap``,
``transforms.v2.functional.register_kernel`` for a user's TVTensor type, rotated bounding
boxes and their conversions, and v2's ``posterize`` on float images. Expected numbers are
torchvision 0.28's (recorded from its Python code; torchvision is not imported here)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ember
from ember.vision import models, tv_tensors
from ember.vision.transforms import functional as F1
from ember.vision.transforms import v2
from ember.vision.transforms.v2 import functional as F

# ---- VGG weights enums -------------------------------------------------------------------------

# torchvision's entries: builder, enum, file name, num_params
VGG_WEIGHTS = [
    ("vgg11", "VGG11_Weights", "vgg11-8a719046.pth", 132863336),
    ("vgg11_bn", "VGG11_BN_Weights", "vgg11_bn-6002323d.pth", 132868840),
    ("vgg13", "VGG13_Weights", "vgg13-19584684.pth", 133047848),
    ("vgg13_bn", "VGG13_BN_Weights", "vgg13_bn-abd245e5.pth", 133053736),
    ("vgg16", "VGG16_Weights", "vgg16-397923af.pth", 138357544),
    ("vgg16_bn", "VGG16_BN_Weights", "vgg16_bn-6c64b313.pth", 138365992),
    ("vgg19", "VGG19_Weights", "vgg19-dcbb9e9d.pth", 143667240),
    ("vgg19_bn", "VGG19_BN_Weights", "vgg19_bn-c79401a0.pth", 143678248),
]


@pytest.mark.parametrize("builder,enum,fname,n", VGG_WEIGHTS)
def test_every_vgg_has_torchvisions_weights_entry(builder, enum, fname, n):
    w = getattr(models, enum)
    assert w.DEFAULT is w.IMAGENET1K_V1 and w.verify("IMAGENET1K_V1") is w.IMAGENET1K_V1
    assert w.DEFAULT.url == f"https://download.pytorch.org/models/{fname}"
    assert w.DEFAULT.meta["num_params"] == n and w.DEFAULT.meta["min_size"] == (32, 32)
    assert models.get_weight(f"{enum}.DEFAULT") is w.IMAGENET1K_V1
    assert callable(w.DEFAULT.transforms)
    with ember.device("meta"):  # the layout only: no 130M-value initialisation
        model = getattr(models, builder)()
    assert sum(p.numel() for p in model.parameters()) == n


@pytest.mark.parametrize(
    "builder,enum", [("vgg11", "VGG11_Weights"), ("vgg19_bn", "VGG19_BN_Weights")]
)
def test_vgg_weights_load_through_the_hub(builder, enum, monkeypatch):
    # pretrained=True / weights= ask the hub (its cache: nothing downloads here) for the file
    asked = []

    def fake(self, progress=True, check_hash=True, **kwargs):
        asked.append(self)
        raise LookupError("stop before the 130M-value state dict")

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", fake)
    w = getattr(models, enum)
    with ember.device("meta"), pytest.raises(LookupError):
        getattr(models, builder)(weights="DEFAULT")
    with warnings.catch_warnings(), ember.device("meta"), pytest.raises(LookupError):
        warnings.simplefilter("ignore")
        getattr(models, builder)(pretrained=True)
    assert asked == [w.IMAGENET1K_V1, w.IMAGENET1K_V1]
    with pytest.raises(TypeError, match="expected VGG16_Weights"):
        models.vgg16(weights=w.DEFAULT)


# ---- Video, set_return_type, wrap --------------------------------------------------------------


def test_video_tv_tensor_keeps_its_type_through_v2():
    video = tv_tensors.Video(ember.rand(4, 3, 16, 20))
    assert isinstance(video, tv_tensors.TVTensor) and video.shape == (4, 3, 16, 20)
    with pytest.raises(ValueError, match="at least 4 dimensions"):
        tv_tensors.Video(ember.rand(3, 8, 8))
    out = F.resize(video, [8, 10])
    assert type(out) is tv_tensors.Video and out.shape == (4, 3, 8, 10)
    assert type(F.horizontal_flip(video)) is tv_tensors.Video
    assert ember.equal(F.horizontal_flip(video), video.flip(-1))
    crops = F.five_crop(video, 6)
    assert len(crops) == 5 and all(type(c) is tv_tensors.Video for c in crops)
    pipeline = v2.Compose(
        [
            v2.RandomResizedCrop(8, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.3, 0.3),
            v2.Normalize([0.5] * 3, [0.25] * 3),
        ]
    )
    ember.manual_seed(0)
    sample = pipeline({"video": video, "label": 3})
    assert type(sample["video"]) is tv_tensors.Video and sample["video"].shape == (4, 3, 8, 8)
    assert sample["label"] == 3
    # a plain tensor beside a Video is not the image (torchvision's heuristic)
    plain = ember.rand(3, 16, 20)
    out = v2.Resize(8)(video, plain)
    assert out[0].shape == (4, 3, 8, 10) and out[1] is plain


def test_set_return_type_switch_and_context_manager():
    img = tv_tensors.Image(ember.rand(3, 5, 5))
    boxes = tv_tensors.BoundingBoxes([[0, 0, 2, 2]], format="XYXY", canvas_size=(5, 5))
    assert type(img + 2) is ember.Tensor and type(img.flip(-1)) is ember.Tensor
    # clone / to / detach / requires_grad_ keep the type whatever the return type
    for t in (img.clone(), img.to(ember.float64), img.detach(), copy.deepcopy(img)):
        assert type(t) is tv_tensors.Image
    b2 = boxes.clone()
    assert type(b2) is tv_tensors.BoundingBoxes and b2.canvas_size == (5, 5)
    with tv_tensors.set_return_type("TVTensor"):
        assert type(img + 2) is tv_tensors.Image and type(img.mean(0)) is tv_tensors.Image
        moved = boxes + 1
        assert type(moved) is tv_tensors.BoundingBoxes and moved.format.value == "XYXY"
        assert [type(p) for p in img.unbind(0)] == [tv_tensors.Image] * 3
    assert type(img + 2) is ember.Tensor
    tv_tensors.set_return_type("tvtensor")  # the global switch, case-insensitive
    try:
        assert type(img * 2) is tv_tensors.Image
    finally:
        tv_tensors.set_return_type("Tensor")
    assert type(img * 2) is ember.Tensor
    with pytest.raises(ValueError, match="return_type must be 'TVTensor' or 'Tensor'"):
        tv_tensors.set_return_type("image")


def test_wrap_keeps_metadata_and_the_autograd_graph():
    boxes = tv_tensors.BoundingBoxes([[1.0, 1, 4, 4]], format="XYXY", canvas_size=(8, 8))
    x = ember.rand(1, 4, requires_grad=True)
    out = tv_tensors.wrap(x * 2, like=boxes)
    assert type(out) is tv_tensors.BoundingBoxes and out.canvas_size == (8, 8)
    out.sum().backward()
    assert ember.equal(x.grad, ember.full((1, 4), 2.0))
    other = tv_tensors.wrap(x.detach(), like=boxes, format="XYWH", canvas_size=(3, 3))
    assert other.format is tv_tensors.BoundingBoxFormat.XYWH and other.canvas_size == (3, 3)
    # torch.as_tensor's dtypes: Python floats give float32
    assert boxes.dtype == ember.float32


# ---- register_kernel ---------------------------------------------------------------------------


class MyTVTensor(tv_tensors.TVTensor):
    pass


class MySubTVTensor(MyTVTensor):
    pass


def test_register_kernel_for_a_users_tv_tensor():
    calls = []

    class Local(tv_tensors.TVTensor):
        pass

    x = Local(ember.rand(3, 6, 6))
    with pytest.raises(TypeError, match="F.horizontal_flip has no kernel"):
        F.hflip(x)
    # transforms pass an unregistered type through, untouched
    assert v2.RandomHorizontalFlip(p=1)(x) is x

    @F.register_kernel(functional="hflip", tv_tensor_cls=Local)
    def hflip_local(inpt, *args, **kwargs):
        calls.append(type(inpt))
        return tv_tensors.wrap(inpt.flip(-1), like=inpt)

    out = F.hflip(x)
    assert type(out) is Local and ember.equal(out, x.flip(-1))
    out = v2.RandomHorizontalFlip(p=1)(x)
    assert type(out) is Local and ember.equal(out, x.flip(-1))
    # beside an image: the image is flipped by its kernel, Local by the user's
    img = tv_tensors.Image(ember.rand(3, 6, 6))
    a, b = v2.RandomHorizontalFlip(p=1)(img, x)
    assert ember.equal(a, img.flip(-1)) and ember.equal(b, x.flip(-1))
    # a transform whose functionals have no kernel for Local passes it through
    assert v2.Resize(3)(img, x)[1] is x
    assert calls == [Local, Local, Local]
    with pytest.raises(ValueError, match="already has a kernel registered"):
        F.register_kernel(F.horizontal_flip, Local)(hflip_local)


def test_register_kernel_lookup_and_refusals():
    @F.register_kernel(F.resize, MyTVTensor)
    def resize_mine(inpt, size, *args, **kwargs):
        return tv_tensors.wrap(inpt[..., : size[0], : size[1]], like=inpt)

    sub = MySubTVTensor(ember.rand(2, 5, 5))
    out = F.resize(sub, [2, 3])  # a subclass uses its base class's kernel
    assert type(out) is MySubTVTensor and out.shape == (2, 2, 3)
    with pytest.raises(ValueError, match="builtin tv_tensor classes"):
        F.register_kernel(F.resize, tv_tensors.Image)
    with pytest.raises(ValueError, match="subclasses of ember.vision.tv_tensors.TVTensor"):
        F.register_kernel(F.resize, ember.Tensor)
    with pytest.raises(ValueError, match="Could not find functional with name 'nope'"):
        F.register_kernel("nope", MyTVTensor)
    with pytest.raises(ValueError, match="from the ember.vision.transforms.v2.functional"):
        F.register_kernel(F1.resize, MyTVTensor)
    assert F.hflip is F.horizontal_flip


# ---- rotated boxes -----------------------------------------------------------------------------

XYWHR = [[1.0, 2.0, 3.0, 4.0, 30.0], [5.0, 5.0, 2.0, 1.0, -45.0]]
# torchvision 0.28's convert_bounding_box_format of XYWHR
CXCYWHR = [[3.2990, 2.9821, 3.0, 4.0, 30.0], [5.3536, 6.0607, 2.0, 1.0, -45.0]]
XYXYXYXY = [
    [1.0, 2.0, 3.5981, 0.5, 5.5981, 3.9641, 3.0, 5.4641],
    [5.0, 5.0, 6.4142, 6.4142, 5.7071, 7.1213, 4.2929, 5.7071],
]


@pytest.mark.parametrize("fmt,want", [("CXCYWHR", CXCYWHR), ("XYXYXYXY", XYXYXYXY)])
def test_rotated_box_conversions(fmt, want):
    boxes = tv_tensors.BoundingBoxes(XYWHR, format="XYWHR", canvas_size=(10, 10))
    assert tv_tensors.is_rotated_bounding_format(boxes.format)
    out = F.convert_bounding_box_format(boxes, new_format=fmt)
    assert out.format.value == fmt and out.canvas_size == (10, 10)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-4)
    back = F.convert_bounding_box_format(out, new_format="XYWHR")
    np.testing.assert_allclose(back.numpy(), XYWHR, atol=1e-4)
    # the other rotated pair, and plain tensors with old_format
    other = "CXCYWHR" if fmt == "XYXYXYXY" else "XYXYXYXY"
    via = F.convert_bounding_box_format(
        out.as_subclass_of_tensor(), old_format=fmt, new_format=other
    )
    assert type(via) is ember.Tensor and via.shape[-1] == (5 if other == "CXCYWHR" else 8)


def test_rotated_boxes_flip_as_torchvisions():
    boxes = tv_tensors.BoundingBoxes(XYWHR, format="XYWHR", canvas_size=(10, 10))
    # torchvision 0.28's horizontal_flip / vertical_flip of these boxes
    h = [[6.401924, 0.5, 3.0, 4.0, -30.0], [3.585786, 6.414214, 2.0, 1.0, 45.0]]
    v = [[3.598076, 9.5, 3.0, 4.0, 150.0], [6.414214, 3.585786, 2.0, 1.0, 225.0]]
    np.testing.assert_allclose(F.horizontal_flip(boxes).numpy(), h, atol=1e-5)
    np.testing.assert_allclose(F.vertical_flip(boxes).numpy(), v, atol=1e-5)
    img = tv_tensors.Image(ember.rand(3, 10, 10))
    out = v2.RandomHorizontalFlip(p=1.0)({"image": img, "boxes": boxes})
    assert out["boxes"].format.value == "XYWHR"
    np.testing.assert_allclose(out["boxes"].numpy(), h, atol=1e-5)
    # the corners of a flipped box are the flipped corners, in the same (top-left first) order
    corners = F.convert_bounding_box_format(boxes, new_format="XYXYXYXY")
    flipped = F.convert_bounding_box_format(F.horizontal_flip(boxes), new_format="XYXYXYXY")
    np.testing.assert_allclose(F.horizontal_flip(corners).numpy(), flipped.numpy(), atol=1e-4)


def test_rotated_boxes_checks():
    with pytest.raises(ValueError, match=r"format XYWHR expect shape \(N, 5\)"):
        tv_tensors.BoundingBoxes([[1.0, 2, 3, 4]], format="XYWHR", canvas_size=(4, 4))
    with pytest.raises(ValueError, match="should be floating point"):
        tv_tensors.BoundingBoxes([[1, 2, 3, 4, 5]], format="CXCYWHR", canvas_size=(4, 4))
    boxes = tv_tensors.BoundingBoxes(XYWHR, format="XYWHR", canvas_size=(10, 10))
    with pytest.raises(ValueError, match="between rotated and unrotated"):
        F.convert_bounding_box_format(boxes, new_format="XYXY")
    with pytest.raises(ValueError, match="`old_format` must not be passed"):
        F.convert_bounding_box_format(boxes, old_format="XYWHR", new_format="CXCYWHR")
    with pytest.raises(ValueError, match="`old_format` has to be passed"):
        F.convert_bounding_box_format(ember.zeros(1, 4), new_format="XYXY")
    # (rotated boxes go through the geometric kernels: tests/test_vision_rotated_boxes.py)
    assert F.crop(boxes, 0, 0, 5, 5).canvas_size == (5, 5)
    with pytest.raises(ValueError, match="format should be str or BoundingBoxFormat"):
        tv_tensors.is_rotated_bounding_format(3)


def test_integer_cxcywh_conversion_floors_as_torchvision():
    boxes = ember.tensor([[1, 2, 6, 7]])
    out = F.convert_bounding_box_format(boxes, old_format="XYXY", new_format="CXCYWH")
    assert out.tolist() == [[3, 4, 5, 5]]
    # half a width rounds away (floor of -w/2, as torchvision): integer boxes do not round-trip
    back = F.convert_bounding_box_format(out, old_format="CXCYWH", new_format="XYXY")
    assert back.tolist() == [[0, 1, 5, 6]]
    xywh = F.convert_bounding_box_format(boxes, old_format="XYXY", new_format="XYWH")
    assert xywh.tolist() == [[1, 2, 5, 5]]
    assert F.convert_bounding_box_format(xywh, old_format="XYWH", new_format="CXCYWH").tolist() == [
        [3, 4, 5, 5]
    ]


# ---- posterize -------------------------------------------------------------------------------


def test_posterize_float_in_v2_not_in_v1():
    x = ember.tensor([[[0.0, 0.1, 0.5, 0.99, 1.0]]])
    # torchvision's v2: floor(x * 2**bits) / 2**bits, clamped to the top level
    assert F.posterize(x, 2).tolist() == [[[0.0, 0.0, 0.5, 0.75, 0.75]]]
    assert type(F.posterize(tv_tensors.Image(x), 2)) is tv_tensors.Image
    assert v2.RandomPosterize(2, p=1.0)(x).tolist() == [[[0.0, 0.0, 0.5, 0.75, 0.75]]]
    u8 = ember.tensor([[[255, 100, 3]]], dtype=ember.uint8)
    assert F.posterize(u8, 2).tolist() == [[[192, 64, 0]]]
    assert F.posterize(u8, 8) is u8
    with pytest.raises(TypeError, match="bits must be a positive integer"):
        F.posterize(x, 9)
    # v1 refuses float tensors, as torchvision's v1 does
    with pytest.raises(TypeError, match="Only torch.uint8 image tensors are supported"):
        F1.posterize(x, 2)


def test_doc_snippet_runs():
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "vision.md"
    section = doc.read_text(encoding="utf-8").split("### tv_tensors: Video, return types", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/vision.md", "exec"), {})
