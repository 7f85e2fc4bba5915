"""Perspective warps (functional, RandomPerspective, v2) and rotate's expanded canvas, as
torchvision's (checked there against torchvision 0.28 itself: equal outputs on PIL images,
uint8 and float tensors, and equal RandomPerspective draws under one seed)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import transforms as T
from ember.vision.transforms import functional as F
from ember.vision.transforms import v2

PIL = pytest.importorskip("PIL.Image")
torch = pytest.importorskip("torch")

START = [[0, 0], [52, 0], [52, 36], [0, 36]]
END = [[2, 1], [50, 3], [48, 35], [1, 33]]


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)


def _coeffs_map(c, x, y):
    den = c[6] * x + c[7] * y + 1
    return (c[0] * x + c[1] * y + c[2]) / den, (c[3] * x + c[4] * y + c[5]) / den


def test_coefficients_take_the_end_corners_to_the_start_corners():
    from ember.vision.transforms._geometry import perspective_coeffs

    c = perspective_coeffs(START, END)
    for (x, y), (u, v) in zip(END, START):
        np.testing.assert_allclose(_coeffs_map(c, x, y), (u, v), atol=1e-3)
    with pytest.raises(ValueError, match="exactly four corners"):
        perspective_coeffs(START[:3], END[:3])


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_tensor_warp_is_grid_sample_of_the_projective_grid(image, mode):
    from ember.vision.transforms._geometry import perspective_coeffs

    x = image.transpose(2, 0, 1).astype(np.float32) / 255
    interp = T.InterpolationMode(mode)
    out = F.perspective(ember.tensor(x), START, END, interp).numpy()
    c = perspective_coeffs(START, END)
    h, w = x.shape[-2:]
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    u, v = _coeffs_map(np.float64(c), xs, ys)
    grid = np.stack([u / (0.5 * w) - 1, v / (0.5 * h) - 1], -1)[None].astype(np.float32)
    ref = torch.nn.functional.grid_sample(
        torch.tensor(x[None]), torch.tensor(grid), mode=mode, align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_pil_and_uint8_paths_and_fill(image):
    pil = PIL.fromarray(image)
    out = np.asarray(F.perspective(pil, START, END, fill=7))
    assert out.shape == image.shape and (out[0, 0] == 7).all()  # a corner from outside
    u8 = F.perspective(ember.tensor(image).permute(2, 0, 1), START, END, fill=[7, 7, 7])
    assert u8.dtype == ember.uint8 and (u8[:, 0, 0].numpy() == 7).all()
    # the two paths agree away from the edges (PIL's and grid_sample's bilinear differ by
    # at most one level there)
    diff = np.abs(u8.permute(1, 2, 0).numpy().astype(int) - out.astype(int))[5:-5, 5:-5]
    assert diff.max() <= 1


def test_random_perspective_draws_as_torchvision():
    ember.manual_seed(3)
    start, end = T.RandomPerspective.get_params(53, 37, 0.5)
    torch.manual_seed(3)
    dx, dy = int(0.5 * (53 // 2)), int(0.5 * (37 // 2))

    def ri(lo, hi):
        return int(torch.randint(lo, hi, (1,)).item())

    ref = [
        [ri(0, dx + 1), ri(0, dy + 1)],
        [ri(53 - dx - 1, 53), ri(0, dy + 1)],
        [ri(53 - dx - 1, 53), ri(37 - dy - 1, 37)],
        [ri(0, dx + 1), ri(37 - dy - 1, 37)],
    ]
    assert start == [[0, 0], [52, 0], [52, 36], [0, 36]] and end == ref


def test_random_perspective_transforms(image):
    x = ember.tensor(image).permute(2, 0, 1).contiguous()
    assert T.RandomPerspective(p=0.0)(x) is x
    out = T.RandomPerspective(0.6, p=1.0, fill=5)(x)
    assert out.shape == x.shape and not ember.equal(out, x)
    assert T.RandomPerspective(p=1.0)(PIL.fromarray(image)).size == (53, 37)
    out2 = v2.RandomPerspective(0.4, p=1.0)(x)
    assert out2.shape == x.shape
    with pytest.raises(TypeError, match="Fill should be"):
        T.RandomPerspective(fill="red")


def test_rotate_expand_canvas_is_torchvisions(image):
    # torchvision 0.28 gives 65 x 59 for this image at 30 degrees, on tensors and PIL alike
    x = ember.tensor(image).permute(2, 0, 1)
    assert tuple(F.rotate(x, 30.0, expand=True).shape) == (3, 59, 65)
    assert F.rotate(PIL.fromarray(image), 30.0, expand=True).size == (65, 59)
