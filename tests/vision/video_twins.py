"""PyTorch references for tests/vision/test_video_models_2.py, written from the papers'
math with torch ops (not ember's code paths): an S3D separable Inception block as torch layers,
MViT's token pooling, v2 relative positions (einsum on every axis) and a whole multiscale block,
and the shifted 3-D window attention as ONE dense masked attention over the padded grid."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF


def torch_sep_inception(cin, b0, b1m, b1, b2m, b2, b3):
    def cba(i, o, k=1, s=1, p=0):
        return tnn.Sequential(
            tnn.Conv3d(i, o, k, s, p, bias=False), tnn.BatchNorm3d(o, 1e-3, 1e-3), tnn.ReLU()
        )

    def sep(i, o):
        return tnn.Sequential(
            cba(i, o, (1, 3, 3), 1, (0, 1, 1)), cba(o, o, (3, 1, 1), 1, (1, 0, 0))
        )

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.branch0 = cba(cin, b0)
            self.branch1 = tnn.Sequential(cba(cin, b1m), sep(b1m, b1))
            self.branch2 = tnn.Sequential(cba(cin, b2m), sep(b2m, b2))
            self.branch3 = tnn.Sequential(tnn.MaxPool3d(3, 1, 1), cba(cin, b3))

        def forward(self, x):
            return torch.cat(
                [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1
            )

    return Block()


def torch_pool(x, conv, norm, thw):
    """torch reference of MViT's Pool on ``(B, heads, 1 + L, d)``."""
    cls, grid = x[:, :, :1], x[:, :, 1:]
    b, n, _, c = grid.shape
    grid = grid.transpose(2, 3).reshape(b * n, c, *thw)
    grid = conv(grid)
    new_thw = tuple(grid.shape[2:])
    out = torch.cat([cls, grid.reshape(b, n, c, -1).transpose(2, 3)], dim=2)
    return (norm(out) if norm is not None else out), new_thw


def torch_rel_pos(attn, q, q_thw, k_thw, rh, rw, rt):
    """torch reference of MViT v2's relative positions, with einsum on every axis."""

    def table(r, a, b):
        qr, kr = max(b / a, 1.0), max(a / b, 1.0)
        dist = torch.arange(a)[:, None] * qr - (torch.arange(b)[None, :] + (1.0 - b)) * kr
        return r[dist.long()]

    (qt, qh, qw), (kt, kh, kw) = q_thw, k_thw
    b, n, _, d = q.shape
    r_q = q[:, :, 1:].reshape(b, n, qt, qh, qw, d)
    rel_t = torch.einsum("bythwc,tkc->bythwk", r_q, table(rt, qt, kt))
    rel_h = torch.einsum("bythwc,hkc->bythwk", r_q, table(rh, qh, kh))
    rel_w = torch.einsum("bythwc,wkc->bythwk", r_q, table(rw, qw, kw))
    rel = rel_t[..., :, None, None] + rel_h[..., None, :, None] + rel_w[..., None, None, :]
    attn = attn.clone()
    attn[:, :, 1:, 1:] += rel.reshape(b, n, qt * qh * qw, kt * kh * kw)
    return attn


def torch_mvit_block(p, x, thw, cnf, v2):
    """torch reference of one MultiscaleBlock with the parameters ``p`` (a state dict)."""

    def ln(t, key):
        return TF.layer_norm(t, t.shape[-1:], p[key + ".weight"], p[key + ".bias"], 1e-6)

    lin = lambda t, key: TF.linear(t, p[key + ".weight"], p[key + ".bias"])  # noqa: E731

    def conv(key, stride):
        w = p[key + ".pool.weight"]
        pad = [k // 2 for k in w.shape[2:]]
        return lambda t: TF.conv3d(t, w, None, stride, pad, 1, w.shape[0])

    b, n, _ = x.shape
    heads, width = cnf.num_heads, cnf.output_channels if v2 else cnf.input_channels
    xn = ln(x, "norm1")
    q, k, v = lin(xn, "attn.qkv").reshape(b, n, 3, heads, -1).transpose(1, 3).unbind(2)
    k, k_thw = torch_pool(
        k, conv("attn.pool_k", cnf.stride_kv), lambda t: ln(t, "attn.pool_k.norm_act.0"), thw
    )
    v, _ = torch_pool(
        v, conv("attn.pool_v", cnf.stride_kv), lambda t: ln(t, "attn.pool_v.norm_act.0"), thw
    )
    q, q_thw = torch_pool(
        q, conv("attn.pool_q", cnf.stride_q), lambda t: ln(t, "attn.pool_q.norm_act.0"), thw
    )
    attn = (q / math.sqrt(q.shape[-1])) @ k.transpose(2, 3)
    if v2:
        attn = torch_rel_pos(
            attn, q, q_thw, k_thw, p["attn.rel_pos_h"], p["attn.rel_pos_w"], p["attn.rel_pos_t"]
        )
    out = attn.softmax(-1) @ v
    if v2:  # residual pooling, the class token left out
        out = torch.cat([out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]], dim=2)
    out = lin(out.transpose(1, 2).reshape(b, -1, width), "attn.project.0")
    skip = lin(xn, "project") if v2 else x
    kernel = [s + 1 if s > 1 else s for s in cnf.stride_q]
    pool = lambda t: TF.max_pool3d(t, kernel, cnf.stride_q, [k // 2 for k in kernel])  # noqa: E731
    skip, _ = torch_pool(skip.unsqueeze(1), pool, None, thw)
    x = skip.squeeze(1) + out
    xn2 = ln(x, "norm2")
    mlp = lin(TF.gelu(lin(xn2, "mlp.0")), "mlp.3")
    return (lin(xn2, "project") if not v2 else x) + mlp, q_thw


def torch_dense_window_attention(
    x, qkv_w, qkv_b, proj_w, proj_b, table, index, window, shift, heads
):
    """torch reference of the shifted 3-D window attention as ONE dense attention over the
    padded, rolled grid: a token sees the tokens of its window (the others masked to -inf),
    plus the relative position bias and -100 between different pre-shift regions."""
    b, t, h, w, c = x.shape
    pads = [(wi - s % wi) % wi for wi, s in zip(window, (t, h, w))]
    xp = TF.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    size = xp.shape[1:4]
    xp = torch.roll(xp, [-s for s in shift], dims=(1, 2, 3))
    coords = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    win = coords // np.array(window)
    local = coords % np.array(window)
    # the pre-shift regions along each axis: [0, P - w), [P - w, P - s), [P - s, P)
    region = np.stack(
        [
            np.searchsorted([size[i] - window[i], size[i] - shift[i]], coords[:, i], "right")
            if shift[i]
            else np.zeros(len(coords), int)
            for i in range(3)
        ],
        -1,
    )
    same_win = (win[:, None] == win[None]).all(-1)
    flat = (local[:, 0] * window[1] + local[:, 1]) * window[2] + local[:, 2]
    bias = table[index[flat[:, None], flat[None, :]]].permute(2, 0, 1)  # heads, L, L
    bias = bias + torch.tensor(
        np.where((region[:, None] == region[None]).all(-1), 0.0, -100.0), dtype=torch.float32
    )
    bias = bias.masked_fill(torch.tensor(~same_win), float("-inf"))
    tok = xp.reshape(b, -1, c)
    q, k, v = (
        TF.linear(tok, qkv_w, qkv_b).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    )
    attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1) + bias
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, *size, c)
    out = torch.roll(TF.linear(out, proj_w, proj_b), list(shift), dims=(1, 2, 3))
    return out[:, :t, :h, :w]
