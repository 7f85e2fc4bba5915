"""Keypoint R-CNN (He et al. 2017, Mask R-CNN's keypoint branch) with a ResNet-50-FPN backbone
(torchvision.models.detection.keypoint_rcnn): ``KeypointRCNN``, its head and predictor, and
``keypointrcnn_resnet50_fpn``."""

from __future__ import annotations

from typing import Any

from ember import Tensor, nn
from ember.nn import functional as F

from ...ops import MultiScaleRoIAlign
from ...ops import misc as misc_nn_ops
from .._api import Weights, WeightsEnum
from ..resnet import ResNet50_Weights, resnet50
from . import _utils as det_utils
from ._utils import overwrite_eps
from .backbone_utils import _resnet_fpn_extractor, _validate_trainable_layers
from .faster_rcnn import FasterRCNN, _detection_transforms

__all__ = [
    "KeypointRCNN",
    "KeypointRCNNHeads",
    "KeypointRCNNPredictor",
    "KeypointRCNN_ResNet50_FPN_Weights",
    "keypointrcnn_resnet50_fpn",
]

_COCO_PERSON_KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip


class KeypointRCNNHeads(nn.Sequential):
    """3x3 conv + ReLU layers (``layers`` gives each one's channels) over the pooled RoIs."""

    _version = 2

    def __init__(self, in_channels: int, layers: tuple[int, ...] | list[int]) -> None:
        blocks = []
        for out_channels in layers:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1),
                       nn.ReLU(inplace=True)]  # fmt: skip
            in_channels = out_channels
        super().__init__(*blocks)
        for m in self.children():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
        # before torchvision 0.13 (the COCO_LEGACY file) the convs were "conv_fcn{i}"
        version = local_metadata.get("version")
        if version is None or version < 2:
            for i in range(len(self) // 2):
                for kind in ("weight", "bias"):
                    old, new = f"{prefix}conv_fcn{i + 1}.{kind}", f"{prefix}{2 * i}.{kind}"
                    if old in state_dict:
                        state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


class KeypointRCNNPredictor(nn.Module):
    """A stride-2 4x4 transposed convolution to one map per keypoint, then a 2x bilinear
    upsampling: 14x14 RoI features give 56x56 heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, 4, stride=2,
                                                   padding=1)  # fmt: skip
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x: Tensor) -> Tensor:
        x = self.kps_score_lowres(x)
        return F.interpolate(x, scale_factor=float(self.up_scale), mode="bilinear",
                             align_corners=False, recompute_scale_factor=False)  # fmt: skip


class KeypointRCNN(FasterRCNN):
    """Faster R-CNN plus a keypoint branch: ``keypoint_roi_pool`` (14x14 RoIAlign),
    ``keypoint_head`` (eight 512-channel convs) and ``keypoint_predictor`` (``num_keypoints``
    heatmaps, default 17). Training targets add ``keypoints`` ``(N, K, 3)`` ``(x, y,
    visibility)``; training returns Faster R-CNN's losses plus ``loss_keypoint``; eval adds
    ``keypoints`` ``(n, K, 3)`` and ``keypoints_scores`` ``(n, K)`` per image. Other keyword
    arguments are :class:`FasterRCNN`'s (``min_size`` defaults to 640-800, multi-scale)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        min_size: int | tuple[int, ...] | None = None,
        max_size: int = 1333,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        keypoint_roi_pool: MultiScaleRoIAlign | None = None,
        keypoint_head: nn.Module | None = None,
        keypoint_predictor: nn.Module | None = None,
        num_keypoints: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(keypoint_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                "keypoint_roi_pool should be of type MultiScaleRoIAlign or None instead of "
                f"{type(keypoint_roi_pool)}"
            )
        if min_size is None:
            min_size = (640, 672, 704, 736, 768, 800)
        if num_keypoints is not None:
            if keypoint_predictor is not None:
                raise ValueError(
                    "num_keypoints should be None when keypoint_predictor is specified"
                )
        else:
            num_keypoints = 17
        out_channels = backbone.out_channels
        if keypoint_roi_pool is None:
            keypoint_roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=14,
                                                   sampling_ratio=2)  # fmt: skip
        if keypoint_head is None:
            keypoint_head = KeypointRCNNHeads(out_channels, tuple(512 for _ in range(8)))
        if keypoint_predictor is None:
            keypoint_predictor = KeypointRCNNPredictor(512, num_keypoints)
        super().__init__(backbone, num_classes, min_size=min_size, max_size=max_size,
                         image_mean=image_mean, image_std=image_std, **kwargs)  # fmt: skip
        self.roi_heads.keypoint_roi_pool = keypoint_roi_pool
        self.roi_heads.keypoint_head = keypoint_head
        self.roi_heads.keypoint_predictor = keypoint_predictor


def _keypoint_weights(url: str, box_map: float, kp_map: float) -> Weights:
    return Weights(
        url=url,
        transforms=_detection_transforms(),
        meta={
            "num_params": 59137258,
            "categories": ["__background__", "person"],
            "keypoint_names": _COCO_PERSON_KEYPOINT_NAMES,
            "min_size": (1, 1),
            "recipe": "https://github.com/pytorch/vision/tree/main/references/detection"
            "#keypoint-r-cnn",
            "_metrics": {"COCO-val2017": {"box_map": box_map, "kp_map": kp_map}},
        },
    )


class KeypointRCNN_ResNet50_FPN_Weights(WeightsEnum):
    """torchvision's COCO person-keypoint checkpoints for :func:`keypointrcnn_resnet50_fpn`
    (``COCO_LEGACY``: the pre-0.8 file, box mAP 50.6, keypoint mAP 61.1; ``COCO_V1``: 54.6 /
    65.0, the default)."""

    COCO_LEGACY = _keypoint_weights(
        "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-9f466800.pth",
        50.6, 61.1,
    )  # fmt: skip
    COCO_V1 = _keypoint_weights(
        "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
        54.6, 65.0,
    )  # fmt: skip
    DEFAULT = COCO_V1


@det_utils.handle_legacy_detection(KeypointRCNN_ResNet50_FPN_Weights, ResNet50_Weights)
def keypointrcnn_resnet50_fpn(
    *,
    weights: KeypointRCNN_ResNet50_FPN_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    num_keypoints: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> KeypointRCNN:
    """Keypoint R-CNN, ResNet-50-FPN backbone. ``num_classes`` defaults to 2 (background,
    person), ``num_keypoints`` to 17 (COCO's). ``weights`` (COCO) or ``weights_backbone``
    (ImageNet, the default as in torchvision) load a checkpoint; pass
    ``weights_backbone=None`` for random weights."""
    weights = KeypointRCNN_ResNet50_FPN_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
        for name, value in (("num_classes", 2), ("num_keypoints", 17)):
            given = num_classes if name == "num_classes" else num_keypoints
            if given is not None and given != value:
                raise ValueError(
                    f"The parameter '{name}' expected value {value} but got {given} instead."
                )
        num_classes, num_keypoints = 2, 17
    else:
        num_classes = 2 if num_classes is None else num_classes
        num_keypoints = 17 if num_keypoints is None else num_keypoints
    is_trained = weights is not None or weights_backbone is not None
    trainable = _validate_trainable_layers(is_trained, trainable_backbone_layers, 5, 3)
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, progress=progress, norm_layer=norm_layer)
    backbone = _resnet_fpn_extractor(backbone, trainable)
    model = KeypointRCNN(backbone, num_classes, num_keypoints=num_keypoints, **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
        if weights.name == "COCO_LEGACY":
            overwrite_eps(model, 0.0)
    return model
