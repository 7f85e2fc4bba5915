"""Built-in datasets: digits, character text, MNIST IDX and CIFAR-10 (files written here)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

import ember
from ember.utils.data import DataLoader
from ember.utils.data import transforms as T
from ember.utils.data.datasets import CIFAR10, MNIST, CharDataset, Digits, read_idx

SHAKESPEARE = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt"
)


def test_digits():
    pytest.importorskip("sklearn")
    train, test, whole = Digits(train=True), Digits(train=False), Digits(train=None)
    assert (len(train), len(test), len(whole)) == (1437, 360, 1797)
    img, target = train[0]
    assert img.shape == (1, 8, 8) and img.dtype == ember.float32 and isinstance(target, int)
    assert 0.0 <= float(img.min().item()) and float(img.max().item()) <= 1.0
    assert np.array_equal(test[0][0].numpy(), whole[1437][0].numpy())
    flat = Digits(flatten=True, transform=lambda x: x * 2, target_transform=lambda y: -y)
    x, y = flat[3]
    assert x.shape == (64,) and y == -int(train.targets[3].item())
    xb, yb = next(iter(DataLoader(train, batch_size=32, shuffle=True)))
    assert xb.shape == (32, 1, 8, 8) and yb.dtype == ember.int64


def test_char_dataset(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("hello world, héllo!\n" * 5, encoding="utf-8")
    ds = CharDataset(path, block_size=8)
    assert ds.vocab_size == len(set(path.read_text(encoding="utf-8")))
    x, y = ds[3]
    assert x.dtype == ember.int64 and x.shape == (8,) and y.shape == (8,)
    assert ds.decode(x) == "lo world" and ds.decode(y) == "o world,"
    assert ds.encode("héllo") == [ds.stoi[c] for c in "héllo"]
    assert len(ds) == 100 - 8 and ds[-1][1].tolist()[-1] == ds.stoi["\n"]
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    train, val = CharDataset(path, 4, split="train"), CharDataset(path, 4, split="val")
    assert len(train) + len(val) == 100 - 8 and train.stoi == val.stoi
    with pytest.raises(KeyError, match="not in the vocabulary"):
        ds.encode("Z")
    with pytest.raises(ValueError, match="block_size=200 needs more than 200 characters"):
        CharDataset(path, 200)


def test_char_dataset_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "tinyshakespeare.txt"
    with pytest.raises(FileNotFoundError, match="text file not found: .*tinyshakespeare.txt"):
        CharDataset(missing, block_size=8)


@pytest.mark.skipif(not os.path.isfile(SHAKESPEARE), reason="tinyshakespeare.txt not present")
def test_char_dataset_on_tinyshakespeare():
    ds = CharDataset(SHAKESPEARE, block_size=64, split="train")
    assert ds.vocab_size == 65 and ds.decode(ds[0][0]).startswith("First Citizen")
    xb, yb = next(iter(DataLoader(ds, batch_size=16, shuffle=True)))
    assert xb.shape == (16, 64) and np.array_equal(xb.numpy()[:, 1:], yb.numpy()[:, :-1])


def _write_idx(path, array, code):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def test_read_idx_types_and_errors(tmp_path):
    for code, dtype in [
        (0x08, np.uint8),
        (0x09, np.int8),
        (0x0B, np.int16),
        (0x0C, np.int32),
        (0x0D, np.float32),
        (0x0E, np.float64),
    ]:
        arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        path = tmp_path / f"a{code}.idx"
        _write_idx(path, arr, code)
        out = read_idx(path)
        assert out.dtype == np.dtype(dtype) and np.array_equal(out, arr)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad.idx: not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short.idx"
    _write_idx(short, np.zeros((4, 5), np.uint8), 0x08)
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"short.idx: IDX header says shape \(4, 5\) .* holds 17"):
        read_idx(short)


@pytest.mark.parametrize("layout,suffix", [("", ""), ("MNIST/raw", ".gz")])
def test_mnist_reader(tmp_path, layout, suffix):
    folder = tmp_path / layout
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    _write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images, 0x08)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", labels, 0x08)
    ds = MNIST(tmp_path, train=False, transform=T.ToTensor())
    assert len(ds) == 7 and ds.data.shape == (7, 28, 28) and ds.targets.dtype == ember.int64
    img, target = ds[4]
    assert img.shape == (1, 28, 28) and target == int(labels[4])
    np.testing.assert_allclose(img.numpy()[0], images[4] / 255.0, rtol=1e-6)
    raw_img, _ = MNIST(tmp_path, train=False)[4]
    assert raw_img.dtype == np.uint8 and np.array_equal(raw_img, images[4])
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte not found; looked for"):
        MNIST(tmp_path, train=True)


def test_mnist_mismatched_files(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8), 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), 0x08)
    with pytest.raises(
        ValueError,
        match=r"images of shape \(3, 28, 28\) but .* labels of shape "
        r"\(4,\)",
    ):
        MNIST(tmp_path)


def _write_cifar(folder, rng, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "batch_label": name,
                    "labels": labels,
                    "data": data,
                    "filenames": [f"{name}_{k}.png" for k in range(n)],
                },
                f,
                protocol=2,
            )
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f, protocol=2)
    return batches


def test_cifar10_reader(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    train = CIFAR10(tmp_path, train=True)
    assert len(train) == 20 and train.data.shape == (20, 32, 32, 3)
    assert train.classes == [f"c{k}" for k in range(10)]
    data, labels = batches["data_batch_2"]
    img, target = train[5]  # the second sample of data_batch_2
    assert target == labels[1]
    assert np.array_equal(img, data[1].reshape(3, 32, 32).transpose(1, 2, 0))
    test = CIFAR10(tmp_path / "cifar-10-batches-py", train=False, transform=T.ToTensor())
    x, _ = test[0]
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(
        x.numpy(), batches["test_batch"][0][0].reshape(3, 32, 32) / 255, rtol=1e-6
    )


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_code_and_reports_corruption(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, np.random.default_rng(1))
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": _Evil(), "labels": []}, f)
    with pytest.raises(ValueError, match="test_batch: refusing to load posix.system"):
        CIFAR10(tmp_path, train=False)
    (folder / "test_batch").write_bytes((folder / "data_batch_1").read_bytes()[:200])
    with pytest.raises(ValueError, match="test_batch: corrupt or truncated CIFAR-10 batch"):
        CIFAR10(tmp_path, train=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="CIFAR-10 batch data_batch_3 not found"):
        CIFAR10(tmp_path, train=True)
