"""Datasets that need no download: scikit-learn's digits, a character-level text dataset, and
readers for MNIST (IDX files) and CIFAR-10 (pickled python batches) already on disk.

Nothing here downloads: a missing file gives a ``FileNotFoundError`` naming the paths looked at.
Image datasets return ``(image, target)`` where the image is a NumPy ``uint8`` array ``(H, W)``
or ``(H, W, C)`` (what torchvision's PIL images hold), ready for ``transforms.ToTensor()``.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable, Sequence

import numpy as np

from ...tensor import Tensor
from .dataset import Dataset

__all__ = ["Digits", "CharDataset", "MNIST", "CIFAR10", "read_idx"]


class _ImageDataset(Dataset):
    """Images in ``self.data`` (uint8 tensor) and int64 labels in ``self.targets``."""

    data: Tensor
    targets: Tensor
    transform: Callable | None
    target_transform: Callable | None

    def __getitem__(self, index: int):
        img, target = self.data._data[index], int(self.targets._data[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return int(self.data._data.shape[0])


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images of 0-9, bundled with scikit-learn).

    Samples are ``(image, target)``: ``image`` a float32 tensor ``(1, 8, 8)`` scaled to
    ``[0, 1]`` (``(64,)`` with ``flatten=True``), ``target`` an int.

    Args:
        train: ``True`` for the first 1,437 images (80%), ``False`` for the last 360, ``None``
            for all. The split is by position, which keeps writers apart as in the original
            data set.
        transform, target_transform: applied to each image / target.
        flatten: return images as 64-vectors (for MLPs).
    """

    n_train = 1437

    def __init__(
        self,
        train: bool | None = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        flatten: bool = False,
    ) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("Digits needs scikit-learn: pip install scikit-learn") from None
        raw = load_digits()
        images = (raw.images / 16.0).astype(np.float32)
        targets = raw.target.astype(np.int64)
        part = (
            slice(None)
            if train is None
            else (slice(0, self.n_train) if train else slice(self.n_train, None))
        )
        images, targets = images[part], targets[part]
        shape = (-1, 64) if flatten else (-1, 1, 8, 8)
        self.data = Tensor._wrap(np.ascontiguousarray(images.reshape(shape)))
        self.targets = Tensor._wrap(np.ascontiguousarray(targets))
        self.classes = [str(i) for i in range(10)]
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index: int):
        img = Tensor._wrap(self.data._data[index])
        target = int(self.targets._data[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return int(self.data._data.shape[0])


class CharDataset(Dataset):
    """Character-level language-modelling samples from a text file.

    Sample ``i`` is ``(x, y)``: ``x`` the ``block_size`` character ids starting at ``i`` and
    ``y`` the same window shifted by one (the next-character targets), both int64 tensors.

    Args:
        path: a UTF-8 text file, e.g. tinyshakespeare.txt (ember downloads nothing; give the
            path of a file you have).
        block_size: context length.
        split: ``"train"`` (the first ``1 - val_fraction`` of the text), ``"val"`` (the rest)
            or ``None`` (all). The vocabulary always comes from the whole file, so both splits
            share it.
        val_fraction: the share of the text kept for ``"val"``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        block_size: int,
        split: str | None = None,
        val_fraction: float = 0.1,
    ) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"CharDataset: text file not found: {path!r} (ember downloads "
                "nothing; pass the path of a local text file)"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not text:
            raise ValueError(f"CharDataset: {path!r} is empty")
        if split not in (None, "train", "val"):
            raise ValueError(f"CharDataset: split must be 'train', 'val' or None, got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"CharDataset: val_fraction must be in [0, 1), got {val_fraction}")
        # Vectorised encoding: UTF-32 code points, vocabulary = their sorted unique values.
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab, ids = np.unique(codes, return_inverse=True)
        self.chars = [chr(c) for c in vocab.tolist()]
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))
        n_train = int(len(ids) * (1.0 - val_fraction))
        part = {None: slice(None), "train": slice(0, n_train), "val": slice(n_train, None)}[split]
        self.data = Tensor._wrap(np.ascontiguousarray(ids[part].astype(np.int64)))
        if not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"CharDataset: block_size must be a positive int, got {block_size}")
        if block_size >= self.data._data.shape[0]:
            raise ValueError(
                f"CharDataset: block_size={block_size} needs more than "
                f"{block_size} characters, but {path!r} ({split or 'all'}) has "
                f"{self.data._data.shape[0]}"
            )
        self.block_size = block_size
        self.path = path

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (every character must be in the vocabulary)."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise KeyError(
                f"CharDataset.encode: character {exc.args[0]!r} is not in the "
                f"vocabulary of {self.path!r}"
            ) from None

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of a sequence of character ids."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.itos[int(i)] for i in ids)

    def __len__(self) -> int:
        return int(self.data._data.shape[0]) - self.block_size

    def __getitem__(self, index: int):
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"CharDataset index {index} is out of range for length {n}")
        chunk = self.data._data[index : index + self.block_size + 1]
        return Tensor._wrap(chunk[:-1]), Tensor._wrap(chunk[1:])


# ---- MNIST: IDX files -----------------------------------------------------------------------
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` compressed or not) into a NumPy array."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dims need {header})"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[raw[2]]
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {tuple(dims)} ({expected} bytes of "
            f"data) but the file holds {len(raw) - header}; truncated or corrupt"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def _find(root: str, folders: Sequence[str], names: Sequence[str], what: str) -> str:
    tried = []
    for folder in folders:
        for name in names:
            candidate = os.path.join(root, folder, name)
            if os.path.isfile(candidate):
                return candidate
            tried.append(candidate)
    raise FileNotFoundError(
        f"{what} not found; looked for: {', '.join(tried)} (ember does not "
        "download datasets: put the files there)"
    )


class MNIST(_ImageDataset):
    """MNIST from its IDX files under ``root`` (``root/``, ``root/MNIST/raw/`` or
    ``root/raw/``; plain or ``.gz``). Images are ``uint8 (28, 28)`` arrays, targets ints.
    """

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
    _folders = ("", os.path.join("MNIST", "raw"), "raw")

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.train = train
        prefix = "train" if train else "t10k"
        files = {}
        for kind, stem in (
            ("images", f"{prefix}-images-idx3-ubyte"),
            ("labels", f"{prefix}-labels-idx1-ubyte"),
        ):
            files[kind] = _find(
                self.root, self._folders, (stem, stem + ".gz"), f"MNIST {kind} file {stem}"
            )
        images, labels = read_idx(files["images"]), read_idx(files["labels"])
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"MNIST: {files['images']} holds images of shape {images.shape} but "
                f"{files['labels']} holds labels of shape {labels.shape}"
            )
        self.data = Tensor._wrap(images.astype(np.uint8, copy=False))
        self.targets = Tensor._wrap(labels.astype(np.int64))
        self.transform = transform
        self.target_transform = target_transform


# ---- CIFAR-10: pickled python batches ---------------------------------------------------------
_CIFAR_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 writes bytes (the array data)
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Loads the dicts, lists and NumPy arrays of a CIFAR batch and nothing else: unpickling
    never runs code from the file."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} (a CIFAR batch holds "
                "only NumPy arrays, lists and strings)"
            )
        if module.startswith("numpy.core"):  # Python 2 era pickles; NumPy 2 moved it
            module = module.replace(
                "numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core"
            )
        return super().find_class(module, name)


def _load_cifar_batch(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: corrupt or truncated CIFAR-10 batch ({exc!r})") from None
    if not isinstance(entry, dict):
        raise ValueError(
            f"{path}: not a CIFAR-10 python batch (expected a dict, got {type(entry).__name__})"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


class CIFAR10(_ImageDataset):
    """CIFAR-10 from its python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``)
    in ``root/cifar-10-batches-py/`` or ``root/``. Images are ``uint8 (32, 32, 3)`` arrays.
    """

    base_folder = "cifar-10-batches-py"
    train_list = [f"data_batch_{i}" for i in range(1, 6)]
    test_list = ["test_batch"]
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.train = train
        folders = (self.base_folder, "")
        chunks, labels = [], []
        for name in self.train_list if train else self.test_list:
            path = _find(self.root, folders, (name,), f"CIFAR-10 batch {name}")
            entry = _load_cifar_batch(path)
            if "data" not in entry or ("labels" not in entry and "fine_labels" not in entry):
                raise ValueError(
                    f"{path}: not a CIFAR-10 python batch (keys {sorted(entry)}; "
                    "expected 'data' and 'labels')"
                )
            data = np.asarray(entry["data"], dtype=np.uint8)
            lab = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != lab.shape[0]:
                raise ValueError(
                    f"{path}: 'data' has shape {data.shape} and 'labels' "
                    f"{lab.shape}; expected (N, 3072) and (N,)"
                )
            chunks.append(data)
            labels.append(lab)
        data = np.concatenate(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # -> HWC
        self.data = Tensor._wrap(np.ascontiguousarray(data))
        self.targets = Tensor._wrap(np.concatenate(labels))
        meta = os.path.join(self.root, self.base_folder, "batches.meta")
        if not os.path.isfile(meta):
            meta = os.path.join(self.root, "batches.meta")
        if os.path.isfile(meta):
            names = _load_cifar_batch(meta).get("label_names")
            if names:
                self.classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        self.transform = transform
        self.target_transform = target_transform
