"""More image-classification sets from their unpacked releases in torchvision's layouts:
``OxfordIIITPet`` (breeds, cat/dog, trimaps), ``Flowers102`` (SciPy reads its ``.mat``
lists) and ``GTSRB``. ember does not download them."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .folder import default_loader, make_dataset
from .image_lists import _missing, _verify
from .vision import VisionDataset

__all__ = ["OxfordIIITPet", "Flowers102", "GTSRB"]


class OxfordIIITPet(VisionDataset):
    """Oxford-IIIT Pet: ``root/oxford-iiit-pet/images/<id>.jpg``, the lists
    ``annotations/{trainval,test}.txt`` and the trimaps ``annotations/trimaps/<id>.png``.

    Args:
        split: ``"trainval"`` or ``"test"``.
        target_types: ``"category"`` (37 breeds), ``"binary-category"`` (cat / dog),
            ``"segmentation"`` (the trimap, a PIL image), or a list of them (a tuple target).
    """

    _VALID_TARGET_TYPES = ("category", "binary-category", "segmentation")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "trainval",
        target_types: Sequence[str] | str = "category",
        transforms: Callable | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        self._split = _verify(split, "split", ("trainval", "test"))
        if isinstance(target_types, str):
            target_types = [target_types]
        self._target_types = [
            _verify(t, "target_types", self._VALID_TARGET_TYPES) for t in target_types
        ]
        super().__init__(root, transforms, transform, target_transform)
        base = os.path.join(self.root, "oxford-iiit-pet")
        anns = os.path.join(base, "annotations")
        _missing(type(self), anns, download)
        ids, self._labels, self._bin_labels = [], [], []
        with open(os.path.join(anns, f"{split}.txt")) as f:
            for line in f:
                image_id, label, bin_label, _ = line.strip().split()
                ids.append(image_id)
                self._labels.append(int(label) - 1)
                self._bin_labels.append(int(bin_label) - 1)
        self.bin_classes = ["Cat", "Dog"]
        breeds = sorted(
            {(i.rsplit("_", 1)[0], lab) for i, lab in zip(ids, self._labels)}, key=lambda p: p[1]
        )  # noqa: E501
        self.classes = [" ".join(part.title() for part in raw.split("_")) for raw, _ in breeds]
        self.bin_class_to_idx = {c: i for i, c in enumerate(self.bin_classes)}
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self._images = [os.path.join(base, "images", f"{i}.jpg") for i in ids]
        self._segs = [os.path.join(anns, "trimaps", f"{i}.png") for i in ids]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, idx: int) -> tuple[Any, Any]:
        from PIL import Image

        image = Image.open(self._images[idx]).convert("RGB")
        target: list = []
        for t in self._target_types:
            if t == "category":
                target.append(self._labels[idx])
            elif t == "binary-category":
                target.append(self._bin_labels[idx])
            else:
                target.append(Image.open(self._segs[idx]))
        out = None if not target else target[0] if len(target) == 1 else tuple(target)
        return self._apply(image, out)


class Flowers102(VisionDataset):
    """Oxford 102 Flowers: ``root/flowers-102/jpg/image_<id>.jpg`` with ``imagelabels.mat``
    and ``setid.mat`` (``split``: ``"train"``, ``"val"``, ``"test"``); labels 0-101."""

    _splits_map = {"train": "trnid", "val": "valid", "test": "tstid"}

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self._split = _verify(split, "split", ("train", "val", "test"))
        base = os.path.join(self.root, "flowers-102")
        _missing(type(self), os.path.join(base, "jpg"), download)
        from scipy.io import loadmat

        set_ids = loadmat(os.path.join(base, "setid.mat"), squeeze_me=True)
        ids = np.atleast_1d(set_ids[self._splits_map[split]]).tolist()
        labels = loadmat(os.path.join(base, "imagelabels.mat"), squeeze_me=True)["labels"] - 1
        id_to_label = dict(enumerate(np.atleast_1d(labels).tolist(), 1))
        self._labels = [id_to_label[i] for i in ids]
        self._image_files = [os.path.join(base, "jpg", f"image_{i:05d}.jpg") for i in ids]
        self.loader = loader

    def __len__(self) -> int:
        return len(self._image_files)

    def __getitem__(self, idx: int) -> tuple[Any, Any]:
        return self._apply(self.loader(self._image_files[idx]), self._labels[idx])

    def extra_repr(self) -> str:
        return f"split={self._split}"


class GTSRB(VisionDataset):
    """German Traffic Sign Recognition: ``root/gtsrb/GTSRB/Training/<class>/*.ppm`` (train) or
    ``root/gtsrb/GTSRB/Final_Test/Images/*.ppm`` with ``root/gtsrb/GT-final_test.csv``."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self._split = _verify(split, "split", ("train", "test"))
        base = os.path.join(self.root, "gtsrb")
        folder = os.path.join(
            base, "GTSRB", "Training" if split == "train" else "Final_Test/Images"
        )  # noqa: E501
        _missing(type(self), folder, download)
        if split == "train":
            self._samples = make_dataset(folder, extensions=(".ppm",))
        else:
            with open(os.path.join(base, "GT-final_test.csv")) as f:
                rows = csv.DictReader(f, delimiter=";", skipinitialspace=True)
                self._samples = [
                    (os.path.join(folder, r["Filename"]), int(r["ClassId"])) for r in rows
                ]  # noqa: E501

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        path, target = self._samples[index]
        return self._apply(Image.open(path).convert("RGB"), target)
