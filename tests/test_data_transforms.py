"""ember.utils.data.transforms: behaviour, errors, and resize parity with torch's interpolate."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.utils.data import transforms as T


def _image(h=6, w=7, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_to_tensor():
    img = _image()
    t = T.ToTensor()(img)
    assert t.dtype == ember.float32 and t.shape == (3, 6, 7)
    np.testing.assert_allclose(t.numpy(), img.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert T.ToTensor()(img[:, :, 0]).shape == (1, 6, 7)
    f64 = T.ToTensor()(np.ones((2, 2, 1)))
    assert f64.dtype == ember.float64 and f64.numpy().max() == 1.0  # no scaling for floats
    with pytest.raises(TypeError, match="pic should be PIL Image or ndarray"):
        T.ToTensor()([1, 2])
    with pytest.raises(ValueError, match="pic should be 2/3 dimensional. Got 1 dimensions"):
        T.ToTensor()(np.zeros(3, dtype=np.uint8))


def test_to_tensor_and_flip_on_pil_images():
    Image = pytest.importorskip("PIL.Image")
    img = _image()
    pil = Image.fromarray(img)
    assert np.array_equal(T.ToTensor()(pil).numpy(), T.ToTensor()(img).numpy())
    flipped = T.RandomHorizontalFlip(p=1.0)(pil)
    assert isinstance(flipped, Image.Image) and np.array_equal(np.asarray(flipped), img[:, ::-1])


def test_normalize():
    x = ember.rand(2, 3, 4, 5)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    out = T.Normalize(mean, std)(x)
    ref = (x.numpy() - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[
        :, None, None
    ]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    y = x.clone()
    assert T.Normalize(mean, std, inplace=True)(y) is y
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="std evaluated to zero"):
        T.Normalize([0.0], [0.0])(x)
    with pytest.raises(TypeError, match="Input tensor should be a float tensor"):
        T.Normalize([0.0], [1.0])(ember.zeros(3, 2, 2, dtype=ember.int64))
    with pytest.raises(
        ValueError,
        match=r"Expected tensor to be a tensor image of size "
        r"\(\.\.\., C, H, W\)",
    ):
        T.Normalize([0.0], [1.0])(ember.zeros(2, 2))
    with pytest.raises(TypeError, match="img should be Tensor Image"):
        T.Normalize([0.0], [1.0])(np.zeros((1, 2, 2), np.float32))


def test_normalize_matches_torch_and_is_differentiable():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((3, 4, 4)).astype(np.float32)
    xe = ember.tensor(x, requires_grad=True)
    out = T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.4])(xe)
    xt = torch.tensor(x)
    ref = (xt - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / torch.tensor([0.2, 0.3, 0.4])[
        :, None, None
    ]
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(xe.grad.numpy()[:, 0, 0], [5.0, 1 / 0.3, 2.5], rtol=1e-6)


def test_random_horizontal_flip():
    x = ember.arange(12).reshape(1, 3, 4)
    assert T.RandomHorizontalFlip(p=1.0)(x).tolist() == [[r[::-1] for r in x.tolist()[0]]]
    assert T.RandomHorizontalFlip(p=0.0)(x) is x
    img = _image()
    assert np.array_equal(T.RandomHorizontalFlip(p=1.0)(img), img[:, ::-1])
    ember.manual_seed(0)
    flips = [T.RandomHorizontalFlip(0.3)(x) is not x for _ in range(2000)]
    assert 0.25 < np.mean(flips) < 0.35
    ember.manual_seed(0)
    assert [T.RandomHorizontalFlip(0.3)(x) is not x for _ in range(2000)] == flips


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_padding_modes(mode):
    img = _image(5, 6)
    crop = T.RandomCrop((9, 10), padding=2, padding_mode=mode, fill=7)
    out = crop(img)  # the crop is the whole padded image: deterministic
    widths = ((2, 2), (2, 2), (0, 0))
    ref = (
        np.pad(img, widths, mode="constant", constant_values=7)
        if mode == "constant"
        else np.pad(img, widths, mode=mode)
    )
    assert np.array_equal(out, ref)
    t = crop(ember.tensor(img.transpose(2, 0, 1)))
    assert np.array_equal(t.numpy(), ref.transpose(2, 0, 1))


def test_random_crop_windows_and_options():
    img = _image(8, 8)
    ember.manual_seed(1)
    seen = set()
    for _ in range(200):
        out = T.RandomCrop(5)(img)
        assert out.shape == (5, 5, 3)
        i, j = next(
            (i, j)
            for i in range(4)
            for j in range(4)
            if np.array_equal(img[i : i + 5, j : j + 5], out)
        )
        seen.add((i, j))
    assert len(seen) == 16  # every position is reachable
    padded = T.RandomCrop(4, padding=(1, 2))(ember.zeros(3, 4, 4))  # left/right 1, top/bottom 2
    assert padded.shape == (3, 4, 4)
    assert T.RandomCrop(10, pad_if_needed=True)(img).shape == (10, 10, 3)
    with pytest.raises(
        ValueError,
        match=r"Required crop size \(10, 10\) is larger than input "
        r"image size \(8, 8\)",
    ):
        T.RandomCrop(10)(img)
    with pytest.raises(ValueError, match="Padding mode should be either"):
        T.RandomCrop(3, padding=1, padding_mode="wrap")
    with pytest.raises(ValueError, match="Padding must be an int or a 1, 2, or 4 element tuple"):
        T.RandomCrop(3, padding=(1, 2, 3))


def test_random_resized_crop_params():
    img = ember.zeros(1, 40, 60)
    ember.manual_seed(0)
    for _ in range(300):
        i, j, h, w = T.RandomResizedCrop.get_params(img, (0.2, 0.9), (0.5, 2.0))
        assert 0 <= i and i + h <= 40 and 0 <= j and j + w <= 60
        assert 0.2 * 2400 * 0.8 <= h * w <= 0.9 * 2400 * 1.2
        assert 0.5 / 1.2 <= w / h <= 2.0 * 1.2
    # Impossible scale: falls back to a central crop with the ratio clamped into range.
    assert T.RandomResizedCrop.get_params(img, (5.0, 6.0), (1.0, 1.0)) == (0, 10, 40, 40)
    out = T.RandomResizedCrop((8, 12))(img)
    assert out.shape == (1, 8, 12)
    with pytest.warns(UserWarning, match="Scale and ratio should be of kind"):
        T.RandomResizedCrop(4, scale=(1.0, 0.5))
    with pytest.raises(ValueError, match="interpolation should be 'nearest' or 'bilinear'"):
        T.RandomResizedCrop(4, interpolation="bicubic")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize(
    "box,size",
    [
        ((3, 5, 17, 23), (9, 31)),
        ((0, 0, 40, 40), (40, 40)),
        ((2, 1, 11, 7), (33, 20)),
        ((0, 0, 37, 29), (5, 6)),
    ],
)
def test_resized_crop_matches_torch_interpolate(monkeypatch, mode, dtype, box, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    img = (rng.random((3, 40, 40)) * 255).astype(dtype)
    monkeypatch.setattr(T.RandomResizedCrop, "get_params", staticmethod(lambda *a: box))
    out = T.RandomResizedCrop(size, interpolation=mode)(ember.tensor(img))
    i, j, h, w = box
    crop = torch.tensor(img[None, :, i : i + h, j : j + w].astype(np.float32))
    kw = {} if mode == "nearest" else {"align_corners": False, "antialias": False}
    ref = torch.nn.functional.interpolate(crop, size=size, mode=mode, **kw)[0].numpy()
    if dtype == "uint8":
        ref = np.clip(np.round(ref), 0, 255).astype(np.uint8)
        assert out.dtype == ember.uint8
        assert np.abs(out.numpy().astype(int) - ref.astype(int)).max() <= 1
    else:
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-4)
    hwc = T.RandomResizedCrop(size, interpolation=T.InterpolationMode(mode))(
        img.transpose(1, 2, 0).copy()
    )
    assert np.array_equal(hwc, out.numpy().transpose(1, 2, 0))  # array layout, same pixels


def test_compose_and_lambda():
    pipeline = T.Compose([T.ToTensor(), T.Lambda(lambda t: t * 2), T.Normalize([1.0], [2.0])])
    out = pipeline(np.full((2, 2), 255, dtype=np.uint8))
    assert out.shape == (1, 2, 2) and np.allclose(out.numpy(), 0.5)
    assert "ToTensor()" in repr(pipeline) and "Normalize" in repr(pipeline)
    with pytest.raises(TypeError, match="Argument lambd should be callable, got 'int'"):
        T.Lambda(3)
