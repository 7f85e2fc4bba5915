"""PyTorch twins of ember.vision.models building blocks for ``test_models_zoo.py``: small
modules with torchvision's module names, written from torchvision's model code."""

from __future__ import annotations

import math

import torch
import torch.nn as tnn
import torch.nn.functional as TF


def _seq(*mods) -> tnn.Sequential:
    return tnn.Sequential(*mods)


class TFire(tnn.Module):
    def __init__(self, cin, sq, e1, e3):
        super().__init__()
        self.squeeze = tnn.Conv2d(cin, sq, 1)
        self.expand1x1 = tnn.Conv2d(sq, e1, 1)
        self.expand3x3 = tnn.Conv2d(sq, e3, 3, padding=1)

    def forward(self, x):
        x = TF.relu(self.squeeze(x))
        return torch.cat([TF.relu(self.expand1x1(x)), TF.relu(self.expand3x3(x))], 1)


class TSqueezeNet11(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        pool = dict(kernel_size=3, stride=2, ceil_mode=True)
        self.features = _seq(
            tnn.Conv2d(3, 64, 3, stride=2), tnn.ReLU(), tnn.MaxPool2d(**pool),
            TFire(64, 16, 64, 64), TFire(128, 16, 64, 64), tnn.MaxPool2d(**pool),
            TFire(128, 32, 128, 128), TFire(256, 32, 128, 128), tnn.MaxPool2d(**pool),
            TFire(256, 48, 192, 192), TFire(384, 48, 192, 192),
            TFire(384, 64, 256, 256), TFire(512, 64, 256, 256),
        )  # fmt: skip
        self.classifier = _seq(tnn.Dropout(0.0), tnn.Conv2d(512, num_classes, 1), tnn.ReLU())

    def forward(self, x):
        return self.classifier(self.features(x)).mean((2, 3))


def _bn_relu_conv(cin, cout, k=1, s=1, p=0, groups=1, relu=True):
    mods = [tnn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), tnn.BatchNorm2d(cout)]
    return mods + [tnn.ReLU()] if relu else mods


