"""``ember.vision.models.detection``: torchvision's detectors on ember -- the two-stage Faster
R-CNN and Mask R-CNN and the single-stage RetinaNet (v1, v2) and FCOS with a ResNet-50-FPN
backbone, SSD300 with VGG-16 and SSDlite with MobileNetV3-Large, and their parts (anchors,
RPN, RoI heads, dense heads, transform), with torchvision's module names so ``state_dict``
keys match its checkpoints.

Keypoint R-CNN, the Faster / Mask R-CNN v2 and the MobileNetV3-Large-FPN Faster R-CNNs too.
"""

from .anchor_utils import AnchorGenerator, DefaultBoxGenerator
from .backbone_utils import (
    BackboneWithFPN,
    IntermediateLayerGetter,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from .faster_rcnn import (
    FasterRCNN,
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from .fcos import (
    FCOS,
    FCOS_ResNet50_FPN_Weights,
    FCOSClassificationHead,
    FCOSHead,
    FCOSRegressionHead,
    fcos_resnet50_fpn,
)
from .generalized_rcnn import GeneralizedRCNN
from .image_list import ImageList
from .keypoint_rcnn import (
    KeypointRCNN,
    KeypointRCNN_ResNet50_FPN_Weights,
    KeypointRCNNHeads,
    KeypointRCNNPredictor,
    keypointrcnn_resnet50_fpn,
)
from .mask_rcnn import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    MaskRCNNHeads,
    MaskRCNNPredictor,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from .retinanet import (
    RetinaNet,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .ssd import (
    SSD,
    SSD300_VGG16_Weights,
    SSDClassificationHead,
    SSDFeatureExtractorVGG,
    SSDHead,
    SSDRegressionHead,
    ssd300_vgg16,
)
from .ssdlite import (
    SSDLite320_MobileNet_V3_Large_Weights,
    SSDLiteClassificationHead,
    SSDLiteFeatureExtractorMobileNet,
    SSDLiteHead,
    SSDLiteRegressionHead,
    ssdlite320_mobilenet_v3_large,
)
from .transform import GeneralizedRCNNTransform

__all__ = [
    "AnchorGenerator",
    "BackboneWithFPN",
    "DefaultBoxGenerator",
    "FCOS",
    "FCOSClassificationHead",
    "FCOSHead",
    "FCOSRegressionHead",
    "FCOS_ResNet50_FPN_Weights",
    "FasterRCNN",
    "FasterRCNN_ResNet50_FPN_Weights",
    "FasterRCNN_ResNet50_FPN_V2_Weights",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "FastRCNNConvFCHead",
    "FastRCNNPredictor",
    "GeneralizedRCNN",
    "GeneralizedRCNNTransform",
    "ImageList",
    "IntermediateLayerGetter",
    "KeypointRCNN",
    "KeypointRCNNHeads",
    "KeypointRCNNPredictor",
    "KeypointRCNN_ResNet50_FPN_Weights",
    "MaskRCNN",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "MaskRCNN_ResNet50_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_V2_Weights",
    "RPNHead",
    "RegionProposalNetwork",
    "RetinaNet",
    "RetinaNetClassificationHead",
    "RetinaNetHead",
    "RetinaNetRegressionHead",
    "RetinaNet_ResNet50_FPN_V2_Weights",
    "RetinaNet_ResNet50_FPN_Weights",
    "RoIHeads",
    "SSD",
    "SSD300_VGG16_Weights",
    "SSDClassificationHead",
    "SSDFeatureExtractorVGG",
    "SSDHead",
    "SSDLite320_MobileNet_V3_Large_Weights",
    "SSDLiteClassificationHead",
    "SSDLiteFeatureExtractorMobileNet",
    "SSDLiteHead",
    "SSDLiteRegressionHead",
    "SSDRegressionHead",
    "TwoMLPHead",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "mobilenet_backbone",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
]
