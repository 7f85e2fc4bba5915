"""Models for tests/test_jit_script.py, written once in PyTorch's spelling.

The test imports this source twice: with ``torch`` bound to ember (``ember.jit.script``) and
to torch (``torch.jit.script``), so both compilers see the same code.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class IfTensor(nn.Module):
    """if/else on a tensor value (ember.cond)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:
            y = torch.relu(h) + 1
        else:
            y = -h * 2
        return y


class EarlyReturn(nn.Module):
    """Early returns under tensor conditions, nested."""

    def forward(self, x):
        if x.mean() > 0:
            return x * 2
        y = x - 1
        if x.max() > 0.5:
            if x.min() < -2.0:
                return y + 10
            return y
        return y * 3


class ShapeIf(nn.Module):
    """A condition on a shape stays in the graph (other batch sizes take the other path)."""

    def forward(self, x):
        if x.size(0) > 2:
            x = x[:2]
        elif x.dim() == 2 and x.shape[1] == 3:
            x = x * 10
        return x.sum(0)


class AttrConst(nn.Module):
    """Conditions on module attributes are decided while compiling."""

    def __init__(self, scale: float, use_act: bool):
        super().__init__()
        self.scale = scale
        self.use_act = use_act
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x) * self.scale
        if self.use_act:
            y = torch.tanh(y)
        return y


class Loops(nn.Module):
    """for over zip(ModuleList, ModuleList) and range(constant); a list of tensors."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.norms = nn.ModuleList([nn.LayerNorm(4) for _ in range(3)])

    def forward(self, x):
        outs: list[torch.Tensor] = []
        for layer, norm in zip(self.layers, self.norms):
            x = norm(layer(x))
            outs.append(x)
        for i in range(2):
            x = x + outs[i]
        return torch.stack(outs, 0).sum(0) + x


class WhileData(nn.Module):
    """while on tensor data (ember.while_loop), carrying a tensor and an int."""

    def forward(self, x):
        n = 0
        while x.norm() > 1.0:
            x = x / 2
            n += 1
        return x, n


class RangeData(nn.Module):
    """for over range(x.size(0)): the trip count is known only when the model runs."""

    def forward(self, x):
        acc = torch.zeros_like(x[0])
        for i in range(x.size(0)):
            acc = acc + x[i] * (i + 1)
        return acc


class Containers(nn.Module):
    """Dicts and tuples of tensors, annotations, an Optional input."""

    def forward(self, x, bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"a": x + 1}
        if bias is not None:
            out["b"] = x + bias
        else:
            out["b"] = x
        pair = (x * 2, x * 3)
        out["c"] = pair[0] + pair[1]
        return out


def helper(x: torch.Tensor, k: int) -> torch.Tensor:
    if x.sum() > 0:
        return x * k
    return x - k


class Calls(nn.Module):
    """A user submodule with control flow, a method and a free function."""

    def __init__(self):
        super().__init__()
        self.inner = IfTensor()

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) * 2

    def forward(self, x):
        return helper(self.inner(x), 3) + self.scale(x)


class Breaks(nn.Module):
    """break and continue under tensor conditions inside an unrolled loop."""

    def forward(self, x):
        for i in range(4):
            if x.sum() > 10:
                break
            if x.sum() < -10:
                continue
            x = x * 2 + i
        return x


class BoolOps(nn.Module):
    """and / or / not and a conditional expression on tensors."""

    def forward(self, x):
        y = x * 2 if x.sum() > 0 else x - 1
        if x.mean() > 0 and x.max() > 1.0:
            y = y + 1
        if not (x.min() > -1.0) or x.size(0) == 3:
            y = y * 3
        return y


class Decorated(nn.Module):
    """@ignore / @unused / @export."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    @torch.jit.ignore
    def python_only(self, x: torch.Tensor) -> torch.Tensor:
        return x + 100

    @torch.jit.unused
    def legacy(self, x: torch.Tensor) -> torch.Tensor:
        return x.numpy()

    @torch.jit.export
    def double(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2

    def forward(self, x):
        if x.sum() > 1000:
            return self.legacy(x)
        return self.double(x) + self.python_only(x)


class ConvNet(nn.Module):
    """ember's own modules inside a scripted model: their input checks compile too."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 4)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        if h.mean() > 0.1:
            h = h * 2
        return self.fc(h)
