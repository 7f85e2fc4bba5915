"""Idioms of segmentation_models_pytorch and lightly, in small programs of our own.

Each test is one thing those libraries needed from ember (torchvision's names they import), or
one of their numerical idioms compared with PyTorch. Neither library is imported here.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import numpy as np
import pytest

import ember
from ember import nn
from ember.vision import get_image_backend, set_image_backend, tv_tensors
from ember.vision.models.vision_transformer import ConvStemConfig, VisionTransformer
from ember.vision.transforms.v2 import ClampBoundingBoxes, ConvertBoundingBoxFormat, Transform

torch = pytest.importorskip("torch")


# ---- lightly's MAEBackbone: a torchvision VisionTransformer subclass with a conv stem -------
class _Backbone(VisionTransformer):
    def __init__(self, conv_stem_configs=None):
        super().__init__(
            image_size=16,
            patch_size=4,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            mlp_dim=16,
            conv_stem_configs=conv_stem_configs,
        )

    @classmethod
    def from_vit(cls, vit):
        # lightly reads the constructor's arguments back from the model's attributes
        out = cls()
        assert (vit.dropout, vit.attention_dropout) == (0.0, 0.0)
        assert isinstance(vit.norm_layer(8), nn.LayerNorm)
        out.conv_proj, out.class_token = vit.conv_proj, vit.class_token
        return out


def test_vit_conv_stem_configs_layout_and_forward():
    ember.manual_seed(0)
    stem = [ConvStemConfig(4, 3, 2), ConvStemConfig(6, 3, 2, norm_layer=nn.BatchNorm2d)]
    vit = _Backbone(conv_stem_configs=stem)
    keys = [k for k in vit.state_dict() if k.startswith("conv_proj.")]
    # torchvision's key names: conv_bn_relu_{i}.{0: conv, 1: norm} and conv_last
    assert "conv_proj.conv_bn_relu_0.0.weight" in keys
    assert "conv_proj.conv_bn_relu_1.1.running_var" in keys
    assert vit.conv_proj.conv_last.weight.shape == (8, 6, 1, 1)
    assert float(vit.conv_proj.conv_last.bias.abs().sum()) == 0.0
    out = vit(ember.randn(2, 3, 16, 16))
    assert out.shape == (2, 1000)
    copied = _Backbone.from_vit(vit)
    assert copied.conv_proj is vit.conv_proj
    # without a stem: the plain patch projection, as before
    plain = _Backbone()
    assert isinstance(plain.conv_proj, nn.Conv2d) and plain.norm_layer.keywords == {"eps": 1e-6}


def test_convert_and_clamp_bounding_boxes_transforms():
    boxes = tv_tensors.BoundingBoxes(
        ember.tensor([[2.0, 4.0, 10.0, 8.0], [-3.0, 1.0, 5.0, 20.0]]),
        format="XYXY",
        canvas_size=(12, 16),
    )
    img = ember.zeros(3, 12, 16)
    out_img, cxcywh = ConvertBoundingBoxFormat("CXCYWH")(img, boxes)
    assert out_img is img  # images pass through
    assert cxcywh.format == tv_tensors.BoundingBoxFormat.CXCYWH
    np.testing.assert_allclose(cxcywh.numpy(), [[6, 6, 8, 4], [1, 10.5, 8, 19]])
    xywh = ConvertBoundingBoxFormat(tv_tensors.BoundingBoxFormat.XYWH)(boxes)
    np.testing.assert_allclose(xywh.numpy(), [[2, 4, 8, 4], [-3, 1, 8, 19]])
    clamped = ClampBoundingBoxes()(boxes)
    np.testing.assert_allclose(clamped.numpy(), [[2, 4, 10, 8], [0, 1, 5, 12]])
    assert clamped.canvas_size == (12, 16)


class _GridBoxes(Transform):
    # torchvision 0.21's hooks, as lightly's AddGridTransform writes them
    def make_params(self, flat_inputs):
        return {"n": len(flat_inputs)}

    def transform(self, inpt, params):
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            h, w = inpt.canvas_size
            grid = ember.tensor([[0.0, 0.0, w / 2, h], [w / 2, 0.0, w, h]])
            boxes = tv_tensors.BoundingBoxes(
                grid, format="XYXY", canvas_size=(h, w), dtype=inpt.dtype, device=inpt.device
            )
            return ConvertBoundingBoxFormat(inpt.format)(boxes)
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.Mask(ember.full(tuple(inpt.shape), params["n"]), requires_grad=False)
        return inpt


class _LegacyScale(Transform):
    # torchvision < 0.21's hooks: _get_params(flat_inputs) and _transform(inpt, params)
    def _get_params(self, flat_inputs):
        return {"factor": 2.0}

    def _transform(self, inpt, params):
        return inpt * params["factor"] if isinstance(inpt, tv_tensors.Image) else inpt


def test_custom_v2_transforms_with_torchvision_hooks():
    img = tv_tensors.Image(ember.ones(3, 4, 6))
    boxes = tv_tensors.BoundingBoxes(
        ember.tensor([[3.0, 2.0, 2.0, 2.0]]), format="CXCYWH", canvas_size=(4, 6)
    )
    mask = tv_tensors.Mask(ember.zeros(4, 6, dtype=ember.int64))
    out = _GridBoxes()({"image": img, "boxes": boxes, "mask": mask, "label": 7})
    assert out["label"] == 7 and out["image"] is img
    assert out["boxes"].format == tv_tensors.BoundingBoxFormat.CXCYWH
    np.testing.assert_allclose(out["boxes"].numpy(), [[1.5, 2, 3, 4], [4.5, 2, 3, 4]])
    assert out["mask"].unique().tolist() == [3]  # make_params saw the 3 tv_tensor leaves
    scaled, same = _LegacyScale()(img, mask)
    assert float(scaled.sum()) == 2 * 3 * 4 * 6 and same is mask
    grad_img = tv_tensors.Image(ember.zeros(1, 2, 2), requires_grad=True)
    assert grad_img.requires_grad and isinstance(grad_img, tv_tensors.Image)


def test_image_backend_names():
    assert get_image_backend() == "PIL"
    with pytest.raises(ValueError, match="Invalid backend 'cv2'"):
        set_image_backend("cv2")
    set_image_backend("accimage")
    try:
        assert get_image_backend() == "accimage"
    finally:
        set_image_backend("PIL")


# ---- numerical idioms, compared with torch ---------------------------------------------------
def _nt_xent(lib, z0, z1, temperature=0.5):
    # SimCLR's loss: cosine similarities of 2N views, self-pairs masked, positives the other view
    z = lib.nn.functional.normalize(lib.cat([z0, z1]), dim=1)
    n = z0.shape[0]
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(lib.eye(2 * n, dtype=lib.bool), -1e9)
    target = lib.cat([lib.arange(n, 2 * n), lib.arange(0, n)])
    return lib.nn.functional.cross_entropy(logits, target)


def _soft_dice(lib, logits, target, classes):
    # smp's multiclass DiceLoss: softmax, one-hot target permuted to (N, C, HW), per-class score
    p = logits.log_softmax(dim=1).exp().flatten(2)
    t = lib.nn.functional.one_hot(target.flatten(1), classes).permute(0, 2, 1).to(p.dtype)
    inter = (p * t).sum(dim=(0, 2))
    card = (p + t).sum(dim=(0, 2))
    score = (2 * inter + 0.0) / card.clamp_min(1e-7)
    return ((1 - score) * (t.sum(dim=(0, 2)) > 0).to(p.dtype)).mean()


@pytest.mark.parametrize("which", ["nt_xent", "dice"])
def test_loss_idioms_match_torch(which):
    rng = np.random.default_rng(0)
    if which == "nt_xent":
        arrs = [rng.standard_normal((6, 5)).astype(np.float32) for _ in range(2)]
        fn = _nt_xent
        args_of = lambda lib, ts: (ts[0], ts[1])  # noqa: E731
    else:
        arrs = [rng.standard_normal((2, 3, 4, 4)).astype(np.float32)]
        tgt = rng.integers(0, 3, (2, 4, 4))
        fn = partial(_soft_dice, classes=3)
        args_of = lambda lib, ts: (ts[0], lib.tensor(tgt))  # noqa: E731
    res = {}
    for lib in (torch, ember):
        ts = [lib.tensor(a, requires_grad=True) for a in arrs]
        loss = fn(lib, *args_of(lib, ts))
        loss.backward()
        res[lib.__name__] = (loss.item(), [t.grad.numpy() for t in ts])
    assert math.isclose(res["ember"][0], res["torch"][0], rel_tol=1e-5)
    for g_e, g_t in zip(res["ember"][1], res["torch"][1]):
        np.testing.assert_allclose(g_e, g_t, rtol=1e-4, atol=1e-6)


def test_momentum_teacher_and_batch_shuffle_match_torch():
    # BYOL / DINO: a frozen deep copy updated by an exponential moving average under no_grad;
    # MoCo: shuffle a batch by randperm and undo it with argsort
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    xa = rng.standard_normal((6, 3)).astype(np.float32)
    out = {}
    for lib in (torch, ember):
        lib.manual_seed(0)
        student = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.BatchNorm1d(4))
        with lib.no_grad():
            student[0].weight.copy_(lib.tensor(w))
        teacher = copy.deepcopy(student)
        for p in teacher.parameters():
            p.requires_grad = False
        with lib.no_grad():
            for p in student.parameters():
                p.add_(0.5)
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.data = pt.data * 0.99 + ps.data * (1.0 - 0.99)
        x = lib.tensor(xa)
        perm = lib.randperm(6)
        back = lib.argsort(perm)
        out[lib.__name__] = (
            teacher[0].weight.numpy().copy(),
            perm.numpy(),
            x[perm][back].numpy(),
            teacher[0].weight.requires_grad,
        )
    np.testing.assert_allclose(out["ember"][0], out["torch"][0], rtol=1e-6)
    np.testing.assert_array_equal(out["ember"][1], out["torch"][1])  # torch's randperm stream
    np.testing.assert_array_equal(out["ember"][2], out["torch"][2])
    assert out["ember"][3] is out["torch"][3] is False


def _patchify(lib, images, p):
    # MAE's patch targets: sizes passed by keyword, as lightly's patchify does
    n, c, h, w = images.shape
    x = images.reshape(shape=(n, c, h // p, p, w // p, p))
    x = lib.einsum("nchpwq->nhwpqc", x)
    return x.reshape(shape=(n, (h // p) * (w // p), p * p * c))


def test_size_keywords_match_torch():
    a = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    res = {}
    for lib in (torch, ember):
        x = lib.tensor(a, requires_grad=True)
        y = _patchify(lib, x, 4)
        z = y[:, :1].expand(size=(2, 4, 48)).permute(dims=(1, 0, 2)).repeat(repeats=(1, 2, 1))
        v = x.view(size=(6, 64))
        (y.square().sum() + z.sum() + v[0].sum()).backward()
        res[lib.__name__] = (y.detach().numpy(), z.shape, v.shape, x.grad.numpy())
    np.testing.assert_array_equal(res["ember"][0], res["torch"][0])
    assert tuple(res["ember"][1]) == tuple(res["torch"][1]) == (4, 4, 48)
    assert tuple(res["ember"][2]) == (6, 64)
    np.testing.assert_allclose(res["ember"][3], res["torch"][3], rtol=1e-6)
    x = ember.zeros(6)
    for call in (
        lambda: x.reshape((2, 3), shape=(3, 2)),
        lambda: x.view(6, size=(6,)),
        lambda: x.expand(6, size=(6,)),
        lambda: x.permute(0, dims=(0,)),
        lambda: x.repeat(2, repeats=(2,)),
    ):
        with pytest.raises(TypeError, match="got multiple values for argument"):
            call()
