"""MaxViT (Tu et al., 2022) with torchvision's module names, so its ImageNet checkpoint loads.

Each stage repeats a layer of three parts on a ``(B, C, H, W)`` map: an MBConv block (the first
of a stage halves the resolution), attention inside non-overlapping ``P x P`` windows ("block"
attention), and attention across a sparse ``P x P`` grid that spans the whole map ("grid"
attention). Both attentions share one partition: the grid variant swaps the window and
in-window axes. Every stage input must therefore divide by ``partition_size``; with the stem
and four stride-2 stages that means ``input_size`` divisible by ``32 * partition_size`` in
practice (224 with ``partition_size=7``), checked at construction with a clear error.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from ember import nn
from ember.tensor import Tensor

from ..transforms.functional import InterpolationMode
from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ._maxvit_layers import (  # noqa: F401  (torchvision keeps the blocks in this module)
    MBConv,
    PartitionAttentionLayer,
    RelativePositionalMultiHeadAttention,
    SwapAxes,
    WindowDepartition,
    WindowPartition,
    _conv_out,
)
from ._ops import Conv2dNormActivation

__all__ = ["MaxVit", "MaxVit_T_Weights", "maxvit_t"]


class MaxVitLayer(nn.Module):
    """MBConv, then window attention, then grid attention (keys ``layers.MBconv``,
    ``layers.window_attention``, ``layers.grid_attention``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        squeeze_ratio: float,
        expansion_ratio: float,
        stride: int,
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
        head_dim: int,
        mlp_ratio: int,
        mlp_dropout: float,
        attention_dropout: float,
        p_stochastic_dropout: float,
        partition_size: int,
        grid_size: tuple[int, int],
    ) -> None:
        super().__init__()
        layers = OrderedDict()
        layers["MBconv"] = MBConv(
            in_channels, out_channels, expansion_ratio, squeeze_ratio, stride,
            activation_layer, norm_layer, p_stochastic_dropout,
        )  # fmt: skip
        for kind in ("window", "grid"):
            layers[f"{kind}_attention"] = PartitionAttentionLayer(
                out_channels, head_dim, partition_size, kind, grid_size, mlp_ratio,
                activation_layer, nn.LayerNorm, attention_dropout, mlp_dropout,
                p_stochastic_dropout,
            )  # fmt: skip
        self.layers = nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MaxVitBlock(nn.Module):
    """One stage: ``n_layers`` :class:`MaxVitLayer`, the first with stride 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        squeeze_ratio: float,
        expansion_ratio: float,
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
        head_dim: int,
        mlp_ratio: int,
        mlp_dropout: float,
        attention_dropout: float,
        partition_size: int,
        input_grid_size: tuple[int, int],
        n_layers: int,
        p_stochastic: list[float],
    ) -> None:
        super().__init__()
        if len(p_stochastic) != n_layers:
            raise ValueError(
                f"p_stochastic must have length n_layers={n_layers}, got "
                f"p_stochastic={p_stochastic}."
            )
        self.grid_size = _conv_out(tuple(input_grid_size))
        kw = dict(
            squeeze_ratio=squeeze_ratio, expansion_ratio=expansion_ratio, norm_layer=norm_layer,
            activation_layer=activation_layer, head_dim=head_dim, mlp_ratio=mlp_ratio,
            mlp_dropout=mlp_dropout, attention_dropout=attention_dropout,
            partition_size=partition_size, grid_size=self.grid_size,
        )  # fmt: skip
        self.layers = nn.ModuleList()
        for i, p in enumerate(p_stochastic):  # the first layer of a stage has stride 2
            cin, stride = (in_channels, 2) if i == 0 else (out_channels, 1)
            self.layers.append(
                MaxVitLayer(cin, out_channels, stride=stride, p_stochastic_dropout=p, **kw)
            )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MaxVit(nn.Module):
    """MaxViT: a two-conv stem (stride 2), stages of :class:`MaxVitBlock` and a
    ``pool -> LayerNorm -> Linear -> Tanh -> Linear`` classifier. ``input_size`` is fixed at
    construction (the attention grids depend on it); ``norm_layer=None`` means
    ``BatchNorm2d(eps=1e-3, momentum=0.01)`` (torchvision's current default; its
    pretrained weights were trained with 0.99)."""

    def __init__(
        self,
        input_size: tuple[int, int],
        stem_channels: int,
        partition_size: int,
        block_channels: list[int],
        block_layers: list[int],
        head_dim: int,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module] | None = None,
        activation_layer: Callable[..., nn.Module] = nn.GELU,
        squeeze_ratio: float = 0.25,
        expansion_ratio: float = 4,
        mlp_ratio: int = 4,
        mlp_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
        if len(block_channels) != len(block_layers):
            raise ValueError(
                f"block_channels and block_layers need one entry per stage, got "
                f"{len(block_channels)} and {len(block_layers)}"
            )
        # every stage's input must split into whole partitions
        sizes, size = [], _conv_out(tuple(input_size))
        for _ in block_channels:
            size = _conv_out(size)
            sizes.append(size)
        for idx, s in enumerate(sizes):
            if s[0] % partition_size or s[1] % partition_size:
                raise ValueError(
                    f"Input size {s} of block {idx} is not divisible by partition size "
                    f"{partition_size}. Consider changing the partition size or the input "
                    f"size.\nCurrent configuration yields the following block input sizes: "
                    f"{sizes}."
                )
        self.input_size = tuple(input_size)
        self.stem = nn.Sequential(
            Conv2dNormActivation(
                3, stem_channels, 3, stride=2, norm_layer=norm_layer,
                activation_layer=activation_layer, bias=False, inplace=None,
            ),
            Conv2dNormActivation(
                stem_channels, stem_channels, 3, stride=1, norm_layer=None,
                activation_layer=None, bias=True,
            ),
        )  # fmt: skip
        grid = _conv_out(tuple(input_size))
        self.partition_size = partition_size
        n = sum(block_layers)
        # stochastic depth grows linearly from 0 to stochastic_depth_prob over all layers
        probs = [stochastic_depth_prob * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        self.blocks = nn.ModuleList()
        ins = [stem_channels] + list(block_channels[:-1])
        start = 0
        kw = dict(
            squeeze_ratio=squeeze_ratio, expansion_ratio=expansion_ratio, norm_layer=norm_layer,
            activation_layer=activation_layer, head_dim=head_dim, mlp_ratio=mlp_ratio,
            mlp_dropout=mlp_dropout, attention_dropout=attention_dropout,
            partition_size=partition_size,
        )  # fmt: skip
        for cin, cout, layers in zip(ins, block_channels, block_layers):
            block = MaxVitBlock(
                cin, cout, input_grid_size=grid, n_layers=layers,
                p_stochastic=probs[start : start + layers], **kw,
            )  # fmt: skip
            self.blocks.append(block)
            grid = block.grid_size
            start += layers
        c = block_channels[-1]
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(c), nn.Linear(c, c), nn.Tanh(),
            nn.Linear(c, num_classes, bias=False),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        # checked on tensors only: under ember.fx x is a Proxy, and the traced graph keeps
        # torchvision's nodes (feature extraction names them as torchvision does)
        if isinstance(x, Tensor) and (x.ndim != 4 or tuple(x.shape[-2:]) != self.input_size):
            raise ValueError(
                f"MaxVit was built for input_size={self.input_size} and takes (N, 3, "
                f"{self.input_size[0]}, {self.input_size[1]}) images; got {tuple(x.shape)}"
            )
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x)


def _maxvit(
    stem_channels: int,
    block_channels: list[int],
    block_layers: list[int],
    stochastic_depth_prob: float,
    partition_size: int,
    head_dim: int,
    weights: WeightsEnum | None,
    progress: bool,
    **kwargs: Any,
) -> MaxVit:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
        _ovewrite_named_param(kwargs, "input_size", weights.meta["min_size"])
    input_size = kwargs.pop("input_size", (224, 224))
    model = MaxVit(
        input_size=input_size, stem_channels=stem_channels, partition_size=partition_size,
        block_channels=block_channels, block_layers=block_layers, head_dim=head_dim,
        stochastic_depth_prob=stochastic_depth_prob, **kwargs,
    )  # fmt: skip
    return load_weights(model, weights, progress)


class MaxVit_T_Weights(WeightsEnum):
    """Pretrained weights for :func:`maxvit_t` (torchvision's ImageNet-1k checkpoint; acc@1
    83.700, acc@5 96.722)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/maxvit_t-bc5ab103.pth",
        transforms=_imagenet_transforms(224, 224, InterpolationMode.BICUBIC),
        meta={
            "categories": None,
            "num_params": 30919624,
            "min_size": (224, 224),
            "recipe": "https://github.com/pytorch/vision/tree/main/references/classification#maxvit",
        },
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(MaxVit_T_Weights)
def maxvit_t(
    *, weights: MaxVit_T_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MaxVit:
    """MaxViT-T (stem 64, stages 64-128-256-512 with 2-2-5-2 layers, 7x7 partitions, 32-wide
    heads) at 224x224; ``kwargs`` go to :class:`MaxVit` (another ``input_size`` works when
    every stage's map, ``input_size / 4, / 8, / 16, / 32``, divides by ``partition_size``)."""
    weights = MaxVit_T_Weights.verify(weights)
    return _maxvit(64, [64, 128, 256, 512], [2, 2, 5, 2], 0.2, 7, 32, weights, progress, **kwargs)
