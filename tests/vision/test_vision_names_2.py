"""Smaller torchvision names: utils.draw_keypoints, io.decode_gif / decode_webp, the video
backend switches, tv_tensors.is_rotated_bounding_format (draw_keypoints is checked against
torchvision 0.28 itself in tests/vision/test_torchvision_parity.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import ember
from ember import vision
from ember.vision import io as eio
from ember.vision import tv_tensors, utils

Image = pytest.importorskip("PIL.Image")


def test_draw_keypoints_draws_visible_points_and_their_links():
    img = ember.zeros(3, 40, 50, dtype=ember.uint8)
    kp = ember.tensor([[[5.0, 5.0], [20.0, 30.0], [40.0, 10.0]]])
    vis = ember.tensor([[True, True, False]])
    a = utils.draw_keypoints(img, kp, colors="red", radius=2, visibility=vis).numpy()
    assert a[:, 5, 5].tolist() == [255, 0, 0] and a[:, 31, 21].tolist() == [255, 0, 0]
    assert a[:, 10, 40].tolist() == [0, 0, 0]  # hidden
    out = utils.draw_keypoints(img, kp, [(0, 1), (1, 2)], colors="red", visibility=vis)
    a = out.numpy()
    assert out.dtype == ember.uint8 and a[:, 17, 12].tolist() == [255, 255, 255]  # (0, 1) line
    assert a[:, 20, 30].sum() == 0  # the (1, 2) line touches a hidden point
    f = utils.draw_keypoints(img.float() / 255, kp, colors=(0, 255, 0))
    assert f.dtype == ember.float32 and f.numpy()[:, 5, 5].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="keypoints must be of shape"):
        utils.draw_keypoints(img, kp[0])
    with pytest.raises(ValueError, match="Pass an RGB image"):
        utils.draw_keypoints(img[:1], kp)


def _encoded(frames, fmt: str, **kw) -> ember.Tensor:
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, **kw)
    return ember.tensor(np.frombuffer(buf.getvalue(), np.uint8).copy())


def test_decode_gif_and_webp():
    rng = np.random.default_rng(0)
    arrs = [(rng.random((8, 9, 3)) * 255).astype(np.uint8) for _ in range(3)]
    frames = [Image.fromarray(a).convert("P") for a in arrs]
    gif = eio.decode_gif(_encoded(frames, "GIF", save_all=True, append_images=frames[1:]))
    assert tuple(gif.shape) == (3, 3, 8, 9) and gif.dtype == ember.uint8
    np.testing.assert_array_equal(
        gif.numpy()[1], np.asarray(frames[1].convert("RGB")).transpose(2, 0, 1)
    )  # noqa: E501
    one = eio.decode_gif(_encoded(frames[:1], "GIF"))
    assert tuple(one.shape) == (3, 8, 9)
    webp = eio.decode_webp(_encoded([Image.fromarray(arrs[0])], "WEBP", lossless=True))
    np.testing.assert_array_equal(webp.numpy(), arrs[0].transpose(2, 0, 1))
    gray = eio.decode_webp(_encoded([Image.fromarray(arrs[0])], "WEBP", lossless=True), "GRAY")
    assert tuple(gray.shape) == (1, 8, 9)


def test_top_level_and_tv_tensors_names():
    assert vision.get_video_backend() == "pyav"
    vision.set_video_backend("pyav")
    vision.disable_beta_transforms_warning()
    assert not tv_tensors.is_rotated_bounding_format(tv_tensors.BoundingBoxFormat.XYXY)
    assert tv_tensors.is_rotated_bounding_format("CXCYWHR")


def test_models_mobilenet_module():
    from ember.vision import models

    assert models.mobilenet.mobilenet_v2 is models.mobilenet_v2
    assert "MobileNet_V3_Large_Weights" in models.mobilenet.__all__
