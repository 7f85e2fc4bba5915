"""Data-parallel digits classifier with the Trainer API (Ray actors, one per worker).

    python examples/ddp_digits.py --workers 2 --epochs 4 --out runs
    python examples/ddp_digits.py --workers 2 --epochs 8 --out runs --resume  # epochs 5-8

Each worker trains a replica of an MLP on its shard of scikit-learn's digits; DDP averages
gradients; rank 0 reports metrics and a checkpoint every epoch. Kill a worker mid-run and the
group restarts from the latest checkpoint (``--max-failures``).
"""

from __future__ import annotations

import argparse
import os
import tempfile

from _common import digits_split, nonneg_int, positive_float, positive_int

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.distributed import train
from ember.utils.data import DataLoader


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))


def evaluate(model, loader) -> float:
    model.eval()
    correct = total = 0
    with ember.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.shape[0]
    model.train()
    return correct / max(total, 1)


def train_loop(config: dict) -> None:
    ember.manual_seed(config["seed"])
    model = train.prepare_model(build_model())
    train_set, test_set = digits_split(flatten=True)  # a fixed random 80/20 split
    opt = ember.optim.Adam(model.parameters(), lr=config["lr"])
    sched = ember.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config["epochs"])
    loader = train.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True)
    )
    test_loader = DataLoader(test_set, batch_size=256)
    start = 0
    ckpt = train.get_checkpoint()
    if ckpt is not None:  # a restart: resume exactly where the last checkpoint left off
        with ckpt.as_directory() as d:
            state = ember.load(os.path.join(d, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        ember.set_rng_state(state["rng"])
        loader.load_state_dict(state["loader"])  # its epoch counter drives the shuffle
        start = state["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        total, n = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * y.shape[0]
            n += y.shape[0]
        sched.step()
        metrics = {"epoch": epoch, "loss": total / n, "test_acc": evaluate(model, test_loader)}
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if train.get_context().get_world_rank() == 0:
                ember.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "rng": ember.get_rng_state(),
                        "loader": loader.state_dict(),
                        "epoch": epoch,
                    },
                    os.path.join(d, "state.pt"),
                )
                checkpoint = train.Checkpoint.from_directory(d)
            train.report(metrics, checkpoint=checkpoint)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=positive_int, default=2)
    ap.add_argument("--epochs", type=positive_int, default=8)
    ap.add_argument("--batch-size", type=positive_int, default=32, help="per worker")
    ap.add_argument("--lr", type=positive_float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-failures", type=nonneg_int, default=1)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "ember_runs"))
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its latest checkpoint (to --epochs)",
    )
    args = ap.parse_args(argv)
    config = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
    }
    # not "ddp_digits": the quickstart's `ember launch` step writes runs/ddp_digits before this
    options = dict(
        scaling_config=train.ScalingConfig(num_workers=args.workers),
        run_config=train.RunConfig(
            name="ddp_digits_trainer",
            storage_path=args.out,
            failure_config=train.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=train.CheckpointConfig(num_to_keep=2),
        ),
    )
    if args.resume:
        trainer = train.Trainer.restore(
            os.path.join(args.out, "ddp_digits_trainer"), train_loop, config, **options
        )
    else:
        trainer = train.Trainer(train_loop, config, **options)
    result = trainer.fit()
    acc = result.metrics["test_acc"]
    print(
        f"final test accuracy {acc:.3f} after {result.metrics['epoch'] + 1} epochs "
        f"on {args.workers} workers; checkpoint: {result.checkpoint.path}"
    )
    return acc


if __name__ == "__main__":
    main()
