"""MViT's layers (torchvision.models.video.mvit's names): the block configuration, the token
pooling, MViT v2's decomposed relative positions, multiscale attention and block, and the
class-token/position encoding. :mod:`.mvit` builds the model from them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import ember
import ember.nn.functional as F
from ember import nn
from ember.tensor import Tensor

from ...ops.misc import MLP
from ...ops.stochastic_depth import StochasticDepth

__all__ = [
    "MSBlockConfig",
    "Pool",
    "MultiscaleAttention",
    "MultiscaleBlock",
    "PositionalEncoding",
]


@dataclass
class MSBlockConfig:
    """One multiscale block: heads, channels in and out, the query and key/value pooling
    kernels and strides (``[]`` or all ones: no pooling)."""

    num_heads: int
    input_channels: int
    output_channels: int
    kernel_q: list[int]
    kernel_kv: list[int]
    stride_q: list[int]
    stride_kv: list[int]


def _prod(s: Sequence[int]) -> int:
    return math.prod(s)


class Pool(nn.Module):
    """Pool the token grid of ``(B, N, C)`` or ``(B, heads, N, C)`` tokens (a class token
    first, then ``T*H*W`` grid tokens): ``pool`` runs on the grid, the class token is kept,
    then ``norm`` (over channels). Returns the tokens and the new ``(T, H, W)``."""

    def __init__(
        self,
        pool: nn.Module,
        norm: nn.Module | None,
        activation: nn.Module | None = None,
        norm_before_pool: bool = False,
    ) -> None:
        super().__init__()
        self.pool = pool
        layers = [m for m in (norm, activation) if m is not None]
        self.norm_act = nn.Sequential(*layers) if layers else None
        self.norm_before_pool = norm_before_pool

    def forward(self, x: Tensor, thw: tuple[int, int, int]) -> tuple[Tensor, tuple[int, ...]]:
        # torchvision's steps, in its order (they are the nodes feature extraction names)
        x, tensor_dim = _unsqueeze(x, 4, 1)
        cls_tok, x = ember.tensor_split(x, (1,), dim=2)
        x = x.transpose(2, 3)
        b, n, c = x.shape[:3]
        x = x.reshape((b * n, c) + tuple(thw)).contiguous()
        if self.norm_before_pool and self.norm_act is not None:
            x = self.norm_act(x)
        x = self.pool(x)
        t, h, w = x.shape[2:]
        x = x.reshape(b, n, c, -1).transpose(2, 3)
        x = ember.cat((cls_tok, x), dim=2)
        if not self.norm_before_pool and self.norm_act is not None:
            x = self.norm_act(x)
        return _squeeze(x, 4, 1, tensor_dim), (t, h, w)


def _unsqueeze(x: Tensor, target_dim: int, expand_dim: int) -> tuple[Tensor, int]:
    """``x`` with an axis at ``expand_dim`` if it has one dimension fewer than
    ``target_dim``, and its original number of dimensions."""
    tensor_dim = x.dim()
    if tensor_dim == target_dim - 1:
        x = x.unsqueeze(expand_dim)
    elif tensor_dim != target_dim:
        raise ValueError(f"Unsupported input dimension {tuple(x.shape)}")
    return x, tensor_dim


def _squeeze(x: Tensor, target_dim: int, expand_dim: int, tensor_dim: int) -> Tensor:
    """Undo :func:`_unsqueeze`."""
    return x.squeeze(expand_dim) if tensor_dim == target_dim - 1 else x


def _add_shortcut(x: Tensor, shortcut: Tensor, residual_with_cls_embed: bool) -> Tensor:
    """MViT v2's pooled-query residual (the class token's too, or not)."""
    if residual_with_cls_embed:
        return x + shortcut
    return x + F.pad(shortcut[:, :, 1:], (0, 0, 1, 0))


def _interpolate(embedding: Tensor, d: int) -> Tensor:
    """Resize a ``(L, C)`` table to ``(d, C)`` (linear), for grids other than the built one."""
    if embedding.shape[0] == d:
        return embedding
    resized = F.interpolate(embedding.permute(1, 0).unsqueeze(0), size=d, mode="linear")
    return resized.squeeze(0).permute(1, 0)


def _rel_index(q: int, k: int) -> np.ndarray:
    """``(q, k)`` indices into a relative-position table of ``2 * max(q, k) - 1`` rows: the
    offset between query ``i`` and key ``j`` on a common scale (the coarser grid is stretched
    to the finer), shifted to start at 0. Computed in float32 and truncated, as torchvision."""
    q_ratio, k_ratio = np.float32(max(k / q, 1.0)), np.float32(max(q / k, 1.0))
    qi = np.arange(q, dtype=np.float32)[:, None] * q_ratio
    kj = (np.arange(k, dtype=np.float32)[None, :] + np.float32(1.0 - k)) * k_ratio
    return (qi - kj).astype(np.int64)


def _add_rel_pos(
    attn: Tensor,
    q: Tensor,
    q_thw: Sequence[int],
    k_thw: Sequence[int],
    rel_pos_h: Tensor,
    rel_pos_w: Tensor,
    rel_pos_t: Tensor,
) -> Tensor:
    """MViT v2's decomposed relative positions: add ``q . R_t + q . R_h + q . R_w`` (each
    ``R`` the table row of the query-key offset along one axis) to the grid-to-grid scores
    of ``attn`` ``(B, heads, 1 + Lq, 1 + Lk)`` (the class token's row and column untouched)."""
    (qt, qh, qw), (kt, kh, kw) = q_thw, k_thw
    tables = []
    for table, a, b in ((rel_pos_t, qt, kt), (rel_pos_h, qh, kh), (rel_pos_w, qw, kw)):
        table = _interpolate(table, 2 * max(a, b) - 1)
        tables.append(table[ember.tensor(_rel_index(a, b))].transpose(1, 2))  # (a, dim, b)
    rt, rh, rw = tables
    bsz, heads, _, dim = q.shape
    r_q = q[:, :, 1:].reshape(bsz, heads, qt, qh, qw, dim)
    # each product batches over its own query axis: (..., qh, qw, d) @ (qh, d, kh) etc.
    rel_h = r_q.matmul(rh)  # (B, heads, qt, qh, qw, kh)
    rel_w = r_q.unsqueeze(-2).matmul(rw).squeeze(-2)  # (B, heads, qt, qh, qw, kw)
    rel_t = r_q.permute(0, 1, 3, 4, 2, 5).unsqueeze(-2).matmul(rt).squeeze(-2)
    rel_t = rel_t.permute(0, 1, 4, 2, 3, 5)  # (B, heads, qt, qh, qw, kt)
    rel = (
        rel_t[..., :, None, None] + rel_h[..., None, :, None] + rel_w[..., None, None, :]
    ).reshape(bsz, heads, qt * qh * qw, kt * kh * kw)
    return attn + F.pad(rel, (1, 0, 1, 0))


# recorded as single calls by ember.fx (feature extraction), as torchvision's are
ember.fx.wrap("_unsqueeze")
ember.fx.wrap("_squeeze")
ember.fx.wrap("_add_rel_pos")
ember.fx.wrap("_add_shortcut")


def _pool_conv(head_dim: int, kernel: Sequence[int], stride: Sequence[int]) -> nn.Conv3d:
    padding = [k // 2 for k in kernel]
    return nn.Conv3d(
        head_dim, head_dim, tuple(kernel), tuple(stride), tuple(padding), groups=head_dim,
        bias=False,
    )  # fmt: skip


class MultiscaleAttention(nn.Module):
    """Multi-head attention over ``(B, 1 + T*H*W, C)`` tokens with pooled queries (stride
    ``stride_q``: the output grid) and pooled keys/values (``stride_kv``)."""

    def __init__(
        self,
        input_size: list[int],
        embed_dim: int,
        output_dim: int,
        num_heads: int,
        kernel_q: list[int],
        kernel_kv: list[int],
        stride_q: list[int],
        stride_kv: list[int],
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        dropout: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.embed_dim, self.output_dim, self.num_heads = embed_dim, output_dim, num_heads
        self.head_dim = output_dim // num_heads
        self.scaler = 1.0 / math.sqrt(self.head_dim)
        self.residual_pool = residual_pool
        self.residual_with_cls_embed = residual_with_cls_embed
        self.qkv = nn.Linear(embed_dim, 3 * output_dim)
        layers: list[nn.Module] = [nn.Linear(output_dim, output_dim)]
        if dropout > 0.0:
            layers.append(nn.Dropout(dropout, inplace=True))
        self.project = nn.Sequential(*layers)

        hd = self.head_dim
        self.pool_q: Pool | None = None
        if _prod(kernel_q) > 1 or _prod(stride_q) > 1:
            self.pool_q = Pool(_pool_conv(hd, kernel_q, stride_q), norm_layer(hd))
        self.pool_k: Pool | None = None
        self.pool_v: Pool | None = None
        if _prod(kernel_kv) > 1 or _prod(stride_kv) > 1:
            self.pool_k = Pool(_pool_conv(hd, kernel_kv, stride_kv), norm_layer(hd))
            self.pool_v = Pool(_pool_conv(hd, kernel_kv, stride_kv), norm_layer(hd))

        self.rel_pos_h: nn.Parameter | None = None
        self.rel_pos_w: nn.Parameter | None = None
        self.rel_pos_t: nn.Parameter | None = None
        if rel_pos_embed:
            size = max(input_size[1:])
            q_size = size // stride_q[1] if len(stride_q) > 0 else size
            kv_size = size // stride_kv[1] if len(stride_kv) > 0 else size
            spatial_dim = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(ember.zeros(spatial_dim, hd))
            self.rel_pos_w = nn.Parameter(ember.zeros(spatial_dim, hd))
            self.rel_pos_t = nn.Parameter(ember.zeros(2 * input_size[0] - 1, hd))
            for p in (self.rel_pos_h, self.rel_pos_w, self.rel_pos_t):
                nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: Tensor, thw: tuple[int, int, int]) -> tuple[Tensor, tuple[int, ...]]:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(1, 3)
        q, k, v = qkv.unbind(dim=2)  # each (B, heads, N, head_dim)
        k_thw = thw
        if self.pool_k is not None:
            k, k_thw = self.pool_k(k, thw)
        if self.pool_v is not None:
            v = self.pool_v(v, thw)[0]
        if self.pool_q is not None:
            q, thw = self.pool_q(q, thw)

        attn = ember.matmul(self.scaler * q, k.transpose(2, 3))
        if self.rel_pos_h is not None and self.rel_pos_w is not None and self.rel_pos_t is not None:
            attn = _add_rel_pos(attn, q, thw, k_thw, self.rel_pos_h, self.rel_pos_w, self.rel_pos_t)
        attn = attn.softmax(dim=-1)
        x = ember.matmul(attn, v)
        if self.residual_pool:
            x = _add_shortcut(x, q, self.residual_with_cls_embed)
        x = x.transpose(1, 2).reshape(b, -1, self.output_dim)
        return self.project(x), thw


class MultiscaleBlock(nn.Module):
    """Pre-norm block: pooling attention and an MLP, each residual behind stochastic depth;
    the shortcut is max-pooled to the queries' grid and projected when the width changes
    (after the attention in v2, ``proj_after_attn``; after the MLP's norm in v1)."""

    def __init__(
        self,
        input_size: list[int],
        cnf: MSBlockConfig,
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        proj_after_attn: bool,
        dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.proj_after_attn = proj_after_attn
        self.pool_skip: Pool | None = None
        if _prod(cnf.stride_q) > 1:
            kernel_skip = [s + 1 if s > 1 else s for s in cnf.stride_q]
            padding_skip = [k // 2 for k in kernel_skip]
            self.pool_skip = Pool(
                nn.MaxPool3d(kernel_skip, stride=cnf.stride_q, padding=padding_skip), None
            )
        attn_dim = cnf.output_channels if proj_after_attn else cnf.input_channels
        self.norm1 = norm_layer(cnf.input_channels)
        self.norm2 = norm_layer(attn_dim)
        self.needs_transposal = isinstance(self.norm1, nn.BatchNorm1d)
        self.attn = MultiscaleAttention(
            input_size, cnf.input_channels, attn_dim, cnf.num_heads,
            kernel_q=cnf.kernel_q, kernel_kv=cnf.kernel_kv, stride_q=cnf.stride_q,
            stride_kv=cnf.stride_kv, rel_pos_embed=rel_pos_embed, residual_pool=residual_pool,
            residual_with_cls_embed=residual_with_cls_embed, dropout=dropout,
            norm_layer=norm_layer,
        )  # fmt: skip
        self.mlp = MLP(
            attn_dim, [4 * attn_dim, cnf.output_channels], activation_layer=nn.GELU,
            dropout=dropout, inplace=None,
        )  # fmt: skip
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.project: nn.Module | None = None
        if cnf.input_channels != cnf.output_channels:
            self.project = nn.Linear(cnf.input_channels, cnf.output_channels)

    def _norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        return norm(x.transpose(1, 2)).transpose(1, 2) if self.needs_transposal else norm(x)

    def forward(self, x: Tensor, thw: tuple[int, int, int]) -> tuple[Tensor, tuple[int, ...]]:
        x_norm1 = self._norm(self.norm1, x)
        x_attn, thw_new = self.attn(x_norm1, thw)
        if self.project is not None and self.proj_after_attn:
            x = self.project(x_norm1)
        x_skip = x if self.pool_skip is None else self.pool_skip(x, thw)[0]
        x = x_skip + self.stochastic_depth(x_attn)
        x_norm2 = self._norm(self.norm2, x)
        if self.project is not None and not self.proj_after_attn:
            x = self.project(x_norm2)
        return x + self.stochastic_depth(self.mlp(x_norm2)), thw_new


class PositionalEncoding(nn.Module):
    """Prepend the class token; in v1 add learned (separable space + time) absolute
    positions, in v2 (``rel_pos_embed``) nothing more."""

    def __init__(
        self,
        embed_size: int,
        spatial_size: tuple[int, int],
        temporal_size: int,
        rel_pos_embed: bool,
    ) -> None:
        super().__init__()
        self.spatial_size = tuple(spatial_size)
        self.temporal_size = temporal_size
        self.class_token = nn.Parameter(ember.zeros(embed_size))
        self.spatial_pos: nn.Parameter | None = None
        self.temporal_pos: nn.Parameter | None = None
        self.class_pos: nn.Parameter | None = None
        if not rel_pos_embed:
            hw = self.spatial_size[0] * self.spatial_size[1]
            self.spatial_pos = nn.Parameter(ember.zeros(hw, embed_size))
            self.temporal_pos = nn.Parameter(ember.zeros(temporal_size, embed_size))
            self.class_pos = nn.Parameter(ember.zeros(embed_size))

    def forward(self, x: Tensor) -> Tensor:
        cls = self.class_token.expand(x.size(0), -1).unsqueeze(1)
        x = ember.cat((cls, x), dim=1)
        if (
            self.spatial_pos is not None
            and self.temporal_pos is not None
            and self.class_pos is not None
        ):  # noqa: E501
            # token t*H*W + s gets temporal_pos[t] + spatial_pos[s] (torchvision's op order)
            hw_size, embed_size = self.spatial_pos.shape
            pos = ember.repeat_interleave(self.temporal_pos, hw_size, dim=0)
            spatial = self.spatial_pos.unsqueeze(0).expand(self.temporal_size, -1, -1)
            pos.add_(spatial.reshape(-1, embed_size))
            pos = ember.cat((self.class_pos.unsqueeze(0), pos), dim=0).unsqueeze(0)
            x.add_(pos)
        return x
