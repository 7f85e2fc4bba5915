"""EMNIST, QMNIST (MNIST's IDX format, other files and labels) and USPS (libsvm text)."""

from __future__ import annotations

import bz2
import os
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from ember.tensor import Tensor

from .mnist import MNIST
from .utils import download_and_extract_archive, download_url, extract_archive, verify_str_arg
from .vision import VisionDataset

__all__ = ["EMNIST", "QMNIST", "USPS"]


def _missing(dataset: str, paths: list[str], hint: str) -> RuntimeError:
    return RuntimeError(
        f"Dataset not found: {dataset} expects {', '.join(paths)}. Pass download=True to "
        f"fetch it, or {hint}."
    )


class EMNIST(MNIST):
    """Extended MNIST (NIST Special Database 19) under ``root/EMNIST/raw/``.

    Args:
        root: the folder that holds ``EMNIST/raw``.
        split: ``byclass``, ``bymerge``, ``balanced``, ``letters``, ``digits`` or ``mnist``;
            the IDX files ``emnist-<split>-<train|test>-<images-idx3|labels-idx1>-ubyte``.
        train / transform / target_transform / download: as :class:`MNIST`'s.
    """

    mirrors: list[str] = []
    url = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
    md5 = "58c8d27c78d21e728a6bc7b3cc06412e"
    splits = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
    # the merged splits fold these lowercase letters into their uppercase twins
    _merged_classes = set("cijklmopsuvwxyz")
    _all_classes = set(string.digits + string.ascii_letters)
    classes_split_dict = {
        "byclass": sorted(_all_classes),
        "bymerge": sorted(_all_classes - _merged_classes),
        "balanced": sorted(_all_classes - _merged_classes),
        "letters": ["N/A"] + list(string.ascii_lowercase),
        "digits": list(string.digits),
        "mnist": list(string.digits),
    }

    def __init__(self, root: str | os.PathLike, split: str, **kwargs: Any) -> None:
        self.split = verify_str_arg(split, "split", self.splits)
        self.classes = self.classes_split_dict[self.split]
        super().__init__(root, **kwargs)

    def _raw_paths(self) -> list[str]:
        prefix = f"emnist-{self.split}-{'train' if self.train else 'test'}"
        return [
            os.path.join(self.raw_folder, f"{prefix}-{k}")
            for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
        ]

    def _check_exists(self) -> bool:
        return all(os.path.isfile(p) for p in self._raw_paths())

    def download(self) -> None:
        """Fetch ``gzip.zip`` and unpack every split's IDX files into the raw folder."""
        if self._check_exists():
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        download_and_extract_archive(self.url, self.raw_folder, md5=self.md5)
        inner = os.path.join(self.raw_folder, "gzip")
        for name in sorted(os.listdir(inner)):
            if name.endswith(".gz"):
                extract_archive(os.path.join(inner, name), self.raw_folder)


