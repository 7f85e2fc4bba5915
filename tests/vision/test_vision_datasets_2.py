"""VOCSegmentation / VOCDetection, CocoDetection / CocoCaptions, SVHN and STL10 on small files
written here in torchvision's layouts (the same files give torchvision 0.28's samples:
tests/vision/test_torchvision_parity.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ember.vision import datasets

Image = pytest.importorskip("PIL.Image")

RNG = np.random.default_rng(0)


def write_voc(root: str) -> None:
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    for d in (
        "JPEGImages",
        "SegmentationClass",
        "Annotations",
        "ImageSets/Segmentation",
        "ImageSets/Main",
    ):  # noqa: E501
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for name in ("2008_000001", "2008_000002"):
        Image.fromarray((RNG.random((12, 16, 3)) * 255).astype(np.uint8)).save(
            os.path.join(base, "JPEGImages", name + ".jpg")
        )
        mask = Image.fromarray((RNG.random((12, 16)) * 3).astype(np.uint8), mode="P")
        mask.save(os.path.join(base, "SegmentationClass", name + ".png"))
        objects = "".join(
            f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{i + 1}</xmin>"
            f"<ymin>2</ymin><xmax>{i + 9}</xmax><ymax>10</ymax></bndbox></object>"
            for i, c in enumerate(["dog", "cat"][: 1 + name.endswith("2")])
        )
        xml = (
            f"<annotation><folder>VOC2012</folder><filename>{name}.jpg</filename>"
            f"<size><width>16</width><height>12</height><depth>3</depth></size>{objects}"
            "</annotation>"
        )
        with open(os.path.join(base, "Annotations", name + ".xml"), "w") as f:
            f.write(xml)
    for sub in ("Segmentation", "Main"):
        with open(os.path.join(base, "ImageSets", sub, "train.txt"), "w") as f:
            f.write("2008_000001\n2008_000002\n")


def write_coco(root: str) -> str:
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images = []
    for i, id_ in enumerate((42, 7)):
        name = f"{id_:012d}.jpg"
        Image.fromarray(np.full((10, 14, 3), 30 * i, np.uint8)).save(
            os.path.join(root, "images", name)
        )  # noqa: E501
        images.append({"id": id_, "file_name": name, "height": 10, "width": 14})
    anns = [
        {"id": 1, "image_id": 42, "bbox": [1, 2, 3, 4], "category_id": 3, "caption": "a"},
        {"id": 2, "image_id": 7, "bbox": [0, 0, 5, 5], "category_id": 1, "caption": "b"},
        {"id": 3, "image_id": 42, "bbox": [2, 2, 2, 2], "category_id": 1, "caption": "c"},
    ]
    path = os.path.join(root, "ann.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 3}]}, f)  # noqa: E501
    return path


def write_svhn(root: str):
    sio = pytest.importorskip("scipy.io")
    x = (RNG.random((32, 32, 3, 5)) * 255).astype(np.uint8)
    y = np.array([[1], [10], [3], [10], [9]], np.uint8)
    sio.savemat(os.path.join(root, "test_32x32.mat"), {"X": x, "y": y})
    return x, y


def write_stl10(root: str):
    base = os.path.join(root, "stl10_binary")
    os.makedirs(base)
    x = (RNG.random((4, 3, 96, 96)) * 255).astype(np.uint8)
    x.tofile(os.path.join(base, "train_X.bin"))
    np.array([1, 10, 3, 2], np.uint8).tofile(os.path.join(base, "train_y.bin"))
    x[:2].tofile(os.path.join(base, "unlabeled_X.bin"))
    with open(os.path.join(base, "fold_indices.txt"), "w") as f:
        f.write("0 2\n" + "\n".join(["1 3"] * 9) + "\n")
    with open(os.path.join(base, "class_names.txt"), "w") as f:
        f.write("\n".join(f"c{i}" for i in range(10)) + "\n")
    return x


def test_voc(tmp_path):
    write_voc(str(tmp_path))
    seg = datasets.VOCSegmentation(str(tmp_path), image_set="train")
    img, mask = seg[0]
    assert len(seg) == 2 and img.mode == "RGB" and img.size == (16, 12) and mask.mode == "P"
    det = datasets.VOCDetection(str(tmp_path), year="2012", image_set="train")
    _, target = det[1]
    ann = target["annotation"]
    assert ann["filename"] == "2008_000002.jpg" and ann["size"]["width"] == "16"
    assert [o["name"] for o in ann["object"]] == ["dog", "cat"]
    assert ann["object"][1]["bndbox"] == {"xmin": "2", "ymin": "2", "xmax": "10", "ymax": "10"}
    _, one = det[0]
    assert isinstance(one["annotation"]["object"], list) and len(one["annotation"]["object"]) == 1
    with pytest.raises(ValueError, match="Unknown value 'test' for argument image_set"):
        datasets.VOCDetection(str(tmp_path), image_set="test")


def test_coco(tmp_path):
    ann = write_coco(str(tmp_path))
    det = datasets.CocoDetection(os.path.join(str(tmp_path), "images"), ann)
    assert len(det) == 2 and det.ids == [7, 42]
    img, target = det[1]
    assert img.size == (14, 10) and [a["id"] for a in target] == [1, 3]
    cap = datasets.CocoCaptions(os.path.join(str(tmp_path), "images"), ann)
    assert cap[0][1] == ["b"] and cap[1][1] == ["a", "c"]
    with pytest.raises(ValueError, match="Index must be of type integer"):
        det["0"]


def test_svhn(tmp_path):
    x, _ = write_svhn(str(tmp_path))
    ds = datasets.SVHN(str(tmp_path), split="test")
    assert len(ds) == 5 and [ds[i][1] for i in range(5)] == [1, 0, 3, 0, 9]
    np.testing.assert_array_equal(np.asarray(ds[2][0]), x[..., 2])


def test_stl10(tmp_path):
    x = write_stl10(str(tmp_path))
    ds = datasets.STL10(str(tmp_path), split="train")
    assert len(ds) == 4 and [ds[i][1] for i in range(4)] == [0, 9, 2, 1]
    np.testing.assert_array_equal(np.asarray(ds[1][0]), x[1].transpose(2, 1, 0))
    assert datasets.STL10(str(tmp_path), folds=0).labels.tolist() == [0, 2]
    both = datasets.STL10(str(tmp_path), split="train+unlabeled")
    assert len(both) == 6 and both[5][1] == -1 and ds.classes[9] == "c9"


def _img(path: str, value: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = "PNG" if path.endswith(".png") else "JPEG"
    Image.fromarray(np.full((6, 7, 3), value, np.uint8)).save(path, format=fmt)


def write_image_lists(root: str) -> None:
    for i, cls in enumerate(("Forest", "River", "AnnualCrop")):
        _img(os.path.join(root, "eurosat", "2750", cls, f"{cls}_1.jpg"), 20 * i)
    for split in ("train", "valid", "test"):
        for i, cls in enumerate(("FR", "AD")):
            _img(os.path.join(root, "country211", split, cls, "1.jpg"), 30 * i)
        for i, cls in enumerate(("positive", "negative")):
            _img(os.path.join(root, "rendered-sst2", split, cls, "0.png"), 40 * i)
    dtd = os.path.join(root, "dtd", "dtd")
    for i, (cls, name) in enumerate(
        (("zigzag", "z1.jpg"), ("banded", "b1.jpg"), ("zigzag", "z2.jpg"))
    ):  # noqa: E501
        _img(os.path.join(dtd, "images", cls, name), 50 * i)
    os.makedirs(os.path.join(dtd, "labels"))
    with open(os.path.join(dtd, "labels", "train1.txt"), "w") as f:
        f.write("zigzag/z1.jpg\nbanded/b1.jpg\nzigzag/z2.jpg\n")
    food = os.path.join(root, "food-101")
    for i, name in enumerate(("pizza/1", "apple_pie/7", "pizza/3")):
        _img(os.path.join(food, "images", name + ".jpg"), 60 * i)
    os.makedirs(os.path.join(food, "meta"))
    with open(os.path.join(food, "meta", "train.json"), "w") as f:
        json.dump({"pizza": ["pizza/1", "pizza/3"], "apple_pie": ["apple_pie/7"]}, f)


def test_image_lists(tmp_path):
    root = str(tmp_path)
    write_image_lists(root)
    eurosat = datasets.EuroSAT(root)
    assert eurosat.classes == ["AnnualCrop", "Forest", "River"] and eurosat[1][1] == 1
    assert eurosat.root == root
    c211 = datasets.Country211(root, split="valid")
    assert c211.classes == ["AD", "FR"] and len(c211) == 2
    sst = datasets.RenderedSST2(root, split="val")
    assert [sst[i][1] for i in range(2)] == [0, 1] and sst[0][0].size == (7, 6)
    dtd = datasets.DTD(root)
    assert dtd.classes == ["banded", "zigzag"] and [dtd[i][1] for i in range(3)] == [1, 0, 1]
    food = datasets.Food101(root)
    assert food.classes == ["apple_pie", "pizza"] and [food[i][1] for i in range(3)] == [1, 1, 0]
    assert np.asarray(food[2][0]).mean() == pytest.approx(60, abs=2)
    with pytest.raises(ValueError, match="partition"):
        datasets.DTD(root, partition=11)


def test_wrap_dataset_for_transforms_v2(tmp_path):
    from ember.vision import tv_tensors
    from ember.vision.transforms import v2

    root = str(tmp_path)
    write_voc(root)
    ann = write_coco(root)
    flip = v2.RandomHorizontalFlip(p=1.0)
    det = datasets.wrap_dataset_for_transforms_v2(datasets.VOCDetection(root, transforms=flip))
    img, target = det[1]
    assert type(det).__name__ == "WrappedVOCDetection" and len(det) == 2
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and set(target) == {
        "boxes",
        "labels",
    }  # noqa: E501
    # dog [1, 2, 9, 10] and cat [2, 2, 10, 10], flipped on a 16-wide canvas
    assert target["boxes"].tolist() == [[7, 2, 15, 10], [6, 2, 14, 10]]
    assert target["labels"].tolist() == [12, 8] and img.size == (16, 12)
    full = datasets.wrap_dataset_for_transforms_v2(datasets.VOCDetection(root), target_keys="all")
    assert set(full[0][1]) == {"annotation", "boxes", "labels"}
    seg = datasets.wrap_dataset_for_transforms_v2(datasets.VOCSegmentation(root))
    assert isinstance(seg[0][1], tv_tensors.Mask) and tuple(seg[0][1].shape) == (1, 12, 16)
    coco = datasets.wrap_dataset_for_transforms_v2(
        datasets.CocoDetection(os.path.join(root, "images"), ann)
    )
    _, t = coco[1]
    assert t["image_id"] == 42 and t["labels"].tolist() == [3, 1]
    assert t["boxes"].tolist() == [[1, 2, 4, 6], [2, 2, 4, 4]] and t["boxes"].canvas_size == (
        10,
        14,
    )  # noqa: E501
    with pytest.raises(ValueError, match="not available"):
        datasets.wrap_dataset_for_transforms_v2(datasets.VOCDetection(root), target_keys=["x"])
    with pytest.raises(ValueError, match="only supported for"):
        datasets.wrap_dataset_for_transforms_v2(datasets.VOCSegmentation(root), target_keys="all")


def write_image_lists_2(root: str) -> None:
    pet = os.path.join(root, "oxford-iiit-pet")
    lines = ["Abyssinian_1 1 1 1", "american_bulldog_10 2 2 1", "Abyssinian_2 1 1 1"]
    for i, line in enumerate(lines):
        name = line.split()[0]
        _img(os.path.join(pet, "images", name + ".jpg"), 40 * i)
        os.makedirs(os.path.join(pet, "annotations", "trimaps"), exist_ok=True)
        Image.fromarray(np.full((6, 7), i + 1, np.uint8)).save(
            os.path.join(pet, "annotations", "trimaps", name + ".png")
        )
    with open(os.path.join(pet, "annotations", "test.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    gt = os.path.join(root, "gtsrb")
    for cls in ("00000", "00001"):
        _img(os.path.join(gt, "GTSRB", "Training", cls, "00000_00000.ppm"), int(cls) * 50)
    for i in range(2):
        _img(os.path.join(gt, "GTSRB", "Final_Test", "Images", f"0000{i}.ppm"), 90 * i)
    with open(os.path.join(gt, "GT-final_test.csv"), "w") as f:
        f.write("Filename;Width;Height;ClassId\n00000.ppm;7;6;16\n00001.ppm;7;6;1\n")


def test_image_lists_2(tmp_path):
    root = str(tmp_path)
    write_image_lists_2(root)
    pet = datasets.OxfordIIITPet(root, split="test", target_types=["category", "segmentation"])
    assert pet.classes == ["Abyssinian", "American Bulldog"] and len(pet) == 3
    img, (label, trimap) = pet[1]
    assert label == 1 and np.asarray(trimap).max() == 2 and img.mode == "RGB"
    assert datasets.OxfordIIITPet(root, "test", "binary-category")[1][1] == 1
    assert [datasets.GTSRB(root)[i][1] for i in range(2)] == [0, 1]
    assert [datasets.GTSRB(root, split="test")[i][1] for i in range(2)] == [16, 1]
    sio = pytest.importorskip("scipy.io")
    fl = os.path.join(root, "flowers-102")
    for i in (1, 2, 3):
        _img(os.path.join(fl, "jpg", f"image_{i:05d}.jpg"), 30 * i)
    sio.savemat(os.path.join(fl, "imagelabels.mat"), {"labels": np.array([[5, 1, 102]])})
    sio.savemat(
        os.path.join(fl, "setid.mat"),
        {"trnid": np.array([[3, 1]]), "valid": np.array([[2]]), "tstid": np.array([[2]])},
    )  # noqa: E501
    flowers = datasets.Flowers102(root)
    assert [flowers[i][1] for i in range(2)] == [101, 4]
    assert datasets.Flowers102(root, split="val")[0][1] == 0
