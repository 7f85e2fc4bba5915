"""MNIST and Fashion-MNIST from their IDX files, torchvision's layout and download."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ember.tensor import Tensor
from ember.utils.data.datasets import read_idx

from .utils import download_from_mirrors, extract_archive
from .vision import VisionDataset

__all__ = ["MNIST", "FashionMNIST", "KMNIST"]


class MNIST(VisionDataset):
    """MNIST under ``root/MNIST/raw/`` (the unpacked IDX files).

    Args:
        root: the folder that holds ``MNIST/raw``.
        train: the 60,000 training images, else the 10,000 test images.
        transform / target_transform: applied to the PIL image (mode ``L``) / the int label.
        download: fetch the ``.gz`` files from ``mirrors`` (checking their MD5) and unpack
            them, unless they are there already.
    """

    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    training_file, test_file = "training.pt", "test.pt"
    _label_ndim = 1  # QMNIST's labels are (N, 8)
    classes = [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ]

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
        missing = [p for p in self._raw_paths() if not os.path.isfile(p)]
        if missing:
            raise RuntimeError(self._not_found(missing))
        # the subclasses (EMNIST, QMNIST) name other files in _raw_paths
        images_path, labels_path = self._raw_paths()
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != self._label_ndim or len(images) != len(labels):
            raise ValueError(
                f"{type(self).__name__}: images of shape {images.shape} do not "
                f"match labels of shape {labels.shape}"
            )
        self.data = Tensor._wrap(images.astype(np.uint8, copy=False))
        self.targets = Tensor._wrap(labels.astype(np.int64))

    # torchvision's pre-0.2.2 names, still read by older programs (PyTorch-GAN's MNIST-M
    # builder: ``datasets.MNIST(...).train_labels``), with its deprecation warnings
    @property
    def train_labels(self) -> Tensor:
        warnings.warn("train_labels has been renamed targets", stacklevel=2)
        return self.targets

    @property
    def test_labels(self) -> Tensor:
        warnings.warn("test_labels has been renamed targets", stacklevel=2)
        return self.targets

    @property
    def train_data(self) -> Tensor:
        warnings.warn("train_data has been renamed data", stacklevel=2)
        return self.data

    @property
    def test_data(self) -> Tensor:
        warnings.warn("test_data has been renamed data", stacklevel=2)
        return self.data

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, type(self).__name__, "raw")

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def _raw_paths(self) -> list[str]:
        prefix = "train" if self.train else "t10k"
        return [
            os.path.join(self.raw_folder, f"{prefix}-{k}")
            for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
        ]

    def _not_found(self, missing: list[str]) -> str:
        name = os.path.basename(missing[0])
        where = " or ".join(f"{m}{name}.gz" for m in getattr(self, "mirrors", []))
        return (
            f"Dataset not found: {type(self).__name__} expects {', '.join(missing)}. Pass "
            f"download=True to fetch it{' from ' + where if where else ''}, or put the "
            "unpacked IDX files there."
        )

    def _check_exists(self) -> bool:
        return all(
            os.path.isfile(os.path.join(self.raw_folder, os.path.splitext(f)[0]))
            for f, _ in self.resources
        )

    def download(self) -> None:
        """Download and unpack every file of ``resources`` not already unpacked."""
        os.makedirs(self.raw_folder, exist_ok=True)
        for filename, md5 in self.resources:
            if os.path.isfile(os.path.join(self.raw_folder, os.path.splitext(filename)[0])):
                continue
            path = download_from_mirrors(self.mirrors, filename, self.raw_folder, md5)
            extract_archive(path, self.raw_folder)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.fromarray(self.data._data[index], mode="L")
        return self._apply(img, int(self.targets._data[index]))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando), MNIST's format under ``root/FashionMNIST/raw/``."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


class KMNIST(MNIST):
    """Kuzushiji-MNIST (ROIS-CODH): ten cursive hiragana in MNIST's format under
    ``root/KMNIST/raw/``."""

    mirrors = ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
        ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
        ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
        ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
    ]
    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
