"""CIFAR-10 and CIFAR-100 from their python batches, torchvision's layout and download."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ember.utils.data.datasets import _load_cifar_batch

from .utils import check_integrity, download_and_extract_archive
from .vision import VisionDataset

__all__ = ["CIFAR10", "CIFAR100"]


class CIFAR10(VisionDataset):
    """CIFAR-10 under ``root/cifar-10-batches-py/``; images are RGB PIL images (32x32).

    Batches are unpickled by a loader that admits only NumPy arrays, lists and strings, so a
    crafted file cannot run code. ``download=True`` fetches ``url``, checks ``tgz_md5`` and
    each batch's MD5, and unpacks atomically.
    """

    base_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = [
        ["data_batch_1", "c99cafc152244af753f735de768cd75f"],
        ["data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"],
        ["data_batch_3", "54ebc095f3ab1f0389bbae665268c751"],
        ["data_batch_4", "634d18415352ddfa80567beed471001a"],
        ["data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"],
    ]
    test_list = [["test_batch", "40351d587109b95175f43aff81a1287e"]]
    meta = {
        "filename": "batches.meta",
        "key": "label_names",
        "md5": "5ff9c542aee3614f3951f8cda6e48888",
    }

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        folder = os.path.join(self.root, self.base_folder)
        if not self._check_integrity():
            raise RuntimeError(
                f"Dataset not found or corrupted: {type(self).__name__} expects "
                f"the batches {[f for f, _ in self._files()]} in {folder}. Pass "
                f"download=True to fetch {self.url}, or unpack it there."
            )
        chunks, labels = [], []
        for name, _ in self.train_list if train else self.test_list:
            path = os.path.join(folder, name)
            entry = _load_cifar_batch(path)
            data = np.asarray(entry["data"], dtype=np.uint8)
            lab = entry["labels"] if "labels" in entry else entry["fine_labels"]
            if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(lab):
                raise ValueError(
                    f"{path}: 'data' has shape {data.shape} for {len(lab)} labels;"
                    " expected (N, 3072)"
                )
            chunks.append(data)
            labels.extend(int(v) for v in lab)
        data = np.vstack(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.data = np.ascontiguousarray(data)  # HWC, as torchvision keeps it
        self.targets = labels
        meta = _load_cifar_batch(os.path.join(folder, self.meta["filename"]))
        self.classes = [
            c.decode() if isinstance(c, bytes) else str(c) for c in meta[self.meta["key"]]
        ]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _files(self) -> list[list[str]]:
        return self.train_list + self.test_list + [[self.meta["filename"], self.meta["md5"]]]

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        return all(check_integrity(os.path.join(folder, f), md5) for f, md5 in self._files())

    def download(self) -> None:
        if self._check_integrity():
            return
        download_and_extract_archive(self.url, self.root, filename=self.filename, md5=self.tgz_md5)
        if not self._check_integrity():
            raise RuntimeError(
                f"{self.url} unpacked into {self.root} but its batches fail their MD5 check"
            )

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        return self._apply(Image.fromarray(self.data[index]), self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) under ``root/cifar-100-python/``."""

    base_folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list = [["train", "16019d7e3df5f24257cddd939b257f8d"]]
    test_list = [["test", "f0ef6b0ae62326f3e7ffdfab6717acfc"]]
    meta = {
        "filename": "meta",
        "key": "fine_label_names",
        "md5": "7973b15100ade9c7d40fb424638fde48",
    }
