"""Compiled (numba) greedy non-maximum suppression for :func:`ember.vision.ops.nms`.

Why: the NumPy version walks the kept boxes in Python with one vectorised IoU pass over the
remaining boxes each; on the ~4000 proposals per image that Faster R-CNN's region proposal
network suppresses in training that took ~110 ms a call (two a step, ~10% of a step at
128 x 160 px), where this loop takes a few milliseconds (issue 23). Same order, same float64
arithmetic and the same ``>`` test as the NumPy version, so the same boxes are kept. Used when
numba is installed (the ``fast`` extra) and ``EMBER_NUMBA`` is not ``0``, and only for inputs of
at least ``MIN_BOXES`` boxes, so that a first small call never waits for the compiler.
"""

from __future__ import annotations

import os

import numpy as np

MIN_BOXES = 512

try:
    from numba import njit
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None and os.environ.get("EMBER_NUMBA", "1") != "0"


def _jit(fn):
    return njit(cache=True, nogil=True)(fn) if njit is not None else fn


@_jit
def _kept_sorted(x1, y1, x2, y2, iou_threshold, kept):  # pragma: no cover
    # boxes already sorted by decreasing score; writes the kept positions, returns their count
    n = x1.shape[0]
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        if not alive[i]:
            continue
        kept[count] = i
        count += 1
        for j in range(i + 1, n):
            if alive[j]:
                w = max(0.0, min(x2[i], x2[j]) - max(x1[i], x1[j]))
                h = max(0.0, min(y2[i], y2[j]) - max(y1[i], y1[j]))
                inter = w * h
                union = areas[i] + areas[j] - inter
                # two empty boxes have IoU 0/0: NaN in the NumPy path, never above the
                # threshold, so both are kept (numba would raise ZeroDivisionError instead)
                if union > 0.0 and inter / union > iou_threshold:
                    alive[j] = False
    return count


def nms_kept(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices (int64) of the boxes kept, by decreasing score (ties in input order)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, i], dtype=np.float64) for i in range(4))
    kept = np.empty(order.size, dtype=np.int64)
    count = _kept_sorted(x1, y1, x2, y2, float(iou_threshold), kept)
    return order[kept[:count]]
