"""SVHN (the cropped-digits ``.mat`` files) and STL-10 (the binary release), torchvision's
layouts; ember does not download them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .utils import verify_str_arg as _verify
from .vision import VisionDataset

__all__ = ["SVHN", "STL10"]


def _no_download(cls, what: str):
    raise RuntimeError(f"{cls.__name__}: ember does not download it; put {what} there")


class SVHN(VisionDataset):
    """SVHN digits from ``root/{split}_32x32.mat`` (``split``: ``"train"``, ``"test"``,
    ``"extra"``); labels 0-9 (the files' 10 is digit 0). Needs SciPy to read the files.
    """

    split_list = {
        "train": "train_32x32.mat",
        "test": "test_32x32.mat",
        "extra": "extra_32x32.mat",
    }

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.split = _verify(split, "split", tuple(self.split_list))
        self.filename = self.split_list[split]
        path = os.path.join(self.root, self.filename)
        if download and not os.path.isfile(path):
            _no_download(type(self), path)
        if not os.path.isfile(path):
            raise RuntimeError(
                "Dataset not found or corrupted. You can use download=True to download it"
            )
        import scipy.io as sio

        mat = sio.loadmat(path)
        self.labels = mat["y"].astype(np.int64).squeeze()
        np.place(self.labels, self.labels == 10, 0)
        self.data = np.transpose(mat["X"], (3, 2, 0, 1))  # N, C, H, W

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.fromarray(np.transpose(self.data[index], (1, 2, 0)))
        return self._apply(img, int(self.labels[index]))

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {self.split}"


class STL10(VisionDataset):
    """STL-10 from ``root/stl10_binary/`` (``train_X.bin``, ``train_y.bin``, ``test_*``,
    ``unlabeled_X.bin``, ``fold_indices.txt``, ``class_names.txt``).

    Args:
        split: ``"train"``, ``"test"``, ``"unlabeled"`` or ``"train+unlabeled"`` (unlabeled
            images have target -1).
        folds: one of the ten predefined training folds (0-9), or all of ``train``.
    """

    base_folder = "stl10_binary"
    splits = ("train", "train+unlabeled", "unlabeled", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        folds: int | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.split = _verify(split, "split", self.splits)
        if folds is not None and not (isinstance(folds, int) and 0 <= folds < 10):
            raise ValueError(
                f"Value for argument folds should be in the range [0, 10), but got {folds}."
            )
        self.folds = folds
        folder = os.path.join(self.root, self.base_folder)
        if download and not os.path.isdir(folder):
            _no_download(type(self), folder)
        if not os.path.isdir(folder):
            raise RuntimeError(
                "Dataset not found or corrupted. You can use download=True to download it"
            )
        if split in ("train", "train+unlabeled"):
            self.data, self.labels = self._load("train_X.bin", "train_y.bin")
            self._load_folds(folds)
            if split == "train+unlabeled":
                unlabeled, _ = self._load("unlabeled_X.bin")
                self.data = np.concatenate((self.data, unlabeled))
                self.labels = np.concatenate((self.labels, np.full(len(unlabeled), -1)))
        elif split == "unlabeled":
            self.data, _ = self._load("unlabeled_X.bin")
            self.labels = np.full(len(self.data), -1)
        else:
            self.data, self.labels = self._load("test_X.bin", "test_y.bin")
        class_file = os.path.join(folder, "class_names.txt")
        if os.path.isfile(class_file):
            with open(class_file) as f:
                self.classes = f.read().splitlines()

    def _load(self, data_file: str, labels_file: str | None = None):
        folder = os.path.join(self.root, self.base_folder)
        labels = None
        if labels_file:
            labels = np.fromfile(os.path.join(folder, labels_file), dtype=np.uint8) - 1
        images = np.fromfile(os.path.join(folder, data_file), dtype=np.uint8)
        # stored column-major per channel: transpose H and W
        return np.transpose(images.reshape(-1, 3, 96, 96), (0, 1, 3, 2)), labels

    def _load_folds(self, folds: int | None) -> None:
        if folds is None:
            return
        with open(os.path.join(self.root, self.base_folder, "fold_indices.txt")) as f:
            idx = np.array(f.read().splitlines()[folds].split(), dtype=np.int64)
        self.data = self.data[idx]
        if self.labels is not None:
            self.labels = self.labels[idx]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        target = int(self.labels[index]) if self.labels is not None else None
        img = Image.fromarray(np.transpose(self.data[index], (1, 2, 0)))
        return self._apply(img, target)

    def __len__(self) -> int:
        return self.data.shape[0]

    def extra_repr(self) -> str:
        return f"Split: {self.split}"
