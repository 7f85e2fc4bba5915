"""``AnchorGenerator``: the reference boxes the RPN scores and regresses from, one set per
feature-map cell (torchvision.models.detection.anchor_utils)."""

from __future__ import annotations

import ember
from ember import Tensor, nn

from .image_list import ImageList

__all__ = ["AnchorGenerator"]


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
