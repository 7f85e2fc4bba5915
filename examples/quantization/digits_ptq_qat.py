"""Post-training static quantization and quantization-aware training of a digits CNN.

Trains a small CNN on scikit-learn's 8x8 digits in float32, then makes two int8 models of it
with ``ember.ao.quantization`` (torch's eager-mode workflow) and prints, for each, test
accuracy, size on disk and inference latency::

    python examples/quantization/digits_ptq_qat.py          # ~1 minute on 2 cores

1. static PTQ: fuse conv+relu / linear+relu, attach observers (``prepare``), calibrate on
   training batches, ``convert`` -> int8 Conv2d / Linear running integer GEMMs;
2. QAT: from the same float weights, ``prepare_qat`` (fake-quantized weights and activations),
   fine-tune two epochs, ``convert``.
"""

from __future__ import annotations

import argparse
import copy

import _measure

import ember
from ember import nn
from ember.ao import quantization as tq
from ember.nn import functional as F
from ember.utils.data import DataLoader, Subset, random_split
from ember.utils.data.datasets import Digits


class QuantCNN(nn.Module):
    """(N, 1, 8, 8) -> conv-relu -> conv-relu -> max-pool -> linear-relu -> linear, with the
    QuantStub / DeQuantStub that mark where int8 starts and ends."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * channels * 16, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(self.quant(x))))))
        return self.dequant(self.fc2(self.relu3(self.fc1(self.flatten(x)))))


FUSE = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


def data(batch_size: int = 32):
    ds = Digits(train=None)
    train, test = random_split(
        range(len(ds)), [0.8, 0.2], generator=ember.Generator().manual_seed(1234)
    )
    return (
        DataLoader(Subset(ds, train.indices), batch_size=batch_size, shuffle=True),
        DataLoader(Subset(ds, test.indices), batch_size=512),
    )


def accuracy(model, loader) -> float:
    model.eval()
    correct = count = 0
    with ember.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum().item())
            count += y.shape[0]
    return correct / count


def train(model, loader, epochs: int, lr: float) -> None:
    opt = ember.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()


def static_ptq(float_model, loader, backend: str = "x86", batches: int = 20):
    m = tq.fuse_modules(copy.deepcopy(float_model).eval(), FUSE)
    m.qconfig = tq.get_default_qconfig(backend)
    tq.prepare(m, inplace=True)
    with ember.no_grad():
        for i, (x, _) in enumerate(loader):
            if i == batches:
                break
            m(x)
    return tq.convert(m)


def qat(float_model, loader, epochs: int = 2, lr: float = 2e-4, backend: str = "x86"):
    m = tq.fuse_modules_qat(copy.deepcopy(float_model).train(), FUSE)
    m.qconfig = tq.get_default_qat_qconfig(backend)
    tq.prepare_qat(m, inplace=True)
    train(m, loader, epochs, lr)
    m.apply(tq.disable_observer)
    return tq.convert(m.eval())


def report(models: dict, test_loader) -> list[tuple]:
    x64 = next(iter(test_loader))[0][:64]
    rows = []
    for name, m in models.items():
        m.eval()
        rows.append(
            (
                name,
                accuracy(m, test_loader),
                _measure.size_on_disk(m),
                _measure.latency_ms(m, x64[:1], 50),
                _measure.latency_ms(m, x64, 20),
            )
        )
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="float training epochs")
    p.add_argument("--qat-epochs", type=int, default=2, help="QAT fine-tuning epochs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.qat_epochs < 0:
        p.error(
            f"--epochs must be >= 1 and --qat-epochs >= 0, got {args.epochs} and {args.qat_epochs}"
        )
    ember.manual_seed(args.seed)
    train_loader, test_loader = data()
    model = QuantCNN()
    train(model, train_loader, args.epochs, 3e-3)
    ptq = static_ptq(model, train_loader)
    qat_model = qat(model, train_loader, args.qat_epochs)
    rows = report({"float32": model, "int8 static PTQ": ptq, "int8 QAT": qat_model}, test_loader)
    print(_measure.HEADER)
    for r in rows:
        print(_measure.row(*r))
    print(ptq)
    return {r[0]: r[1:] for r in rows}


if __name__ == "__main__":
    main()
