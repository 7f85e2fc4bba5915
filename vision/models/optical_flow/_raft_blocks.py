"""RAFT's building blocks (torchvision's names): the residual / bottleneck blocks and the
encoder built from them, the motion encoder, the convolutional GRUs, the flow head, the update
block and the upsampling-mask predictor. :mod:`.raft` assembles them and re-exports them."""

from __future__ import annotations

from collections.abc import Callable

import ember
from ember import nn
from ember.tensor import Tensor

from .._ops import Conv2dNormActivation

__all__ = [
    "BottleneckBlock",
    "ConvGRU",
    "FeatureEncoder",
    "FlowHead",
    "MaskPredictor",
    "MotionEncoder",
    "RecurrentBlock",
    "ResidualBlock",
    "UpdateBlock",
]


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU (with biases: the norms are frozen in later training stages)
    plus a 1x1 projection when the stride or ``always_project`` asks, then a ReLU."""

    def __init__(self, in_channels, out_channels, *, norm_layer, stride=1, always_project=False):
        super().__init__()
        self.convnormrelu1 = Conv2dNormActivation(
            in_channels, out_channels, norm_layer=norm_layer, kernel_size=3, stride=stride,
            bias=True,
        )  # fmt: skip
        self.convnormrelu2 = Conv2dNormActivation(
            out_channels, out_channels, norm_layer=norm_layer, kernel_size=3, bias=True
        )
        if stride == 1 and not always_project:
            self.downsample = nn.Identity()
        else:
            self.downsample = Conv2dNormActivation(
                in_channels, out_channels, norm_layer=norm_layer, kernel_size=1, stride=stride,
                bias=True, activation_layer=None,
            )  # fmt: skip
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.convnormrelu2(self.convnormrelu1(x))
        return self.relu(self.downsample(x) + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 conv-norm-ReLU at a quarter of the width, residual, ReLU."""

    def __init__(self, in_channels, out_channels, *, norm_layer, stride=1):
        super().__init__()
        mid = out_channels // 4
        self.convnormrelu1 = Conv2dNormActivation(
            in_channels, mid, norm_layer=norm_layer, kernel_size=1, bias=True
        )
        self.convnormrelu2 = Conv2dNormActivation(
            mid, mid, norm_layer=norm_layer, kernel_size=3, stride=stride, bias=True
        )
        self.convnormrelu3 = Conv2dNormActivation(
            mid, out_channels, norm_layer=norm_layer, kernel_size=1, bias=True
        )
        self.relu = nn.ReLU(inplace=True)
        if stride == 1:
            self.downsample = nn.Identity()
        else:
            self.downsample = Conv2dNormActivation(
                in_channels, out_channels, norm_layer=norm_layer, kernel_size=1, stride=stride,
                bias=True, activation_layer=None,
            )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        y = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
        return self.relu(self.downsample(x) + y)


