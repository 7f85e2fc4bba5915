"""Array kernels behind ``transforms.functional`` for tensor images ``(..., C, H, W)``.

Every function takes and returns a raw array (NumPy or CuPy: the module is the data's), and
reproduces torchvision's tensor path, rounding rules included: float -> uint8 casts truncate
as ``Tensor.to(torch.uint8)`` does, except where torchvision rounds first (resize, blur).
"""

from __future__ import annotations

import numpy as np

from ember.backend.device import get_array_module


def _bound(a) -> float:
    return 1.0 if a.dtype.kind == "f" else float(np.iinfo(a.dtype).max)


def _is_float(a) -> bool:
    return a.dtype.kind == "f"


def _cast_in(a, xp):
    # torchvision's _cast_squeeze_in: integer images are processed in float32.
    return a if _is_float(a) else a.astype(xp.float32)


def _cast_out(res, dtype, xp):
    # torchvision's _cast_squeeze_out: round before casting back to an integer dtype.
    if np.dtype(dtype).kind == "f":
        return res.astype(dtype, copy=False)
    return xp.round(res).astype(dtype)


def convert_image_dtype(a, dtype):
    dtype = np.dtype(dtype)
    xp = get_array_module(a)
    if a.dtype == dtype:
        return a
    if _is_float(a):
        if dtype.kind == "f":
            return a.astype(dtype)
        if (a.dtype == np.float32 and dtype in (np.int32, np.int64)) or (
            a.dtype == np.float64 and dtype == np.int64
        ):
            raise RuntimeError(f"The cast from {a.dtype} to {dtype} cannot be performed safely.")
        eps = 1e-3
        return (a * (float(np.iinfo(dtype).max) + 1.0 - eps)).astype(dtype)
    in_max = float(np.iinfo(a.dtype).max)
    if dtype.kind == "f":
        return (a.astype(dtype) / dtype.type(in_max)).astype(dtype)
    out_max = float(np.iinfo(dtype).max)
    if in_max > out_max:
        factor = int((in_max + 1) // (out_max + 1))
        return (a.astype(xp.int64) // factor).astype(dtype)
    factor = int((out_max + 1) // (in_max + 1))
    return a.astype(dtype) * dtype.type(factor)


def blend(a, b, ratio: float):
    ratio = float(ratio)
    # Integer images compute in float32, as torch promotes uint8 * float.
    fa = a if _is_float(a) else a.astype(np.float32)
    fb = b if _is_float(b) else b.astype(np.float32)
    res = ratio * fa + (1.0 - ratio) * fb
    return get_array_module(a).clip(res, 0, _bound(a)).astype(a.dtype)


def rgb_to_grayscale(a, num_output_channels: int = 1):
    xp = get_array_module(a)
    if a.shape[-3] == 1:
        gray = a
    else:
        f = a if _is_float(a) else a.astype(np.float32)
        r, g, b = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
        gray = (0.2989 * r + 0.587 * g + 0.114 * b).astype(a.dtype)[..., None, :, :]
    if num_output_channels == 3:
        gray = xp.broadcast_to(gray, gray.shape[:-3] + (3,) + gray.shape[-2:]).copy()
    return gray


def adjust_brightness(a, factor: float):
    return blend(a, get_array_module(a).zeros_like(a), factor)


def adjust_contrast(a, factor: float):
    xp = get_array_module(a)
    ftype = a.dtype if _is_float(a) else np.dtype(np.float32)
    src = rgb_to_grayscale(a) if a.shape[-3] == 3 else a
    mean = xp.mean(src.astype(ftype), axis=(-3, -2, -1), keepdims=True)
    return blend(a, mean, factor)


def adjust_saturation(a, factor: float):
    if a.shape[-3] == 1:
        return a
    return blend(a, rgb_to_grayscale(a), factor)


def _rgb2hsv(a, xp):
    r, g, b = a[..., 0, :, :], a[..., 1, :, :], a[..., 2, :, :]
    maxc, minc = a.max(axis=-3), a.min(axis=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = xp.ones_like(maxc)
    s = cr / xp.where(eqc, ones, maxc)
    div = xp.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = xp.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv2rgb(h, s, v, xp):
    i = xp.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(xp.int32) % 6
    p = xp.clip(v * (1.0 - s), 0.0, 1.0)
    q = xp.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = xp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    table = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    out = [xp.select([i == k for k in range(6)], list(row)) for row in table]
    return xp.stack(out, axis=-3).astype(h.dtype)


def adjust_hue(a, hue_factor: float):
    if a.shape[-3] == 1:
        return a
    xp = get_array_module(a)
    orig = a.dtype
    f = convert_image_dtype(a, np.float32)
    h, s, v = _rgb2hsv(f, xp)
    h = (h + np.float32(hue_factor)) % 1.0
    return convert_image_dtype(_hsv2rgb(h, s, v, xp), orig)


def adjust_gamma(a, gamma: float, gain: float = 1.0):
    xp = get_array_module(a)
    res = a if _is_float(a) else convert_image_dtype(a, np.float32)
    res = xp.clip(gain * res**gamma, 0, 1).astype(res.dtype)
    return convert_image_dtype(res, a.dtype)


def invert(a):
    return (_bound(a) - a).astype(a.dtype)


def posterize(a, bits: int):
    if a.dtype != np.uint8:
        raise TypeError(f"Only torch.uint8 image tensors are supported, but found {a.dtype}")
    return a & np.uint8((-int(2 ** (8 - bits))) & 0xFF)


def solarize(a, threshold: float):
    if threshold > _bound(a):
        raise TypeError("Threshold should be less than bound of img.")
    return get_array_module(a).where(a >= threshold, invert(a), a)


def autocontrast(a):
    xp = get_array_module(a)
    bound = _bound(a)
    ftype = a.dtype if _is_float(a) else np.dtype(np.float32)
    lo = a.min(axis=(-2, -1), keepdims=True).astype(ftype)
    hi = a.max(axis=(-2, -1), keepdims=True).astype(ftype)
    with np.errstate(divide="ignore"):
        scale = bound / (hi - lo)
    eq = ~xp.isfinite(scale)
    lo = xp.where(eq, 0, lo)
    scale = xp.where(eq, 1, scale)
    return xp.clip((a - lo) * scale, 0, bound).astype(a.dtype)


def _equalize_channel(c, xp):
    hist = xp.bincount(c.reshape(-1).astype(xp.int64), minlength=256)
    nonzero = hist[hist != 0]
    step = int(nonzero[:-1].sum()) // 255
    if step == 0:
        return c
    lut = (xp.cumsum(hist) + step // 2) // step
    lut = xp.clip(xp.concatenate([xp.zeros(1, lut.dtype), lut[:-1]]), 0, 255)
    return lut[c.astype(xp.int64)].astype(xp.uint8)


def equalize(a):
    if a.dtype != np.uint8:
        raise TypeError(f"Only torch.uint8 image tensors are supported, but found {a.dtype}")
    xp = get_array_module(a)
    flat = a.reshape((-1,) + a.shape[-2:])
    out = xp.stack([_equalize_channel(c, xp) for c in flat])
    return out.reshape(a.shape)


def _sep_conv(f, ky, kx, xp):
    # A separable "valid" correlation over the last two axes (the input is already padded).
    h = f.shape[-2] - len(ky) + 1
    w = f.shape[-1] - len(kx) + 1
    tmp = sum(float(k) * f[..., i : i + h, :] for i, k in enumerate(ky))
    return sum(float(k) * tmp[..., :, j : j + w] for j, k in enumerate(kx))


def _gaussian_kernel1d(ksize: int, sigma: float):
    half = (ksize - 1) * 0.5
    x = np.linspace(-half, half, ksize, dtype=np.float32)
    pdf = np.exp(-0.5 * (x / np.float32(sigma)) ** 2)
    return pdf / pdf.sum()


def gaussian_blur(a, kernel_size, sigma):
    xp = get_array_module(a)
    kx = _gaussian_kernel1d(kernel_size[0], sigma[0])
    ky = _gaussian_kernel1d(kernel_size[1], sigma[1])
    f = _cast_in(a, xp)
    px, py = kernel_size[0] // 2, kernel_size[1] // 2
    pad = [(0, 0)] * (a.ndim - 2) + [(py, py), (px, px)]
    out = _sep_conv(xp.pad(f, pad, mode="reflect"), ky, kx, xp).astype(f.dtype)
    return _cast_out(out, a.dtype, xp)


def adjust_sharpness(a, factor: float):
    if a.shape[-1] <= 2 or a.shape[-2] <= 2:
        return a
    xp = get_array_module(a)
    f = _cast_in(a, xp)
    k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / np.float32(13.0)
    h, w = a.shape[-2] - 2, a.shape[-1] - 2
    inner = sum(float(k[i, j]) * f[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    if not _is_float(a):
        inner = xp.round(inner)
    degenerate = a.copy()
    degenerate[..., 1:-1, 1:-1] = inner.astype(a.dtype)
    return blend(a, degenerate, factor)


def pad(a, padding, fill=0, padding_mode: str = "constant"):
    """``padding`` is ``(left, top, right, bottom)``; negative values crop."""
    xp = get_array_module(a)
    left, top, right, bottom = padding
    if min(padding) < 0:
        h, w = a.shape[-2:]
        a = a[..., max(-top, 0) : h - max(-bottom, 0), max(-left, 0) : w - max(-right, 0)]
        left, top, right, bottom = (max(p, 0) for p in padding)
    widths = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
    if padding_mode == "constant":
        return xp.pad(a, widths, mode="constant", constant_values=fill)
    return xp.pad(a, widths, mode=padding_mode)


def crop(a, top: int, left: int, height: int, width: int):
    h, w = a.shape[-2:]
    right, bottom = left + width, top + height
    if left < 0 or top < 0 or right > w or bottom > h:
        inner = a[..., max(top, 0) : min(bottom, h), max(left, 0) : min(right, w)]
        return pad(inner, [max(-left, 0), max(-top, 0), max(right - w, 0), max(bottom - h, 0)])
    return a[..., top:bottom, left:right]


def erase(a, i: int, j: int, h: int, w: int, v, inplace: bool = False):
    out = a if inplace else a.copy()
    out[..., i : i + h, j : j + w] = v
    return out
