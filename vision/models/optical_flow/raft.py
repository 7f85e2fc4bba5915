"""RAFT (Teed & Deng, 2020): recurrent all-pairs field transforms, with torchvision's module
names so its checkpoints load.

A feature encoder maps both frames to 1/8 resolution; their all-pairs dot products form a 4-D
correlation volume, average-pooled into a pyramid. From a zero flow, each of
``num_flow_updates`` iterations looks up the pyramid around the current match (a
``(2r+1)^2`` square per level, sampled with ``grid_sample``), encodes it with the flow, runs a
convolutional GRU whose context comes from a second encoder on frame 1, and adds the predicted
flow delta. Every iteration's flow is upsampled by 8 (convex upsampling with a predicted mask
for raft_large, bilinear for raft_small) and returned, for the sequence loss.
"""

from __future__ import annotations

from typing import Any

import ember
import ember.nn.functional as F
from ember import nn
from ember.tensor import Tensor

from ...transforms._presets import OpticalFlow
from .._api import Weights, WeightsEnum, handle_legacy_interface, load_weights
from ._raft_blocks import (  # noqa: F401  (torchvision keeps the blocks in this module)
    BottleneckBlock,
    ConvGRU,
    FeatureEncoder,
    FlowHead,
    MaskPredictor,
    MotionEncoder,
    RecurrentBlock,
    ResidualBlock,
    UpdateBlock,
)
from ._utils import grid_sample, make_coords_grid, upsample_flow

__all__ = ["RAFT", "Raft_Large_Weights", "Raft_Small_Weights", "raft_large", "raft_small"]


class CorrBlock(nn.Module):
    """The correlation pyramid (``build_pyramid``) and its lookup (``index_pyramid``): for each
    pixel, the ``(2 radius + 1)^2`` values around its current match at every level (a square,
    the infinity-norm neighbourhood), bilinearly sampled."""

    def __init__(self, *, num_levels: int = 4, radius: int = 4):
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius
        self.corr_pyramid: list[Tensor] = []
        self.out_channels = num_levels * (2 * radius + 1) ** 2

    def build_pyramid(self, fmap1: Tensor, fmap2: Tensor) -> None:
        if fmap1.shape != fmap2.shape:
            raise ValueError(
                f"Input feature maps should have the same shape, instead got {tuple(fmap1.shape)}"
                f" (fmap1.shape) != {tuple(fmap2.shape)} (fmap2.shape)"
            )
        # the coarsest level must keep at least 2 values per side (grid_sample needs them)
        min_size = 2 * (2 ** (self.num_levels - 1))
        if any(s < min_size for s in fmap1.shape[-2:]):
            raise ValueError(
                "Feature maps are too small to be down-sampled by the correlation pyramid. "
                f"H and W of feature maps should be at least {min_size}; got: "
                f"{tuple(fmap1.shape[-2:])}. Remember that input images to the model are "
                f"downsampled by 8, so that means their dimensions should be at least "
                f"8 * {min_size} = {8 * min_size}."
            )
        b, c, h, w = fmap1.shape
        corr = ember.matmul(fmap1.view(b, c, h * w).transpose(1, 2), fmap2.view(b, c, h * w))
        corr = (corr / c**0.5).reshape(b * h * w, 1, h, w)
        self.corr_pyramid = [corr]
        for _ in range(self.num_levels - 1):
            corr = F.avg_pool2d(corr, kernel_size=2, stride=2)
            self.corr_pyramid.append(corr)

    def index_pyramid(self, centroids_coords: Tensor) -> Tensor:
        if not self.corr_pyramid:
            raise RuntimeError("CorrBlock.index_pyramid() called before build_pyramid()")
        side = 2 * self.radius + 1
        d = ember.linspace(-self.radius, self.radius, side, device=centroids_coords.device)
        delta = ember.stack(ember.meshgrid(d, d, indexing="ij"), dim=-1).view(1, side, side, 2)
        b, _, h, w = centroids_coords.shape
        coords = centroids_coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        levels = []
        for corr in self.corr_pyramid:
            sampled = grid_sample(corr, coords + delta, align_corners=True, mode="bilinear")
            levels.append(sampled.view(b, h, w, -1))
            coords = coords / 2
        return ember.cat(levels, dim=-1).permute(0, 3, 1, 2).contiguous()


