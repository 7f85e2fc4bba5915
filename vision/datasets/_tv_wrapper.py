"""``wrap_dataset_for_transforms_v2``: a dataset's samples as ``transforms.v2`` wants them
(boxes as ``tv_tensors.BoundingBoxes``, masks as ``tv_tensors.Mask``), torchvision's wrapper
for the datasets ember has: the classification sets (unchanged), ``VOCSegmentation``,
``VOCDetection`` and ``CocoDetection``."""

from __future__ import annotations

import collections.abc
import contextlib
from collections import defaultdict
from copy import copy

import numpy as np

import ember

from .. import tv_tensors
from .cifar import CIFAR10, CIFAR100
from .coco import CocoDetection
from .folder import DatasetFolder, ImageFolder
from .imagenet import ImageNet
from .mnist import MNIST, FashionMNIST
from .vision import VisionDataset
from .voc import VOCDetection, VOCSegmentation

__all__ = ["wrap_dataset_for_transforms_v2"]

VOC_DETECTION_CATEGORIES = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor",
]  # fmt: skip
_VOC_INDEX = {c: i for i, c in enumerate(VOC_DETECTION_CATEGORIES)}


def _keys(target_keys, *, available: set, default: set) -> set:
    if target_keys is None:
        return default
    if target_keys == "all":
        return available
    keys = set(target_keys)
    extra = keys - available
    if extra:
        raise ValueError(f"Target keys {sorted(extra)} are not available")
    return keys


def _batched(list_of_dicts) -> dict:
    out: dict = defaultdict(list)
    for d in list_of_dicts:
        for k, v in d.items():
            out[k].append(v)
    return dict(out)


def _identity(dataset, target_keys):
    return lambda idx, sample: sample


def _segmentation(dataset, target_keys):
    return lambda idx, sample: (sample[0], tv_tensors.Mask(sample[1]))


def _voc_detection(dataset, target_keys):
    keys = _keys(
        target_keys, available={"annotation", "boxes", "labels"}, default={"boxes", "labels"}
    )  # noqa: E501

    def wrapper(idx, sample):
        image, target = sample
        objects = _batched(target["annotation"]["object"])
        if "annotation" not in keys:
            target = {}
        if "boxes" in keys:
            target["boxes"] = tv_tensors.BoundingBoxes(
                np.array(
                    [
                        [int(b[p]) for p in ("xmin", "ymin", "xmax", "ymax")]
                        for b in objects["bndbox"]
                    ],  # noqa: E501
                    np.int64,
                ).reshape(-1, 4),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=(image.height, image.width),
            )
        if "labels" in keys:
            target["labels"] = ember.tensor([_VOC_INDEX[c] for c in objects["name"]])
        return image, target

    return wrapper


def _coco_detection(dataset, target_keys):
    native = {"segmentation", "area", "iscrowd", "image_id", "bbox", "category_id"}
    keys = _keys(
        target_keys,
        available=native | {"boxes", "masks", "labels"},
        default={"image_id", "boxes", "labels"},
    )

    def to_mask(segmentation, canvas_size):
        try:
            from pycocotools import mask
        except ImportError as e:
            raise ImportError(
                "CocoDetection's 'masks' target needs pycocotools (pip install pycocotools)"
            ) from e
        if isinstance(segmentation, dict):
            if not isinstance(segmentation["counts"], str):
                segmentation = mask.frPyObjects(segmentation, *canvas_size)
        elif isinstance(segmentation, list):
            segmentation = mask.merge(mask.frPyObjects(segmentation, *canvas_size))
        else:
            raise ValueError(
                f"COCO segmentation expected to be a dict or a list, got {type(segmentation)}"
            )
        return mask.decode(segmentation)

    def wrapper(idx, sample):
        image_id = dataset.ids[idx]
        image, target = sample
        if not target:
            return image, {"image_id": image_id}
        canvas_size = (image.height, image.width)
        batched = _batched(target)
        target = {}
        if "image_id" in keys:
            target["image_id"] = image_id
        if "boxes" in keys:
            xywh = np.asarray(batched["bbox"], np.float32).reshape(-1, 4)
            xywh[:, 2:] += xywh[:, :2]  # XYWH -> XYXY
            target["boxes"] = tv_tensors.BoundingBoxes(
                xywh, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=canvas_size
            )
        if "masks" in keys:
            target["masks"] = tv_tensors.Mask(
                np.stack([to_mask(s, canvas_size) for s in batched["segmentation"]])
            )
        if "labels" in keys:
            target["labels"] = ember.tensor(batched["category_id"])
        for key in keys - {"image_id", "boxes", "masks", "labels"}:
            target[key] = batched[key]
        return image, target

    return wrapper


