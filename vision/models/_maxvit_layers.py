"""MaxViT's building blocks (torchvision's names): the MBConv block, relative-position
multi-head attention, the window partition / departition and the window- or grid-partitioned
attention layer. :mod:`.maxvit` assembles them and re-exports them."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import ember
import ember.nn.functional as F
from ember import nn
from ember.tensor import Tensor

from ._ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

__all__ = [
    "MBConv",
    "PartitionAttentionLayer",
    "RelativePositionalMultiHeadAttention",
    "SwapAxes",
    "WindowDepartition",
    "WindowPartition",
]


def _conv_out(size: tuple[int, int], kernel: int = 3, stride: int = 2, padding: int = 1):
    return tuple((s - kernel + 2 * padding) // stride + 1 for s in size)


def _relative_position_index(height: int, width: int) -> Tensor:
    """``(HW, HW)`` index into a ``(2H-1)(2W-1)``-row bias table: row-major offset of
    ``(dy + H - 1, dx + W - 1)`` for every pair of positions in a window."""
    ys, xs = ember.meshgrid(ember.arange(height), ember.arange(width), indexing="ij")
    coords = ember.stack([ys.flatten(), xs.flatten()])  # 2, HW
    rel = coords[:, :, None] - coords[:, None, :]  # 2, HW, HW
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with a pre-norm: ``proj(x) + drop(conv_c(se(conv_b(conv_a(
    pre_norm(x))))))``; the shortcut average-pools and projects when the shape changes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion_ratio: float,
        squeeze_ratio: float,
        stride: int,
        activation_layer: Callable[..., nn.Module],
        norm_layer: Callable[..., nn.Module],
        p_stochastic_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if stride != 1 or in_channels != out_channels:
            proj = [nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)]
            if stride == 2:
                proj.insert(0, nn.AvgPool2d(kernel_size=3, stride=stride, padding=1))
            self.proj = nn.Sequential(*proj)
        else:
            self.proj = nn.Identity()
        mid = int(out_channels * expansion_ratio)
        sqz = int(out_channels * squeeze_ratio)
        self.stochastic_depth = (
            StochasticDepth(p_stochastic_dropout, mode="row")
            if p_stochastic_dropout
            else nn.Identity()
        )
        layers = OrderedDict()
        layers["pre_norm"] = norm_layer(in_channels)
        layers["conv_a"] = Conv2dNormActivation(
            in_channels, mid, kernel_size=1, stride=1, padding=0,
            activation_layer=activation_layer, norm_layer=norm_layer, inplace=None,
        )  # fmt: skip
        layers["conv_b"] = Conv2dNormActivation(
            mid, mid, kernel_size=3, stride=stride, padding=1, groups=mid,
            activation_layer=activation_layer, norm_layer=norm_layer, inplace=None,
        )  # fmt: skip
        layers["squeeze_excitation"] = SqueezeExcitation(mid, sqz, activation=nn.SiLU)
        layers["conv_c"] = nn.Conv2d(mid, out_channels, kernel_size=1, bias=True)
        self.layers = nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) + self.stochastic_depth(self.layers(x))


class RelativePositionalMultiHeadAttention(nn.Module):
    """Multi-head self-attention over ``(B, G, P, D)`` (G groups of P tokens) with a learned
    relative position bias per head. As torchvision, the logits scale by ``feat_dim ** -0.5``
    (the full width, not the head width): the pretrained weights expect it."""

    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        if feat_dim % head_dim != 0:
            raise ValueError(f"feat_dim: {feat_dim} must be divisible by head_dim: {head_dim}")
        self.n_heads = feat_dim // head_dim
        self.head_dim = head_dim
        self.size = int(math.sqrt(max_seq_len))
        if self.size * self.size != max_seq_len:
            raise ValueError(f"max_seq_len must be a square (P * P tokens), got {max_seq_len}")
        self.max_seq_len = max_seq_len
        self.to_qkv = nn.Linear(feat_dim, self.n_heads * self.head_dim * 3)
        self.scale_factor = feat_dim**-0.5
        self.merge = nn.Linear(self.head_dim * self.n_heads, feat_dim)
        self.relative_position_bias_table = nn.Parameter(
            ember.empty(((2 * self.size - 1) ** 2, self.n_heads))
        )
        self.register_buffer(
            "relative_position_index", _relative_position_index(self.size, self.size)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def get_relative_positional_bias(self) -> Tensor:
        """``(1, heads, P, P)``: the table gathered at every pair's relative offset."""
        idx = self.relative_position_index.view(-1)
        bias = self.relative_position_bias_table[idx].view(self.max_seq_len, self.max_seq_len, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: Tensor) -> Tensor:
        b, g, p, d = x.shape
        h, dh = self.n_heads, self.head_dim
        qkv = self.to_qkv(x).reshape(b * g, p, 3, h, dh).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=self.get_relative_positional_bias(),
            scale=self.scale_factor,
        )  # fmt: skip
        return self.merge(out.permute(0, 2, 1, 3).reshape(b, g, p, d))