class RAFT(nn.Module):
    """RAFT from its parts (see :func:`raft_large` for a configuration). ``forward(image1,
    image2, num_flow_updates=12)`` takes two ``(N, 3, H, W)`` batches (H and W divisible by 8,
    at least 128 with 4 pyramid levels) and returns the list of ``(N, 2, H, W)`` flow
    predictions, one per update; the last is the final estimate."""

    def __init__(
        self, *, feature_encoder, context_encoder, corr_block, update_block, mask_predictor=None
    ):
        super().__init__()
        self.feature_encoder = feature_encoder
        self.context_encoder = context_encoder
        self.corr_block = corr_block
        self.update_block = update_block
        self.mask_predictor = mask_predictor
        if not hasattr(update_block, "hidden_state_size"):
            raise ValueError(
                "The update_block parameter should expose a 'hidden_state_size' attribute."
            )

    def forward(self, image1: Tensor, image2: Tensor, num_flow_updates: int = 12) -> list[Tensor]:
        if image1.ndim != 4 or image1.shape[1] != 3:
            raise ValueError(f"image1 should be a (N, 3, H, W) batch, got {tuple(image1.shape)}")
        b, _, h, w = image1.shape
        if tuple(image2.shape) != tuple(image1.shape):
            raise ValueError(
                f"input images should have the same shape, instead got {tuple(image1.shape)} "
                f"!= {tuple(image2.shape)}"
            )
        if h % 8 or w % 8:
            raise ValueError(
                f"input image H and W should be divisible by 8, instead got {h} (h) and {w} (w)"
            )
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates should be at least 1, got {num_flow_updates}")
        fmap1, fmap2 = ember.chunk(self.feature_encoder(ember.cat([image1, image2], dim=0)), 2)
        if tuple(fmap1.shape[-2:]) != (h // 8, w // 8):
            raise ValueError("The feature encoder should downsample H and W by 8")
        self.corr_block.build_pyramid(fmap1, fmap2)
        context_out = self.context_encoder(image1)
        if tuple(context_out.shape[-2:]) != (h // 8, w // 8):
            raise ValueError("The context encoder should downsample H and W by 8")
        # the context encoder's output: the GRU's initial state, then the context proper
        hidden = self.update_block.hidden_state_size
        rest = context_out.shape[1] - hidden
        if rest <= 0:
            raise ValueError(
                f"The context encoder outputs {context_out.shape[1]} channels, but it should "
                f"have strictly more than hidden_state={hidden} channels"
            )
        hidden_state, context = ember.split(context_out, [hidden, rest], dim=1)
        hidden_state, context = ember.tanh(hidden_state), F.relu(context)
        coords0 = make_coords_grid(b, h // 8, w // 8, device=fmap1.device)
        coords1 = coords0.clone()
        predictions = []
        for _ in range(num_flow_updates):
            coords1 = coords1.detach()  # no gradient through the lookup positions (the paper)
            corr_features = self.corr_block.index_pyramid(coords1)
            hidden_state, delta = self.update_block(
                hidden_state, context, corr_features, coords1 - coords0
            )
            coords1 = coords1 + delta
            mask = None if self.mask_predictor is None else self.mask_predictor(hidden_state)
            predictions.append(upsample_flow(coords1 - coords0, up_mask=mask))
        return predictions


def _w(file: str, num_params: int, recipe: str) -> Weights:
    return Weights(
        url="https://download.pytorch.org/models/" + file,
        transforms=OpticalFlow,
        meta={"min_size": (128, 128), "num_params": num_params, "recipe": recipe},
    )


_PORTED = "https://github.com/princeton-vl/RAFT"  # the authors' weights, ported
_TV = "https://github.com/pytorch/vision/tree/main/references/optical_flow"


class Raft_Large_Weights(WeightsEnum):
    """Pretrained weights for :func:`raft_large`: C = FlyingChairs, T = FlyingThings3D,
    SKHT = + Sintel/KITTI/HD1K/Things fine-tuning, K = + KITTI; V1 are the authors' weights,
    V2 torchvision's retraining."""

    C_T_V1 = _w("raft_large_C_T_V1-22a6c225.pth", 5257536, _PORTED)
    C_T_V2 = _w("raft_large_C_T_V2-1bb1363a.pth", 5257536, _TV)
    C_T_SKHT_V1 = _w("raft_large_C_T_SKHT_V1-0b8c9e55.pth", 5257536, _PORTED)
    C_T_SKHT_V2 = _w("raft_large_C_T_SKHT_V2-ff5fadd5.pth", 5257536, _TV)
    C_T_SKHT_K_V1 = _w("raft_large_C_T_SKHT_K_V1-4a6a5039.pth", 5257536, _PORTED)
    C_T_SKHT_K_V2 = _w("raft_large_C_T_SKHT_K_V2-b5c70766.pth", 5257536, _TV)
    DEFAULT = C_T_SKHT_V2


class Raft_Small_Weights(WeightsEnum):
    """Pretrained weights for :func:`raft_small` (FlyingChairs + FlyingThings3D)."""

    C_T_V1 = _w("raft_small_C_T_V1-ad48884c.pth", 990162, _PORTED)
    C_T_V2 = _w("raft_small_C_T_V2-01064c6d.pth", 990162, _TV)
    DEFAULT = C_T_V2


def _raft(weights, progress, fe, ce, corr, motion, recurrent, flow_hidden, mask, **kwargs):
    """``fe`` / ``ce``: (layers, block, norm) of the feature / context encoders; ``corr``:
    (levels, radius); ``motion``: (corr_layers, flow_layers, out); ``recurrent``: (hidden,
    kernel_sizes, paddings). A ready-made part passed in ``kwargs`` replaces the default."""
    feature_encoder = kwargs.pop("feature_encoder", None) or FeatureEncoder(
        layers=fe[0], block=fe[1], norm_layer=fe[2]
    )
    context_encoder = kwargs.pop("context_encoder", None) or FeatureEncoder(
        layers=ce[0], block=ce[1], norm_layer=ce[2]
    )
    corr_block = kwargs.pop("corr_block", None) or CorrBlock(num_levels=corr[0], radius=corr[1])
    update_block = kwargs.pop("update_block", None)
    if update_block is None:
        motion_encoder = MotionEncoder(
            in_channels_corr=corr_block.out_channels, corr_layers=motion[0],
            flow_layers=motion[1], out_channels=motion[2],
        )  # fmt: skip
        recurrent_block = RecurrentBlock(
            input_size=motion_encoder.out_channels + ce[0][-1] - recurrent[0],
            hidden_size=recurrent[0], kernel_size=recurrent[1], padding=recurrent[2],
        )  # fmt: skip
        update_block = UpdateBlock(
            motion_encoder=motion_encoder, recurrent_block=recurrent_block,
            flow_head=FlowHead(in_channels=recurrent[0], hidden_size=flow_hidden),
        )  # fmt: skip
    mask_predictor = kwargs.pop("mask_predictor", None)
    if mask_predictor is None and mask:
        mask_predictor = MaskPredictor(in_channels=recurrent[0], hidden_size=256, multiplier=0.25)
    model = RAFT(
        feature_encoder=feature_encoder, context_encoder=context_encoder, corr_block=corr_block,
        update_block=update_block, mask_predictor=mask_predictor, **kwargs,
    )  # fmt: skip
    return load_weights(model, weights, progress)


@handle_legacy_interface(lambda kwargs: Raft_Large_Weights.C_T_SKHT_V2)
def raft_large(
    *, weights: Raft_Large_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> RAFT:
    """RAFT large (5.3 M parameters): residual encoders (instance norm for the features,
    batch norm for the context), 4 pyramid levels of radius 4, two separable ConvGRUs of 128
    channels, convex upsampling; ``kwargs`` go to :class:`RAFT`."""
    weights = Raft_Large_Weights.verify(weights)
    return _raft(
        weights, progress,
        ((64, 64, 96, 128, 256), ResidualBlock, nn.InstanceNorm2d),
        ((64, 64, 96, 128, 256), ResidualBlock, nn.BatchNorm2d),
        (4, 4), ((256, 192), (128, 64), 128), (128, ((1, 5), (5, 1)), ((0, 2), (2, 0))),
        256, True, **kwargs,
    )  # fmt: skip


@handle_legacy_interface(lambda kwargs: Raft_Small_Weights.C_T_V2)
def raft_small(
    *, weights: Raft_Small_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> RAFT:
    """RAFT small (1.0 M parameters): bottleneck encoders (no norm in the context encoder),
    4 pyramid levels of radius 3, one 3x3 ConvGRU of 96 channels, bilinear upsampling;
    ``kwargs`` go to :class:`RAFT`."""
    weights = Raft_Small_Weights.verify(weights)
    return _raft(
        weights, progress,
        ((32, 32, 64, 96, 128), BottleneckBlock, nn.InstanceNorm2d),
        ((32, 32, 64, 96, 160), BottleneckBlock, None),
        (4, 3), ((96,), (64, 32), 82), (96, (3,), (1,)),
        128, False, **kwargs,
    )  # fmt: skip
