"""``ember.vision.models.detection``: torchvision's two-stage detectors on ember -- Faster
R-CNN and Mask R-CNN with a ResNet-50-FPN backbone, and their parts (anchors, RPN, RoI heads,
transform), with torchvision's module names so ``state_dict`` keys match its checkpoints.

Not here: RetinaNet, SSD/SSDlite, FCOS, Keypoint R-CNN and the v2 / MobileNet variants.
"""

from .anchor_utils import AnchorGenerator
from .backbone_utils import BackboneWithFPN, IntermediateLayerGetter, resnet_fpn_backbone
from .faster_rcnn import (
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_Weights,
    FastRCNNPredictor,
    TwoMLPHead,
    fasterrcnn_resnet50_fpn,
)
from .generalized_rcnn import GeneralizedRCNN
from .image_list import ImageList
from .mask_rcnn import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_Weights,
    MaskRCNNHeads,
    MaskRCNNPredictor,
    maskrcnn_resnet50_fpn,
)
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .transform import GeneralizedRCNNTransform

__all__ = [
    "AnchorGenerator",
    "BackboneWithFPN",
    "FasterRCNN",
    "FasterRCNN_ResNet50_FPN_Weights",
    "FastRCNNPredictor",
    "GeneralizedRCNN",
    "GeneralizedRCNNTransform",
    "ImageList",
    "IntermediateLayerGetter",
    "MaskRCNN",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "MaskRCNN_ResNet50_FPN_Weights",
    "RPNHead",
    "RegionProposalNetwork",
    "RoIHeads",
    "TwoMLPHead",
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
]
