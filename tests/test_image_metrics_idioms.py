"""The idioms of image-quality libraries (pytorch-msssim, piq, lpips, kornia.metrics), in small
programs of our own, run on ember and on PyTorch with the same inputs: values and gradients.

Gaussian windows applied with grouped ``conv2d`` / ``conv3d`` (one separable pass per axis),
``avg_pool2d`` pyramids with odd-size padding (MS-SSIM), ``F.pad`` reflect / replicate before a
filter, Prewitt gradients (GMSD), total variation, PSNR, an LPIPS-like distance (a small conv
trunk, unit-normalised channels, a non-negative 1x1 "lin" layer, spatial average or upsampled
map) and a Gram-matrix style distance. The libraries themselves are not imported.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = RNG.random((2, 3, 32, 32))
Y = np.clip(X + 0.1 * RNG.standard_normal(X.shape), 0, 1)


# ---- the programs: ``lib`` is torch or ember ----------------------------------------------------


def gauss_1d(lib, size: int, sigma: float, dtype):
    coords = lib.arange(size, dtype=dtype) - size // 2
    g = lib.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).unsqueeze(0).unsqueeze(0)  # (1, 1, size)


def gaussian_filter(lib, x, win):
    """pytorch-msssim's separable blur: the 1-d window along each spatial axis, per channel."""
    F = lib.nn.functional
    c = x.shape[1]
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    win = win.repeat([c, 1] + [1] * (x.dim() - 2))  # (C, 1, 1, [1,] size)
    out = x
    for i, s in enumerate(x.shape[2:]):
        if s >= win.shape[-1]:
            out = conv(out, win.transpose(2 + i, -1), stride=1, padding=0, groups=c)
    return out


def ssim_parts(lib, x, y, win, data_range=1.0, k=(0.01, 0.03)):
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu1, mu2 = gaussian_filter(lib, x, win), gaussian_filter(lib, y, win)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    s1 = gaussian_filter(lib, x * x, win) - mu1_sq
    s2 = gaussian_filter(lib, y * y, win) - mu2_sq
    s12 = gaussian_filter(lib, x * y, win) - mu1_mu2
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return lib.flatten(ssim_map, 2).mean(-1), lib.flatten(cs_map, 2).mean(-1)


def ssim(lib, x, y):
    win = gauss_1d(lib, 11, 1.5, x.dtype)
    return ssim_parts(lib, x, y, win)[0].mean(1)


