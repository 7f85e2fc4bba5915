"""EMNIST, QMNIST, USPS, Omniglot, CelebA, Flickr8k, Flickr30k and SBU read from small files
written in each dataset's on-disk format, and the torchvision dataset names ember has no
reader for (the same files give torchvision 0.28's samples: checked in a scratch run).

avalanche imports all of torchvision's dataset classes by name at ``import avalanche``; these
readers (and the importable names that raise on construction) let it run on ember.
"""

from __future__ import annotations

import bz2
import gzip
import os
import struct

import numpy as np
import pytest

import ember
from ember.vision import datasets

PIL = pytest.importorskip("PIL.Image")


def _idx(path, arr, code):
    with gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb") as f:
        f.write(bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_emnist_split_files_and_classes(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    lab = np.array([1, 26, 3, 4, 5], np.uint8)
    _idx(str(raw / "emnist-letters-test-images-idx3-ubyte"), img, 8)
    _idx(str(raw / "emnist-letters-test-labels-idx1-ubyte"), lab, 8)
    ds = datasets.EMNIST(str(tmp_path), "letters", train=False)
    assert len(ds) == 5 and ds.classes[0] == "N/A" and ds.classes[26] == "z"
    x, y = ds[1]
    assert y == 26 and x.mode == "L" and np.array_equal(np.asarray(x), img[1])
    assert ds.targets.dtype == ember.int64
    with pytest.raises(RuntimeError, match="emnist-letters-train-images"):
        datasets.EMNIST(str(tmp_path), "letters", train=True)
    with pytest.raises(ValueError, match="split"):
        datasets.EMNIST(str(tmp_path), "nope")


def test_qmnist_compat_and_full_labels(tmp_path):
    raw = tmp_path / "QMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    lab = rng.integers(0, 1000, (12, 8)).astype(np.int32)
    _idx(str(raw / "qmnist-test-images-idx3-ubyte"), img, 8)
    _idx(str(raw / "qmnist-test-labels-idx2-int"), lab, 12)
    ds = datasets.QMNIST(str(tmp_path), train=False)
    assert ds[3][1] == int(lab[3, 0])
    full = datasets.QMNIST(str(tmp_path), what="test", compat=False)
    assert np.array_equal(full[3][1].numpy(), lab[3]) and full[3][1].dtype == ember.int64
    assert len(datasets.QMNIST(str(tmp_path), what="test10k")) == 12
    assert len(datasets.QMNIST(str(tmp_path), what="test50k")) == 0


def test_usps_libsvm_file(tmp_path):
    rng = np.random.default_rng(2)
    vals = rng.uniform(-1, 1, (3, 256))
    with bz2.open(tmp_path / "usps.t.bz2", "wt") as f:
        for k, v in enumerate(vals):
            f.write(f"{k + 1} " + " ".join(f"{j + 1}:{x:.6f}" for j, x in enumerate(v)) + "\n")
    ds = datasets.USPS(str(tmp_path), train=False)
    assert ds.targets == [0, 1, 2] and ds.data.shape == (3, 16, 16)
    x, _ = ds[2]
    want = ((np.round(vals[2], 6) + 1) / 2 * 255).astype(np.uint8).reshape(16, 16)
    assert np.array_equal(np.asarray(x), want)
    with pytest.raises(RuntimeError, match="usps.bz2"):
        datasets.USPS(str(tmp_path), train=True)


def test_omniglot_characters_across_alphabets(tmp_path):
    base = tmp_path / "omniglot-py" / "images_background"
    for a in ("Greek", "Latin"):
        for c in ("character01", "character02"):
            (base / a / c).mkdir(parents=True)
            for k in range(2):
                PIL.fromarray(np.full((6, 6), 40 * k, np.uint8)).save(base / a / c / f"{k}.png")
    ds = datasets.Omniglot(str(tmp_path))
    assert len(ds) == 8 and sorted({t for _, t in ds}) == [0, 1, 2, 3]
    order = [os.path.join(a, c) for a in os.listdir(base) for c in os.listdir(base / a)]
    assert ds._characters == order  # os.listdir's order, as torchvision's class indices
    assert ds[0][0].mode == "L"
    with pytest.raises(RuntimeError, match="images_evaluation"):
        datasets.Omniglot(str(tmp_path), background=False)


def _celeba(root):
    d = root / "celeba"
    (d / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    for n in names:
        PIL.fromarray(np.zeros((4, 3, 3), np.uint8)).save(d / "img_align_celeba" / n)
    (d / "list_eval_partition.txt").write_text(
        "".join(f"{n} {i % 3}\n" for i, n in enumerate(names))
    )
    (d / "identity_CelebA.txt").write_text("".join(f"{n} {10 + i}\n" for i, n in enumerate(names)))
    rows = "".join(f"{n}  {i} {i + 1}  3 4\n" for i, n in enumerate(names))
    (d / "list_bbox_celeba.txt").write_text("6\nimage_id x_1 y_1 width height\n" + rows)
    rows = "".join(f"{n} {i} {2 * i}\n" for i, n in enumerate(names))
    (d / "list_landmarks_align_celeba.txt").write_text("6\nlefteye_x lefteye_y\n" + rows)
    rows = "".join(f"{n} {1 if i % 2 else -1} -1  1\n" for i, n in enumerate(names))
    (d / "list_attr_celeba.txt").write_text("6\nSmiling Young Male\n" + rows)


def test_celeba_splits_and_target_types(tmp_path):
    _celeba(tmp_path)
    train = datasets.CelebA(str(tmp_path), split="train")
    assert train.filename == ["000001.jpg", "000004.jpg"] and train.attr_names == [
        "Smiling",
        "Young",
        "Male",
    ]
    assert train[1][1].tolist() == [1, 0, 1]  # {-1, 1} -> {0, 1}
    both = datasets.CelebA(
        str(tmp_path), split="valid", target_type=["identity", "bbox", "landmarks"]
    )
    _, (ident, bbox, marks) = both[0]
    assert int(ident) == 11 and bbox.tolist() == [1, 2, 3, 4] and marks.tolist() == [1, 2]
    assert len(datasets.CelebA(str(tmp_path), split="all")) == 6
    assert datasets.CelebA(str(tmp_path), target_type=[])[0][1] is None
    with pytest.raises(RuntimeError, match="Google Drive"):
        datasets.CelebA(str(tmp_path / "none"), download=True)


def test_flickr30k_captions(tmp_path):
    for n in ("a.jpg", "b.jpg"):
        PIL.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / n)
    ann = tmp_path / "captions.token"
    ann.write_text("b.jpg#0\tA dog .\nb.jpg#1\tA brown dog .\na.jpg#0\tA cat .\n")
    ds = datasets.Flickr30k(str(tmp_path), str(ann))
    assert ds.ids == ["a.jpg", "b.jpg"] and ds[1][1] == ["A dog .", "A brown dog ."]
    assert ds[0][0].mode == "RGB"


def test_flickr8k_html_captions(tmp_path):
    for n in ("1000_abc.jpg", "2000_def.jpg"):
        PIL.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / n)
    ann = tmp_path / "captions.html"
    ann.write_text(
        "<html><p>intro</p><table>"
        '<tr><td><a href="u">http://x/2000/</a></td><td><ul><li>A dog .</li><li>Dog .</li></ul>'
        "<tr><td>Image Not Found</td><td><ul><li>skip</li></ul>"
        '<tr><td><a href="u">http://x/1000/</a></td><td><ul><li>A cat .</li></ul>'
        "</table></html>"
    )
    ds = datasets.Flickr8k(str(tmp_path), str(ann))
    assert [os.path.basename(i) for i in ds.ids] == ["1000_abc.jpg", "2000_def.jpg"]
    assert ds[0][1] == ["A cat ."] and ds[1][1] == ["A dog .", "Dog ."]


def test_sbu_lists_and_present_photos(tmp_path):
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "SBU_captioned_photo_dataset_urls.txt").write_text("http://a/1.jpg\nhttp://a/2.jpg\n")
    (d / "SBU_captioned_photo_dataset_captions.txt").write_text("one\ntwo \n")
    PIL.fromarray(np.zeros((3, 3, 3), np.uint8)).save(d / "2.jpg")
    ds = datasets.SBU(str(tmp_path), download=False)
    assert len(ds) == 1 and ds[0][1] == "two" and ds.photos == ["2.jpg"]
    with pytest.raises(RuntimeError, match="SBU_captioned_photo_dataset_urls"):
        datasets.SBU(str(tmp_path / "none"), download=False)


@pytest.mark.parametrize("name", ["LSUN", "UCF101", "HMDB51", "Cityscapes", "PhotoTour"])
def test_unsupported_datasets_import_and_raise(name):
    cls = getattr(datasets, name)
    assert issubclass(cls, datasets.VisionDataset)
    with pytest.raises(NotImplementedError, match=name):
        cls("root")
