"""Pascal VOC segmentation and detection from an unpacked ``VOCdevkit`` (torchvision's
``VOCSegmentation`` / ``VOCDetection`` layout; ember does not download it)."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import Element, parse

from .utils import verify_str_arg as _verify
from .vision import VisionDataset

__all__ = ["VOCSegmentation", "VOCDetection"]

_BASE_DIRS = {
    "2012": os.path.join("VOCdevkit", "VOC2012"),
    "2011": os.path.join("TrainVal", "VOCdevkit", "VOC2011"),
    "2010": os.path.join("VOCdevkit", "VOC2010"),
    "2009": os.path.join("VOCdevkit", "VOC2009"),
    "2008": os.path.join("VOCdevkit", "VOC2008"),
    "2007": os.path.join("VOCdevkit", "VOC2007"),
}


class _VOCBase(VisionDataset):
    _SPLITS_DIR: str
    _TARGET_DIR: str
    _TARGET_FILE_EXT: str

    def __init__(
        self,
        root: str | os.PathLike,
        year: str = "2012",
        image_set: str = "train",
        download: bool = False,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable | None = None,
    ) -> None:
        super().__init__(root, transforms, transform, target_transform)
        self.year = _verify(year, "year", [str(y) for y in range(2007, 2013)])
        sets = ["train", "trainval", "val"] + (["test"] if year == "2007" else [])
        self.image_set = _verify(image_set, "image_set", sets)
        if download:
            raise RuntimeError(
                f"{type(self).__name__}: ember does not download Pascal VOC; unpack the "
                f"VOCtrainval tar into {self.root} (it holds {_BASE_DIRS[year]})"
            )
        voc_root = os.path.join(self.root, _BASE_DIRS[year])
        if not os.path.isdir(voc_root):
            raise RuntimeError(
                "Dataset not found or corrupted. You can use download=True to download it"
            )
        split_f = os.path.join(voc_root, "ImageSets", self._SPLITS_DIR, image_set + ".txt")
        with open(split_f) as f:
            names = [x.strip() for x in f.readlines()]
        self.images = [os.path.join(voc_root, "JPEGImages", x + ".jpg") for x in names]
        target_dir = os.path.join(voc_root, self._TARGET_DIR)
        self.targets = [os.path.join(target_dir, x + self._TARGET_FILE_EXT) for x in names]

    def __len__(self) -> int:
        return len(self.images)


class VOCSegmentation(_VOCBase):
    """Pascal VOC segmentation: ``(RGB image, PIL palette mask)`` pairs of the ``image_set``
    (``"train"``, ``"trainval"``, ``"val"``; ``"test"`` for 2007) under
    ``root/VOCdevkit/VOC<year>``."""

    _SPLITS_DIR = "Segmentation"
    _TARGET_DIR = "SegmentationClass"
    _TARGET_FILE_EXT = ".png"

    @property
    def masks(self) -> list[str]:
        return self.targets

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.open(self.images[index]).convert("RGB")
        target = Image.open(self.masks[index])
        return self._apply(img, target)


class VOCDetection(_VOCBase):
    """Pascal VOC detection: ``(RGB image, annotation dict)`` pairs, the dict being the XML
    tree as torchvision parses it (``{"annotation": {..., "object": [{...}, ...]}}``)."""

    _SPLITS_DIR = "Main"
    _TARGET_DIR = "Annotations"
    _TARGET_FILE_EXT = ".xml"

    @property
    def annotations(self) -> list[str]:
        return self.targets

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.open(self.images[index]).convert("RGB")
        target = self.parse_voc_xml(parse(self.annotations[index]).getroot())
        return self._apply(img, target)

    @staticmethod
    def parse_voc_xml(node: Element) -> dict[str, Any]:
        """The XML tree as nested dicts: a tag repeated under one parent becomes a list, and
        ``annotation["object"]`` is always a list."""
        out: dict[str, Any] = {}
        children = list(node)
        if children:
            merged: dict[str, list] = collections.defaultdict(list)
            for child in map(VOCDetection.parse_voc_xml, children):
                for key, value in child.items():
                    merged[key].append(value)
            if node.tag == "annotation":
                merged["object"] = [merged["object"]]
            out = {node.tag: {k: v[0] if len(v) == 1 else v for k, v in merged.items()}}
        if node.text:
            text = node.text.strip()
            if not children:
                out[node.tag] = text
        return out