def ms_ssim(lib, x, y):
    F = lib.nn.functional
    weights = lib.tensor([0.2, 0.3, 0.5], dtype=x.dtype)
    win = gauss_1d(lib, 3, 1.5, x.dtype)
    mcs = []
    for i in range(weights.shape[0]):
        ssim_pc, cs = ssim_parts(lib, x, y, win)
        if i < weights.shape[0] - 1:
            mcs.append(F.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
            x, y = pool(x, kernel_size=2, padding=padding), pool(y, kernel_size=2, padding=padding)
    ssim_pc = F.relu(ssim_pc)
    vals = lib.stack(mcs + [ssim_pc], dim=0)  # (levels, N, C)
    return lib.prod(vals ** weights.view(-1, 1, 1), dim=0).mean(1)


def psnr(lib, x, y):
    mse = lib.mean((x - y) ** 2, dim=[1, 2, 3])
    return 10 * lib.log10(1.0 / (mse + 1e-8))


def total_variation(lib, x, y):
    dh = lib.abs(x[:, :, 1:, :] - x[:, :, :-1, :])
    dw = lib.abs(x[:, :, :, 1:] - x[:, :, :, :-1])
    l1 = dh.sum(dim=[1, 2, 3]) + dw.sum(dim=[1, 2, 3])
    l2 = lib.sqrt(lib.pow(dh, 2).sum(dim=[1, 2, 3]) + lib.pow(dw, 2).sum(dim=[1, 2, 3]))
    return l1 + l2


def gmsd(lib, x, y, pad_mode="replicate"):
    """piq's GMSD: luma, 2x average pool, Prewitt gradients on a padded image."""
    F = lib.nn.functional
    rgb = lib.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    xl = F.avg_pool2d((x * rgb).sum(1, keepdim=True), 2)
    yl = F.avg_pool2d((y * rgb).sum(1, keepdim=True), 2)
    kx = lib.tensor([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=x.dtype) / 3
    kernels = lib.stack([kx, kx.transpose(-1, -2)]).unsqueeze(1)  # (2, 1, 3, 3)

    def magnitude(img):
        g = F.conv2d(F.pad(img, [1, 1, 1, 1], mode=pad_mode), kernels)
        return lib.sqrt(lib.sum(g**2, dim=1, keepdim=True) + 1e-12)

    m1, m2 = magnitude(xl), magnitude(yl)
    c = 170 / (255**2)
    gms = (2 * m1 * m2 + c) / (m1**2 + m2**2 + c)
    return lib.std(gms.flatten(1), dim=1)


def gmsd_reflect(lib, x, y):
    return gmsd(lib, x, y, pad_mode="reflect")


def normalize_tensor(lib, feat, eps=1e-10):
    return feat / (lib.sqrt(lib.sum(feat**2, dim=1, keepdim=True)) + eps)


def lpips_like(lib, x, y, spatial=False):
    """lpips's recipe on a small random trunk: scaling layer, per-stage unit-normalised
    features, squared difference, a non-negative 1x1 conv, then a spatial mean (or the maps
    upsampled to the input size)."""
    F = lib.nn.functional
    shift = lib.tensor([-0.030, -0.088, -0.188], dtype=x.dtype).view(1, 3, 1, 1)
    scale = lib.tensor([0.458, 0.448, 0.450], dtype=x.dtype).view(1, 3, 1, 1)
    w = [lib.tensor(a, dtype=x.dtype) for a in TRUNK]

    def feats(img):
        h = (img * 2 - 1 - shift) / scale
        h1 = F.relu(F.conv2d(h, w[0], w[1], padding=1))
        h2 = F.relu(F.conv2d(F.max_pool2d(h1, 2), w[2], w[3], padding=1))
        return [h1, h2]

    total = 0
    for k, (f0, f1) in enumerate(zip(feats(x), feats(y))):
        d = (normalize_tensor(lib, f0) - normalize_tensor(lib, f1)) ** 2
        d = F.conv2d(d, lib.tensor(LINS[k], dtype=x.dtype))
        if spatial:
            total = total + F.interpolate(d, size=x.shape[2:], mode="bilinear", align_corners=False)
        else:
            total = total + d.mean([2, 3], keepdim=True)
    return total.flatten(1).mean(1) if spatial else total.flatten()


def lpips_spatial(lib, x, y):
    return lpips_like(lib, x, y, spatial=True)


def cosine_features(lib, x, y):
    """F.normalize along channels, a cosine distance map (DISTS / feature matching idioms)."""
    F = lib.nn.functional
    a, b = F.normalize(x, dim=1), F.normalize(y, p=2.0, dim=1, eps=1e-12)
    return (1 - (a * b).sum(1)).mean([1, 2])


def style_distance(lib, x, y):
    def gram(f):
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return lib.bmm(f, f.transpose(1, 2)) / (c * h * w)

    return ((gram(x) - gram(y)) ** 2).sum([1, 2])


TRUNK = [
    RNG.standard_normal((8, 3, 3, 3)) * 0.3,
    RNG.standard_normal(8) * 0.1,
    RNG.standard_normal((16, 8, 3, 3)) * 0.2,
    RNG.standard_normal(16) * 0.1,
]
LINS = [np.abs(RNG.standard_normal((1, 8, 1, 1))), np.abs(RNG.standard_normal((1, 16, 1, 1)))]

PROGRAMS = {
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "psnr": psnr,
    "total_variation": total_variation,
    "gmsd": gmsd,
    "gmsd_reflect": gmsd_reflect,
    "lpips_like": lpips_like,
    "lpips_spatial": lpips_spatial,
    "cosine_features": cosine_features,
    "style_distance": style_distance,
}


def _run(lib, program, x, y, dtype):
    xt = lib.tensor(x, dtype=dtype, requires_grad=True)
    out = program(lib, xt, lib.tensor(y, dtype=dtype))
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_metric_and_gradient_match_torch(name, precision):
    got = _run(ember, PROGRAMS[name], X, Y, getattr(ember, precision))
    want = _run(torch, PROGRAMS[name], X, Y, getattr(torch, precision))
    # float32: a ReLU whose input rounds to the other side of zero can move a gradient, so
    # the float32 check is relative to the gradient's scale
    rtol = 2e-4 if precision == "float32" else 1e-9
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


def test_volumetric_ssim_with_conv3d_windows():
    rng = np.random.default_rng(1)
    v = rng.random((1, 1, 12, 12, 12))
    w = np.clip(v + 0.1 * rng.standard_normal(v.shape), 0, 1)

    def ssim3d(lib, x, y):
        return ssim_parts(lib, x, y, gauss_1d(lib, 5, 1.5, x.dtype))[0].mean(1)

    got, want = _run(ember, ssim3d, v, w, ember.float64), _run(torch, ssim3d, v, w, torch.float64)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_identical_images_score_perfectly():
    x = ember.tensor(X, dtype=ember.float32)
    assert np.allclose(ssim(ember, x, x).numpy(), 1.0, atol=1e-5)
    assert np.allclose(ms_ssim(ember, x, x).numpy(), 1.0, atol=1e-5)
    assert np.allclose(lpips_like(ember, x, x).numpy(), 0.0, atol=1e-7)
    assert np.allclose(gmsd(ember, x, x).numpy(), 0.0, atol=1e-6)


def test_doc_snippet_runs():
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text(encoding="utf-8").split("## pytorch-msssim, piq, lpips", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
