"""PyTorch models written as TorchScript archives by tests/test_jit_load_torchscript.py
(imported only where torch is installed)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3), nn.GELU())

    def forward(self, x):
        return F.log_softmax(torch.tanh(self.net(x)), dim=-1)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, bias=False)
        self.avg = nn.AvgPool2d(2, 1)
        self.ap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.c1(x))))
        x = self.avg(F.leaky_relu(self.c2(x), 0.1))
        return self.fc(self.drop(torch.flatten(self.ap(x), 1)))


class Block(nn.Module):
    """A ResNet basic block with a downsampling shortcut."""

    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Ctrl(nn.Module):
    """Control flow: a loop over a ModuleList, over a list attribute and over range, if/elif."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(6, 6) for _ in range(3)])
        self.register_buffer("offset", torch.arange(6.0))
        self.scales: list[float] = [0.5, 2.0]
        self.k = 3

    def forward(self, x, mode: int = 0):
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        for sc in self.scales:
            x = x * sc
        acc = torch.zeros_like(x)
        for i in range(self.k):
            acc = acc + x.pow(i + 1) / (i + 1)
        if mode == 1:
            acc = acc - self.offset
        elif x.sum() > 0:
            acc = acc + self.offset.mean()
        out = torch.cat([acc, x[:, :2]], dim=1)
        return out.view(x.size(0), -1).transpose(0, 1).contiguous().t()


def scripted_function():
    @torch.jit.script
    def fn(x: torch.Tensor, y: torch.Tensor, n: int = 2) -> torch.Tensor:
        z = x
        for _ in range(n):
            z = torch.where(z > 0, z * y, z.clamp(min=-1.0))
        return z.sum(dim=0, keepdim=True) + x.max()

    return fn


def write_all(folder) -> dict:
    """Write every archive into ``folder``; returns ``{name: (path, torch module, inputs)}``."""
    torch.manual_seed(0)
    out = {}

    def save(name, module, inputs, trace=False, extra=None):
        if trace:
            sm = torch.jit.trace(module, inputs, check_trace=False)
        else:
            sm = torch.jit.script(module)
        path = str(folder / f"{name}.pt")
        torch.jit.save(sm, path, _extra_files=extra or {})
        out[name] = (path, torch.jit.load(path), inputs)

    x4 = (torch.randn(2, 4),)
    save("mlp_script", MLP(), x4, extra={"meta.json": '{"classes": 3}'})
    save("mlp_trace", MLP(), x4, trace=True)
    img = (torch.randn(2, 3, 16, 16),)
    save("cnn_script", CNN(), img)
    save("cnn_trace", CNN().eval(), img, trace=True)
    blk = (torch.randn(2, 4, 8, 8),)
    save("resblock_script", Block(), blk)
    save("resblock_trace", Block().eval(), blk, trace=True)
    save("lstm_trace", nn.LSTM(4, 5, num_layers=2, batch_first=True), (torch.randn(2, 3, 4),), True)
    save("gru_trace", nn.GRU(4, 5, bidirectional=True), (torch.randn(3, 2, 4),), True)
    tel = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True).eval()
    src = (torch.randn(2, 3, 8),)
    save("transformer_script", tel, src)
    save("transformer_trace", tel, src, trace=True)
    save("ctrl_script", Ctrl(), (torch.randn(3, 6),))
    fn = scripted_function()
    path = str(folder / "function.pt")
    torch.jit.save(fn, path)
    out["function"] = (path, torch.jit.load(path), (torch.randn(3, 4), torch.randn(3, 4), 2))
    return out
