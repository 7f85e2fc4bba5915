"""v2's batch augmentations ``MixUp`` and ``CutMix``: they mix a *batch* of images with the
batch rolled by one and mix the one-hot labels in the same proportion, so they run after
batching (``for images, labels in loader: images, labels = cutmix(images, labels)``), or in a
``collate_fn``.

Draws follow torchvision's: ``lam`` from ``Beta(alpha, alpha)``, then CutMix's box centre from
``randint(W)`` and ``randint(H)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ember
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .._functional_pil import is_pil
from ..transforms import _TransformModule
from ._transform import _flatten, v2_repr

__all__ = ["MixUp", "CutMix"]


def find_labels(sample) -> Tensor:
    """torchvision's default ``labels_getter``: in ``(image, target)`` look at ``target``; a
    tensor is the labels, a dict gives its ``"labels"`` entry (any case), else the first key
    containing "label"."""
    if isinstance(sample, (tuple, list)) and len(sample) >= 2:
        sample = sample[1]
    if isinstance(sample, Tensor) and not isinstance(sample, tv.TVTensor):
        return sample
    if isinstance(sample, dict):
        keys = [k for k in sample if isinstance(k, str)]
        key = next((k for k in keys if k.lower() == "labels"), None)
        key = key or next((k for k in keys if "label" in k.lower()), None)
        if key is not None:
            return sample[key]
    raise ValueError(
        "Could not infer where the labels are in the sample: pass (images, labels), "
        "(image, {'labels': ...}) or a dict with a 'labels' key, or give labels_getter=..."
    )


class _MixUpCutMix(_TransformModule):
    # an nn.Module, as torchvision's (its v2 Transform base): nn.Sequential takes it
    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: int | None = None,
        labels_getter: Callable[[Any], Tensor] | str = "default",
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(
                f"num_classes must be a positive integer or None (one-hot labels), got "
                f"{num_classes}"
            )
        self.alpha, self.num_classes = float(alpha), num_classes
        self._labels_getter = find_labels if labels_getter == "default" else labels_getter
        self._dist = ember.distributions.Beta(ember.tensor([alpha]), ember.tensor([alpha]))

    def _mix(self, images: Tensor, lam: float) -> tuple[Tensor, float]:
        raise NotImplementedError

    def __call__(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        given = labels = self._labels_getter(sample)
        leaves: list = []
        rebuild = _flatten(sample, leaves)
        images = [x for x in leaves if isinstance(x, Tensor) and x is not given]
        if any(is_pil(x) or isinstance(x, (tv.BoundingBoxes, tv.Mask)) for x in leaves):
            raise ValueError(
                f"{type(self).__name__} takes a batch of tensor images and labels, not PIL "
                "images, bounding boxes or masks"
            )
        if len(images) != 1:
            raise ValueError(f"{type(self).__name__} needs exactly one batch of images")
        batch = images[0]
        if batch.ndim != 4:
            raise ValueError(f"Expected a batched input with 4 dims, but got {batch.ndim} dims")
        if labels.ndim not in (1, 2) or labels.shape[0] != batch.shape[0]:
            raise ValueError(
                f"labels should be a tensor of shape (batch_size,) or (batch_size, "
                f"num_classes) with batch_size {batch.shape[0]}, got {tuple(labels.shape)}"
            )
        if labels.ndim == 1:
            if self.num_classes is None:
                raise ValueError(
                    "num_classes is needed to one-hot encode integer labels; pass "
                    "num_classes=... or one-hot labels"
                )
            labels = ember.nn.functional.one_hot(labels, num_classes=self.num_classes)
        labels = labels.to(batch.dtype if batch.is_floating_point() else ember.float32)
        lam = float(self._dist.sample(()))
        mixed, lam = self._mix(batch, lam)
        mixed_labels = labels.roll(1, 0).mul_(1.0 - lam).add_(labels.mul(lam))
        out = [mixed if x is batch else mixed_labels if x is given else x for x in leaves]
        return rebuild(iter(out))

    def __repr__(self) -> str:
        return v2_repr(self, ("alpha", "num_classes"))  # torchvision's: num_classes=None left out


class MixUp(_MixUpCutMix):
    """MixUp (Zhang et al., 2017): ``lam * x + (1 - lam) * x.roll(1, 0)`` for the images and
    the one-hot labels, ``lam ~ Beta(alpha, alpha)`` once per batch.

    Args:
        alpha: the Beta distribution's parameter.
        num_classes: the number of classes, to one-hot encode integer labels (``None``: the
            labels are one-hot already).
        labels_getter: how to find the labels in the sample; by default the second item of
            ``(images, labels)`` or the ``"labels"`` entry of a dict.
    """

    def _mix(self, images: Tensor, lam: float) -> tuple[Tensor, float]:
        return images.roll(1, 0).mul_(1.0 - lam).add_(images.mul(lam)), lam


class CutMix(_MixUpCutMix):
    """CutMix (Yun et al., 2019): a random box of each image is pasted from the next image
    of the batch (rolled by one); labels mix by the box's share of the image.

    The box has sides ``sqrt(1 - lam)`` times the image's, ``lam ~ Beta(alpha, alpha)``, and
    a uniform random centre; it is clipped to the image, and the label weight is the area
    kept. Arguments as :class:`MixUp`.
    """

    def _mix(self, images: Tensor, lam: float) -> tuple[Tensor, float]:
        h, w = int(images.shape[-2]), int(images.shape[-1])
        r_x, r_y = int(ember.randint(w, size=(1,))), int(ember.randint(h, size=(1,)))
        r = 0.5 * math.sqrt(1.0 - lam)
        half_w, half_h = int(r * w), int(r * h)
        x1, y1 = max(r_x - half_w, 0), max(r_y - half_h, 0)
        x2, y2 = min(r_x + half_w, w), min(r_y + half_h, h)
        out = images.clone()
        out[..., y1:y2, x1:x2] = images.roll(1, 0)[..., y1:y2, x1:x2]
        return out, 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
