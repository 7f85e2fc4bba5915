"""v2's kernels for ``tv_tensors.KeyPoints`` (torchvision 0.28's): flips, resize, crop, pad,
affine / rotate, perspective and elastic move the points with the image; as torchvision's,
they do not clamp (``clamp_keypoints`` / ``ClampKeyPoints`` do, to ``[0, W - 1]`` and
``[0, H - 1]``). The dispatchers of ``v2.functional`` call these for KeyPoints."""

from __future__ import annotations

import numpy as np

from ember.backend.device import get_array_module
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .. import _geometry
from ._transform import Transform

__all__ = [
    "ClampKeyPoints",
    "SanitizeKeyPoints",
    "clamp_keypoints",
    "get_keypoints",
    "sanitize_keypoints",
]


def _new(points, like: tv.KeyPoints, canvas_size=None) -> tv.KeyPoints:
    canvas = tuple(canvas_size) if canvas_size is not None else like.canvas_size
    return tv.KeyPoints._from_array(points, canvas_size=(int(canvas[0]), int(canvas[1])))


def horizontal_flip(kp: tv.KeyPoints) -> tv.KeyPoints:
    a = kp._data.copy()
    a[..., 0] = (kp.canvas_size[1] - 1) - a[..., 0]
    return _new(a, kp)


def vertical_flip(kp: tv.KeyPoints) -> tv.KeyPoints:
    a = kp._data.copy()
    a[..., 1] = (kp.canvas_size[0] - 1) - a[..., 1]
    return _new(a, kp)


def resize(kp: tv.KeyPoints, new_size: tuple[int, int]) -> tv.KeyPoints:
    (h, w), (nh, nw) = kp.canvas_size, new_size
    if (nh, nw) == (h, w):
        return kp
    a = kp._data
    # torch multiplies by a float32 [w_ratio, h_ratio] tensor, then casts back
    ratios = get_array_module(a).asarray(np.array([nw / w, nh / h], np.float32))
    return _new((a * ratios).astype(a.dtype), kp, (nh, nw))


def crop(kp: tv.KeyPoints, top: int, left: int, height: int, width: int) -> tv.KeyPoints:
    a = kp._data
    shift = get_array_module(a).asarray(np.array([left, top], a.dtype))
    return _new(a - shift, kp, (height, width))


def pad(kp: tv.KeyPoints, left: int, top: int, right: int, bottom: int) -> tv.KeyPoints:
    a = kp._data
    shift = get_array_module(a).asarray(np.array([left, top], a.dtype))
    h, w = kp.canvas_size
    return _new(a + shift, kp, (h + top + bottom, w + left + right))


def affine(kp: tv.KeyPoints, angle, translate, scale, shear, center, expand: bool):
    from ._affine import forward_affine_matrix

    if kp._data.size == 0:
        return kp
    h, w = kp.canvas_size
    c = [w * 0.5, h * 0.5] if center is None else [float(v) for v in center]
    a = kp._data
    xp = get_array_module(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)
    m = forward_affine_matrix(c, angle, [float(t) for t in translate], scale, shear)
    mt = np.array(m, dtype).reshape(2, 3).T
    pts = a.reshape(-1, 2).astype(dtype)
    out = xp.concatenate([pts, xp.ones((pts.shape[0], 1), dtype)], -1) @ xp.asarray(mt)
    canvas = (h, w)
    if expand:
        corners = np.array([[0, 0, 1], [0, h, 1], [w, h, 1], [w, 0, 1]], dtype)
        out = out - xp.asarray((corners @ mt).min(0))
        inv = _geometry.inverse_affine_matrix(c, angle, translate, scale, shear)
        nw, nh = _geometry.affine_output_size(inv, w, h)
        canvas = (nh, nw)
    return _new(out.reshape(a.shape).astype(a.dtype), kp, canvas)


def perspective(kp: tv.KeyPoints, c: list[float]) -> tv.KeyPoints:
    from ._warp import _inverse_perspective

    if kp._data.size == 0:
        return kp
    a = kp._data
    xp = get_array_module(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)
    theta1, theta2 = _inverse_perspective(c, dtype, "keypoints")
    pts = a.reshape(-1, 2).astype(dtype)
    pts = xp.concatenate([pts, xp.ones((pts.shape[0], 1), dtype)], -1)
    out = (pts @ xp.asarray(theta1.T)) / (pts @ xp.asarray(theta2.T))
    return _new(out.astype(a.dtype).reshape(a.shape), kp)


def elastic(kp: tv.KeyPoints, displacement: Tensor) -> tv.KeyPoints:
    h, w = kp.canvas_size
    if tuple(displacement.shape) != (1, h, w, 2):
        raise ValueError(
            f"Argument displacement shape should be {(1, h, w, 2)}, "
            f"but given {tuple(displacement.shape)}"
        )
    if kp._data.size == 0:
        return kp
    a = kp._data
    xp = get_array_module(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)
    xs = np.linspace((-w + 1) / w, (w - 1) / w, w, dtype=dtype)
    ys = np.linspace((-h + 1) / h, (h - 1) / h, h, dtype=dtype)
    inv = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), -1)
    inv = xp.asarray(inv) - xp.asarray(displacement.numpy()[0].astype(dtype))
    pts = a.reshape(-1, 2)
    ix = xp.clip(pts[:, 0].astype(np.int64), 0, w - 1)  # truncated, as torch's .to(long)
    iy = xp.clip(pts[:, 1].astype(np.int64), 0, h - 1)
    size = xp.asarray(np.array([w, h], dtype))
    out = (inv[iy, ix] + 1) * (0.5 * size) - 0.5
    return _new(out.astype(a.dtype).reshape(a.shape), kp)