_FACTORIES = {
    CIFAR10: _identity,
    CIFAR100: _identity,
    ImageNet: _identity,
    MNIST: _identity,
    FashionMNIST: _identity,
    DatasetFolder: _identity,
    ImageFolder: _identity,
    VOCSegmentation: _segmentation,
    VOCDetection: _voc_detection,
    CocoDetection: _coco_detection,
}


class _TVTensorWrapper:
    def __init__(self, dataset, target_keys) -> None:
        if not isinstance(dataset, VisionDataset):
            raise TypeError(
                "This wrapper is meant for subclasses of `torchvision.datasets.VisionDataset`, "
                f"but got a '{type(dataset).__name__}' instead."
            )
        for cls in type(dataset).mro():
            if cls in _FACTORIES:
                if target_keys is not None and cls not in (CocoDetection, VOCDetection):
                    raise ValueError(
                        "`target_keys` is currently only supported for `CocoDetection`, "
                        f"`VOCDetection`, `Kitti`, and `WIDERFace`, but got {cls.__name__}."
                    )
                factory = _FACTORIES[cls]
                break
            if cls is VisionDataset:
                raise TypeError(
                    f"No wrapper exists for dataset class {type(dataset).__name__}. "
                    "Please wrap the output yourself."
                )
        self._dataset, self._target_keys = dataset, target_keys
        self._wrapper = factory(dataset, target_keys)
        # the dataset's transforms run after the wrapping, on the tv_tensors
        self.transform, dataset.transform = dataset.transform, None
        self.target_transform, dataset.target_transform = dataset.target_transform, None
        self.transforms, dataset.transforms = dataset.transforms, None

    def __getattr__(self, item):
        with contextlib.suppress(AttributeError):
            return object.__getattribute__(self, item)
        return getattr(self._dataset, item)

    def __getitem__(self, idx):
        sample = self._wrapper(idx, self._dataset[idx])
        return self.transforms(*sample) if self.transforms is not None else sample

    def __len__(self) -> int:
        return len(self._dataset)

    def __reduce__(self):
        dataset = copy(self._dataset)
        dataset.transform, dataset.transforms = self.transform, self.transforms
        dataset.target_transform = self.target_transform
        return wrap_dataset_for_transforms_v2, (dataset, self._target_keys)


def wrap_dataset_for_transforms_v2(dataset, target_keys=None):
    """Wrap ``dataset`` so that its samples are ``transforms.v2``-ready: VOC and COCO
    detection targets become ``{"boxes": BoundingBoxes (XYXY), "labels": tensor, ...}``
    (``target_keys``: the keys to keep, ``"all"``, or ``None`` for the defaults; COCO's
    ``"masks"`` needs pycocotools), VOC segmentation masks become ``Mask``, classification
    sets pass unchanged. The dataset's own ``transforms`` then run on the wrapped sample."""
    if not (
        target_keys is None
        or target_keys == "all"
        or (
            isinstance(target_keys, collections.abc.Collection)
            and all(isinstance(k, str) for k in target_keys)
        )
    ):
        raise ValueError(
            "`target_keys` can be None, 'all', or a collection of strings denoting the keys to "
            f"be returned, but got {target_keys}"
        )
    cls = type(f"Wrapped{type(dataset).__name__}", (_TVTensorWrapper, type(dataset)), {})
    return cls(dataset, target_keys)
