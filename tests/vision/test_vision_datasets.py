"""ember.vision.datasets: official file formats, downloads from a local HTTP server, errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest

pytest.importorskip("PIL")

from ember.vision import datasets  # noqa: E402
from ember.vision.datasets.utils import DownloadError, extract_archive  # noqa: E402


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; ``.url`` ends with '/', ``.requests`` logs paths."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(www))
    )
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.www = www
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _idx(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[arr.dtype.type]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_mnist(www, rng):
    data = {
        "train": (
            rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 5, dtype=np.uint8),
        ),
        "t10k": (
            rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 3, dtype=np.uint8),
        ),
    }
    resources = []
    for prefix, (images, labels) in data.items():
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}.gz"
            (www / name).write_bytes(gzip.compress(_idx(arr)))
            resources.append((name, _md5(www / name)))
    return data, resources


@pytest.mark.parametrize("base", [datasets.MNIST, datasets.FashionMNIST, datasets.KMNIST])
def test_mnist_download_from_local_server(tmp_path, server, base):
    data, resources = _write_mnist(server.www, np.random.default_rng(0))
    # First mirror answers 404: the download falls back to the next one.
    cls = type(
        base.__name__,
        (base,),
        {"mirrors": [server.url + "missing/", server.url], "resources": resources},
    )
    root = tmp_path / "data"
    ds = cls(root, train=True, download=True)
    assert len(ds) == 5 and ds.classes == base.classes
    assert os.path.isfile(root / base.__name__ / "raw" / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(ds.data.numpy(), data["train"][0])
    img, target = ds[3]
    assert img.mode == "L" and img.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(img), data["train"][0][3])
    assert target == int(data["train"][1][3]) and isinstance(target, int)
    test = cls(root, train=False, transform=np.asarray, target_transform=lambda t: t + 100)
    img, target = test[2]
    np.testing.assert_array_equal(img, data["t10k"][0][2])
    assert target == int(data["t10k"][1][2]) + 100
    n = len(server.requests)
    cls(root, train=True, download=True)  # already there: no new request
    assert len(server.requests) == n


def test_mnist_md5_mismatch_writes_nothing(tmp_path, server):
    _, resources = _write_mnist(server.www, np.random.default_rng(1))
    resources = [(name, "0" * 32) for name, _ in resources]
    cls = type("MNIST", (datasets.MNIST,), {"mirrors": [server.url], "resources": resources})
    with pytest.raises(DownloadError, match="MD5 mismatch") as info:
        cls(tmp_path / "d", download=True)
    assert server.url in str(info.value)
    raw = tmp_path / "d" / "MNIST" / "raw"
    assert not [p for p in os.listdir(raw)], "a failed download left files behind"


def test_missing_files_name_url_and_path(tmp_path):
    with pytest.raises(RuntimeError) as info:
        datasets.MNIST(tmp_path)
    msg = str(info.value)
    assert "download=True" in msg and datasets.MNIST.mirrors[0] in msg
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg
    with pytest.raises(RuntimeError) as info:
        datasets.CIFAR100(tmp_path, train=False)
    assert datasets.CIFAR100.url in str(info.value)
    assert str(tmp_path / "cifar-100-python") in str(info.value)


def test_download_unreachable_names_url(tmp_path):
    cls = type("MNIST", (datasets.MNIST,), {"mirrors": ["http://127.0.0.1:9/"]})
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:9/train-images-idx3-ubyte"):
        cls(tmp_path, download=True)


def _cifar_tar(www, folder, batches, meta_name, meta_key, label_key, rng):
    members, arrays = {}, {}
    for name, n in batches:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        arrays[name] = (data, labels)
        members[name] = pickle.dumps(
            {b"data": data, label_key.encode(): labels, b"batch_label": b"x"}, protocol=2
        )
    names = [f"class{i}" for i in range(10)]
    members[meta_name] = pickle.dumps({meta_key: names}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (www / f"{folder}.tar.gz").write_bytes(buf.getvalue())
    md5s = {name: hashlib.md5(p).hexdigest() for name, p in members.items()}
    return arrays, md5s, names


@pytest.mark.parametrize("base", [datasets.CIFAR10, datasets.CIFAR100])
def test_cifar_download_and_read(tmp_path, server, base):
    rng = np.random.default_rng(2)
    train_names = [n for n, _ in base.train_list]
    batches = [(n, 2) for n in train_names] + [(base.test_list[0][0], 3)]
    label_key = "labels" if base is datasets.CIFAR10 else "fine_labels"
    arrays, md5s, names = _cifar_tar(
        server.www,
        base.base_folder,
        batches,
        base.meta["filename"],
        base.meta["key"],
        label_key,
        rng,
    )
    tgz = server.www / f"{base.base_folder}.tar.gz"
    attrs = {
        "url": server.url + tgz.name,
        "filename": tgz.name,
        "tgz_md5": _md5(tgz),
        "train_list": [[n, md5s[n]] for n in train_names],
        "test_list": [[base.test_list[0][0], md5s[base.test_list[0][0]]]],
        "meta": {**base.meta, "md5": md5s[base.meta["filename"]]},
    }
    cls = type(base.__name__, (base,), attrs)
    ds = cls(tmp_path, train=True, download=True)
    assert len(ds) == 2 * len(train_names) and ds.classes == names
    assert ds.class_to_idx["class3"] == 3
    first = arrays[train_names[0]][0][1].reshape(3, 32, 32).transpose(1, 2, 0)
    img, target = ds[1]
    assert img.mode == "RGB" and img.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(img), first)
    assert target == arrays[train_names[0]][1][1]
    assert len(cls(tmp_path, train=False)) == 3
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".extract")]


def test_cifar_corrupt_batch_is_reported(tmp_path):
    folder = tmp_path / datasets.CIFAR10.base_folder
    folder.mkdir()
    for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list:
        (folder / name).write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="corrupted"):
        datasets.CIFAR10(tmp_path)


def test_extract_refuses_escaping_members(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(RuntimeError, match="could not extract"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    pixels = {}
    for cls_name, files in (("cat", ["b.png", "a.png"]), ("dog", ["z.bmp"]), ("eel", ["c.jpg"])):
        (tmp_path / cls_name).mkdir()
        for f in files:
            arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls_name / f)
            pixels[f] = arr
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = datasets.ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog", "eel"] and ds.class_to_idx == {"cat": 0, "dog": 1, "eel": 2}
    assert [os.path.basename(p) for p, _ in ds.samples] == ["a.png", "b.png", "z.bmp", "c.jpg"]
    assert ds.targets == [0, 0, 1, 2]
    img, target = ds[2]
    assert img.mode == "RGB" and target == 1
    np.testing.assert_array_equal(np.asarray(img), pixels["z.bmp"])
    (tmp_path / "fox").mkdir()
    with pytest.raises(FileNotFoundError, match="fox"):
        datasets.ImageFolder(tmp_path)
    assert len(datasets.ImageFolder(tmp_path, allow_empty=True)) == 4
    npy = datasets.DatasetFolder(
        tmp_path, loader=lambda p: p, extensions=(".txt",), allow_empty=True
    )
    assert [t for _, t in npy.samples] == [1]


def test_fake_data_is_reproducible():
    ds = datasets.FakeData(size=4, image_size=(3, 6, 5), num_classes=3)
    a, ta = ds[1]
    b, tb = ds[1]
    assert a.size == (5, 6) and a.mode == "RGB" and 0 <= ta < 3
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert ta == tb and len(ds) == 4
    with pytest.raises(IndexError):
        ds[4]
