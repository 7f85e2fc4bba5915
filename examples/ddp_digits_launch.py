"""Data-parallel digits classifier, torchrun style: run it with `ember launch`.

    ember launch --workers 2 examples/ddp_digits_launch.py --epochs 10

The script itself is plain PyTorch-shaped code: init_process_group from torchrun's
variables, DistributedSampler, DistributedDataParallel. Rank 0 prints one line per epoch and a
final summary: test accuracy, training speed, and where the checkpoint and the TensorBoard logs
went. With one process (plain `python`) it trains alone.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import digits_split, positive_float, positive_int

import ember
import ember.distributed as dist
import ember.nn as nn
import ember.nn.functional as F
from ember.nn.parallel import DistributedDataParallel as DDP
from ember.utils.data import DataLoader, DistributedSampler
from ember.utils.tensorboard import SummaryWriter


def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Accuracy of ``model`` over ``loader`` (every rank sees the whole test set)."""
    model.eval()
    correct = 0
    with ember.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(loader.dataset)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=positive_int, default=10)
    ap.add_argument("--batch-size", type=positive_int, default=32, help="per worker")
    ap.add_argument(
        "--lr",
        type=positive_float,
        default=3e-3,
        help="for one worker; scaled by the number of workers (linear scaling rule)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("runs/ddp_digits"),
        help="where rank 0 writes the checkpoint and the TensorBoard logs",
    )
    args = ap.parse_args()

    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("auto")  # reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1

    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    if distributed:
        model = DDP(model)  # broadcasts rank 0's weights; averages gradients
    # Each step averages world x batch-size samples: a larger step size keeps the same progress.
    opt = ember.optim.Adam(model.parameters(), lr=args.lr * world)
    sched = ember.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)

    train_set, test_set = digits_split(flatten=True)  # a fixed random 80/20 split
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    test_loader = DataLoader(test_set, batch_size=256)
    writer = SummaryWriter(str(args.out)) if rank == 0 else None

    steps, train_time = 0, 0.0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        start = time.perf_counter()
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            steps += 1
        train_time += time.perf_counter() - start
        sched.step()
        acc = evaluate(model, test_loader)
        if rank == 0:
            writer.add_scalar("train/loss", loss.item(), epoch)
            writer.add_scalar("test/accuracy", acc, epoch)
            print(
                f"epoch {epoch + 1:>2}/{args.epochs}  loss {loss.item():.4f}  "
                f"test accuracy {acc:.3f}",
                flush=True,
            )

    if rank == 0:
        writer.close()
        module = model.module if distributed else model
        ckpt = args.out / "model.pt"
        ember.save(module.state_dict(), ckpt)
        print(
            f"test accuracy {acc:.3f} ({world} worker{'s' if world > 1 else ''}, "
            f"{args.epochs} epochs, {steps / train_time:.0f} steps/s per worker)"
        )
        print(
            f"checkpoint {ckpt}; TensorBoard logs {args.out} "
            f"(tensorboard --logdir {args.out.parent})",
            flush=True,
        )
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
