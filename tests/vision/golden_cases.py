"""Cases shared by ``make_golden.py`` (run with torchvision) and the tests (run with ember).

Each transform case is ``(name, input, fn)`` where ``fn(F, img)`` calls the functional API;
``F`` is ``torchvision.transforms.functional`` on one side and
``ember.vision.transforms.functional`` on the other, so one line states both calls.
Inputs: ``u8`` a uint8 tensor (3, 18, 22), ``f32`` its float version, ``pil`` the same pixels as
a PIL RGB image. This module imports neither torch nor ember.
"""

from __future__ import annotations

import zlib

import numpy as np


def input_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    # A smooth gradient plus noise: resampling differences show, saturations stay rare.
    yy, xx = np.mgrid[0:18, 0:22]
    base = np.stack([xx * 11, yy * 13, (xx + yy) * 6]).astype(np.float64)
    u8 = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    return {"u8": u8}


def _cases():
    c = []

    def add(name, kinds, fn):
        for k in kinds:
            c.append((f"{name}[{k}]", k, fn))

    T, P, A = ("u8", "f32"), ("pil",), ("u8", "f32", "pil")
    bil, bic, near = "BILINEAR", "BICUBIC", "NEAREST"

    def mode(F, m):
        return getattr(F.InterpolationMode, m)

    add("resize_bilinear_aa_down", A, lambda F, x: F.resize(x, [7, 9], mode(F, bil)))
    add("resize_bicubic_aa_down", A, lambda F, x: F.resize(x, [8, 10], mode(F, bic)))
    add(
        "resize_bilinear_noaa_down",
        T,
        lambda F, x: F.resize(x, [7, 9], mode(F, bil), antialias=False),
    )
    add(
        "resize_bicubic_noaa_up",
        T,
        lambda F, x: F.resize(x, [29, 31], mode(F, bic), antialias=False),
    )
    add("resize_bilinear_up", A, lambda F, x: F.resize(x, [27, 40], mode(F, bil)))
    add("resize_nearest", A, lambda F, x: F.resize(x, [11, 30], mode(F, near)))
    add(
        "resize_nearest_exact",
        A,
        lambda F, x: F.resize(x, [11, 30], F.InterpolationMode.NEAREST_EXACT),
    )
    add("resize_lanczos_pil", P, lambda F, x: F.resize(x, [9, 13], F.InterpolationMode.LANCZOS))
    add("resize_short_side", A, lambda F, x: F.resize(x, 12, max_size=15))
    add("center_crop", A, lambda F, x: F.center_crop(x, [10, 13]))
    add("center_crop_pad", A, lambda F, x: F.center_crop(x, [21, 25]))
    add("crop_outside", A, lambda F, x: F.crop(x, -2, 3, 10, 22))
    add("pad_constant", A, lambda F, x: F.pad(x, [1, 2, 3, 4], fill=7))
    for pm in ("edge", "reflect", "symmetric"):
        add(f"pad_{pm}", A, lambda F, x, pm=pm: F.pad(x, [2, 3], padding_mode=pm))
    add("pad_negative", T, lambda F, x: F.pad(x, [-1, 2, 3, -2], padding_mode="edge"))
    add("hflip", A, lambda F, x: F.hflip(x))
    add("vflip", A, lambda F, x: F.vflip(x))
    add("rotate_nearest", A, lambda F, x: F.rotate(x, 33.0))
    add("rotate_bilinear_expand", A, lambda F, x: F.rotate(x, -20.0, mode(F, bil), expand=True))
    add("rotate_center_fill", T, lambda F, x: F.rotate(x, 15.0, center=[4, 5], fill=[9.0]))
    add("affine_nearest", A, lambda F, x: F.affine(x, 12.0, [2, -1], 1.1, [5.0, 3.0]))
    add(
        "affine_bilinear_fill",
        T,
        lambda F, x: F.affine(x, -8.0, [1, 2], 0.9, [0.0, 4.0], mode(F, bil), fill=[0.0, 0.0, 0.0]),
    )
    add(
        "affine_pil_bilinear",
        P,
        lambda F, x: F.affine(x, -8.0, [1, 2], 0.9, [0.0, 4.0], mode(F, bil), fill=[10, 20, 30]),
    )
    add("brightness", A, lambda F, x: F.adjust_brightness(x, 1.3))
    add("contrast", A, lambda F, x: F.adjust_contrast(x, 0.6))
    add("saturation", A, lambda F, x: F.adjust_saturation(x, 1.7))
    add("hue", A, lambda F, x: F.adjust_hue(x, 0.13))
    add("hue_negative", A, lambda F, x: F.adjust_hue(x, -0.31))
    add("gamma", A, lambda F, x: F.adjust_gamma(x, 0.7, 1.1))
    add("sharpness", A, lambda F, x: F.adjust_sharpness(x, 2.5))
    add("grayscale", A, lambda F, x: F.rgb_to_grayscale(x))
    add("grayscale3", A, lambda F, x: F.rgb_to_grayscale(x, 3))
    add("gaussian_blur", A, lambda F, x: F.gaussian_blur(x, [5, 3], [1.2, 0.7]))
    add("invert", A, lambda F, x: F.invert(x))
    add("posterize", ("u8", "pil"), lambda F, x: F.posterize(x, 3))
    add("solarize", ("u8", "pil"), lambda F, x: F.solarize(x, 100))
    add("autocontrast", A, lambda F, x: F.autocontrast(x))
    add("equalize", ("u8", "pil"), lambda F, x: F.equalize(x))
    add("five_crop", A, lambda F, x: F.five_crop(x, [6, 7]))
    add("to_tensor", P, lambda F, x: F.to_tensor(x))
    add("pil_to_tensor", P, lambda F, x: F.pil_to_tensor(x))
    add("to_pil_image", ("f32",), lambda F, x: F.to_pil_image(x))
    add("convert_to_float", ("u8",), lambda F, x: F.convert_image_dtype(x))
    add("normalize", ("f32",), lambda F, x: F.normalize(x, [0.4, 0.5, 0.6], [0.2, 0.3, 0.25]))
    add("erase", ("f32",), lambda F, x: F.erase(x, 2, 3, 5, 6, 0.5))
    add("resized_crop", A, lambda F, x: F.resized_crop(x, 2, 3, 12, 14, [9, 8]))
    return c


