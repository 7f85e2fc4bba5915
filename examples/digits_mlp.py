"""Classify scikit-learn's 8x8 handwritten digits with an MLP: the whole single-process workflow.

Train loop, evaluation under ``ember.no_grad()``, a cosine learning-rate schedule, TensorBoard
logs, a progress bar, and a checkpoint every epoch that ``--resume`` continues from exactly
(Ctrl-C saves one too)::

    python examples/digits_mlp.py            # ~97% test accuracy in a few seconds
    python examples/digits_mlp.py --resume   # after a Ctrl-C: go on from runs/digits_mlp
    tensorboard --logdir runs/digits_mlp
"""

from __future__ import annotations

import time

import _common  # examples/_common.py: options, checkpoints, Ctrl-C handling

import ember
from ember import nn
from ember.nn import functional as F
from ember.optim.lr_scheduler import CosineAnnealingLR
from ember.utils.data import DataLoader
from ember.utils.progress import progress
from ember.utils.tensorboard import SummaryWriter


class MLP(nn.Module):
    """64 pixels -> two hidden ReLU layers with dropout -> 10 class scores."""

    def __init__(self, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        return self.net(x)


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
        __doc__.splitlines()[0], name="digits_mlp", epochs=30, batch_size=32, lr=3e-3
    )
    parser.add_argument("--hidden", type=int, default=256, help="width of the hidden layers")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout probability")
    parser.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    args = _common.parse_args(parser, argv, positive=("hidden",))
    device = args.device
    ember.manual_seed(args.seed)

    train_set, test_set = _common.digits_split(flatten=True)
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers
    )
    test_loader = DataLoader(test_set, batch_size=512)

    model = MLP(args.hidden, args.dropout).to(device)
    optimizer = ember.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = CosineAnnealingLR(optimizer, T_max=args.epochs)  # stepped once per epoch
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": train_loader}

    epoch, step = 0, 0
    if args.resume:
        state = _common.load_checkpoint(args, **parts)
        epoch, step = state["epoch"], state["step"]
        print(f"resumed from {_common.checkpoint_path(args)} at epoch {epoch + 1}, step {step}")
    # purge_step hides what a stopped run logged after its checkpoint.
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
                    bar.set_metrics(loss=loss)
                    last_loss = loss
                    if stop.should_stop(step):
                        path = _common.save_checkpoint(args, **parts, epoch=epoch, step=step)
                        stop.exit(path, step)

            test_loss, test_acc = evaluate(model, test_loader, device)
            writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
            writer.add_scalar("test/loss", test_loss, step)
            writer.add_scalar("test/accuracy", test_acc, step)
            scheduler.step()
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
