"""Data-parallel digits classifier, torchrun style: run it with `ember launch`.

    ember launch --workers 2 examples/ddp_digits_launch.py --epochs 10

The script itself is plain PyTorch-shaped code: init_process_group from torchrun's
variables, DistributedSampler, DistributedDataParallel. Rank 0 shows a progress bar and
prints the final test accuracy. With one process (plain `python`) it trains alone.
"""

from __future__ import annotations

import argparse
import os

from _common import positive_float, positive_int  # argparse types

import ember
import ember.distributed as dist
import ember.nn as nn
import ember.nn.functional as F
from ember.nn.parallel import DistributedDataParallel as DDP
from ember.utils.data import DataLoader, DistributedSampler
from ember.utils.data.datasets import Digits
from ember.utils.progress import progress


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=positive_int, default=10)
    ap.add_argument("--batch-size", type=positive_int, default=32, help="per worker")
    ap.add_argument("--lr", type=positive_float, default=3e-3)
    args = ap.parse_args()

    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("auto")  # reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1

    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    if distributed:
        model = DDP(model)  # broadcasts rank 0's weights; averages gradients
    opt = ember.optim.Adam(model.parameters(), lr=args.lr)
    sched = ember.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)

    train_set = Digits(train=True, flatten=True)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    test_loader = DataLoader(Digits(train=False, flatten=True), batch_size=256)

    bar = progress(range(args.epochs), desc="epochs", disable=rank != 0)
    for epoch in bar:
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        sched.step()
        bar.set_metrics(loss=loss)

    model.eval()
    correct = 0
    with ember.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    if rank == 0:
        print(f"test accuracy {correct / len(test_loader.dataset):.3f} "
              f"({world} worker{'s' if world > 1 else ''}, {args.epochs} epochs)")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
