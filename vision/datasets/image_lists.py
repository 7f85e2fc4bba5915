"""Image-classification sets read from their unpacked releases in torchvision's layouts:
``EuroSAT``, ``Country211`` (class folders), ``RenderedSST2``, ``DTD`` and ``Food101``
(their own split lists). ember does not download them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from .folder import ImageFolder, default_loader, make_dataset
from .utils import verify_str_arg as _verify
from .vision import VisionDataset

__all__ = ["EuroSAT", "Country211", "RenderedSST2", "DTD", "Food101"]


def _missing(cls, path: str, download: bool):
    if not os.path.isdir(path):
        hint = " (ember does not download it)" if download else ""
        raise RuntimeError(
            f"Dataset not found at {path}{hint}. You can use download=True to download it"
        )


class EuroSAT(ImageFolder):
    """EuroSAT (RGB): ``root/eurosat/2750/<class>/<image>.jpg``, the ten land-use classes."""

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        root = os.path.expanduser(os.fspath(root))
        self._base_folder = os.path.join(root, "eurosat")
        self._data_folder = os.path.join(self._base_folder, "2750")
        _missing(type(self), self._data_folder, download)
        super().__init__(self._data_folder, transform, target_transform, loader=loader)
        self.root = root


class Country211(ImageFolder):
    """Country211: ``root/country211/{train,valid,test}/<country code>/<image>.jpg``."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        self._split = _verify(split, "split", ("train", "valid", "test"))
        root = os.path.expanduser(os.fspath(root))
        self._base_folder = os.path.join(root, "country211")
        _missing(type(self), self._base_folder, download)
        super().__init__(
            os.path.join(self._base_folder, split), transform, target_transform, loader=loader
        )
        self.root = root


class RenderedSST2(VisionDataset):
    """Rendered SST2 (sentences as images): ``root/rendered-sst2/{train,valid,test}/
    {negative,positive}/<image>.png``; ``split`` is ``"train"``, ``"val"`` or ``"test"``."""

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
        folder = os.path.join(self.root, "rendered-sst2", {"val": "valid"}.get(split, split))
        _missing(type(self), folder, download)
        self.classes = ["negative", "positive"]
        self.class_to_idx = {"negative": 0, "positive": 1}
        self._samples = make_dataset(folder, self.class_to_idx, extensions=("png",))
        self.loader = loader

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> tuple[Any, Any]:
        path, label = self._samples[idx]
        return self._apply(self.loader(path), label)

    def extra_repr(self) -> str:
        return f"split={self._split}"


class _ListedImages(VisionDataset):
    def __len__(self) -> int:
        return len(self._image_files)

    def __getitem__(self, idx: int) -> tuple[Any, Any]:
        return self._apply(self.loader(self._image_files[idx]), self._labels[idx])

    def extra_repr(self) -> str:
        return f"split={self._split}"


class DTD(_ListedImages):
    """Describable Textures: ``root/dtd/dtd/images/<class>/<image>.jpg`` and the split lists
    ``root/dtd/dtd/labels/{train,val,test}{partition}.txt`` (``partition`` 1 to 10)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        partition: int = 1,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        self._split = _verify(split, "split", ("train", "val", "test"))
        if not isinstance(partition, int) or not 1 <= partition <= 10:
            raise ValueError(
                "Parameter 'partition' should be an integer with `1 <= partition <= 10`, "
                f"but got {partition} instead"
            )
        self._partition = partition
        super().__init__(root, transform=transform, target_transform=target_transform)
        data = os.path.join(self.root, "dtd", "dtd")
        _missing(type(self), data, download)
        self._image_files, classes = [], []
        with open(os.path.join(data, "labels", f"{split}{partition}.txt")) as f:
            for line in f:
                cls, name = line.strip().split("/")
                self._image_files.append(os.path.join(data, "images", cls, name))
                classes.append(cls)
        self.classes = sorted(set(classes))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self._labels = [self.class_to_idx[c] for c in classes]
        self.loader = loader

    def extra_repr(self) -> str:
        return f"split={self._split}, partition={self._partition}"


class Food101(_ListedImages):
    """Food-101: ``root/food-101/images/<class>/<id>.jpg`` listed by
    ``root/food-101/meta/{train,test}.json`` (class -> ``"<class>/<id>"`` entries)."""

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
        self._split = _verify(split, "split", ("train", "test"))
        base = os.path.join(self.root, "food-101")
        _missing(type(self), os.path.join(base, "meta"), download)
        with open(os.path.join(base, "meta", f"{split}.json")) as f:
            metadata = json.load(f)
        self.classes = sorted(metadata)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self._labels, self._image_files = [], []
        for label, paths in metadata.items():
            self._labels += [self.class_to_idx[label]] * len(paths)
            self._image_files += [
                os.path.join(base, "images", *f"{p}.jpg".split("/")) for p in paths
            ]
        self.loader = loader
