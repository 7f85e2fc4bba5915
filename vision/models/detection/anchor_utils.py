"""``AnchorGenerator``: the reference boxes the RPN scores and regresses from, one set per
feature-map cell, and SSD's ``DefaultBoxGenerator`` (torchvision.models.detection.anchor_utils)."""

from __future__ import annotations

import math

import ember
from ember import Tensor, nn

from .image_list import ImageList

__all__ = ["AnchorGenerator", "DefaultBoxGenerator"]


class AnchorGenerator(nn.Module):
    """Anchors of every ``sizes[i] x aspect_ratios[i]`` combination centred on each cell of
    feature map ``i``: ``len(sizes)`` must equal the number of feature maps. An anchor of
    size ``s`` and ratio ``r = h / w`` is ``(-w/2, -h/2, w/2, h/2)`` with ``h = s sqrt(r)``,
    ``w = s / sqrt(r)`` (rounded), shifted by the cell's stride times its index."""

    def __init__(
        self,
        sizes=((128, 256, 512),),
        aspect_ratios=((0.5, 1.0, 2.0),),
    ) -> None:
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"AnchorGenerator needs one aspect_ratios entry per sizes entry, got "
                f"{len(sizes)} sizes and {len(aspect_ratios)} aspect_ratios"
            )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [
            self.generate_anchors(size, ratios) for size, ratios in zip(sizes, aspect_ratios)
        ]

    def generate_anchors(self, scales, aspect_ratios, dtype=ember.float32, device="cpu") -> Tensor:
        """The ``(len(ratios) * len(scales), 4)`` zero-centred anchors of one level."""
        scales = ember.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = ember.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = ember.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        base_anchors = ember.stack([-ws, -hs, ws, hs], dim=1) / 2
        return base_anchors.round()

    def set_cell_anchors(self, dtype, device) -> None:
        self.cell_anchors = [a.to(dtype=dtype, device=device) for a in self.cell_anchors]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes, strides) -> list[Tensor]:
        """Anchors of every level, ``(H * W * A, 4)`` each, ordered cell-major."""
        cell_anchors = self.cell_anchors
        if len(grid_sizes) != len(strides) or len(grid_sizes) != len(cell_anchors):
            raise ValueError(
                "Anchors should be Tuple[Tuple[int]] because each feature map could "
                "potentially have different sizes and aspect ratios. There needs to be a match "
                f"between the number of feature maps passed ({len(grid_sizes)}) and the number "
                f"of sizes and aspect ratios specified ({len(cell_anchors)})."
            )
        anchors = []
        for size, stride, base in zip(grid_sizes, strides, cell_anchors):
            grid_h, grid_w = size
            stride_h, stride_w = stride
            device = base.device
            shifts_x = ember.arange(0, grid_w, dtype=ember.int32, device=device) * stride_w
            shifts_y = ember.arange(0, grid_h, dtype=ember.int32, device=device) * stride_h
            shift_y, shift_x = ember.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = ember.stack((shift_x, shift_y, shift_x, shift_y), dim=1).to(base.dtype)
            anchors.append((shifts.reshape(-1, 1, 4) + base.reshape(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        grid_sizes = [tuple(fm.shape[-2:]) for fm in feature_maps]
        image_size = image_list.tensors.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [(image_size[0] // g[0], image_size[1] // g[1]) for g in grid_sizes]
        self.set_cell_anchors(dtype, device)
        over_all_maps = self.grid_anchors(grid_sizes, strides)
        all_anchors = ember.cat(over_all_maps)
        return [all_anchors for _ in range(len(image_list.image_sizes))]


class DefaultBoxGenerator(nn.Module):
    """SSD's default boxes (Liu et al. 2016, section 2.2). Map ``k`` has scale ``s_k``
    (``scales``, or ``min_ratio`` .. ``max_ratio`` evenly spaced, then 1) and, per cell, the
    boxes ``s_k x s_k``, ``s'_k x s'_k`` with ``s'_k = sqrt(s_k s_{k+1})``, and for each ratio
    ``a`` of ``aspect_ratios[k]`` the pair ``s_k sqrt(a) x s_k / sqrt(a)`` and its transpose,
    centred on the cell (``(i + 0.5) / f_k`` with ``f_k = image size / steps[k]``, or the map
    size without ``steps``), sizes relative to the image and clipped to 1 when ``clip``."""

    def __init__(
        self,
        aspect_ratios: list[list[int]],
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        scales: list[float] | None = None,
        steps: list[int] | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__()
        if steps is not None and len(aspect_ratios) != len(steps):
            raise ValueError("aspect_ratios and steps should have the same length")
        self.aspect_ratios = aspect_ratios
        self.steps = steps
        self.clip = clip
        num_outputs = len(aspect_ratios)
        if scales is None:
            if num_outputs > 1:
                step = (max_ratio - min_ratio) / (num_outputs - 1.0)
                self.scales = [min_ratio + step * k for k in range(num_outputs)] + [1.0]
            else:
                self.scales = [min_ratio, max_ratio]
        else:
            if len(scales) != num_outputs + 1:
                raise ValueError(
                    f"scales needs one entry per feature map plus one ({num_outputs + 1}), got "
                    f"{len(scales)}"
                )
            self.scales = scales
        self._wh_pairs = self._generate_wh_pairs(num_outputs)

    def _generate_wh_pairs(self, num_outputs: int, dtype=ember.float32, device="cpu"):
        pairs = []
        for k in range(num_outputs):
            s_k = self.scales[k]
            s_prime_k = math.sqrt(self.scales[k] * self.scales[k + 1])
            wh = [[s_k, s_k], [s_prime_k, s_prime_k]]
            for ar in self.aspect_ratios[k]:
                sq = math.sqrt(ar)
                wh.extend([[s_k * sq, s_k / sq], [s_k / sq, s_k * sq]])
            pairs.append(ember.as_tensor(wh, dtype=dtype, device=device))
        return pairs

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def _grid_default_boxes(self, grid_sizes, image_size, dtype=ember.float32) -> Tensor:
        """All maps' boxes as ``(cx, cy, w, h)`` rows relative to the image, cell-major."""
        boxes = []
        for k, (f_h, f_w) in enumerate(grid_sizes):
            if self.steps is not None:
                x_f_k, y_f_k = image_size[1] / self.steps[k], image_size[0] / self.steps[k]
            else:
                y_f_k, x_f_k = f_h, f_w
            shifts_x = ((ember.arange(0, f_w) + 0.5) / x_f_k).to(dtype=dtype)
            shifts_y = ((ember.arange(0, f_h) + 0.5) / y_f_k).to(dtype=dtype)
            shift_y, shift_x = ember.meshgrid(shifts_y, shifts_x, indexing="ij")
            n_pairs = len(self._wh_pairs[k])
            centres = ember.stack((shift_x.reshape(-1), shift_y.reshape(-1)), dim=-1)
            centres = centres.repeat_interleave(n_pairs, dim=0)  # every pair at every cell
            wh = self._wh_pairs[k].clamp(min=0, max=1) if self.clip else self._wh_pairs[k]
            boxes.append(ember.cat((centres, wh.to(dtype).repeat(f_h * f_w, 1)), dim=1))
        return ember.cat(boxes, dim=0)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(aspect_ratios={self.aspect_ratios}, "
            f"clip={self.clip}, scales={self.scales}, steps={self.steps})"
        )

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        grid_sizes = [tuple(int(s) for s in fm.shape[-2:]) for fm in feature_maps]
        image_size = tuple(int(s) for s in image_list.tensors.shape[-2:])
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        boxes = self._grid_default_boxes(grid_sizes, image_size, dtype=dtype).to(device)
        x_y_size = ember.tensor([image_size[1], image_size[0]], dtype=dtype, device=device)
        xyxy = ember.cat(
            [(boxes[:, :2] - 0.5 * boxes[:, 2:]) * x_y_size,
             (boxes[:, :2] + 0.5 * boxes[:, 2:]) * x_y_size], -1,
        )  # fmt: skip
        return [xyxy for _ in image_list.image_sizes]
