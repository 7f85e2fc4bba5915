"""ember.vision.transforms.functional against torchvision 0.29.1's recorded outputs.

``golden/transforms.npz`` is written by ``make_golden.py`` (torchvision in a side venv); each
case calls the same functional line on both sides (``golden_cases.TRANSFORM_CASES``).
Tolerance: 1/255 of the value range (1 for uint8 images, 1/255 for float images).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("PIL")

import ember  # noqa: E402
from ember.vision.transforms import functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import golden_cases as gc  # noqa: E402

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "golden", "transforms.npz"))


def _inputs():
    from PIL import Image

    u8 = GOLDEN["input_u8"]
    t = ember.from_numpy(u8.copy())
    return {
        "u8": t,
        "f32": F.convert_image_dtype(t, ember.float32),
        "pil": Image.fromarray(u8.transpose(1, 2, 0)),
    }


def _np(out):
    if isinstance(out, (tuple, list)):
        return np.stack([_np(o) for o in out])
    if isinstance(out, ember.Tensor):
        return out.numpy()
    return np.asarray(out)


@pytest.mark.parametrize("name,kind,fn", gc.TRANSFORM_CASES, ids=[c[0] for c in gc.TRANSFORM_CASES])
def test_matches_torchvision(name, kind, fn):
    got = _np(fn(F, _inputs()[kind]))
    want = GOLDEN[name]
    assert got.shape == want.shape, f"{name}: shape {got.shape} != torchvision {want.shape}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != torchvision {want.dtype}"
    atol = 1.0 if want.dtype.kind in "ui" else 1.0 / 255 + 1e-6
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    where = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= atol, f"{name}: max diff {diff.max()} at {where}"


@pytest.mark.parametrize("op,magnitude", gc.AUG_OPS, ids=[o for o, _ in gc.AUG_OPS])
def test_autoaugment_ops_match_torchvision(op, magnitude):
    from ember.vision.transforms import autoaugment as aa

    imgs = _inputs()
    for kind, fill in (("u8", [0.0, 0.0, 0.0]), ("pil", None)):
        got = _np(aa._apply_op(imgs[kind], op, magnitude, F.InterpolationMode.NEAREST, fill))
        want = GOLDEN[f"aug_{op}[{kind}]"]
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.abs(got.astype(np.int64) - want).max() <= 1, f"{op}[{kind}]"


def test_augment_tables_match_torchvision():
    import json

    from ember.vision.transforms import autoaugment as aa

    want = json.loads(str(GOLDEN["aug_tables_json"]))
    got_policy = [[list(op) for op in pair] for pair in aa.AutoAugment().policies]
    assert got_policy == want["autoaugment_imagenet"]
    for name, space in (
        ("randaugment", aa._space(31, (18, 22), wide=False)),
        ("trivialaugmentwide", aa._space(31, (0, 0), wide=True)),
        ("autoaugment_space", aa._space(10, (18, 22), wide=False)),
    ):
        ref = want[name]
        if name != "autoaugment_space":  # RandAugment / TrivialAugment draw ops by position
            assert list(space) == list(ref), name
        for op, (mags, signed) in ref.items():
            if op == "Invert":  # AutoAugment's only extra op, magnitude-free
                continue
            ours, our_signed = space[op]
            assert our_signed == signed, (name, op)
            if isinstance(mags, list):
                np.testing.assert_allclose(ours, mags, rtol=1e-6, atol=1e-4, err_msg=op)
            else:
                assert ours is None or float(mags) == 0.0, (name, op)


@pytest.mark.parametrize("op,make", gc.V2_OPS, ids=[o for o, _ in gc.V2_OPS])
def test_v2_boxes_and_masks_match_torchvision(op, make):
    from ember.vision import tv_tensors
    from ember.vision.transforms.v2 import functional as F2

    xyxy = tv_tensors.BoundingBoxes(gc.BOXES_XYXY, format="XYXY", canvas_size=(18, 22))
    for fmt in ("XYXY", "XYWH", "CXCYWH"):
        boxes = F2.convert_bounding_box_format(xyxy, new_format=fmt)
        res = make(F2)(boxes)
        assert isinstance(res, tv_tensors.BoundingBoxes) and res.format.name == fmt
        assert tuple(res.canvas_size) == tuple(GOLDEN[f"v2_{op}[{fmt}].canvas"]), (op, fmt)
        np.testing.assert_allclose(
            res.numpy(), GOLDEN[f"v2_{op}[{fmt}]"], rtol=1e-6, atol=1e-5, err_msg=f"{op}[{fmt}]"
        )
    mask = make(F2)(tv_tensors.Mask(gc.mask_array()))
    assert isinstance(mask, tv_tensors.Mask)
    np.testing.assert_array_equal(mask.numpy(), GOLDEN[f"v2_{op}[mask]"])