def clamp_keypoints(inpt, canvas_size=None):
    """Clamp points to the canvas: ``x`` to ``[0, W - 1]``, ``y`` to ``[0, H - 1]``
    (``canvas_size`` for plain tensors only)."""
    if isinstance(inpt, tv.KeyPoints):
        if canvas_size is not None:
            raise ValueError("For keypoints tv_tensor inputs, `canvas_size` must not be passed.")
        canvas_size = inpt.canvas_size
    elif canvas_size is None:
        raise ValueError("For pure tensor inputs, `canvas_size` has to be passed.")
    a = inpt._data
    xp = get_array_module(a)
    f = a.astype(np.float32) if a.dtype.kind != "f" else a
    out = xp.stack(
        [xp.clip(f[..., 0], 0, canvas_size[1] - 1), xp.clip(f[..., 1], 0, canvas_size[0] - 1)], -1
    ).astype(a.dtype)
    return _new(out, inpt) if isinstance(inpt, tv.KeyPoints) else Tensor._wrap(out)


def get_keypoints(flat_inputs: list) -> tv.KeyPoints:
    """The sample's ``KeyPoints`` (one per sample, by convention)."""
    try:
        return next(x for x in flat_inputs if isinstance(x, tv.KeyPoints))
    except StopIteration:
        raise ValueError("No keypoints were found in the sample") from None


class ClampKeyPoints(Transform):
    """Clamp the ``KeyPoints`` of a sample to their canvas."""

    _kinds = ("keypoints",)

    def _transform(self, inpt, kind, params):
        return clamp_keypoints(inpt)


def _valid(points, canvas_size):
    a = points._data
    h, w = canvas_size
    x, y = a[..., 0], a[..., 1]
    valid = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return valid.reshape(valid.shape[0], -1).all(1) if valid.ndim > 1 else valid


def sanitize_keypoints(key_points, canvas_size=None):
    """Drop the points (or the groups of points: the first axis of an at least 3-d tensor)
    outside the canvas; returns ``(kept points, keep mask)``."""
    if isinstance(key_points, tv.KeyPoints):
        if canvas_size is not None:
            raise ValueError(
                "canvas_size must be None when key_points is a tv_tensors.KeyPoints instance. "
                f"Got canvas_size={canvas_size}. Leave it to None or pass key_points as a pure "
                "tensor."
            )
        valid = _valid(key_points, key_points.canvas_size)
        return _new(key_points._data[valid], key_points), Tensor._wrap(valid)
    if canvas_size is None:
        raise ValueError(
            "canvas_size cannot be None if key_points is a pure tensor. Set it to an "
            "appropriate value or pass key_points as a tv_tensors.KeyPoints object."
        )
    valid = _valid(key_points, canvas_size)
    return Tensor._wrap(key_points._data[valid]), Tensor._wrap(valid)


class SanitizeKeyPoints(Transform):
    """Drop the keypoints (or groups of them) outside the canvas, with their labels when
    ``labels_getter`` finds them (``"default"``: a ``"labels"`` entry; a callable of the
    sample; ``None``, the default: keypoints only)."""

    def __init__(self, labels_getter=None) -> None:
        from ._detection import find_labels

        self.labels_getter = labels_getter
        self._labels_getter = (
            find_labels
            if labels_getter == "default"
            else (labels_getter if labels_getter is not None else (lambda sample: None))
        )

    def __call__(self, *inputs):
        from ._transform import _flatten, _kinds

        sample = inputs if len(inputs) > 1 else inputs[0]
        labels = self._labels_getter(sample)
        if isinstance(labels, Tensor):
            labels = (labels,)
        elif labels is not None and not (
            isinstance(labels, (tuple, list)) and all(isinstance(t, Tensor) for t in labels)
        ):
            raise ValueError(
                "The labels in the input to forward() must be a tensor or None, got "
                f"{type(labels)} instead."
            )
        leaves: list = []
        rebuild = _flatten(sample, leaves)
        points = [x for x, k in zip(leaves, _kinds(leaves)) if k == "keypoints"]
        if len(points) != 1:
            raise ValueError(f"Found {len(points)} KeyPoints in the sample; expected one.")
        for label in labels or ():
            if label.shape[0] != points[0].shape[0]:
                raise ValueError(
                    f"Number of kepyoints (shape={tuple(points[0].shape)}) must match the number "
                    f"of labels.Found labels with shape={tuple(label.shape)})."
                )
        valid = _valid(points[0], points[0].canvas_size)
        out = []
        for x in leaves:
            if labels is not None and any(x is t for t in labels):
                out.append(x[Tensor._wrap(valid)])
            elif isinstance(x, tv.KeyPoints):
                out.append(_new(x._data[valid], x))
            else:
                out.append(x)
        return rebuild(iter(out))