class FeatureEncoder(nn.Module):
    """A 7x7 stem and three pairs of blocks that downsample by 8 (``strides``), then a 1x1
    conv to ``layers[4]`` channels: RAFT's feature and context encoders."""

    def __init__(
        self,
        *,
        block: type = ResidualBlock,
        layers: tuple[int, ...] = (64, 64, 96, 128, 256),
        strides: tuple[int, ...] = (2, 1, 2, 2),
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
    ):
        super().__init__()
        if len(layers) != 5:
            raise ValueError(f"The expected number of layers is 5, instead got {len(layers)}")
        self.convnormrelu = Conv2dNormActivation(
            3, layers[0], norm_layer=norm_layer, kernel_size=7, stride=strides[0], bias=True
        )
        for i in range(1, 4):
            first = block(layers[i - 1], layers[i], norm_layer=norm_layer, stride=strides[i])
            second = block(layers[i], layers[i], norm_layer=norm_layer, stride=1)
            setattr(self, f"layer{i}", nn.Sequential(first, second))
        self.conv = nn.Conv2d(layers[3], layers[4], kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                if m.weight is not None:
                    nn.init.constant_(m.weight, 1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        self.output_dim = layers[-1]
        self.downsample_factor = 2 ** sum(s == 2 for s in strides)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convnormrelu(x)
        return self.conv(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    """Encode the correlation features and the current flow; the flow is appended to the
    output (``out_channels`` in total)."""

    def __init__(
        self, *, in_channels_corr, corr_layers=(256, 192), flow_layers=(128, 64), out_channels=128
    ):
        super().__init__()
        if len(flow_layers) != 2:
            raise ValueError(
                f"The expected number of flow_layers is 2, instead got {len(flow_layers)}"
            )
        if len(corr_layers) not in (1, 2):
            raise ValueError(
                f"The number of corr_layers should be 1 or 2, instead got {len(corr_layers)}"
            )

        def conv(cin, cout, k):
            return Conv2dNormActivation(cin, cout, norm_layer=None, kernel_size=k)

        self.convcorr1 = conv(in_channels_corr, corr_layers[0], 1)
        self.convcorr2 = (
            conv(corr_layers[0], corr_layers[1], 3) if len(corr_layers) == 2 else nn.Identity()
        )
        self.convflow1 = conv(2, flow_layers[0], 7)
        self.convflow2 = conv(flow_layers[0], flow_layers[1], 3)
        self.conv = conv(corr_layers[-1] + flow_layers[-1], out_channels - 2, 3)
        self.out_channels = out_channels

    def forward(self, flow: Tensor, corr_features: Tensor) -> Tensor:
        corr = self.convcorr2(self.convcorr1(corr_features))
        motion = self.convflow2(self.convflow1(flow))
        return ember.cat([self.conv(ember.cat([corr, motion], dim=1)), flow], dim=1)


class ConvGRU(nn.Module):
    """A GRU cell whose gates are convolutions over ``cat(h, x)``."""

    def __init__(self, *, input_size, hidden_size, kernel_size, padding):
        super().__init__()
        cin = hidden_size + input_size
        self.convz = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)
        self.convr = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)
        self.convq = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        hx = ember.cat([h, x], dim=1)
        z = ember.sigmoid(self.convz(hx))
        r = ember.sigmoid(self.convr(hx))
        q = ember.tanh(self.convq(ember.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class RecurrentBlock(nn.Module):
    """One or two :class:`ConvGRU` in sequence (raft_large: a 1x5 then a 5x1 one)."""

    def __init__(
        self, *, input_size, hidden_size, kernel_size=((1, 5), (5, 1)), padding=((0, 2), (2, 0))
    ):
        super().__init__()
        if len(kernel_size) != len(padding):
            raise ValueError(
                f"kernel_size should have the same length as padding, instead got "
                f"len(kernel_size) = {len(kernel_size)} and len(padding) = {len(padding)}"
            )
        if len(kernel_size) not in (1, 2):
            raise ValueError(f"kernel_size should either 1 or 2, instead got {len(kernel_size)}")
        self.convgru1 = ConvGRU(
            input_size=input_size, hidden_size=hidden_size, kernel_size=kernel_size[0],
            padding=padding[0],
        )  # fmt: skip
        if len(kernel_size) == 2:
            self.convgru2 = ConvGRU(
                input_size=input_size, hidden_size=hidden_size, kernel_size=kernel_size[1],
                padding=padding[1],
            )  # fmt: skip
        else:
            self.convgru2 = None
        self.hidden_size = hidden_size

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        h = self.convgru1(h, x)
        return h if self.convgru2 is None else self.convgru2(h, x)


class FlowHead(nn.Module):
    """Two 3x3 convs from the hidden state to the 2-channel flow delta."""

    def __init__(self, *, in_channels, hidden_size):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_size, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_size, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """Motion encoder -> recurrent block (with the context) -> flow head."""

    def __init__(self, *, motion_encoder, recurrent_block, flow_head):
        super().__init__()
        self.motion_encoder = motion_encoder
        self.recurrent_block = recurrent_block
        self.flow_head = flow_head
        self.hidden_state_size = recurrent_block.hidden_size

    def forward(self, hidden_state, context, corr_features, flow):
        x = ember.cat([context, self.motion_encoder(flow, corr_features)], dim=1)
        hidden_state = self.recurrent_block(hidden_state, x)
        return hidden_state, self.flow_head(hidden_state)


class MaskPredictor(nn.Module):
    """The convex-upsampling weights (``8 * 8 * 9`` channels) from the hidden state, scaled
    by ``multiplier`` (0.25 in the original code, to damp this branch's gradients)."""

    def __init__(self, *, in_channels, hidden_size, multiplier=0.25):
        super().__init__()
        self.convrelu = Conv2dNormActivation(
            in_channels, hidden_size, norm_layer=None, kernel_size=3
        )
        self.conv = nn.Conv2d(hidden_size, 8 * 8 * 9, 1, padding=0)
        self.multiplier = multiplier

    def forward(self, x: Tensor) -> Tensor:
        return self.multiplier * self.conv(self.convrelu(x))