class TShuffleUnit(tnn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride, bf = stride, oup // 2
        self.branch1 = _seq()
        if stride > 1:
            self.branch1 = _seq(
                *_bn_relu_conv(inp, inp, 3, stride, 1, groups=inp, relu=False),
                *_bn_relu_conv(inp, bf),
            )
        self.branch2 = _seq(
            *_bn_relu_conv(inp if stride > 1 else bf, bf),
            *_bn_relu_conv(bf, bf, 3, stride, 1, groups=bf, relu=False),
            *_bn_relu_conv(bf, bf),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        n, c, h, w = out.shape  # channel shuffle, 2 groups
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class TMnasUnit(tnn.Module):
    def __init__(self, cin, cout, k, stride, t):
        super().__init__()
        mid = cin * t
        self.res = cin == cout and stride == 1
        self.layers = _seq(
            *_bn_relu_conv(cin, mid),
            *_bn_relu_conv(mid, mid, k, stride, k // 2, groups=mid),
            *_bn_relu_conv(mid, cout, relu=False),
        )

    def forward(self, x):
        return self.layers(x) + x if self.res else self.layers(x)


class TSE(tnn.Module):
    def __init__(self, c, sq):
        super().__init__()
        self.fc1, self.fc2 = tnn.Conv2d(c, sq, 1), tnn.Conv2d(sq, c, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc2(TF.relu(self.fc1(x.mean((2, 3), keepdim=True))))) * x


class TRegNetBlock(tnn.Module):
    def __init__(self, wi, wo, stride, gw, se_ratio):
        super().__init__()
        self.proj = _seq(*_bn_relu_conv(wi, wo, 1, stride, relu=False))
        f = {
            "a": _seq(*_bn_relu_conv(wi, wo)),
            "b": _seq(*_bn_relu_conv(wo, wo, 3, stride, 1, wo // gw)),
        }
        f |= {
            "se": TSE(wo, int(round(se_ratio * wi))),
            "c": _seq(*_bn_relu_conv(wo, wo, relu=False)),
        }
        self.f = _seq(*f.values())
        for i, name in enumerate(f):  # torchvision's key names: f.a, f.b, f.se, f.c
            self.f._modules[name] = self.f._modules.pop(str(i))

    def forward(self, x):
        return TF.relu(self.proj(x) + self.f(x))


class TDenseBlock(tnn.Module):
    def __init__(self, layers, cin, bn_size, growth):
        super().__init__()
        for i in range(layers):
            c = cin + i * growth
            layer = tnn.Module()
            layer.norm1, layer.conv1 = (
                tnn.BatchNorm2d(c),
                tnn.Conv2d(c, bn_size * growth, 1, bias=False),
            )
            layer.norm2 = tnn.BatchNorm2d(bn_size * growth)
            layer.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x):
        feats = [x]
        for layer in self.children():
            h = layer.conv1(TF.relu(layer.norm1(torch.cat(feats, 1))))
            feats.append(layer.conv2(TF.relu(layer.norm2(h))))
        return torch.cat(feats, 1)


class TInceptionE(tnn.Module):
    def __init__(self, c):
        super().__init__()

        def basic(cin, cout, **kw):
            m = tnn.Module()
            m.conv, m.bn = tnn.Conv2d(cin, cout, bias=False, **kw), tnn.BatchNorm2d(cout, eps=1e-3)
            return m

        row, col = (
            dict(kernel_size=(1, 3), padding=(0, 1)),
            dict(kernel_size=(3, 1), padding=(1, 0)),
        )
        self.branch1x1 = basic(c, 320, kernel_size=1)
        self.branch3x3_1, self.branch3x3_2a = basic(c, 384, kernel_size=1), basic(384, 384, **row)
        self.branch3x3_2b = basic(384, 384, **col)
        self.branch3x3dbl_1 = basic(c, 448, kernel_size=1)
        self.branch3x3dbl_2 = basic(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = basic(384, 384, **row), basic(384, 384, **col)
        self.branch_pool = basic(c, 192, kernel_size=1)

    def forward(self, x):
        def f(m, h):
            return TF.relu(m.bn(m.conv(h)))

        b3 = f(self.branch3x3_1, x)
        b3 = torch.cat([f(self.branch3x3_2a, b3), f(self.branch3x3_2b, b3)], 1)
        bd = f(self.branch3x3dbl_2, f(self.branch3x3dbl_1, x))
        bd = torch.cat([f(self.branch3x3dbl_3a, bd), f(self.branch3x3dbl_3b, bd)], 1)
        bp = f(self.branch_pool, TF.avg_pool2d(x, 3, 1, 1))
        return torch.cat([f(self.branch1x1, x), b3, bd, bp], 1)


def _torch_block_params(depth, w_0, w_a, w_m):
    """The quantised widths computed with torch float32 tensors (torchvision's arithmetic)."""
    widths = torch.arange(depth) * w_a + w_0
    cap = torch.round(torch.log(widths / w_0) / math.log(w_m))
    bw = (torch.round(torch.divide(w_0 * torch.pow(w_m, cap), 8)) * 8).int().tolist()
    starts = [i for i in range(depth) if i == 0 or bw[i] != bw[i - 1]] + [depth]
    return [bw[i] for i in starts[:-1]], [b - a for a, b in zip(starts, starts[1:])]


class TWindowAttention(tnn.Module):
    """Swin's (shifted) window attention with relative position bias on (B, H, W, C)."""

    def __init__(self, dim, window, shift, heads):
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv, self.proj = tnn.Linear(dim, 3 * dim), tnn.Linear(dim, dim)
        self.relative_position_bias_table = tnn.Parameter(
            0.02 * torch.randn((2 * window - 1) ** 2, heads)
        )
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy, dx = ys[:, None] - ys[None, :] + window - 1, xs[:, None] - xs[None, :] + window - 1
        self.register_buffer("relative_position_index", (dy * (2 * window - 1) + dx).flatten())

    def forward(self, x):
        b, h, w, c = x.shape
        ws, n = self.window, self.window**2
        ph, pw = -h % ws, -w % ws
        x = TF.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        s = self.shift if ws < hp else 0  # square maps only
        region = torch.zeros(hp, wp)
        if s:
            x = torch.roll(x, (-s, -s), (1, 2))
            cuts = [0, hp - ws, hp - s, hp]
            for i in range(3):
                for j in range(3):
                    region[cuts[i] : cuts[i + 1], cuts[j] : cuts[j + 1]] = 3 * i + j
        win = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        reg = region.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, n)
        q, k, v = (
            self.qkv(win).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        )
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1)
        attn = (q / math.sqrt(c // self.heads)) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)
        mask = (reg[:, None, :] != reg[:, :, None]).float() * -100.0  # (nW, n, n)
        attn = attn.view(b, -1, self.heads, n, n) + mask[None, :, None]
        out = (attn.view(-1, self.heads, n, n).softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
        out = self.proj(out).view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, hp, wp, c)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        return out[:, :h, :w]


class TSwinBlock(tnn.Module):
    def __init__(self, dim, heads, window, shift):
        super().__init__()
        self.norm1 = tnn.LayerNorm(dim)
        self.attn = TWindowAttention(dim, window, shift, heads)
        self.norm2 = tnn.LayerNorm(dim)
        self.mlp = tnn.Sequential(tnn.Linear(dim, 4 * dim), tnn.GELU(), tnn.Dropout(0.0))
        self.mlp.append(tnn.Linear(4 * dim, dim))
        self.mlp.append(tnn.Dropout(0.0))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TPatchMerging(tnn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction, self.norm = tnn.Linear(4 * dim, 2 * dim, bias=False), tnn.LayerNorm(4 * dim)

    def forward(self, x):
        x = TF.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        cells = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(cells, -1)))


class TSwin(tnn.Module):
    """A two-stage Swin: 4x4 patches, ``embed`` channels, window ``window``."""

    def __init__(self, embed, depths, heads, window, num_classes):
        super().__init__()
        stem = tnn.Sequential(tnn.Conv2d(3, embed, 4, 4), tnn.Identity(), tnn.LayerNorm(embed))
        layers = [stem]
        for i, (d, h) in enumerate(zip(depths, heads)):
            dim = embed * 2**i
            layers.append(
                tnn.Sequential(
                    *[TSwinBlock(dim, h, window, (j % 2) * (window // 2)) for j in range(d)]
                )
            )
            if i < len(depths) - 1:
                layers.append(TPatchMerging(dim))
        self.features = tnn.Sequential(*layers)
        self.norm = tnn.LayerNorm(embed * 2 ** (len(depths) - 1))
        self.head = tnn.Linear(embed * 2 ** (len(depths) - 1), num_classes)

    def forward(self, x):
        x = self.features[0][0](x).permute(0, 2, 3, 1)
        x = self.features[0][2](x)
        for layer in self.features[1:]:
            x = layer(x)
        return self.head(self.norm(x).mean((1, 2)))


def _cbr(cin, cout, k=1, pad=0, dil=1):
    return [
        tnn.Conv2d(cin, cout, k, padding=pad, dilation=dil, bias=False),
        tnn.BatchNorm2d(cout),
        tnn.ReLU(),
    ]


class TASPP(tnn.Module):
    def __init__(self, cin, rates, cout=256):
        super().__init__()
        convs = [tnn.Sequential(*_cbr(cin, cout))]
        convs += [tnn.Sequential(*_cbr(cin, cout, 3, r, r)) for r in rates]
        convs.append(tnn.Sequential(tnn.AdaptiveAvgPool2d(1), *_cbr(cin, cout)))
        self.convs = tnn.ModuleList(convs)
        self.project = tnn.Sequential(*_cbr(len(convs) * cout, cout), tnn.Dropout(0.5))

    def forward(self, x):
        outs = [c(x) for c in self.convs[:-1]]
        pooled = self.convs[-1](x)
        outs.append(TF.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, 1))


def t_deeplab_head(cin, num_classes, rates):
    return tnn.Sequential(TASPP(cin, rates), *_cbr(256, 256, 3, 1), tnn.Conv2d(256, num_classes, 1))


class TLRASPPHead(tnn.Module):
    def __init__(self, low, high, num_classes, inter):
        super().__init__()
        self.cbr = tnn.Sequential(*_cbr(high, inter))
        self.scale = tnn.Sequential(
            tnn.AdaptiveAvgPool2d(1), tnn.Conv2d(high, inter, 1, bias=False), tnn.Sigmoid()
        )
        self.low_classifier = tnn.Conv2d(low, num_classes, 1)
        self.high_classifier = tnn.Conv2d(inter, num_classes, 1)

    def forward(self, feats):
        low, high = feats
        x = TF.interpolate(self.cbr(high) * self.scale(high), size=low.shape[-2:], mode="bilinear")
        return self.low_classifier(low) + self.high_classifier(x)
