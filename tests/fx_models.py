"""Model definitions written once for both frameworks (``T`` is ``torch`` or ``ember``).

Used by tests/test_fx*.py to compare ember.fx graphs with torch.fx graphs of the same code.
"""


def build(T):
    nn, F = T.nn, T.nn.functional

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
            self.head = nn.Linear(16, 4)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            h = F.relu(self.body(x))
            return F.log_softmax(self.head(self.drop(h)), dim=-1)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(8 * 2 * 2, 5)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(T.relu(self.conv2(x)))
            x = x.view(x.size(0), -1)
            return self.fc(x)

    class Block(nn.Module):  # a pre-norm transformer block, attention written out
        def __init__(self, d=16, h=2):
            super().__init__()
            self.h = h
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            causal = T.triu(T.full((8, 8), float("-inf")), diagonal=1)
            self.register_buffer("neg_mask", causal)

        def forward(self, x):
            B, L, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
            q = q.view(B, L, self.h, D // self.h).transpose(1, 2)
            k = k.view(B, L, self.h, D // self.h).transpose(1, 2)
            v = v.view(B, L, self.h, D // self.h).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / (D // self.h) ** 0.5)
            att = att + self.neg_mask
            att = F.softmax(att, dim=-1)
            y = T.matmul(att, v).transpose(1, 2).reshape(B, L, D)
            x = x + self.proj(y)
            return x + self.ff(self.ln2(x))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            skip = x if self.down is None else self.down(x)
            return F.relu(out + skip)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.layers = nn.ModuleList([BasicBlock(4, 4, 1), BasicBlock(4, 8, 2)])
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = self.stem(x)
            for layer in self.layers:
                x = layer(x)
            x = T.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)

    class Consts(nn.Module):  # buffers, plain tensor attributes, constants, getitem, methods
        def __init__(self):
            super().__init__()
            self.register_buffer("offset", T.arange(6.0))
            self.scale = T.tensor(0.5)
            self.w = nn.Parameter(T.ones(6))

        def forward(self, x):
            n = x.size(0)
            y = (x.view(-1) + self.offset.repeat(n)) * self.scale
            y = y.view(n, x.shape[1]) * self.w - 1
            a, b = y.split(3, dim=1)
            first = y[:, 0].unsqueeze(1)
            return T.cat([a * 2, b.sum(dim=1, keepdim=True), first], dim=1), y.mean()

    return {
        "mlp": (MLP, lambda: (T.randn(3, 8),)),
        "cnn": (CNN, lambda: (T.randn(2, 1, 8, 8),)),
        "transformer_block": (Block, lambda: (T.randn(2, 8, 16),)),
        "resnet": (ResNet, lambda: (T.randn(2, 3, 8, 8),)),
        "consts": (Consts, lambda: (T.randn(4, 6),)),
    }
