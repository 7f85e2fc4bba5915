"""Classify scikit-learn's 8x8 handwritten digits with a small CNN.

The same workflow as ``digits_mlp.py`` (train loop, evaluation under ``ember.no_grad()``,
TensorBoard logs, a progress bar, a checkpoint every epoch, exact ``--resume``), with a
convolutional model, light augmentation (random one-pixel shifts) and a one-cycle learning-rate
schedule stepped after every batch::

    python examples/digits_cnn.py            # ~98-99% test accuracy in about 10 s on 2 cores
    python examples/digits_cnn.py --resume   # after a Ctrl-C: go on from runs/digits_cnn
    tensorboard --logdir runs/digits_cnn
"""

from __future__ import annotations

import time

import _common  # examples/_common.py: options, checkpoints, Ctrl-C handling

import ember
from ember import nn
from ember.nn import functional as F
from ember.optim.lr_scheduler import OneCycleLR
from ember.utils.data import DataLoader
from ember.utils.data import transforms as T
from ember.utils.progress import progress
from ember.utils.tensorboard import SummaryWriter


class ConvNet(nn.Module):
    """(N, 1, 8, 8) images -> two 3x3 convolutions -> 2x2 max-pool -> two linear layers."""

    def __init__(self, channels: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels * 4 * 4, 128),
            nn.ReLU(),
            nn.Dropout(2 * dropout),
            nn.Linear(128, 10),
        )

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        return self.classifier(self.features(x))


def evaluate(model: nn.Module, loader: DataLoader, device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with ember.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == y).sum().item())
            count += y.shape[0]
    return total_loss / count, correct / count


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = _common.make_parser(
        __doc__.splitlines()[0], name="digits_cnn", epochs=20, batch_size=32, lr=3e-3
    )
    parser.add_argument("--channels", type=int, default=32, help="channels of the first conv")
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train without the random one-pixel shifts",
    )
    parser.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    args = _common.parse_args(parser, argv, positive=("channels",))
    device = args.device
    ember.manual_seed(args.seed)

    train_set, test_set = _common.digits_split(
        train_transform=T.RandomCrop(8, padding=1) if args.augment else None
    )
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers
    )
    test_loader = DataLoader(test_set, batch_size=512)

    model = ConvNet(args.channels).to(device)
    optimizer = ember.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # Warm up, then anneal, over the whole run: stepped after every batch.
    scheduler = OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * len(train_loader))
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": train_loader}

    epoch, step = 0, 0
    if args.resume:
        state = _common.load_checkpoint(args, **parts)
        epoch, step = state["epoch"], state["step"]
        print(f"resumed from {_common.checkpoint_path(args)} at epoch {epoch + 1}, step {step}")
    writer = SummaryWriter(args.out, purge_step=step + 1 if args.resume else None)
    if not args.resume:
        writer.add_text("args", str(vars(args)))

    metrics: dict[str, float] = {}
    last_loss = None
    with writer, _common.StopRequest(args.max_steps) as stop:
        while epoch < args.epochs:
            started = time.perf_counter()
            model.train()
            with progress(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}") as bar:
                for x, y in bar:
                    x, y = x.to(device), y.to(device)
                    loss = F.cross_entropy(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    step += 1
                    writer.add_scalar("train/loss", loss, step)
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
                    scheduler.step()
                    bar.set_metrics(loss=loss)
                    last_loss = loss
                    if stop.should_stop(step):
                        path = _common.save_checkpoint(args, **parts, epoch=epoch, step=step)
                        stop.exit(path, step)

            test_loss, test_acc = evaluate(model, test_loader, device)
            writer.add_scalar("test/loss", test_loss, step)
            writer.add_scalar("test/accuracy", test_acc, step)
            epoch += 1
            _common.save_checkpoint(args, **parts, epoch=epoch, step=step)
            metrics = {"test_loss": test_loss, "test_accuracy": test_acc}
            if last_loss is not None:
                metrics = {"train_loss": last_loss.item(), **metrics}
            print(
                f"epoch {epoch}/{args.epochs}  "
                + _common.format_metrics(**metrics)
                + f"  ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    if metrics:
        print(
            f"test accuracy {100 * metrics['test_accuracy']:.2f}%; checkpoint and TensorBoard "
            f"logs in {args.out}"
        )
    return metrics


if __name__ == "__main__":
    main()
