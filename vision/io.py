"""``ember.vision.io``: torchvision's image file functions (``read_image``, ``decode_image``,
``write_png``, ...), decoding with Pillow.

Images are ``uint8`` tensors ``(C, H, W)``, as torchvision's. Video and GPU decoding are not
provided.
"""

from __future__ import annotations

import enum
import io as _io

import numpy as np

import ember

__all__ = [
    "ImageReadMode",
    "read_file",
    "write_file",
    "decode_image",
    "decode_png",
    "decode_jpeg",
    "decode_gif",
    "decode_webp",
    "read_image",
    "encode_png",
    "encode_jpeg",
    "write_png",
    "write_jpeg",
]


class ImageReadMode(enum.Enum):
    """How many channels a decoded image gets (torchvision's values)."""

    UNCHANGED = 0
    GRAY = 1
    GRAY_ALPHA = 2
    RGB = 3
    RGB_ALPHA = 4
    RGBA = RGB_ALPHA


# Pillow's mode for each ImageReadMode that converts
_PIL_MODE = {
    ImageReadMode.GRAY: "L",
    ImageReadMode.GRAY_ALPHA: "LA",
    ImageReadMode.RGB: "RGB",
    ImageReadMode.RGB_ALPHA: "RGBA",
}


def _image():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is the vision extra
        raise ImportError("ember.vision.io needs Pillow (pip install pillow)") from e
    return Image


def read_file(path: str) -> ember.Tensor:
    """The bytes of the file at ``path`` as a 1-D ``uint8`` tensor."""
    with open(path, "rb") as f:
        return ember.from_numpy(np.frombuffer(f.read(), dtype=np.uint8).copy())


def write_file(filename: str, data: ember.Tensor) -> None:
    """Write a 1-D ``uint8`` tensor's bytes to ``filename``."""
    arr = _bytes_of(data, "write_file")
    with open(filename, "wb") as f:
        f.write(arr.tobytes())


def _bytes_of(data, fn: str) -> np.ndarray:
    if not isinstance(data, ember.Tensor) or data.dtype != ember.uint8 or data.dim() != 1:
        raise TypeError(f"{fn}: expected a 1-D uint8 tensor of encoded bytes, got {data!r:.80}")
    return data.detach().cpu().numpy()


def decode_image(
    input, mode: ImageReadMode = ImageReadMode.UNCHANGED, apply_exif_orientation: bool = False
) -> ember.Tensor:
    """Decode a PNG / JPEG / GIF / BMP / WEBP image: ``input`` is a 1-D ``uint8`` tensor of
    the file's bytes or a path. Returns ``(C, H, W)`` ``uint8`` (``uint16`` for 16-bit PNG
    read ``UNCHANGED``), C as ``mode`` asks (``UNCHANGED``: the file's own channels, a palette
    expanded to RGB)."""
    if isinstance(input, str):
        input = read_file(input)
    if isinstance(mode, str):
        mode = ImageReadMode[mode.upper()]
    if not isinstance(mode, ImageReadMode):
        raise TypeError(f"decode_image: mode must be an ImageReadMode, got {mode!r}")
    Image = _image()
    try:
        img = Image.open(_io.BytesIO(_bytes_of(input, "decode_image").tobytes()))
        img.load()
    except Image.UnidentifiedImageError as e:
        raise RuntimeError("decode_image: the bytes are not an image format Pillow knows") from e
    if apply_exif_orientation:
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
    if mode is not ImageReadMode.UNCHANGED:
        img = img.convert(_PIL_MODE[mode])
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale PNG
        arr = np.asarray(img).astype(np.uint16)
        return ember.from_numpy(np.ascontiguousarray(arr[None]))
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in img.mode or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return ember.from_numpy(np.ascontiguousarray(arr))


decode_png = decode_image
decode_jpeg = decode_image


def decode_webp(input, mode: ImageReadMode = ImageReadMode.UNCHANGED) -> ember.Tensor:
    """Decode a WEBP image (1-D ``uint8`` bytes) to ``(C, H, W)`` ``uint8`` RGB[A]."""
    return decode_image(input, mode)


def decode_gif(input) -> ember.Tensor:
    """Decode a GIF (1-D ``uint8`` bytes) to RGB ``uint8``: ``(C, H, W)`` for one frame,
    ``(N, C, H, W)`` for ``N`` frames (each frame as Pillow composes it)."""
    Image = _image()
    img = Image.open(_io.BytesIO(_bytes_of(input, "decode_gif").tobytes()))
    frames = []
    for i in range(getattr(img, "n_frames", 1)):
        img.seek(i)
        frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
    out = frames[0] if len(frames) == 1 else np.stack(frames)
    return ember.from_numpy(np.ascontiguousarray(out))


def read_image(
    path: str, mode: ImageReadMode = ImageReadMode.UNCHANGED, apply_exif_orientation: bool = False
) -> ember.Tensor:
    """Read a PNG / JPEG / ... file as a ``(C, H, W)`` ``uint8`` tensor (see
    :func:`decode_image`)."""
    return decode_image(read_file(path), mode, apply_exif_orientation)


def _to_pil(input, fn: str):
    if not isinstance(input, ember.Tensor) or input.dtype != ember.uint8 or input.dim() != 3:
        raise TypeError(f"{fn}: expected a (C, H, W) uint8 tensor, got {input!r:.80}")
    c = input.shape[0]
    if c not in (1, 2, 3, 4):
        raise ValueError(f"{fn}: expected 1, 2, 3 or 4 channels, got {c}")
    arr = input.detach().cpu().numpy().transpose(1, 2, 0)
    Image = _image()
    return Image.fromarray(np.ascontiguousarray(arr[..., 0] if c == 1 else arr))


def _encode(img, fmt: str, **kw) -> ember.Tensor:
    buf = _io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return ember.from_numpy(np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())


def encode_png(input: ember.Tensor, compression_level: int = 6) -> ember.Tensor:
    """A ``(C, H, W)`` ``uint8`` image as the bytes of a PNG file (1-D ``uint8``)."""
    if not 0 <= compression_level <= 9:
        raise ValueError(f"encode_png: compression_level must be 0..9, got {compression_level}")
    return _encode(_to_pil(input, "encode_png"), "PNG", compress_level=compression_level)


def encode_jpeg(input: ember.Tensor, quality: int = 75) -> ember.Tensor:
    """A ``(C, H, W)`` ``uint8`` image (1 or 3 channels) as the bytes of a JPEG file."""
    if not 1 <= quality <= 100:
        raise ValueError(f"encode_jpeg: quality must be 1..100, got {quality}")
    if isinstance(input, ember.Tensor) and input.dim() == 3 and input.shape[0] not in (1, 3):
        raise ValueError(f"encode_jpeg: JPEG takes 1 or 3 channels, got {input.shape[0]}")
    return _encode(_to_pil(input, "encode_jpeg"), "JPEG", quality=quality)


def write_png(input: ember.Tensor, filename: str, compression_level: int = 6) -> None:
    """Write a ``(C, H, W)`` ``uint8`` image as a PNG file."""
    write_file(filename, encode_png(input, compression_level))


def write_jpeg(input: ember.Tensor, filename: str, quality: int = 75) -> None:
    """Write a ``(C, H, W)`` ``uint8`` image (1 or 3 channels) as a JPEG file."""
    write_file(filename, encode_jpeg(input, quality))
