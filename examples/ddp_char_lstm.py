"""A character-level LSTM on tinyshakespeare, data-parallel with the Trainer (Ray actors).

    python examples/ddp_char_lstm.py          # 2 workers, 20-50 s on 2 cores: val loss ~2.0
                                              # nats (unigram entropy 3.3)
    python examples/ddp_char_lstm.py --workers 2 --epochs 10 --max-steps-per-epoch 300

Each worker trains a replica of the model on its own shard of the training windows
(``prepare_data_loader`` gives it a DistributedSampler) and DDP (``prepare_model``) averages
the gradients, so N workers train on N times the batch per step. An epoch is a pass over the
worker's shard, cut short after ``--max-steps-per-epoch`` steps (a full pass over the ~1M
windows takes hours on a CPU); the next epoch goes on with the same shuffled stream of windows,
so no window repeats before all have been seen. After each epoch the workers evaluate the
held-out text (the last 10%) together - each its share of the validation windows, the sums
combined with an all_reduce - and rank 0 reports the losses with a checkpoint holding
everything a run needs to go on exactly: model, optimizer, scheduler, RNG state and the data
loader's position. When a worker dies, the Trainer restarts the group from the latest
checkpoint (``--max-failures`` times) and training resumes from ``get_checkpoint()`` as if
nothing had happened.

Every worker reads the text file itself: on a multi-node cluster it must exist at the same path
on every node.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import numpy as np

import ember
from ember import nn
from ember.distributed import train
from ember.nn import functional as F
from ember.optim.lr_scheduler import CosineAnnealingLR
from ember.utils.data import DataLoader, Subset
from ember.utils.data.datasets import CharDataset

DEFAULT_TEXT = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
)


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> linear scores over the vocabulary, at every position."""

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        """``x``: (N, T) character ids -> (N, T, vocab) logits."""
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def batches(loader: DataLoader):
    """The loader's batches as one endless stream: each pass (an epoch of the sampler, with
    its own shuffle) follows the last. ``loader.state_dict()`` always describes the pass in
    progress, so a checkpoint taken between two batches resumes at the very next one."""
    while True:
        yield from loader


