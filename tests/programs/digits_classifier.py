"""A digits classifier with class-balanced sampling, a scheduler and an evaluation report.

Idioms: a custom Dataset over NumPy arrays, ``WeightedRandomSampler`` from inverse class
frequencies, ``random_split`` with a seeded generator, ``StepLR``, ``model.eval()`` +
``torch.inference_mode()``, accuracy from ``argmax``, a confusion matrix from ``bincount``,
``topk`` for top-2 accuracy, ``sort`` of per-class accuracy, and a tqdm-free progress print.
"""

import argparse

import numpy as np

import ember as torch
import ember.nn as nn
from ember.utils.data import DataLoader, Dataset, WeightedRandomSampler, random_split


class Digits(Dataset):
    def __init__(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        self.x = torch.from_numpy((d.data / 16.0).astype(np.float32))
        self.y = torch.from_numpy(d.target.astype(np.int64))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    full = Digits()
    train, test = random_split(full, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
    labels = full.y[torch.tensor(train.indices)]
    counts = torch.bincount(labels, minlength=10)
    weights = (1.0 / counts.float())[labels]
    sampler = WeightedRandomSampler(weights, num_samples=len(train), replacement=True)
    loader = DataLoader(train, batch_size=64, sampler=sampler)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        sched.step()
        print(f"epoch {epoch} loss {total / len(train):.4f} lr {sched.get_last_lr()[0]:.3f}")
    model.eval()
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.stack([test[i][1] for i in range(len(test))])
    with torch.inference_mode():
        logits = model(xs)
    pred = logits.argmax(dim=1)
    acc = (pred == ys).float().mean()
    top2 = (logits.topk(2, dim=1).indices == ys.unsqueeze(1)).any(dim=1).float().mean()
    confusion = torch.bincount(ys * 10 + pred, minlength=100).reshape(10, 10)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1)
    worst = per_class.sort().indices[:3].tolist()
    print(f"test accuracy {acc:.3f} top-2 {top2:.3f} worst classes {worst}")
    print("done")


if __name__ == "__main__":
    main()
