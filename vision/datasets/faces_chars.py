"""Omniglot (folders of characters), CelebA (attribute tables), Flickr8k / Flickr30k / SBU
(captioned photos)."""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import numpy as np

from ember.tensor import Tensor

from .folder import default_loader
from .utils import download_and_extract_archive, download_url, verify_str_arg
from .vision import VisionDataset

__all__ = ["Omniglot", "CelebA", "Flickr8k", "Flickr30k", "SBU"]


def _listed_dirs(path: str) -> list[str]:
    # os.listdir's order, unsorted, as torchvision lists them: the same class indices as a
    # torch run over the same folders on the same file system
    return [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]


class Omniglot(VisionDataset):
    """Omniglot (Lake et al.): 1,623 hand-drawn characters of 50 alphabets, as
    ``root/omniglot-py/<images_background|images_evaluation>/<alphabet>/<character>/*.png``.

    The target is the character's index over all alphabets, in ``os.listdir``'s order as
    torchvision's; images open in mode ``L``.

    Args:
        root: the folder that holds ``omniglot-py``.
        background: the 30 background alphabets, else the 20 evaluation ones.
        transform / target_transform: applied to the image / the int target.
        download: fetch and unpack the alphabet's zip unless its folder is there.
        loader: reads an image path (default: PIL, converted to ``L``).
    """

    folder = "omniglot-py"
    download_url_prefix = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
    zips_md5 = {
        "images_background": "68d2efa1b9178cc56df9314c21c6e718",
        "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
    }

    def __init__(
        self,
        root: str | os.PathLike,
        background: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__(
            os.path.join(os.fspath(root), self.folder),
            transform=transform,
            target_transform=target_transform,
        )
        self.background = background
        self.loader = loader
        name = "images_background" if background else "images_evaluation"
        self.target_folder = os.path.join(self.root, name)
        if download and not os.path.isdir(self.target_folder):
            download_and_extract_archive(
                f"{self.download_url_prefix}/{name}.zip", self.root, md5=self.zips_md5[name]
            )
        if not os.path.isdir(self.target_folder):
            raise RuntimeError(
                f"Dataset not found: Omniglot expects the folder {self.target_folder}. "
                "Pass download=True to fetch it, or unpack the alphabet zip there."
            )
        self._alphabets = _listed_dirs(self.target_folder)
        self._characters = [
            os.path.join(a, c)
            for a in self._alphabets
            for c in _listed_dirs(os.path.join(self.target_folder, a))
        ]
        self._character_images = [
            [
                (f, idx)
                for f in os.listdir(os.path.join(self.target_folder, ch))
                if f.endswith(".png")
            ]
            for idx, ch in enumerate(self._characters)
        ]
        self._flat_character_images = [x for imgs in self._character_images for x in imgs]

    def __len__(self) -> int:
        return len(self._flat_character_images)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        name, cls = self._flat_character_images[index]
        path = os.path.join(self.target_folder, self._characters[cls], name)
        if self.loader is not None:
            img = self.loader(path)
        else:
            from PIL import Image

            img = Image.open(path).convert("L")
        return self._apply(img, cls)


class CelebA(VisionDataset):
    """CelebFaces Attributes under ``root/celeba/``: ``img_align_celeba/`` and the tables
    ``list_eval_partition.txt``, ``identity_CelebA.txt``, ``list_bbox_celeba.txt``,
    ``list_landmarks_align_celeba.txt``, ``list_attr_celeba.txt``.

    Args:
        root: the folder that holds ``celeba``.
        split: ``train``, ``valid``, ``test`` or ``all``.
        target_type: ``attr`` (40 attributes in {0, 1}), ``identity``, ``bbox`` or
            ``landmarks``, or a list of them (the target is then a tuple; ``[]`` gives
            ``None``).
        transform / target_transform: applied to the image / the target.
        download: not available (the files are on Google Drive, behind a confirmation page):
            raises, saying where to put the files.
    """

    base_folder = "celeba"
    _tables = (
        "list_eval_partition.txt",
        "identity_CelebA.txt",
        "list_bbox_celeba.txt",
        "list_landmarks_align_celeba.txt",
        "list_attr_celeba.txt",
    )

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        target_type: list[str] | str = "attr",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.split = split
        self.target_type = list(target_type) if isinstance(target_type, list) else [target_type]
        if not self.target_type and target_transform is not None:
            raise RuntimeError("target_transform is specified but target_type is empty")
        for t in self.target_type:
            verify_str_arg(t, "target_type", ("attr", "identity", "bbox", "landmarks"))
        folder = os.path.join(self.root, self.base_folder)
        missing = [t for t in self._tables if not os.path.isfile(os.path.join(folder, t))]
        if not os.path.isdir(os.path.join(folder, "img_align_celeba")):
            missing.append("img_align_celeba/")
        if missing:
            how = "ember downloads nothing from Google Drive; fetch" if download else "fetch"
            raise RuntimeError(
                f"Dataset not found: CelebA expects {', '.join(missing)} in {folder}; {how} "
                "them from the CelebA site and unpack img_align_celeba.zip there."
            )
        code = {"train": 0, "valid": 1, "test": 2, "all": None}[
            verify_str_arg(split.lower(), "split", ("train", "valid", "test", "all"))
        ]
        names, part = self._table("list_eval_partition.txt", header=None)
        keep = np.ones(len(names), bool) if code is None else part[:, 0] == code
        self.filename = [n for n, k in zip(names, keep) if k]
        self.identity = Tensor._wrap(self._table("identity_CelebA.txt")[1][keep])
        self.bbox = Tensor._wrap(self._table("list_bbox_celeba.txt", 1)[1][keep])
        self.landmarks_align = Tensor._wrap(
            self._table("list_landmarks_align_celeba.txt", 1)[1][keep]
        )
        attr = self._table("list_attr_celeba.txt", 1)
        self.attr = Tensor._wrap((attr[1][keep] + 1) // 2)  # {-1, 1} -> {0, 1}
        self.attr_names = self._header

    def _table(self, filename: str, header: int | None = None) -> tuple[list[str], np.ndarray]:
        """Rows of ``name v1 v2 ...`` (space separated, runs of spaces allowed); ``header``
        is the line holding the column names (kept in ``_header``), data start after it."""
        with open(os.path.join(self.root, self.base_folder, filename)) as f:
            rows = [line.split() for line in f if line.strip()]
        if header is not None:
            self._header = rows[header]
            rows = rows[header + 1 :]
        names = [r[0] for r in rows]
        return names, np.asarray([[int(v) for v in r[1:]] for r in rows], dtype=np.int64)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        path = os.path.join(self.root, self.base_folder, "img_align_celeba", self.filename[index])
        img = Image.open(path)
        pick = {
            "attr": lambda: self.attr[index, :],
            "identity": lambda: self.identity[index, 0],
            "bbox": lambda: self.bbox[index, :],
            "landmarks": lambda: self.landmarks_align[index, :],
        }
        target: Any = [pick[t]() for t in self.target_type]
        if self.transform is not None:
            img = self.transform(img)
        if not target:
            return img, None
        target = tuple(target) if len(target) > 1 else target[0]
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return len(self.filename)

    def extra_repr(self) -> str:
        return f"Target type: {self.target_type}\nSplit: {self.split}"


class Flickr30k(VisionDataset):
    """Flickr30k Entities' images under ``root`` with their captions from ``ann_file``
    (``<image>#<k>\\t<caption>`` lines). The target is the list of the image's captions;
    images are sorted by name.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.ann_file = os.path.expanduser(os.fspath(ann_file))
        self.annotations: dict[str, list[str]] = defaultdict(list)
        with open(self.ann_file) as f:
            for line in f:
                if not line.strip():
                    continue
                img_id, caption = line.rstrip("\n").split("\t", 1)
                self.annotations[img_id.rsplit("#", 1)[0]].append(caption.strip())
        self.ids = sorted(self.annotations)
        self.loader = loader

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img_id = self.ids[index]
        return self._apply(self.loader(os.path.join(self.root, img_id)), self.annotations[img_id])

    def __len__(self) -> int:
        return len(self.ids)


class _Flickr8kCaptions(HTMLParser):
    """The captions page of Flickr8k: inside its table, each ``<a>`` names an image by its
    URL (``.../<id>/``, the file ``<root>/<id>_*.jpg``) and the ``<li>`` items after it are
    that image's captions; "Image Not Found" rows are skipped."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.annotations: dict[str, list[str]] = {}
        self._in_table, self._tag, self._img = False, None, None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        self._in_table = self._in_table or tag == "table"

    def handle_endtag(self, tag: str) -> None:
        self._tag = None
        if tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if not self._in_table:
            return
        if data == "Image Not Found":
            self._img = None
        elif self._tag == "a":
            image_id = data.split("/")[-2]
            found = glob.glob(os.path.join(self.root, image_id + "_*.jpg"))
            if not found:
                raise RuntimeError(f"Flickr8k: no image {image_id}_*.jpg in {self.root}")
            self._img = found[0]
            self.annotations[self._img] = []
        elif self._tag == "li" and self._img:
            self.annotations[self._img].append(data.strip())


class Flickr8k(VisionDataset):
    """Flickr8k's images under ``root`` with their captions from ``ann_file``, the dataset's
    HTML captions page. The target is the list of the image's captions; images are sorted by
    path.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.ann_file = os.path.expanduser(os.fspath(ann_file))
        parser = _Flickr8kCaptions(self.root)
        with open(self.ann_file) as f:
            parser.feed(f.read())
        self.annotations = parser.annotations
        self.ids = sorted(self.annotations)
        self.loader = loader

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img_id = self.ids[index]
        return self._apply(self.loader(img_id), self.annotations[img_id])

    def __len__(self) -> int:
        return len(self.ids)


class SBU(VisionDataset):
    """SBU Captioned Photos under ``root/dataset/``: the URL list and the caption list (line
    for line), and the photos named by their URLs' last component. Only the photos present
    are served; the target is the caption.

    Args:
        root: the folder that holds ``dataset/``.
        transform / target_transform: applied to the image / the caption.
        download: fetch and unpack the lists, then each photo (failures skipped), unless
            the lists are there already. torchvision's default is ``True`` too.
        loader: reads an image path (default: PIL, RGB).
    """

    url = "https://www.cs.rice.edu/~vo9/sbucaptions/SBUCaptionedPhotoDataset.tar.gz"
    filename = "SBUCaptionedPhotoDataset.tar.gz"
    md5_checksum = "9aec147b3488753cf758b4d493422285"
    _lists = ("SBU_captioned_photo_dataset_urls.txt", "SBU_captioned_photo_dataset_captions.txt")

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = True,
        loader: Callable[[str], Any] = default_loader,
    ) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.loader = loader
        folder = os.path.join(self.root, "dataset")
        urls, captions = (os.path.join(folder, f) for f in self._lists)
        if download and not (os.path.isfile(urls) and os.path.isfile(captions)):
            download_and_extract_archive(
                self.url, self.root, self.root, self.filename, self.md5_checksum
            )
            with open(urls) as f:
                for line in f:
                    try:
                        download_url(line.rstrip(), folder)
                    except OSError:  # dead links are common in this list
                        pass
        if not (os.path.isfile(urls) and os.path.isfile(captions)):
            raise RuntimeError(
                f"Dataset not found: SBU expects {urls} and {captions}. Pass download=True "
                "to fetch them, or unpack SBUCaptionedPhotoDataset.tar.gz there."
            )
        self.photos: list[str] = []
        self.captions: list[str] = []
        with open(urls) as fu, open(captions) as fc:
            for url, caption in zip(fu, fc):
                photo = os.path.basename(url.rstrip())
                if os.path.exists(os.path.join(folder, photo)):
                    self.photos.append(photo)
                    self.captions.append(caption.rstrip())

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path = os.path.join(self.root, "dataset", self.photos[index])
        return self._apply(self.loader(path), self.captions[index])

    def __len__(self) -> int:
        return len(self.photos)
