"""Fine-tune a resnet18 image classifier on 2 Trainer workers and report its accuracy.

    python examples/finetune/resnet18_fakedata.py                        # FakeData, random init
    python examples/finetune/resnet18_fakedata.py --weights r18.pt --data ~/cifar-10-batches-py

The model is torchvision's ``resnet18`` layout (``ember.vision.models.resnet18``). ``--weights``
is a state_dict file in that layout: ``ember.save``/``torch.save`` (read tensors-only) or
``.safetensors``, e.g. torchvision's ImageNet weights. Its classifier (``fc``) is replaced by a
fresh one when the class count differs - the usual fine-tuning recipe; every other key must fit.

Data: ``FakeData`` (random 32x32 images with random labels, nothing to download: the test
accuracy stays at chance, the training accuracy shows the model fitting), or with ``--data`` a
directory of CIFAR-format files (the "python version" of CIFAR-10: pickled ``data_batch_*`` and
``test_batch`` dicts holding ``data``, an (N, 3072) uint8 array, and ``labels``). Training
images are randomly cropped and flipped. ``prepare_data_loader`` gives each worker its shard;
DDP averages the gradients (and keeps the BatchNorm statistics of rank 0). After training the
workers evaluate their shares of the test set and the sums are combined with an all_reduce.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

import ember
from ember.distributed import train
from ember.utils.data import DataLoader, Dataset

sys.path.append(str(Path(__file__).resolve().parent.parent))  # examples/_common.py
from _common import nonneg_int, positive_float, positive_int  # noqa: E402

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]  # CIFAR-10's channel stats


class ArrayImages(Dataset):
    """(N, 32, 32, 3) uint8 images and their labels, as PIL images through ``transform``."""

    def __init__(self, images: np.ndarray, labels: list[int], transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), self.labels[i]


def read_cifar(folder: str, train_split: bool) -> tuple[np.ndarray, list[int]]:
    """The CIFAR-format batches of one split under ``folder`` (pickles: trusted files only)."""
    names = (
        sorted(Path(folder).glob("data_batch_*")) if train_split else [Path(folder) / "test_batch"]
    )
    chunks, labels = [], []
    for path in names:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        lab = entry.get("labels", entry.get("fine_labels"))
        if data.ndim != 2 or data.shape[1] != 3072 or lab is None or len(lab) != len(data):
            raise ValueError(
                f"{path}: expected 'data' of shape (N, 3072) and N 'labels', got "
                f"{data.shape} and {None if lab is None else len(lab)}"
            )
        chunks.append(data)
        labels += [int(v) for v in lab]
    return np.vstack(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def datasets(config: dict):
    from ember.vision import datasets as vd
    from ember.vision import transforms as T

    norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *norm])
    test_tf = T.Compose(norm)
    if config["data"] is None:
        k = config["num_classes"]
        return (
            vd.FakeData(config["train_size"], (3, 32, 32), k, transform=train_tf),
            vd.FakeData(
                config["test_size"],
                (3, 32, 32),
                k,
                transform=test_tf,
                random_offset=config["train_size"],
            ),
        )
    return (
        ArrayImages(*read_cifar(config["data"], True), transform=train_tf),
        ArrayImages(*read_cifar(config["data"], False), transform=test_tf),
    )


def load_weights(model, path: str) -> list[str]:
    """Load a resnet18 state_dict into ``model``; returns the keys left at their random init
    (the classifier when its class count differs)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        state = {k: ember.tensor(v) for k, v in load_file(path).items()}
    else:
        state = ember.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    fresh = [
        k
        for k in ("fc.weight", "fc.bias")
        if k in state and k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    for k in fresh:
        del state[k]
    model.load_state_dict(state, strict=not fresh)  # any other misfit raises, naming the keys
    return fresh


def train_loop(config: dict) -> None:
    import ember.distributed as dist
    from ember.vision.models import resnet18

    rank, world = train.get_context().get_world_rank(), train.get_context().get_world_size()
    ember.manual_seed(config["seed"])
    model = resnet18(num_classes=config["num_classes"])
    if config["weights"]:
        fresh = load_weights(model, config["weights"])
        if rank == 0 and fresh:
            print(f"new classifier for {config['num_classes']} classes: {fresh}", flush=True)
    model = train.prepare_model(model)
    optimizer = ember.optim.SGD(
        model.parameters(), lr=config["lr"], momentum=0.9, weight_decay=5e-4
    )
    train_set, test_set = datasets(config)
    loader = train.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, drop_last=True)
    )
    test_loader = train.prepare_data_loader(DataLoader(test_set, batch_size=64))

    sums = np.zeros(4)  # train correct, train seen, test correct, test seen
    for epoch in range(config["epochs"]):
        model.train()
        for images, labels in loader:
            logits = model(images)
            loss = ember.nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if epoch == config["epochs"] - 1:
                sums[0] += (logits.argmax(1) == labels).sum().item()
                sums[1] += labels.numel()
    model.eval()
    with ember.no_grad():
        for images, labels in test_loader:
            sums[2] += (model(images).argmax(1) == labels).sum().item()
            sums[3] += labels.numel()
    t = ember.tensor(sums, dtype=ember.float64)
    if world > 1:
        dist.all_reduce(t)
    s = t.tolist()
    train.report(
        {
            "train_acc": s[0] / max(s[1], 1),
            "test_acc": s[2] / max(s[3], 1),
            "test_images": int(s[3]),
            "last_loss": loss.item(),
        }
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="resnet18 state_dict to start from (.pt or .safetensors)",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="directory of CIFAR-format batches (default: FakeData)",
    )
    ap.add_argument("--num-classes", type=positive_int, default=10)
    ap.add_argument("--train-size", type=positive_int, default=512, help="FakeData images")
    ap.add_argument("--test-size", type=positive_int, default=128, help="FakeData images")
    ap.add_argument("--workers", type=positive_int, default=2, help="Ray training workers")
    ap.add_argument("--epochs", type=positive_int, default=2)
    ap.add_argument("--batch-size", type=positive_int, default=32, help="images per worker")
    ap.add_argument("--lr", type=positive_float, default=0.05)
    ap.add_argument("--seed", type=nonneg_int, default=0)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ember_finetune",
        help="run directory",
    )
    args = ap.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        ap.error(f"--weights: file not found: {args.weights}")
    if args.data is not None:
        missing = [n for n in ("data_batch_1", "test_batch") if not (args.data / n).is_file()]
        if missing:
            ap.error(f"--data: {args.data} lacks the CIFAR-format files {missing}")
        labels = read_cifar(str(args.data), False)[1]
        if max(labels) >= args.num_classes:
            ap.error(f"--num-classes {args.num_classes}: the data has label {max(labels)}")
    elif args.train_size < args.batch_size * args.workers:
        ap.error(
            f"--train-size {args.train_size} is smaller than one step of "
            f"{args.workers} x {args.batch_size} images"
        )

    config = {
        "weights": str(args.weights.resolve()) if args.weights else None,
        "data": str(args.data.resolve()) if args.data else None,
        **{
            k: getattr(args, k)
            for k in (
                "num_classes",
                "train_size",
                "test_size",
                "epochs",
                "batch_size",
                "lr",
                "seed",
            )
        },
    }
    result = train.Trainer(
        train_loop,
        config,
        scaling_config=train.ScalingConfig(num_workers=args.workers),
        run_config=train.RunConfig(
            name="resnet18_finetune", storage_path=str(args.out.resolve()), verbose=0
        ),
    ).fit()
    m = result.metrics
    print(
        f"resnet18 after {args.epochs} epochs on {args.workers} workers: train accuracy "
        f"{m['train_acc']:.3f} (last epoch), test accuracy {m['test_acc']:.3f} on "
        f"{m['test_images']} images (chance {1 / args.num_classes:.3f})",
        flush=True,
    )
    return dict(m)


if __name__ == "__main__":
    main()
