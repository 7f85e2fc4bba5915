"""Train a small CNN classifier, then save it two ways for deployment without its source.

    python examples/export/train.py OUT_DIR

writes ``OUT_DIR/model.ember_export`` (ember.export.save of ember.export.export) and
``OUT_DIR/model.ember_jit`` (ember.jit.save of ember.jit.trace), plus ``OUT_DIR/inputs.npy``
and the eager model's predictions ``OUT_DIR/expected.npy``. ``predict.py`` loads either
file in a fresh process that has no access to the ``Net`` class below.
"""

from __future__ import annotations

import os

import numpy as np

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.export import Dim


class Net(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool -> Linear, on 1x8x8 images, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(h.view(x.size(0), -1))


def make_data(n: int, seed: int = 0):
    """Images whose class is the quadrant holding a bright blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, 0, r * 4 : (r + 1) * 4, col * 4 : (col + 1) * 4] += 1.0
    return ember.from_numpy(x), ember.from_numpy(y.astype(np.int64))


def main(out_dir: str) -> None:
    ember.manual_seed(0)
    model = Net()
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    x, y = make_data(512)
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    example = (x[:2],)
    ep = ember.export.export(model, example, dynamic_shapes={"x": {0: Dim("batch", max=1024)}})
    ember.export.save(ep, os.path.join(out_dir, "model.ember_export"))
    traced = ember.jit.trace(model, example)
    ember.jit.save(traced, os.path.join(out_dir, "model.ember_jit"))
    test_x, test_y = make_data(64, seed=1)
    with ember.no_grad():
        logits = model(test_x)
    acc = (logits.argmax(1) == test_y).float().mean().item()
    np.save(os.path.join(out_dir, "inputs.npy"), test_x.numpy())
    np.save(os.path.join(out_dir, "expected.npy"), logits.numpy())
    print(f"final loss {loss.item():.4f}, test accuracy {acc:.3f}; saved to {out_dir}")


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "out_dir",
        nargs="?",
        default="exported",
        metavar="OUT_DIR",
        help="where the two files go (default: exported)",
    )
    main(p.parse_args().out_dir)