def evaluate(model, windows: Subset, batch_size: int, device) -> tuple[float, int]:
    """(summed next-character cross-entropy, number of predictions) over ``windows``."""
    model.eval()
    total, count = 0.0, 0
    with ember.no_grad():
        for x, y in DataLoader(windows, batch_size=batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    model.train()
    return total, count


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all workers."""
    import ember.distributed as dist

    t = ember.tensor(values, dtype=ember.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def train_loop(config: dict) -> None:
    ctx = train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = train.get_device()
    ember.manual_seed(config["seed"])  # the same initial weights everywhere (DDP checks it)
    train_set = CharDataset(config["data"], config["block_size"], split="train")
    val_set = CharDataset(config["data"], config["block_size"], split="val")
    model = train.prepare_model(CharLSTM(train_set.vocab_size, config["embed"], config["hidden"]))
    optimizer = ember.optim.Adam(model.parameters(), lr=config["lr"])
    loader = train.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, drop_last=True)
    )
    steps = min(len(loader), config["max_steps_per_epoch"] or len(loader))
    scheduler = CosineAnnealingLR(
        optimizer, T_max=config["epochs"] * steps, eta_min=config["lr"] / 10
    )  # stepped after every batch
    # Fixed, non-overlapping validation windows; each worker evaluates every world-th one.
    windows = range(0, len(val_set), config["block_size"])[: config["eval_windows"]]
    my_windows = Subset(val_set, windows[rank::world])

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:  # a restart: go on exactly where the checkpoint left off
        with checkpoint.as_directory() as d:
            state = ember.load(os.path.join(d, "state.pt"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        ember.set_rng_state(state["rng"])
        start = state["epoch"] + 1
        if rank == 0:
            print(f"resuming at epoch {start + 1} from {checkpoint.path}", flush=True)

    stream = batches(loader)
    for epoch in range(start, config["epochs"]):
        train_loss = 0.0
        for _ in range(steps):
            x, y = next(stream)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients over the workers here
            nn.utils.clip_grad_norm_(model.parameters(), config["clip"])
            optimizer.step()
            scheduler.step()
            train_loss += loss.item()
        val_total, val_count, train_sum = all_sum(
            [*evaluate(model, my_windows, config["batch_size"], device), train_loss / steps]
        )
        metrics = {
            "epoch": epoch,
            "train_loss": train_sum / world,
            "val_loss": val_total / val_count,
            "lr": scheduler.get_last_lr()[0],
        }
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:  # the replicas are identical: one copy of the state is enough
                ember.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "loader": loader.state_dict(),
                        "rng": ember.get_rng_state(),
                        "epoch": epoch,
                    },
                    os.path.join(d, "state.pt"),
                )
                ckpt = train.Checkpoint.from_directory(d)
            train.report(metrics, checkpoint=ckpt)


def text_stats(path: str) -> tuple[int, float]:
    """(vocabulary size, entropy in nats of the training text's character frequencies). The
    entropy is the loss of a model that ignores context: a language model should end well
    below it."""
    train_text = CharDataset(path, 1, split="train")
    counts = np.bincount(train_text.data.numpy())
    p = counts[counts > 0] / counts.sum()
    return train_text.vocab_size, float(-(p * np.log(p)).sum())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_TEXT, help="UTF-8 text to train on")
    ap.add_argument("--workers", type=int, default=2, help="training workers (Ray actors)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--max-steps-per-epoch",
        type=int,
        default=50,
        help="cut each epoch short after this many steps (0: a full pass)",
    )
    ap.add_argument("--batch-size", type=int, default=32, help="windows per step, per worker")
    ap.add_argument("--block-size", type=int, default=64, help="characters per window")
    ap.add_argument("--embed", type=int, default=64, help="embedding size")
    ap.add_argument("--hidden", type=int, default=256, help="LSTM hidden size")
    ap.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (cosine decay)")
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    ap.add_argument(
        "--eval-windows",
        type=int,
        default=256,
        help="validation windows, shared out among the workers",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="restarts from the latest checkpoint after a worker fails",
    )
    ap.add_argument(
        "--out",
        default=os.path.join(tempfile.gettempdir(), "ember_runs"),
        help="storage path: the run directory (checkpoints, metrics) goes here",
    )
    ap.add_argument("--name", default="ddp_char_lstm", help="run name under --out")
    args = ap.parse_args(argv)
    for name in (
        "workers",
        "epochs",
        "batch_size",
        "block_size",
        "embed",
        "hidden",
        "lr",
        "clip",
        "eval_windows",
    ):
        if not getattr(args, name) > 0:
            ap.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.max_steps_per_epoch < 0:
        ap.error(f"--max-steps-per-epoch must be >= 0, got {args.max_steps_per_epoch}")
    if not args.data.is_file():
        ap.error(
            f"--data: text file not found: {args.data} (ember downloads nothing; pass the "
            "path of a local UTF-8 text file, e.g. tinyshakespeare.txt)"
        )
    data = str(args.data.resolve())  # the workers run in other directories
    vocab_size, unigram = text_stats(data)

    config = {
        k: getattr(args, k)
        for k in (
            "epochs",
            "max_steps_per_epoch",
            "batch_size",
            "block_size",
            "embed",
            "hidden",
            "lr",
            "clip",
            "eval_windows",
            "seed",
        )
    }
    trainer = train.Trainer(
        train_loop,
        {**config, "data": data},
        scaling_config=train.ScalingConfig(num_workers=args.workers),
        run_config=train.RunConfig(
            name=args.name,
            storage_path=args.out,
            failure_config=train.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=train.CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    val = result.metrics["val_loss"]
    print(
        f"final validation loss {val:.3f} nats after {result.metrics['epoch'] + 1} epochs on "
        f"{args.workers} workers (unigram entropy {unigram:.3f}, uniform "
        f"{math.log(vocab_size):.3f}); checkpoint: {result.checkpoint.path}",
        flush=True,
    )
    return {"val_loss": val, "unigram_entropy": unigram, "path": result.path}


if __name__ == "__main__":
    main()
