"""``ember.vision``: torchvision's API on ember — ``transforms``, ``datasets``, ``models``, ``ops``
and ``tv_tensors``, ``io``.

Images are PIL images (Pillow, the ``vision`` extra) or ember tensors ``(..., C, H, W)``.
See ``docs/vision.md``.
"""

from __future__ import annotations

import importlib

__all__ = ["transforms", "datasets", "models", "ops", "tv_tensors", "utils", "io"]
_PARTS = tuple(__all__)
__all__ += ["get_image_backend", "set_image_backend", "get_video_backend", "set_video_backend"]
__all__ += ["disable_beta_transforms_warning"]

_image_backend = "PIL"


def set_image_backend(backend: str) -> None:
    """Set the package used to load images: ``"PIL"`` or ``"accimage"`` (torchvision's names;
    libraries such as lightly read it through :func:`get_image_backend` in their loaders)."""
    global _image_backend
    if backend not in ("PIL", "accimage"):
        raise ValueError(f"Invalid backend '{backend}'. Options are 'PIL' and 'accimage'")
    _image_backend = backend


def get_image_backend() -> str:
    """The name of the package used to load images (``"PIL"`` unless set otherwise)."""
    return _image_backend


_video_backend = "pyav"


def set_video_backend(backend: str) -> None:
    """torchvision's video-backend switch; as in torchvision 0.28 (where only ``"pyav"`` is
    left) it changes nothing."""


def get_video_backend() -> str:
    """The package used to decode videos: ``"pyav"``, as torchvision 0.28's."""
    return _video_backend


def disable_beta_transforms_warning() -> None:
    """A no-op, as in torchvision (``transforms.v2`` is stable; code written for 0.15 calls
    it)."""


# torchvision's release for torch 2.13, tagged like ember.__version__ ("2.13.0+ember.X")
__version__ = "0.28.0+" + __import__("ember").__version__.partition("+")[2]


def __getattr__(name: str):
    # Lazy: ``import ember.vision`` stays cheap; each part loads on first use.
    if name in _PARTS:
        return importlib.import_module(f"ember.vision.{name}")
    raise AttributeError(f"module 'ember.vision' has no attribute {name!r}")
