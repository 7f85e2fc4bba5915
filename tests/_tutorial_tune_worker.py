"""The Ray Tune trainable of tests/test_tutorial_idioms_6.py (the hyperparameter tuning
tutorial's ``train_cifar``), in a module that imports only ember so each trial's worker starts
quickly (the test module imports torch)."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import ember
import ember.nn.functional as F
from ember import nn
from ember.vision import datasets, transforms


class Net(nn.Module):
    """The tutorials' LeNet variant; ``l1`` wide, for ``channels`` x 32 x 32 (or 28 x 28) input."""

    def __init__(self, l1: int = 32, channels: int = 1, side: int = 4):
        super().__init__()
        self.conv1, self.pool = nn.Conv2d(channels, 6, 5), nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(16 * side * side, l1), nn.Linear(l1, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(ember.flatten(x, 1))))


class StandInCIFAR10(datasets.CIFAR10):
    """Made-up CIFAR-10 batches carry no real MD5s."""

    def _check_integrity(self) -> bool:
        return True


def cifar(root: str, train: bool) -> StandInCIFAR10:
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    return StandInCIFAR10(root=root, train=train, download=False, transform=tf)


def train_cifar(config: dict, data_dir: str | None = None) -> None:
    """Resume from Tune's checkpoint if any, split 80/20, train, report loss and accuracy."""
    from ray import tune
    from ray.tune import Checkpoint, get_checkpoint

    net = Net(config["l1"], channels=3, side=5)
    opt = ember.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)
    start_epoch, checkpoint = 0, get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = pickle.loads((Path(d) / "data.pkl").read_bytes())
            start_epoch = state["epoch"] + 1
            net.load_state_dict(state["net_state_dict"])
            opt.load_state_dict(state["optimizer_state_dict"])
    trainset = cifar(data_dir, True)
    n = int(len(trainset) * 0.8)
    train_subset, val_subset = ember.utils.data.random_split(trainset, [n, len(trainset) - n])
    bs, loss_fn = int(config["batch_size"]), nn.CrossEntropyLoss()
    for epoch in range(start_epoch, config["epochs"]):
        for inputs, labels in ember.utils.data.DataLoader(
            train_subset, batch_size=bs, shuffle=True
        ):
            opt.zero_grad()
            loss_fn(net(inputs), labels).backward()
            opt.step()
        val_loss, correct, total = 0.0, 0, 0
        with ember.no_grad():
            for inputs, labels in ember.utils.data.DataLoader(val_subset, batch_size=bs):
                outputs = net(inputs)
                correct += (ember.max(outputs.data, 1)[1] == labels).sum().item()
                total += labels.size(0)
                val_loss += loss_fn(outputs, labels).cpu().numpy()
        state = {
            "epoch": epoch,
            "net_state_dict": net.state_dict(),
            "optimizer_state_dict": opt.state_dict(),
        }
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "data.pkl").write_bytes(pickle.dumps(state))
            tune.report(
                {"loss": float(val_loss), "accuracy": correct / total},
                checkpoint=Checkpoint.from_directory(d),
            )
