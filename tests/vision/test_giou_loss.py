"""ember.vision.ops.generalized_box_iou_loss and FCOS's BoxLinearCoder against closed forms,
the pairwise GIoU and finite differences (the single-stage detectors' box losses)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.vision import ops
from ember.vision.models.detection import _utils as det_utils


def _random_boxes(rng, n, lo=0.0, hi=50.0):
    xy = rng.uniform(lo, hi, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], 1)


# --------------------------------------------------------------------------- GIoU loss


def test_giou_loss_closed_form_and_pairwise_diagonal():
    b1 = ember.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b2 = ember.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    # identical: 0; overlap 1, union 7, hull 9: 1 - (1/7 - 2/9); disjoint: IoU 0, hull 3, union 2
    want = [0.0, 1 - (1 / 7 - 2 / 9), 1 + 1 / 3]
    loss = ops.generalized_box_iou_loss(b1, b2)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(ops.generalized_box_iou_loss(b1, b2, "sum")), sum(want), 1e-5)
    np.testing.assert_allclose(
        float(ops.generalized_box_iou_loss(b1, b2, "mean")), sum(want) / 3, 1e-5
    )
    rng = np.random.default_rng(0)
    x1 = ember.tensor(_random_boxes(rng, 20), dtype=ember.float64)
    x2 = ember.tensor(_random_boxes(rng, 20), dtype=ember.float64)
    diag = np.diag(ops.generalized_box_iou(x1, x2).numpy())
    np.testing.assert_allclose(ops.generalized_box_iou_loss(x1, x2).numpy(), 1 - diag, atol=1e-6)
    empty = ember.zeros((0, 4), requires_grad=True)
    out = ops.generalized_box_iou_loss(empty, empty, reduction="mean")
    assert float(out) == 0.0 and out.requires_grad
    with pytest.raises(ValueError, match="reduction"):
        ops.generalized_box_iou_loss(b1, b2, reduction="max")
    with pytest.raises(ValueError, match="last dimension of 4"):
        ops.generalized_box_iou_loss(b1[:, :3], b2)


def test_giou_loss_gradcheck():
    rng = np.random.default_rng(1)
    a = _random_boxes(rng, 6, hi=20.0)
    b = _random_boxes(rng, 6, hi=20.0)
    a[0] = [100.0, 100.0, 110.0, 120.0]  # a disjoint pair: only the hull term has a gradient
    x1 = ember.tensor(a, dtype=ember.float64, requires_grad=True)
    x2 = ember.tensor(b, dtype=ember.float64, requires_grad=True)
    assert ember.autograd.gradcheck(
        lambda p, q: ops.generalized_box_iou_loss(p, q, reduction="sum"), (x1, x2)
    )


def test_box_linear_coder_closed_form_and_round_trip():
    coder = det_utils.BoxLinearCoder(normalize_by_size=True)
    anchor = ember.tensor([[0.0, 0.0, 8.0, 4.0]])  # centre (4, 2), size 8 x 4
    box = ember.tensor([[1.0, -2.0, 12.0, 3.0]])
    np.testing.assert_allclose(coder.encode(anchor, box).numpy(), [[3 / 8, 4 / 4, 8 / 8, 1 / 4]])
    raw = det_utils.BoxLinearCoder(normalize_by_size=False)
    np.testing.assert_allclose(raw.encode(anchor, box).numpy(), [[3.0, 4.0, 8.0, 1.0]])
    rng = np.random.default_rng(2)
    anchors = ember.tensor(_random_boxes(rng, 12).reshape(2, 6, 4), dtype=ember.float64)
    boxes = ember.tensor(_random_boxes(rng, 12).reshape(2, 6, 4), dtype=ember.float64)
    for c in (coder, raw):
        back = c.decode(c.encode(anchors, boxes), anchors)
        np.testing.assert_allclose(back.numpy(), boxes.numpy(), rtol=1e-10, atol=1e-10)
