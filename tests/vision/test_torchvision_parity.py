"""ember.vision's models against torchvision's own, where a torchvision is importable.

CI has no torchvision (its wheels need torch's CUDA libraries for their compiled operators), so
these are skipped there. To run them here: unpack the ``torchvision==0.28.0`` wheel (``pip
download --no-deps``), delete its ``*.so`` files, empty ``_meta_registrations.py`` (it
registers fake kernels for the missing operators), and put the folder on ``PYTHONPATH``: the
models are pure Python. docs/vision.md records what this found.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:  # pragma: no cover - depends on the machine
    import torchvision
except Exception as e:  # ImportError, or the compiled part failing to load
    pytest.skip(f"no usable torchvision: {type(e).__name__}", allow_module_level=True)

import ember  # noqa: E402
from ember.vision import models  # noqa: E402
from ember.vision.models import feature_extraction as efe  # noqa: E402

MODELS = {
    "resnet18": (1, 3, 64, 64),
    "mobilenet_v3_small": (1, 3, 64, 64),
    "efficientnet_b1": (1, 3, 64, 64),
    "convnext_tiny": (1, 3, 64, 64),
    "swin_t": (1, 3, 64, 64),
    "vit_b_32": (1, 3, 224, 224),
    "maxvit_t": (1, 3, 224, 224),
    "regnet_y_400mf": (1, 3, 64, 64),
    "r2plus1d_18": (1, 3, 4, 32, 32),
    "deeplabv3_mobilenet_v3_large": (1, 3, 64, 64),
}


def _pair(name):
    kw = {"weights_backbone": None} if name.startswith("deeplab") else {}
    torch.manual_seed(0)
    tm = torchvision.models.get_model(name, **kw).eval()
    em = models.get_model(name, **kw).eval()
    em.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    return tm, em


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_equal_torchvisions(name):
    tm, em = _pair(name)
    assert list(tm.state_dict()) == list(em.state_dict())
    x = np.random.default_rng(0).standard_normal(MODELS[name]).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.tensor(x))
    with ember.no_grad():
        out = em(ember.tensor(x))
    if isinstance(ref, dict):
        ref, out = ref["out"], out["out"]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5 * ref.abs().max())


@pytest.mark.parametrize(
    "name",
    ["resnet18", "mobilenet_v3_small", "swin_t", "vit_b_32"]
    + ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "swin3d_t", "mvit_v1_b", "mvit_v2_s"],
)
def test_feature_extraction_names_equal_torchvisions(name):
    from torchvision.models import feature_extraction as tfe

    tm, em = _pair(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert efe.get_graph_node_names(em) == tfe.get_graph_node_names(tm)


# ---- transforms.v2 on whole samples: same seed, same outputs -----------------------------------
def _v2_sample(lib, fmt: str, dtype):
    rng = np.random.default_rng(0)
    img = (rng.random((3, 37, 53)) * 255).astype(np.uint8)
    mask = (rng.random((37, 53)) > 0.5).astype(np.uint8)
    boxes = np.array([[3, 4, 17, 26], [20, 10, 15, 12], [30, 20, 10, 10]]).astype(dtype)
    if fmt == "XYXY":
        boxes = np.array([[3, 4, 20, 30], [10.5, 2.2, 40.7, 33.1], [30, 20, 52, 36]], dtype)
    wrap = torch.tensor if lib is torchvision.tv_tensors else (lambda a: a)
    return (
        lib.Image(wrap(img)),
        lib.BoundingBoxes(wrap(boxes), format=fmt, canvas_size=(37, 53)),
        lib.Mask(wrap(mask)),
    )


V2_CASES = [
    ("RandomPerspective", {"p": 1.0, "distortion_scale": 0.6}),
    ("ElasticTransform", {"alpha": 30.0, "sigma": 3.0}),
    ("RandomResize", {"min_size": 20, "max_size": 60}),
    ("RandomShortestSize", {"min_size": [20, 30, 40], "max_size": 70}),
    ("ScaleJitter", {"target_size": (64, 80)}),
    ("RandomChannelPermutation", {}),
    ("AugMix", {}),
    ("AutoAugment", {}),
    ("RandAugment", {}),
    ("TrivialAugmentWide", {}),
]


@pytest.mark.parametrize("fmt", ["XYXY", "XYWH", "CXCYWH"])
@pytest.mark.parametrize("name,kw", V2_CASES, ids=[c[0] for c in V2_CASES])
def test_v2_samples_equal_torchvisions(name, kw, fmt):
    from torchvision.transforms import v2 as tv2

    from ember.vision import tv_tensors as etv
    from ember.vision.transforms import v2 as ev2

    # (the auto-augmentations refuse boxes and masks)
    n = 1 if name in ("AugMix", "AutoAugment", "RandAugment", "TrivialAugmentWide") else 3
    for seed in range(3):
        torch.manual_seed(seed)
        ref = getattr(tv2, name)(**kw)(*_v2_sample(torchvision.tv_tensors, fmt, np.float32)[:n])
        ember.manual_seed(seed)
        out = getattr(ev2, name)(**kw)(*_v2_sample(etv, fmt, np.float32)[:n])
        ref, out = (ref, out) if n > 1 else ((ref,), (out,))
        for r, o in zip(ref, out):
            assert type(o).__name__ == type(r).__name__ and o.shape == tuple(r.shape)
            # uint8 pixels may round one level apart (float op order); boxes to float32 ulps
            atol = 1e-4 if type(r).__name__ == "BoundingBoxes" else 2
            np.testing.assert_allclose(o.numpy().astype(float), r.numpy(), atol=atol)


@pytest.mark.parametrize("fn", ["distance_box_iou_loss", "complete_box_iou_loss"])
def test_iou_losses_equal_torchvisions(fn):
    from ember.vision import ops

    b1 = np.array([[0, 0, 10, 10], [5, 5, 15, 25], [1, 2, 3, 4]], np.float32)
    b2 = np.array([[1, 1, 9, 12], [20, 20, 30, 30], [1, 2, 3, 4]], np.float32)
    for red in ("none", "mean", "sum"):
        ref = getattr(torchvision.ops, fn)(torch.tensor(b1), torch.tensor(b2), red)
        out = getattr(ops, fn)(ember.tensor(b1), ember.tensor(b2), red)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6)


# ---- datasets: the same small files give the same samples ---------------------------------------
def test_datasets_equal_torchvisions(tmp_path):
    # (torchvision's SVHN and STL10 check the official files' MD5, so small files written
    # here only load in ember: tests/vision/test_vision_datasets_2.py)
    from test_vision_datasets_2 import write_image_lists, write_image_lists_2, write_voc

    from ember.vision import datasets as ed

    tvd, root = torchvision.datasets, str(tmp_path)
    write_voc(root)
    write_image_lists(root)
    write_image_lists_2(root)
    pet_kw = {"split": "test", "target_types": ["category", "binary-category", "segmentation"]}
    pairs = [
        (tvd.OxfordIIITPet(root, **pet_kw), ed.OxfordIIITPet(root, **pet_kw)),
        (tvd.GTSRB(root), ed.GTSRB(root)),
        (tvd.GTSRB(root, "test"), ed.GTSRB(root, "test")),
        (tvd.VOCSegmentation(root), ed.VOCSegmentation(root)),
        (tvd.VOCDetection(root), ed.VOCDetection(root)),
        (tvd.EuroSAT(root), ed.EuroSAT(root)),
        (tvd.Country211(root, "test"), ed.Country211(root, "test")),
        (tvd.RenderedSST2(root, "val"), ed.RenderedSST2(root, "val")),
        (tvd.DTD(root), ed.DTD(root)),
        (tvd.Food101(root), ed.Food101(root)),
    ]
    for ref, out in pairs:
        assert len(ref) == len(out) and getattr(ref, "classes", 0) == getattr(out, "classes", 0)
        for i in range(len(ref)):
            (ri, rt), (oi, ot) = ref[i], out[i]
            np.testing.assert_array_equal(np.asarray(ri), np.asarray(oi))
            for r, o in zip(rt, ot) if isinstance(rt, tuple) else [(rt, ot)]:
                if hasattr(r, "mode"):
                    assert r.mode == o.mode
                    np.testing.assert_array_equal(np.asarray(r), np.asarray(o))
                else:
                    assert r == o
    # wrap_dataset_for_transforms_v2 on VOC: the same boxes, labels and masks
    wrap_t, wrap_e = tvd.wrap_dataset_for_transforms_v2, ed.wrap_dataset_for_transforms_v2
    for cls in ("VOCDetection", "VOCSegmentation"):
        ref, out = wrap_t(getattr(tvd, cls)(root)), wrap_e(getattr(ed, cls)(root))
        for i in range(len(ref)):
            rt, ot = ref[i][1], out[i][1]
            if isinstance(rt, dict):
                assert rt["boxes"].canvas_size == ot["boxes"].canvas_size
                rt, ot = (rt["boxes"], rt["labels"]), (ot["boxes"], ot["labels"])
            else:
                rt, ot = (rt,), (ot,)
            for r, o in zip(rt, ot):
                assert type(r).__name__ == type(o).__name__
                np.testing.assert_array_equal(o.numpy(), r.numpy())


def test_draw_keypoints_equals_torchvisions():
    from ember.vision import utils as eu

    rng = np.random.default_rng(0)
    img = (rng.random((3, 40, 50)) * 255).astype(np.uint8)
    kp = np.array([[[5, 5], [20, 30], [40, 10]], [[10, 35], [45, 38], [30, 20]]], np.float32)
    vis = np.array([[1, 1, 0], [1, 1, 1]], bool)
    kw = {"connectivity": [(0, 1), (1, 2)], "colors": "red", "radius": 3, "width": 2}
    for x in (img, img.astype(np.float32) / 255):
        ref = torchvision.utils.draw_keypoints(
            torch.tensor(x), torch.tensor(kp), visibility=torch.tensor(vis), **kw
        )
        out = eu.draw_keypoints(
            ember.tensor(x), ember.tensor(kp), visibility=ember.tensor(vis), **kw
        )  # noqa: E501
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-7)


KP_CASES = [
    ("RandomHorizontalFlip", {"p": 1.0}),
    ("Resize", {"size": 20}),
    ("RandomResizedCrop", {"size": 24}),
    ("Pad", {"padding": [2, 3]}),
    ("RandomCrop", {"size": 20, "padding": 3}),
    ("RandomRotation", {"degrees": 30, "expand": True}),
    ("RandomAffine", {"degrees": 20, "translate": (0.1, 0.1), "scale": (0.8, 1.2), "shear": 10}),
    ("RandomPerspective", {"p": 1.0}),
    ("ElasticTransform", {"alpha": 30.0}),
    ("ScaleJitter", {"target_size": (40, 60)}),
    ("ClampKeyPoints", {}),
    ("SanitizeKeyPoints", {}),
]


@pytest.mark.parametrize("name,kw", KP_CASES, ids=[c[0] for c in KP_CASES])
def test_v2_keypoints_equal_torchvisions(name, kw):
    from torchvision.transforms import v2 as tv2

    from ember.vision import tv_tensors as etv
    from ember.vision.transforms import v2 as ev2

    img = (np.random.default_rng(0).random((3, 37, 53)) * 255).astype(np.uint8)
    kp = np.array([[[3, 4], [20, 30], [50.5, 2.2]], [[10, 36], [0, 0], [52, 36]]], np.float32)
    for seed in range(3):
        torch.manual_seed(seed)
        ref = getattr(tv2, name)(**kw)(
            torchvision.tv_tensors.Image(torch.tensor(img)),
            torchvision.tv_tensors.KeyPoints(torch.tensor(kp), canvas_size=(37, 53)),
        )[1]
        ember.manual_seed(seed)
        out = getattr(ev2, name)(**kw)(etv.Image(img), etv.KeyPoints(kp, canvas_size=(37, 53)))[1]
        assert isinstance(out, etv.KeyPoints) and out.canvas_size == tuple(ref.canvas_size)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-4)


# ---- session 22: VGG weights entries, rotated boxes, v2 posterize, return types ---------------
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg19_bn"])
def test_vgg_weights_entries_equal_torchvisions(name):
    ref = torchvision.models.get_model_weights(name).DEFAULT
    got = models.get_model_weights(name).DEFAULT
    assert got.url == ref.url and got.meta["num_params"] == ref.meta["num_params"]


@pytest.mark.parametrize("old", ["XYWHR", "CXCYWHR", "XYXYXYXY"])
def test_rotated_box_conversions_equal_torchvisions(old):
    import torchvision.transforms.v2.functional as tF2

    from ember.vision import tv_tensors
    from ember.vision.transforms.v2 import functional as F2

    rng = np.random.default_rng(0)
    a = np.concatenate([rng.random((6, 2)) * 50, rng.random((6, 2)) * 20 + 1], axis=1)
    a = np.concatenate([a, rng.uniform(-180, 180, (6, 1))], axis=1).astype(np.float32)
    xywhr = torch.from_numpy(a)
    start = tF2.convert_bounding_box_format(xywhr, old_format="XYWHR", new_format=old)
    for new in ("XYWHR", "CXCYWHR", "XYXYXYXY"):
        want = tF2.convert_bounding_box_format(start, old_format=old, new_format=new)
        boxes = torchvision.tv_tensors.BoundingBoxes(start, format=old, canvas_size=(64, 64))
        mine = tv_tensors.BoundingBoxes(start.numpy(), format=old, canvas_size=(64, 64))
        got = F2.convert_bounding_box_format(mine, new_format=new)
        assert tF2.convert_bounding_box_format(boxes, new_format=new).format.value == new
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-3)


def test_v2_posterize_and_return_types_equal_torchvisions():
    import torchvision.transforms.v2.functional  # noqa: F401

    from ember.vision import tv_tensors
    from ember.vision.transforms.v2 import functional as F2

    x = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    for bits in (0, 1, 3, 8):
        want = torchvision.transforms.v2.functional.posterize(torch.from_numpy(x), bits)
        np.testing.assert_array_equal(F2.posterize(ember.tensor(x), bits).numpy(), want.numpy())
    tv = torchvision.tv_tensors
    t_img, e_img = tv.Image(torch.from_numpy(x)), tv_tensors.Image(ember.tensor(x))
    for op in ("clone", "detach", "flip"):
        args = (-1,) if op == "flip" else ()
        for mode in ("Tensor", "TVTensor"):
            with tv.set_return_type(mode), tv_tensors.set_return_type(mode):
                t_out, e_out = getattr(t_img, op)(*args), getattr(e_img, op)(*args)
                assert type(t_out).__name__ == type(e_out).__name__, (op, mode)


@pytest.mark.parametrize("fmt", ["XYWHR", "CXCYWHR", "XYXYXYXY"])
def test_rotated_box_flips_equal_torchvisions(fmt):
    import torchvision.transforms.v2.functional as tF2

    from ember.vision import tv_tensors
    from ember.vision.transforms.v2 import functional as F2

    rng = np.random.default_rng(1)
    a = np.concatenate(
        [rng.random((5, 2)) * 30, rng.random((5, 2)) * 10 + 1, rng.uniform(-90, 90, (5, 1))], 1
    )
    start = tF2.convert_bounding_box_format(
        torch.from_numpy(a.astype(np.float32)), old_format="XYWHR", new_format=fmt
    )
    ref = torchvision.tv_tensors.BoundingBoxes(start, format=fmt, canvas_size=(40, 50))
    mine = tv_tensors.BoundingBoxes(start.numpy(), format=fmt, canvas_size=(40, 50))
    for name in ("horizontal_flip", "vertical_flip"):
        want, got = getattr(tF2, name)(ref), getattr(F2, name)(mine)
        assert type(got) is tv_tensors.BoundingBoxes and got.format.value == fmt
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


# ---- session 22 (h10): rotated boxes through the geometric kernels, clamping modes ------------
_ROT_OPS = {
    "resize": lambda F, b, m: F.resize(b, [60, 35]),
    "crop": lambda F, b, m: F.crop(b, 3, -4, 30, 40),
    "pad": lambda F, b, m: F.pad(b, [2, 3, 4, 5]),
    "rotate": lambda F, b, m: F.rotate(b, -71.0, expand=True),
    "affine": lambda F, b, m: F.affine(b, 12.0, [3, -2], 1.1, [7.0, -4.0]),
    "center_crop": lambda F, b, m: F.center_crop(b, [25, 31]),
    "resized_crop": lambda F, b, m: F.resized_crop(b, 4, 6, 25, 30, [50, 44]),
    "perspective": lambda F, b, m: F.perspective(
        b, [[0, 0], [49, 0], [49, 39], [0, 39]], [[3, 2], [46, 1], [47, 36], [1, 38]]
    ),
    "elastic": lambda F, b, m: F.elastic(b, m.from_numpy(_ROT_DISP.copy())),
    "clamp": lambda F, b, m: F.clamp_bounding_boxes(b),
}
_ROT_DISP = (np.random.default_rng(3).standard_normal((1, 40, 50, 2)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("mode", ["soft", "hard", None])
@pytest.mark.parametrize("fmt", ["XYWHR", "CXCYWHR", "XYXYXYXY"])
def test_rotated_box_kernels_equal_torchvisions(fmt, mode):
    import torchvision.transforms.v2.functional as tF2

    from ember.vision import tv_tensors
    from ember.vision.transforms.v2 import functional as F2

    rng = np.random.default_rng(0)
    n = 40
    # angles kept 3 degrees away from the axes: there torchvision's slope-based clamping is
    # ill-conditioned (float32 noise moves a corner by whole pixels, in either library)
    r = rng.uniform(3, 87, n) + 90 * rng.integers(-2, 2, n)
    a = np.stack(
        [rng.uniform(-5, 55, n), rng.uniform(-5, 45, n), *rng.uniform(2, 30, (2, n)), r], -1
    )
    start = tF2.convert_bounding_box_format(
        torch.from_numpy(a.astype(np.float32)), old_format="CXCYWHR", new_format=fmt
    )
    ref = torchvision.tv_tensors.BoundingBoxes(
        start, format=fmt, canvas_size=(40, 50), clamping_mode=mode
    )
    mine = tv_tensors.BoundingBoxes(
        start.numpy(), format=fmt, canvas_size=(40, 50), clamping_mode=mode
    )
    for name, op in _ROT_OPS.items():
        want, got = op(tF2, ref, torch), op(F2, mine, ember)
        assert tuple(got.canvas_size) == tuple(want.canvas_size), name
        assert got.clamping_mode == mode and got.format.value == fmt, name
        w, g = want.numpy(), got.numpy()
        if fmt != "XYXYXYXY":  # angles compare modulo 360
            g = g.copy()
            g[:, 4] = w[:, 4] + ((g[:, 4] - w[:, 4] + 180) % 360 - 180)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-3, err_msg=name)


def test_clamping_modes_and_transforms_equal_torchvisions():
    import torchvision.transforms.v2 as tT2
    import torchvision.transforms.v2.functional as tF2

    from ember.vision import tv_tensors
    from ember.vision.transforms import v2 as T2
    from ember.vision.transforms.v2 import functional as F2

    a = np.array([[-4.0, 3.0, 30.0, 50.0], [10.0, 12.0, 8.0, 6.0]], np.float32)
    ref = torchvision.tv_tensors.BoundingBoxes(
        torch.from_numpy(a), format="XYWH", canvas_size=(40, 30)
    )
    mine = tv_tensors.BoundingBoxes(a, format="XYWH", canvas_size=(40, 30))
    assert mine.clamping_mode == ref.clamping_mode == "soft"
    for mode in ("hard", None):
        want = tT2.SetClampingMode(mode)(ref)
        got = T2.SetClampingMode(mode)(mine)
        assert got.clamping_mode == want.clamping_mode
        for op in (lambda F, b: F.crop(b, 2, 1, 20, 25), lambda F, b: F.rotate(b, 20.0)):
            np.testing.assert_allclose(op(F2, got).numpy(), op(tF2, want).numpy(), atol=1e-4)
    for mode in ("soft", "hard", None):
        want = tT2.ClampBoundingBoxes(mode)(ref)
        got = T2.ClampBoundingBoxes(mode)(mine)
        np.testing.assert_allclose(got.numpy(), want.numpy())
    want = tF2.clamp_bounding_boxes(
        torch.from_numpy(a), format="XYWH", canvas_size=(40, 30), clamping_mode="hard"
    )
    got = F2.clamp_bounding_boxes(
        ember.tensor(a), format="XYWH", canvas_size=(40, 30), clamping_mode="hard"
    )
    np.testing.assert_allclose(got.numpy(), want.numpy())
