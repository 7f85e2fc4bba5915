"""``ImageNet``: the ILSVRC2012 classification set in torchvision's on-disk layout.

``root`` holds ``meta.bin`` (class names per WordNet id, and the validation images' ids) and
the split folders ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``. What is missing is made
from the official archives placed in ``root`` by hand (ImageNet cannot be downloaded
automatically): the devkit gives ``meta.bin``, the image archives the split folders. The
archives are checked against their published MD5 sums first, as torchvision does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from .folder import ImageFolder
from .utils import check_integrity, extract_archive

__all__ = [
    "ImageNet",
    "load_meta_file",
    "parse_devkit_archive",
    "parse_train_archive",
    "parse_val_archive",
]

# file name and MD5 of each official archive
ARCHIVE_META = {
    "train": ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e"),
    "val": ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622"),
    "devkit": ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf"),
}
META_FILE = "meta.bin"


class ImageNet(ImageFolder):
    r"""The ImageNet 2012 classification dataset (``torchvision.datasets.ImageNet``).

    Args:
        root: folder with ``meta.bin`` and the split folders, or the official archives
            (``ILSVRC2012_devkit_t12.tar.gz``, ``ILSVRC2012_img_train.tar``,
            ``ILSVRC2012_img_val.tar``) to make them from.
        split: ``"train"`` or ``"val"``.
        **kwargs: :class:`ImageFolder`'s (``transform``, ``target_transform``, ``loader``).

    ``classes`` holds a tuple of names per class (``("tench", "Tinca tinca")``),
    ``class_to_idx`` maps every one of those names to its index, and ``wnids`` /
    ``wnid_to_idx`` keep the WordNet ids (the folder names).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", **kwargs: Any) -> None:
        root = self.root = os.path.expanduser(os.fspath(root))
        if split not in ("train", "val"):
            raise ValueError(
                f"Unknown value '{split}' for argument split. Valid values are {{'train', 'val'}}."
            )
        self.split = split
        self.parse_archives()
        wnid_to_classes = load_meta_file(self.root)[0]
        super().__init__(self.split_folder, **kwargs)
        self.root = root
        self.wnids = self.classes
        self.wnid_to_idx = self.class_to_idx
        self.classes = [wnid_to_classes[wnid] for wnid in self.wnids]
        self.class_to_idx = {cls: idx for idx, clss in enumerate(self.classes) for cls in clss}

    def parse_archives(self) -> None:
        if not check_integrity(os.path.join(self.root, META_FILE)):
            parse_devkit_archive(self.root)
        if not os.path.isdir(self.split_folder):
            if self.split == "train":
                parse_train_archive(self.root)
            else:
                parse_val_archive(self.root)

    @property
    def split_folder(self) -> str:
        return os.path.join(self.root, self.split)

    def extra_repr(self) -> str:
        return f"Split: {self.split}"


def load_meta_file(root: str | os.PathLike, file: str | None = None) -> tuple[dict, list]:
    """``(wnid_to_classes, val_wnids)`` from ``root/meta.bin``."""
    import ember

    path = os.path.join(root, file or META_FILE)
    if not check_integrity(path):
        raise RuntimeError(
            f"The meta file {path} is not present in the root directory or is corrupted. "
            "This file is automatically created by the ImageNet dataset."
        )
    return ember.load(path, weights_only=True)


def _verify_archive(root: str, file: str, md5: str) -> None:
    if not check_integrity(os.path.join(root, file), md5):
        raise RuntimeError(
            f"The archive {file} is not present in the root directory or is corrupted. "
            f"You need to download it externally and place it in {root}."
        )


def _parse_devkit_folder(devkit_root: str) -> tuple[dict, list]:
    """``(wnid_to_classes, val_wnids)`` from an extracted devkit (``data/meta.mat`` and the
    validation ground truth): the leaf synsets are the 1000 classes."""
    import scipy.io as sio  # only to read the devkit's MATLAB file

    synsets = sio.loadmat(os.path.join(devkit_root, "data", "meta.mat"), squeeze_me=True)["synsets"]
    # a synset row: (ILSVRC2012_ID, WNID, words, gloss, num_children, ...)
    leaves = [s for s in synsets if int(s[4]) == 0]
    idx_to_wnid = {int(s[0]): str(s[1]) for s in leaves}
    wnid_to_classes = {str(s[1]): tuple(str(s[2]).split(", ")) for s in leaves}
    truth = os.path.join(devkit_root, "data", "ILSVRC2012_validation_ground_truth.txt")
    with open(truth) as f:
        val_wnids = [idx_to_wnid[int(line)] for line in f if line.strip()]
    return wnid_to_classes, val_wnids


def parse_devkit_archive(root: str | os.PathLike, file: str | None = None) -> None:
    """Write ``root/meta.bin`` from the devkit archive."""
    import ember

    root = os.fspath(root)
    name, md5 = ARCHIVE_META["devkit"]
    file = file or name
    _verify_archive(root, file, md5)
    with tempfile.TemporaryDirectory() as tmp:
        extract_archive(os.path.join(root, file), tmp)
        meta = _parse_devkit_folder(os.path.join(tmp, "ILSVRC2012_devkit_t12"))
    ember.save(meta, os.path.join(root, META_FILE))


def parse_train_archive(
    root: str | os.PathLike, file: str | None = None, folder: str = "train"
) -> None:
    """Extract the training archive into ``root/train``: one inner archive per class."""
    root = os.fspath(root)
    name, md5 = ARCHIVE_META["train"]
    file = file or name
    _verify_archive(root, file, md5)
    train_root = os.path.join(root, folder)
    extract_archive(os.path.join(root, file), train_root)
    for inner in sorted(os.listdir(train_root)):
        path = os.path.join(train_root, inner)
        extract_archive(path, os.path.splitext(path)[0], remove_finished=True)


def parse_val_archive(
    root: str | os.PathLike,
    file: str | None = None,
    wnids: list[str] | None = None,
    folder: str = "val",
) -> None:
    """Extract the validation archive into ``root/val`` and sort its images into one folder
    per class (the devkit's ground truth, through ``meta.bin``, gives each image's class)."""
    root = os.fspath(root)
    name, md5 = ARCHIVE_META["val"]
    file = file or name
    if wnids is None:
        wnids = load_meta_file(root)[1]
    _verify_archive(root, file, md5)
    val_root = os.path.join(root, folder)
    extract_archive(os.path.join(root, file), val_root)
    images = sorted(os.path.join(val_root, f) for f in os.listdir(val_root))
    for wnid in set(wnids):
        os.makedirs(os.path.join(val_root, wnid), exist_ok=True)
    for wnid, image in zip(wnids, images):
        shutil.move(image, os.path.join(val_root, wnid, os.path.basename(image)))
