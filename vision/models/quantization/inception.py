"""Quantizable Inception v3 (torchvision.models.quantization.inception)."""

from __future__ import annotations

from typing import Any

from ember import nn
from ember.ao.quantization import DeQuantStub, QuantStub
from ember.nn import functional as F
from ember.tensor import Tensor

from .. import inception as _float
from .._api import WeightsEnum, _ovewrite_named_param, handle_legacy_interface
from ..inception import Inception_V3_Weights
from ._weights import qweights
from .utils import _builder_kwargs, _FusableConvBnReLU, _legacy, _quantizable_builder

__all__ = ["QuantizableInception3", "Inception_V3_QuantizedWeights", "inception_v3"]


class QuantizableBasicConv2d(_FusableConvBnReLU, _float.BasicConv2d):
    """``Conv2d -> BatchNorm2d -> ReLU`` with the ReLU as a module (fusable)."""


def _quantizable_block(base: type) -> type:
    """``base`` (an Inception A-D block) built from quantizable convolutions, its branches
    concatenated by a ``FloatFunctional`` named ``myop`` (torchvision's name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.myop = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.myop.cat(self._forward(x), 1)

    name = "Quantizable" + base.__name__
    doc = f"{base.__name__} with quantizable convolutions and a ``FloatFunctional`` cat."
    return type(name, (base,), {"__init__": __init__, "forward": forward, "__doc__": doc})


QuantizableInceptionA = _quantizable_block(_float.InceptionA)
QuantizableInceptionB = _quantizable_block(_float.InceptionB)
QuantizableInceptionC = _quantizable_block(_float.InceptionC)
QuantizableInceptionD = _quantizable_block(_float.InceptionD)


class QuantizableInceptionE(_float.InceptionE):
    """InceptionE with its three concatenations in ``FloatFunctional`` modules."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.myop1 = nn.quantized.FloatFunctional()
        self.myop2 = nn.quantized.FloatFunctional()
        self.myop3 = nn.quantized.FloatFunctional()

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = self.myop1.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = self.myop2.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return [b1, b3, bd, bp]

    def forward(self, x: Tensor) -> Tensor:
        return self.myop3.cat(self._forward(x), 1)


class QuantizableInceptionAux(_float.InceptionAux):
    """The auxiliary head built from quantizable convolutions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)


class QuantizableInception3(_float.Inception3):
    """:class:`~ember.vision.models.Inception3` built from the quantizable blocks, between
    quant / dequant stubs (the input transform stays in float), with ``fuse_model``."""

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool | None = None,
    ) -> None:
        blocks = [
            QuantizableBasicConv2d,
            QuantizableInceptionA,
            QuantizableInceptionB,
            QuantizableInceptionC,
            QuantizableInceptionD,
            QuantizableInceptionE,
            QuantizableInceptionAux,
        ]
        super().__init__(
            num_classes=num_classes,
            aux_logits=aux_logits,
            transform_input=transform_input,
            inception_blocks=blocks,
            init_weights=init_weights,
        )
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor):
        x, aux = self._forward(self.quant(self._transform_input(x)))
        return self.eager_outputs(self.dequant(x), aux)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv + bn + relu in every basic convolution."""
        for m in self.modules():
            if type(m) is QuantizableBasicConv2d:
                m.fuse_model(is_qat)


class Inception_V3_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized Inception v3 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "inception_v3_google_fbgemm-71447a44",
        27161264,
        Inception_V3_Weights.IMAGENET1K_V1,
        crop_size=299,
        resize_size=342,
        min_size=(75, 75),
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


@handle_legacy_interface(_legacy(Inception_V3_QuantizedWeights, Inception_V3_Weights))
def inception_v3(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableInception3:
    """Quantizable Inception v3 (``N x 3 x 299 x 299`` inputs); with ``weights`` the
    auxiliary head is dropped unless ``aux_logits=True`` is passed."""
    enum = Inception_V3_QuantizedWeights if quantize else Inception_V3_Weights
    weights = enum.verify(weights)
    original_aux_logits = kwargs.get("aux_logits", False)
    if weights is not None:
        kwargs.setdefault("transform_input", True)
        _ovewrite_named_param(kwargs, "aux_logits", True)
    backend = _builder_kwargs(weights, kwargs)
    model = QuantizableInception3(**kwargs)
    if weights is not None and quantize and not original_aux_logits:
        # the quantized checkpoint was saved without the auxiliary head
        model.aux_logits, model.AuxLogits = False, None
    model = _quantizable_builder(model, weights, progress, quantize, backend)
    if weights is not None and not original_aux_logits:
        model.aux_logits, model.AuxLogits = False, None
    return model