class QMNIST(MNIST):
    """QMNIST (Yadav & Bottou, 2019): MNIST's images with 8-column labels (class, NIST
    writer, ...), under ``root/QMNIST/raw/``.

    Args:
        root: the folder that holds ``QMNIST/raw``.
        what: ``train``, ``test``, ``test10k`` (the first 10,000 test rows, MNIST's test set),
            ``test50k`` (the other 50,000) or ``nist``; by default from ``train``.
        compat: the target is the class as an int (MNIST's); else the 8 label columns as an
            int64 tensor.
        train / transform / target_transform / download: as :class:`MNIST`'s.
    """

    mirrors: list[str] = []
    _label_ndim = 2
    subsets = {
        "train": "train",
        "test": "test",
        "test10k": "test",
        "test50k": "test",
        "nist": "nist",
    }
    _base = "https://raw.githubusercontent.com/facebookresearch/qmnist/master/"
    resources: dict[str, list[tuple[str, str]]] = {  # type: ignore[assignment]
        "train": [
            (_base + "qmnist-train-images-idx3-ubyte.gz", "ed72d4157d28c017586c42bc6afe6370"),
            (_base + "qmnist-train-labels-idx2-int.gz", "0058f8dd561b90ffdd0f734c6a30e5e4"),
        ],
        "test": [
            (_base + "qmnist-test-images-idx3-ubyte.gz", "1394631089c404de565df7b7aeaf9412"),
            (_base + "qmnist-test-labels-idx2-int.gz", "5b5b05890a5e13444e108efe57b788aa"),
        ],
        "nist": [
            (_base + "xnist-images-idx3-ubyte.xz", "7f124b3b8ab81486c9d8c2749c17f834"),
            (_base + "xnist-labels-idx2-int.xz", "5ed0e788978e45d4a8bd4b7caec3d79d"),
        ],
    }

    def __init__(
        self,
        root: str | os.PathLike,
        what: str | None = None,
        compat: bool = True,
        train: bool = True,
        **kwargs: Any,
    ) -> None:
        if what is None:
            what = "train" if train else "test"
        self.what = verify_str_arg(what, "what", tuple(self.subsets))
        self.compat = compat
        super().__init__(root, train, **kwargs)
        rows = {"test10k": slice(0, 10000), "test50k": slice(10000, None)}.get(self.what)
        if rows is not None:
            self.data = Tensor._wrap(self.data._data[rows].copy())
            self.targets = Tensor._wrap(self.targets._data[rows].copy())

    def _raw_paths(self) -> list[str]:
        return [
            os.path.join(self.raw_folder, os.path.splitext(os.path.basename(url))[0])
            for url, _ in self.resources[self.subsets[self.what]]
        ]

    def _check_exists(self) -> bool:
        return all(os.path.isfile(p) for p in self._raw_paths())

    def download(self) -> None:
        """Fetch and unpack the two files of ``what``'s subset."""
        if self._check_exists():
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        for url, md5 in self.resources[self.subsets[self.what]]:
            download_and_extract_archive(url, self.raw_folder, md5=md5)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.fromarray(self.data._data[index], mode="L")
        row = self.targets._data[index]
        target = int(row[0]) if self.compat else Tensor._wrap(row.copy())
        return self._apply(img, target)

    def extra_repr(self) -> str:
        return f"Split: {self.what}"


class USPS(VisionDataset):
    """USPS handwritten digits (16x16, grey) from the libsvm files ``usps.bz2`` /
    ``usps.t.bz2`` directly under ``root``.

    Each line is ``label 1:v1 2:v2 ...`` with ``v`` in [-1, 1]; labels are 1..10 in the file
    and 0..9 here. ``data`` is uint8 ``(N, 16, 16)``, ``targets`` a list of ints.
    """

    split_list = {
        "train": (
            "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.bz2",
            "usps.bz2",
            "ec16c51db3855ca6c91edd34d0e9b197",
        ),
        "test": (
            "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2",
            "usps.t.bz2",
            "8ea070ee2aca1ac39742fdd1ef5ed118",
        ),
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
        url, filename, md5 = self.split_list["train" if train else "test"]
        path = os.path.join(self.root, filename)
        if download and not os.path.isfile(path):
            download_url(url, self.root, filename, md5)
        if not os.path.isfile(path):
            raise _missing("USPS", [path], "put the libsvm .bz2 file there")
        with bz2.open(path, "rt") as f:
            rows = [line.split() for line in f if line.strip()]
        self.targets = [int(r[0]) - 1 for r in rows]
        values = np.asarray([[float(t.split(":")[-1]) for t in r[1:]] for r in rows])
        if values.ndim != 2 or values.shape[1] != 256:
            raise ValueError(f"USPS: {path} rows must hold 256 values, got {values.shape}")
        # [-1, 1] -> [0, 255] as the reference loader scales it
        self.data = ((values + 1) / 2 * 255).astype(np.uint8).reshape(-1, 16, 16)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        return self._apply(Image.fromarray(self.data[index], mode="L"), int(self.targets[index]))

    def __len__(self) -> int:
        return len(self.data)
