"""MS COCO detection and captions from an image folder and its annotation JSON
(torchvision's ``CocoDetection`` / ``CocoCaptions``). The JSON is indexed here as
``pycocotools.coco.COCO`` indexes it, so pycocotools is not needed; where pycocotools is
installed, its ``COCO`` is used, as torchvision does (``COCOeval`` takes it as ground truth:
torchvision's ``references/detection`` evaluate with ``dataset.coco``)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .vision import VisionDataset

__all__ = ["CocoDetection", "CocoCaptions"]


class _CocoIndex:
    """The parts of pycocotools' ``COCO`` the datasets and torchvision's references use:
    ``dataset``, ``imgs``, ``anns``, ``cats``, ``imgToAnns``, ``getAnnIds`` / ``getImgIds`` /
    ``getCatIds`` and ``loadAnns`` / ``loadImgs`` / ``loadCats``, with its signatures."""

    def __init__(self, annotation_file: str) -> None:
        with open(annotation_file) as f:
            self.dataset = json.load(f)
        self.imgs = {img["id"]: img for img in self.dataset.get("images", [])}
        self.anns = {ann["id"]: ann for ann in self.dataset.get("annotations", [])}
        self.cats = {cat["id"]: cat for cat in self.dataset.get("categories", [])}
        self.imgToAnns: dict[int, list[dict]] = defaultdict(list)
        for ann in self.dataset.get("annotations", []):
            self.imgToAnns[ann["image_id"]].append(ann)

    def getAnnIds(self, imgIds=(), catIds=(), areaRng=(), iscrowd=None) -> list[int]:
        """Ids of the annotations of ``imgIds`` (all images when empty) whose category is in
        ``catIds`` (any when empty), area strictly inside ``areaRng`` (any when empty) and
        ``iscrowd`` flag equals ``iscrowd`` (any when ``None``)."""
        img_ids, cat_ids = _as_list(imgIds), set(_as_list(catIds))
        if img_ids:
            anns = [ann for i in img_ids for ann in self.imgToAnns.get(i, [])]
        else:
            anns = self.dataset.get("annotations", [])
        return [
            ann["id"]
            for ann in anns
            if (not cat_ids or ann["category_id"] in cat_ids)
            and (not len(areaRng) or areaRng[0] < ann["area"] < areaRng[1])
            and (iscrowd is None or ann["iscrowd"] == iscrowd)
        ]

    def getImgIds(self, imgIds=(), catIds=()) -> list[int]:
        ids = set(_as_list(imgIds) or self.imgs)
        for c in _as_list(catIds):
            ids &= {ann["image_id"] for ann in self.dataset.get("annotations", [])
                    if ann["category_id"] == c}  # fmt: skip
        return list(ids)

    def getCatIds(self, catNms=(), supNms=(), catIds=()) -> list[int]:
        names, sups, ids = _as_list(catNms), _as_list(supNms), _as_list(catIds)
        return [
            c["id"]
            for c in self.cats.values()
            if (not names or c["name"] in names)
            and (not sups or c.get("supercategory") in sups)
            and (not ids or c["id"] in ids)
        ]

    def loadAnns(self, ids=()) -> list[dict]:
        return [self.anns[i] for i in _as_list(ids)]

    def loadImgs(self, ids=()) -> list[dict]:
        return [self.imgs[i] for i in _as_list(ids)]

    def loadCats(self, ids=()) -> list[dict]:
        return [self.cats[i] for i in _as_list(ids)]


def _as_list(ids) -> list:
    # pycocotools takes one id or any sequence of ids
    return list(ids) if hasattr(ids, "__iter__") and hasattr(ids, "__len__") else [ids]


def _coco_index(annotation_file: str):
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return _CocoIndex(annotation_file)
    return COCO(annotation_file)


class CocoDetection(VisionDataset):
    """COCO detection: ``(RGB image, list of annotation dicts)`` for each image of
    ``annFile`` (sorted by id), the files read from ``root``.

    Args:
        root: the folder of the images (``file_name`` in the JSON is relative to it).
        annFile: the annotation JSON (``instances_train2017.json``, say).
        transform / target_transform / transforms: as :class:`VisionDataset`'s.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        annFile: str,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable | None = None,
    ) -> None:
        super().__init__(root, transforms, transform, target_transform)
        self.coco = _coco_index(annFile)
        self.ids = sorted(self.coco.imgs.keys())

    def _load_image(self, id: int):
        from PIL import Image

        path = self.coco.loadImgs(id)[0]["file_name"]
        return Image.open(os.path.join(self.root, path)).convert("RGB")

    def _load_target(self, id: int) -> list[Any]:
        return self.coco.loadAnns(self.coco.getAnnIds(id))

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not isinstance(index, int):
            raise ValueError(f"Index must be of type integer, got {type(index)} instead.")
        id = self.ids[index]
        return self._apply(self._load_image(id), self._load_target(id))

    def __len__(self) -> int:
        return len(self.ids)


class CocoCaptions(CocoDetection):
    """COCO captions: ``(RGB image, list of caption strings)``."""

    def _load_target(self, id: int) -> list[str]:
        return [ann["caption"] for ann in super()._load_target(id)]
