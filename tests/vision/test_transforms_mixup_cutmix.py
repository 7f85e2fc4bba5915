"""v2.MixUp and v2.CutMix on a batch: the images and the one-hot labels mix in one proportion
(as torchvision's; CutMix's draws equal torchvision 0.28's under one seed, MixUp's Beta draw
does not: ember's Beta sampler is not torch's)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision.transforms import v2

X = np.random.default_rng(0).random((4, 3, 8, 10)).astype(np.float32)
Y = np.array([0, 2, 1, 2])


def _one_hot(y, n=3):
    return np.eye(n, dtype=np.float32)[y]


def test_mixup_mixes_images_and_labels_alike():
    ember.manual_seed(0)
    images, labels = v2.MixUp(alpha=0.4, num_classes=3)(ember.tensor(X), ember.tensor(Y))
    lab = labels.numpy()
    oh = _one_hot(Y)
    # row 0 is lam * sample 0 + (1 - lam) * sample 3 (the batch rolled by one)
    lam = float(np.linalg.lstsq(np.stack([oh[0] - oh[3]], 1), lab[0] - oh[3], rcond=None)[0][0])
    np.testing.assert_allclose(lab, lam * oh + (1 - lam) * np.roll(oh, 1, 0), atol=1e-6)
    np.testing.assert_allclose(
        images.numpy(), lam * X + (1 - lam) * np.roll(X, 1, 0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(lab.sum(1), 1.0, rtol=1e-6)


def test_cutmix_pastes_one_box_and_weighs_labels_by_area():
    ember.manual_seed(1)
    images, labels = v2.CutMix(num_classes=3)(ember.tensor(X), ember.tensor(Y))
    changed = np.any(images.numpy() != X, axis=(0, 1))  # (H, W): where the box is
    rows, cols = np.nonzero(changed)
    rolled = np.roll(X, 1, 0)
    if rows.size:
        y1, y2, x1, x2 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert changed.sum() == (y2 - y1) * (x2 - x1)  # one rectangle
        np.testing.assert_array_equal(images.numpy()[..., y1:y2, x1:x2], rolled[..., y1:y2, x1:x2])
        lam = 1 - (y2 - y1) * (x2 - x1) / (8 * 10)
    else:
        lam = 1.0
    oh = _one_hot(Y)
    np.testing.assert_allclose(labels.numpy(), lam * oh + (1 - lam) * np.roll(oh, 1, 0), atol=1e-6)


def test_samples_as_dicts_and_one_hot_labels():
    oh = ember.tensor(_one_hot(Y))
    out = v2.MixUp()({"image": ember.tensor(X), "labels": oh, "ids": [1, 2]})
    assert sorted(out) == ["ids", "image", "labels"] and out["ids"] == [1, 2]
    assert tuple(out["labels"].shape) == (4, 3)
    mix = v2.RandomChoice([v2.CutMix(num_classes=3), v2.MixUp(num_classes=3)])
    images, labels = mix(ember.tensor(X), ember.tensor(Y))
    assert images.shape == (4, 3, 8, 10) and labels.dtype == ember.float32


def test_bad_batches():
    cut = v2.CutMix(num_classes=3)
    with pytest.raises(ValueError, match="4 dims"):
        cut(ember.tensor(X[0]), ember.tensor(Y))
    with pytest.raises(ValueError, match="batch_size"):
        cut(ember.tensor(X), ember.tensor(Y[:3]))
    with pytest.raises(ValueError, match="num_classes is needed"):
        v2.MixUp()(ember.tensor(X), ember.tensor(Y))
    with pytest.raises(ValueError, match="alpha must be positive"):
        v2.MixUp(alpha=0.0)
    with pytest.raises(ValueError, match="labels"):
        cut({"image": ember.tensor(X)})
