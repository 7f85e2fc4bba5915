"""Quantizable GoogLeNet (torchvision.models.quantization.googlenet)."""

from __future__ import annotations

import warnings
from typing import Any

import ember
from ember import nn
from ember.ao.quantization import DeQuantStub, QuantStub
from ember.nn import functional as F
from ember.tensor import Tensor

from .._api import WeightsEnum, _ovewrite_named_param, handle_legacy_interface
from ..googlenet import BasicConv2d, GoogLeNet, GoogLeNet_Weights, Inception, InceptionAux
from ._weights import qweights
from .utils import _builder_kwargs, _FusableConvBnReLU, _legacy, _quantizable_builder

__all__ = ["QuantizableGoogLeNet", "GoogLeNet_QuantizedWeights", "googlenet"]


class QuantizableBasicConv2d(_FusableConvBnReLU, BasicConv2d):
    """``Conv2d -> BatchNorm2d -> ReLU`` with the ReLU as a module (fusable)."""


class QuantizableInception(Inception):
    """The inception block with its concatenation in a ``FloatFunctional``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.cat = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.cat.cat(self._forward(x), 1)


class QuantizableInceptionAux(InceptionAux):
    """The auxiliary head with its ReLU as a module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = ember.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class QuantizableGoogLeNet(GoogLeNet):
    """:class:`~ember.vision.models.GoogLeNet` built from the quantizable blocks, between
    quant / dequant stubs (the input transform stays in float), with ``fuse_model``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        blocks = [QuantizableBasicConv2d, QuantizableInception, QuantizableInceptionAux]
        super().__init__(*args, blocks=blocks, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor):
        x, aux2, aux1 = self._forward(self.quant(self._transform_input(x)))
        return self.eager_outputs(self.dequant(x), aux2, aux1)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv + bn + relu in every basic convolution."""
        for m in self.modules():
            if type(m) is QuantizableBasicConv2d:
                m.fuse_model(is_qat)


class GoogLeNet_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized GoogLeNet (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "googlenet_fbgemm-c81f6644", 6624904, GoogLeNet_Weights.IMAGENET1K_V1, min_size=(15, 15)
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


@handle_legacy_interface(_legacy(GoogLeNet_QuantizedWeights, GoogLeNet_Weights))
def googlenet(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableGoogLeNet:
    """Quantizable GoogLeNet; with ``weights`` the auxiliary heads are dropped unless
    ``aux_logits=True`` is passed, as in :func:`ember.vision.models.googlenet`."""
    weights = (GoogLeNet_QuantizedWeights if quantize else GoogLeNet_Weights).verify(weights)
    original_aux_logits = kwargs.get("aux_logits", False)
    if weights is not None:
        kwargs.setdefault("transform_input", True)
        _ovewrite_named_param(kwargs, "aux_logits", True)
        _ovewrite_named_param(kwargs, "init_weights", False)
    backend = _builder_kwargs(weights, kwargs)
    model = QuantizableGoogLeNet(**kwargs)
    model = _quantizable_builder(model, weights, progress, quantize, backend)
    if weights is not None:
        if original_aux_logits:
            warnings.warn(
                "auxiliary heads in the pretrained googlenet model are NOT pretrained, so make "
                "sure to train them",
                stacklevel=2,
            )
        else:
            model.aux_logits = False
            model.aux1 = None
            model.aux2 = None
    return model