TRANSFORM_CASES = _cases()

# AutoAugment's ops: (op name, magnitude), applied by each side's ``autoaugment._apply_op`` to
# the uint8 tensor and the PIL image (nearest interpolation, fill 0 / None as the classes pass).
AUG_OPS = [
    ("ShearX", 0.2),
    ("ShearY", -0.25),
    ("TranslateX", 5.0),
    ("TranslateY", -4.0),
    ("Rotate", 20.0),
    ("Brightness", 0.4),
    ("Color", -0.5),
    ("Contrast", 0.6),
    ("Sharpness", 0.9),
    ("Posterize", 4.0),
    ("Solarize", 120.0),
    ("AutoContrast", 0.0),
    ("Equalize", 0.0),
    ("Invert", 0.0),
    ("Identity", 0.0),
]

# v2 ops on boxes (float32, each format, canvas (18, 22)) and on a uint8 mask; ``fn(F, x)``
# with ``F`` = ``transforms.v2.functional``.
BOXES_XYXY = np.array(
    [[1.0, 2.0, 9.0, 12.0], [15.5, 0.0, 22.0, 7.25], [4.0, 13.0, 11.0, 18.0]], np.float32
)
V2_OPS = [
    ("hflip", lambda F: F.horizontal_flip),
    ("vflip", lambda F: F.vertical_flip),
    ("resize", lambda F: lambda x: F.resize(x, [9, 30])),
    ("resize_short", lambda F: lambda x: F.resize(x, 12)),
    ("crop", lambda F: lambda x: F.crop(x, 2, 3, 10, 14)),
    ("center_crop", lambda F: lambda x: F.center_crop(x, [10, 13])),
    ("pad", lambda F: lambda x: F.pad(x, [1, 2, 3, 4])),
    ("resized_crop", lambda F: lambda x: F.resized_crop(x, 1, 2, 12, 16, [8, 9])),
]


def mask_array() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 5, (18, 22)).astype(np.uint8)


# ---- models -----------------------------------------------------------------------------------
# (constructor name, kwargs, input shape); small inputs keep the tests fast.
MODEL_CASES = [
    ("resnet18", {"num_classes": 10}, (2, 3, 32, 32)),
    ("resnet34", {"num_classes": 10}, (1, 3, 32, 32)),
    ("resnet50", {"num_classes": 10}, (1, 3, 32, 32)),
    ("mobilenet_v2", {"num_classes": 10}, (1, 3, 32, 32)),
    ("mobilenet_v3_small", {"num_classes": 10}, (1, 3, 32, 32)),
    ("efficientnet_b0", {"num_classes": 10}, (1, 3, 32, 32)),
    ("convnext_tiny", {"num_classes": 10}, (1, 3, 32, 32)),
    ("vit_b_16", {"num_classes": 10, "image_size": 32}, (1, 3, 32, 32)),
]


def model_input(shape) -> np.ndarray:
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


def fill_state(keys_shapes) -> dict[str, np.ndarray]:
    """Deterministic weights from each key's name and shape (NumPy only, both sides)."""
    out = {}
    for key, shape in keys_shapes:
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith("running_mean") or key.endswith("bias"):
            out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif len(shape) == 1:  # norm weights
            out[key] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            out[key] = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
    return out