class SwapAxes(nn.Module):
    """``x.swapaxes(a, b)`` as a module."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor) -> Tensor:
        return ember.swapaxes(x, self.a, self.b)


class WindowPartition(nn.Module):
    """``(B, C, H, W)`` -> ``(B, H/p * W/p, p*p, C)``: non-overlapping ``p x p`` windows."""

    def forward(self, x: Tensor, p: int) -> Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p, c)


class WindowDepartition(nn.Module):
    """The inverse of :class:`WindowPartition`, given the window grid ``(hp, wp)``."""

    def forward(self, x: Tensor, p: int, h_partitions: int, w_partitions: int) -> Tensor:
        b, _, _, c = x.shape
        x = x.reshape(b, h_partitions, w_partitions, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, h_partitions * p, w_partitions * p)


class PartitionAttentionLayer(nn.Module):
    """Pre-norm attention + MLP inside windows (``partition_type="window"``) or across a
    dilated grid (``"grid"``: partition into ``grid/P`` windows, then swap axes so each token
    attends to the ``P x P`` tokens at the same in-window position)."""

    def __init__(
        self,
        in_channels: int,
        head_dim: int,
        partition_size: int,
        partition_type: str,
        grid_size: tuple[int, int],
        mlp_ratio: int,
        activation_layer: Callable[..., nn.Module],
        norm_layer: Callable[..., nn.Module],
        attention_dropout: float,
        mlp_dropout: float,
        p_stochastic_dropout: float,
    ) -> None:
        super().__init__()
        if partition_type not in ("grid", "window"):
            raise ValueError("partition_type must be either 'grid' or 'window'")
        self.n_heads = in_channels // head_dim
        self.head_dim = head_dim
        self.n_partitions = grid_size[0] // partition_size
        self.partition_type = partition_type
        self.grid_size = tuple(grid_size)
        if partition_type == "window":
            self.p, self.g = partition_size, self.n_partitions
        else:
            self.p, self.g = self.n_partitions, partition_size
        if self.p == 0 or grid_size[0] % self.p or grid_size[1] % self.p:
            raise ValueError(
                f"Grid size must be divisible by partition size. Got grid size of "
                f"{tuple(grid_size)} and partition size of {partition_size}"
            )
        self.partition_op = WindowPartition()
        self.departition_op = WindowDepartition()
        swap = partition_type == "grid"
        self.partition_swap = SwapAxes(-2, -3) if swap else nn.Identity()
        self.departition_swap = SwapAxes(-2, -3) if swap else nn.Identity()
        self.attn_layer = nn.Sequential(
            norm_layer(in_channels),
            # P * P tokens in both cases: the grid variant attends after the axis swap
            RelativePositionalMultiHeadAttention(in_channels, head_dim, partition_size**2),
            nn.Dropout(attention_dropout),
        )
        self.mlp_layer = nn.Sequential(
            nn.LayerNorm(in_channels),
            nn.Linear(in_channels, in_channels * mlp_ratio),
            activation_layer(),
            nn.Linear(in_channels * mlp_ratio, in_channels),
            nn.Dropout(mlp_dropout),
        )
        self.stochastic_dropout = StochasticDepth(p_stochastic_dropout, mode="row")

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and tuple(x.shape[-2:]) != self.grid_size:  # not a fx Proxy
            raise ValueError(
                f"PartitionAttentionLayer was built for a {self.grid_size} grid, got an input "
                f"of spatial size {tuple(x.shape[-2:])} (MaxVit's input_size fixes it)"
            )
        gh, gw = self.grid_size[0] // self.p, self.grid_size[1] // self.p
        x = self.partition_swap(self.partition_op(x, self.p))
        x = x + self.stochastic_dropout(self.attn_layer(x))
        x = x + self.stochastic_dropout(self.mlp_layer(x))
        return self.departition_op(self.departition_swap(x), self.p, gh, gw)
