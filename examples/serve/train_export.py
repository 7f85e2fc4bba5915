"""Train the digits CNN, export it, and write a request body for ``ember serve``.

    python examples/serve/train_export.py OUT_DIR      # ~10-20 s on 2 cores

writes ``OUT_DIR/digits.ep`` (ember.export.save, batch dimension dynamic) and
``OUT_DIR/request.json`` (three held-out images as ``{"inputs": [...]}``) and prints their
labels. Then serve and query it (examples/serve/README.md)::

    ember serve OUT_DIR/digits.ep --name digits --port 8000
    curl -s -X POST localhost:8000/digits/predict -H 'content-type: application/json' \\
         -d @OUT_DIR/request.json
"""

from __future__ import annotations

import json
import os
import sys

import ember
from ember.export import Dim
from ember.nn import functional as F
from ember.utils.data import DataLoader
from ember.utils.data.datasets import Digits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from digits_cnn import ConvNet  # noqa: E402  (examples/digits_cnn.py)


def main(out_dir: str, epochs: int = 4) -> dict:
    ember.manual_seed(0)
    train, test = Digits(train=True), Digits(train=False)
    model = ConvNet()
    opt = ember.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(train, batch_size=64, shuffle=True):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with ember.no_grad():
        acc = (model(test.data).argmax(1) == test.targets).float().mean().item()
    ep = ember.export.export(
        model, (test.data[:2],), dynamic_shapes=({0: Dim("batch", min=1, max=1024)},)
    )
    os.makedirs(out_dir, exist_ok=True)
    ember.export.save(ep, os.path.join(out_dir, "digits.ep"))
    with open(os.path.join(out_dir, "request.json"), "w") as f:
        json.dump({"inputs": test.data[:3].numpy().round(4).tolist()}, f)
    labels = test.targets[:3].tolist()
    print(f"test accuracy {acc:.3f}; request.json holds digits {labels}")
    return {"accuracy": acc, "labels": labels}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "out_dir",
        nargs="?",
        default="runs/serve_digits",
        metavar="OUT_DIR",
        help="where digits.ep and request.json go (default: runs/serve_digits)",
    )
    main(p.parse_args().out_dir)
